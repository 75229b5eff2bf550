import { mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { startOriginProcess } from './lib/children';
import { median } from './lib/compare-results';
import { startOrigin, startProxy } from './lib/peers';
import type { RunningProcess } from './lib/peers';
import { treeCpuSeconds } from './lib/proc-tree';
import { runWrk } from './lib/tool-loads';

/**
 * Load (1) of bench/compare.ts alone (wrk, keep-alive GETs, 50 connections, nginx origin) on bare
 * proxies that differ only in their upstream client (bench/lib/bare-proxy.ts), beside squid and
 * tollgate builds, so one run shows how much of a request's CPU the client costs.
 * Usage: node bench/dist/client-ceiling.js [--seconds 8] [--repeat 3]
 *        [--targets squid,node,undici-dispatch,...] [--cli name=path/to/cli.js ...]
 * A target NAME+fsync runs the tollgate build NAME with --audit-fsync (`npm run bench:fsync`).
 */

const BARE = ['node', 'undici-dispatch', 'undici-request', 'undici-stream'];
const REPO_ROOT = path.resolve(__dirname, '..', '..');

interface Row {
  rate: number[];
  cpuUs: number[];
  errors: number[];
}


async function start(target: string, scratch: string, clis: Map<string, string>): Promise<RunningProcess> {
  if (BARE.includes(target)) return startOriginProcess(path.join(__dirname, 'lib', 'bare-proxy.js'), [target]);
  if (target === 'squid') return startProxy('squid', { parent: scratch, cli: '', nodeArgs: [] });
  const [name, variant] = target.split('+');
  const cli = clis.get(name);
  if (cli === undefined) throw new Error(`unknown target ${target}: pass --cli ${name}=path/to/cli.js`);
  if (variant !== undefined && variant !== 'fsync') throw new Error(`unknown variant ${variant} of ${name}: only +fsync`);
  return startProxy('tollgate', { parent: scratch, cli, nodeArgs: [], serveArgs: variant === 'fsync' ? ['--audit-fsync'] : [] });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { seconds: { type: 'string' }, repeat: { type: 'string' }, targets: { type: 'string' }, cli: { type: 'string', multiple: true } },
  });
  const seconds = Number(values.seconds ?? 8);
  const repeat = Number(values.repeat ?? 3);
  const clis = new Map<string, string>([['tollgate', path.join(REPO_ROOT, 'dist', 'cli.js')]]);
  for (const entry of values.cli ?? []) {
    const [name, file] = entry.split('=');
    clis.set(name, path.resolve(file));
  }
  const targets = (values.targets ?? ['squid', ...BARE].join(',')).split(',');
  const scratch = mkdtempSync(path.join(tmpdir(), 'tollgate-ceiling-'));
  chmodSync(scratch, 0o711);
  const rows = new Map<string, Row>(targets.map((t) => [t, { rate: [], cpuUs: [], errors: [] }]));
  process.stderr.write(`load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
  const origin = await startOrigin(scratch, 'nginx', [], '');
  try {
    for (let run = 0; run < repeat; run += 1) {
      // Rotated so that no target always runs first (or right after the same neighbour).
      const order = targets.map((_, i) => targets[(i + run) % targets.length]);
      for (const target of order) {
        const proxy = await start(target, scratch, clis);
        try {
          const route = { originPort: origin.port, proxyPort: proxy.port };
          await runWrk(route, 50, 1, scratch);
          const before = treeCpuSeconds(proxy.pid);
          const result = await runWrk(route, 50, seconds, scratch);
          const cpu = treeCpuSeconds(proxy.pid) - before;
          const row = rows.get(target) as Row;
          row.rate.push(result.rate);
          row.cpuUs.push((cpu / result.requests) * 1e6);
          row.errors.push(result.errors);
          process.stderr.write(`run ${run + 1} ${target}: ${result.rate.toFixed(0)} req/s, ${((cpu / result.requests) * 1e6).toFixed(1)} µs CPU/req, ${result.errors} errors\n`);
        } finally {
          await proxy.stop();
        }
        await delay(500);
      }
    }
  } finally {
    await origin.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
  process.stderr.write(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
  process.stdout.write(`| target | req/s (median of ${repeat}) | CPU µs/req | runs req/s | runs µs | errors |\n| --- | --- | --- | --- | --- | --- |\n`);
  for (const [target, row] of rows) {
    process.stdout.write(
      `| ${target} | ${median(row.rate).toFixed(0)} | ${median(row.cpuUs).toFixed(1)} | ${row.rate.map((r) => r.toFixed(0)).join(' / ')} | ${row.cpuUs.map((c) => c.toFixed(1)).join(' / ')} | ${row.errors.join(' / ')} |\n`,
    );
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`client-ceiling: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 2;
});
