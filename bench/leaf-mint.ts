import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { SecureContext } from 'node:tls';

/**
 * What TLS inspection's leaf certificates cost (issue 18): a mint (cache miss: key, ECDSA
 * signature, TLS context) with one shared leaf key and with a key per leaf, a cache hit, mints in
 * parallel, and the memory a full cache holds. Loads dist/ (`npm run build`): it times the code
 * as it ships.
 * Usage: npm run bench:inspect-mint [-- --mints N] [--hits N] [--out FILE]
 */

const REPO_ROOT = path.resolve(__dirname, '..', '..');

/** The parts of dist/inspect/ca.js and ca-create.js this bench uses (it loads the build, not src/). */
interface Issuer {
  contextFor(host: string): Promise<SecureContext>;
  stats(): { cached: number };
}
interface CaModule {
  loadInspection(dir: string, trust: string | null, options?: { leafKey?: 'shared' | 'per-leaf'; cacheSize?: number }): Promise<Issuer>;
  LEAF_CACHE_SIZE: number;
}
interface CaCreateModule {
  createCa(request: { name: string; days: number; permit: string[]; now: Date }): Promise<{ certPem: string; keyPem: string }>;
}

const load = <T>(rel: string): T => require(path.join(REPO_ROOT, 'dist', rel)) as T;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

interface Timing {
  p50: number;
  p95: number;
  max: number;
  mean: number;
}

function summarise(samples: number[]): Timing {
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return { p50: percentile(sorted, 50), p95: percentile(sorted, 95), max: sorted[sorted.length - 1], mean };
}

async function timeMints(issuer: Issuer, count: number, prefix: string): Promise<Timing> {
  const samples: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const started = performance.now();
    await issuer.contextFor(`h${i}.${prefix}.example`);
    samples.push(performance.now() - started);
  }
  return summarise(samples);
}

/** A cache hit: contextFor on a host already minted, many times; nanoseconds per call. */
async function timeHits(issuer: Issuer, count: number): Promise<number> {
  await issuer.contextFor('hot.example');
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i += 1) await issuer.contextFor('hot.example');
  return Number(process.hrtime.bigint() - started) / count;
}

/** `parallel` distinct hosts at once: WebCrypto signs on libuv's thread pool. */
async function timeParallel(issuer: Issuer, parallel: number): Promise<number> {
  const started = performance.now();
  await Promise.all(Array.from({ length: parallel }, (_, i) => issuer.contextFor(`p${i}.parallel.example`)));
  return performance.now() - started;
}

async function memoryOfFullCache(ca: CaModule, dir: string): Promise<{ entries: number; rssMiB: number; kibPerEntry: number }> {
  const issuer = await ca.loadInspection(dir, null);
  global.gc?.();
  const before = process.memoryUsage().rss;
  for (let i = 0; i < ca.LEAF_CACHE_SIZE; i += 1) await issuer.contextFor(`m${i}.memory.example`);
  global.gc?.();
  const grown = process.memoryUsage().rss - before;
  return { entries: issuer.stats().cached, rssMiB: grown / 1048576, kibPerEntry: grown / 1024 / issuer.stats().cached };
}

const ms = (n: number): string => n.toFixed(2);

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { mints: { type: 'string' }, hits: { type: 'string' }, out: { type: 'string' } } });
  const mints = Number(values.mints ?? 500);
  const hits = Number(values.hits ?? 200_000);
  const ca = load<CaModule>('inspect/ca.js');
  const created = await load<CaCreateModule>('inspect/ca-create.js').createCa({ name: 'bench CA', days: 30, permit: [], now: new Date() });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-bench-ca-'));
  try {
    fs.writeFileSync(path.join(dir, 'ca.pem'), created.certPem);
    fs.writeFileSync(path.join(dir, 'ca-key.pem'), created.keyPem, { mode: 0o600 });
    const shared = await ca.loadInspection(dir, null, { leafKey: 'shared', cacheSize: mints * 2 });
    const perLeaf = await ca.loadInspection(dir, null, { leafKey: 'per-leaf', cacheSize: mints * 2 });
    // Warm-up: JIT and OpenSSL's first use, off the record.
    await timeMints(shared, 50, 'warm-s');
    await timeMints(perLeaf, 50, 'warm-p');
    const sharedMint = await timeMints(shared, mints, 'shared');
    const perLeafMint = await timeMints(perLeaf, mints, 'perleaf');
    const hitNs = await timeHits(shared, hits);
    const parallel100 = await timeParallel(await ca.loadInspection(dir, null), 100);
    const memory = await memoryOfFullCache(ca, dir);
    const report = [
      `# Leaf certificate mint cost (bench/leaf-mint.ts)`,
      '',
      `${new Date().toISOString()}, Node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}; ${mints} mints each, after 50 warm-up mints.`,
      '',
      '| | p50 ms | p95 ms | max ms | mean ms |',
      '|---|---|---|---|---|',
      `| mint, one shared leaf key (default) | ${ms(sharedMint.p50)} | ${ms(sharedMint.p95)} | ${ms(sharedMint.max)} | ${ms(sharedMint.mean)} |`,
      `| mint, a key per leaf | ${ms(perLeafMint.p50)} | ${ms(perLeafMint.p95)} | ${ms(perLeafMint.max)} | ${ms(perLeafMint.mean)} |`,
      '',
      `- cache hit (contextFor of a cached host): ${(hitNs / 1000).toFixed(2)} µs per call (${hits.toLocaleString('en-US')} calls)`,
      `- 100 distinct hosts minted at once: ${ms(parallel100)} ms in all (${(100000 / parallel100).toFixed(0)} mints/s)`,
      `- a full cache (${memory.entries} contexts): RSS +${memory.rssMiB.toFixed(1)} MiB, about ${memory.kibPerEntry.toFixed(1)} KiB per host${global.gc ? '' : ' (run with --expose-gc for a steadier figure)'}`,
      '',
    ].join('\n');
    process.stdout.write(report);
    if (values.out !== undefined) fs.writeFileSync(values.out, report);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
