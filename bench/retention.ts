import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startOriginProcess, startProxyProcess } from './lib/children';
import { freePort } from './lib/daemons';
import { flatAfter, renderRetention, sampleDisk } from './lib/disk-use';
import type { DiskSample } from './lib/disk-use';
import { LOOPBACK_POLICY } from './lib/peers';

/**
 * Does `--retain` keep the audit store's disk use flat? A soak: a real `tollgate serve` with a
 * retention period shorter than the run, steady load through it to a loopback origin, and the
 * db folder's disk use sampled every few seconds from outside.
 * Usage: npm run bench:retention [-- --retain 20 --seconds 90 --rate 400 --sample-every 5]
 */

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(REPO_ROOT, 'dist', 'cli.js');

interface Options {
  retain: number;
  seconds: number;
  rate: number;
  sampleEvery: number;
  out: string;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      retain: { type: 'string', default: '20' },
      seconds: { type: 'string', default: '90' },
      rate: { type: 'string', default: '400' },
      'sample-every': { type: 'string', default: '5' },
      out: { type: 'string', default: path.join(REPO_ROOT, 'bench', 'results', 'retention.md') },
    },
  });
  return { retain: Number(values.retain), seconds: Number(values.seconds), rate: Number(values.rate), sampleEvery: Number(values['sample-every']), out: String(values.out) };
}

interface LoadResult {
  requests: number;
  failed: number;
  load: string;
}

function which(program: string): Promise<boolean> {
  return new Promise((resolve) => execFile('which', [program], (err) => resolve(err === null)));
}

/** hey: 4 workers with keep-alive, each paced at rate/4 per second. */
function heyLoad(proxyPort: number, originPort: number, opts: Options): Promise<LoadResult> {
  const workers = 4;
  const perWorker = Math.max(1, Math.round(opts.rate / workers));
  const args = ['-z', `${opts.seconds}s`, '-c', String(workers), '-q', String(perWorker), '-x', `http://127.0.0.1:${proxyPort}`, `http://127.0.0.1:${originPort}/`];
  return new Promise((resolve, reject) => {
    execFile('hey', args, { maxBuffer: 16 * 1024 * 1024 }, (err, stdout) => {
      if (err) return reject(err);
      // "Status code distribution: [200] N responses", then "Error distribution: [N] <error>".
      const statuses = [...stdout.matchAll(/\[(\d{3})\]\s+(\d+) responses/g)].map((m) => ({ status: m[1], count: Number(m[2]) }));
      const errorPart = stdout.split('Error distribution:')[1] ?? '';
      const errors = [...errorPart.matchAll(/^\s*\[(\d+)\]/gm)].reduce((n, m) => n + Number(m[1]), 0);
      const requests = statuses.filter((s) => s.status === '200').reduce((n, s) => n + s.count, 0);
      const total = statuses.reduce((n, s) => n + s.count, 0) + errors;
      resolve({ requests, failed: total - requests, load: `\`hey -c ${workers} -q ${perWorker}\` (about ${workers * perWorker} req/s, keep-alive)` });
    });
  });
}

/** The fallback without hey: keep-alive GETs through the proxy, paced to `rate` per second. */
async function nodeLoad(proxyPort: number, originPort: number, opts: Options): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  const deadline = Date.now() + opts.seconds * 1000;
  let requests = 0;
  let failed = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const req = request({ host: '127.0.0.1', port: proxyPort, path: `http://127.0.0.1:${originPort}/`, agent }, (res) => {
        res.resume();
        res.once('end', () => {
          if (res.statusCode === 200) requests += 1;
          else failed += 1;
          resolve();
        });
      });
      req.once('error', () => {
        failed += 1;
        resolve();
      });
      req.end();
    });
  const tickMs = 100;
  const perTick = Math.max(1, Math.round((opts.rate * tickMs) / 1000));
  while (Date.now() < deadline) {
    const started = Date.now();
    await Promise.all(Array.from({ length: perTick }, one));
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, tickMs - (Date.now() - started))));
  }
  agent.destroy();
  return { requests, failed, load: `a Node keep-alive client (${opts.rate} req/s)` };
}

async function prunedSoFar(adminPort: number): Promise<number> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const match = /^tollgate_audit_pruned_records_total (\d+)/m.exec(text);
    return match === null ? 0 : Number(match[1]);
  } catch {
    return 0;
  }
}

async function main(): Promise<void> {
  const opts = options();
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-retention-'));
  mkdirSync(path.join(dir, 'policies'));
  writeFileSync(path.join(dir, 'policies', 'bench.yaml'), LOOPBACK_POLICY);
  const dbFile = path.join(dir, 'data', 'audit.db');
  const adminPort = await freePort();
  const origin = await startOriginProcess(path.join(__dirname, 'lib', 'http-origin.js'));
  const proxy = await startProxyProcess({
    cli: CLI,
    nodeArgs: [],
    serveArgs: ['--listen', '127.0.0.1:0', '--admin-listen', `127.0.0.1:${adminPort}`, '--policies', path.join(dir, 'policies'), '--db', dbFile, '--retain', `${opts.retain}s`],
  });
  const samples: DiskSample[] = [];
  const started = Date.now();
  const sample = async (): Promise<void> => {
    samples.push(sampleDisk(dbFile, Math.round((Date.now() - started) / 1000), await prunedSoFar(adminPort)));
  };
  try {
    await sample();
    let inFlight: Promise<void> = Promise.resolve();
    const sampler = setInterval(() => void (inFlight = sample()), opts.sampleEvery * 1000);
    const load = (await which('hey')) ? await heyLoad(proxy.port, origin.port, opts) : await nodeLoad(proxy.port, origin.port, opts);
    clearInterval(sampler);
    // A sample the interval started may still be reading the prune count: let it land first.
    await inFlight;
    // The last sample, unless the sampler just took one at the same second.
    if (samples[samples.length - 1]?.t !== Math.round((Date.now() - started) / 1000)) await sample();
    // The same rule as the proxy's (src/audit/retention.ts pruneIntervalMs).
    const pruneEvery = Math.max(1, Math.min(60, opts.retain / 2));
    const markdown = renderRetention({
      retainSeconds: opts.retain, pruneEverySeconds: pruneEvery, seconds: opts.seconds, load: load.load,
      requests: load.requests, failed: load.failed, samples, verdict: flatAfter(samples, opts.retain + pruneEvery + opts.sampleEvery), date: new Date(),
    });
    mkdirSync(path.dirname(opts.out), { recursive: true });
    writeFileSync(opts.out, markdown);
    process.stdout.write(`${markdown}\nwritten to ${path.relative(process.cwd(), opts.out)}\n`);
  } finally {
    await proxy.stop();
    await origin.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:retention failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
