import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Socket } from 'node:net';
import { AuditFile } from './lib/audit-file';
import { serveFlags, startOriginProcess, startProxyProcess } from './lib/children';
import type { OriginProcess, ProxyProcess } from './lib/children';
import { LOOPBACK_POLICY } from './lib/peers';
import { fdLimit, openFds, pollUntil, rssKiB, sampleRss } from './lib/proc-stats';
import { kiBPerTunnel, renderMarkdown } from './lib/report';
import type { IdleTunnelResult } from './lib/report';
import { closeTunnels, openIdleTunnel, openTunnels } from './lib/tunnel-client';
import type { TunnelFailures } from './lib/tunnel-client';

/**
 * How much memory does the real proxy process spend per idle CONNECT tunnel?
 * Usage: npm run bench:tunnels [-- --tunnels N] [--cli PATH] [--node-arg FLAG ...]
 */

const REPO_ROOT = path.resolve(__dirname, '..', '..');
/**
 * The proxy spends 2 fds per tunnel (client + upstream) and the open-files limit here is 20,000
 * (cannot be raised). 10,000 tunnels would need 20,000 fds plus the ones the proxy holds anyway,
 * so it would hit EMFILE; 9,500 leaves about 1,000 spare.
 */
const DEFAULT_TUNNELS = 9_500;
/** fds the proxy must keep free beyond the tunnels (a CONNECT in flight, SQLite, admin). */
const FD_SPARE = 200;
const WARM_UP_TUNNELS = 200;
const CONNECT_BATCH = 250;
const ESTABLISH_LIMIT_MS = 120_000;
const CLOSE_LIMIT_MS = 60_000;
const SAMPLE_FOR_MS = 3_000;
const SAMPLE_EVERY_MS = 200;
const TARGET_KIB_PER_TUNNEL = 25;

interface BenchOptions {
  tunnels: number;
  cli: string;
  nodeArgs: string[];
  out: string;
}

function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      tunnels: { type: 'string' },
      cli: { type: 'string' },
      'node-arg': { type: 'string', multiple: true },
      out: { type: 'string' },
    },
    strict: true,
  });
  const tunnels = Number(values.tunnels ?? DEFAULT_TUNNELS);
  if (!Number.isInteger(tunnels) || tunnels < 1) throw new Error(`--tunnels: expected a whole number from 1, got "${values.tunnels}"`);
  const cli = path.resolve(values.cli ?? path.join(REPO_ROOT, 'dist', 'cli.js'));
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run "npm run build" first`);
  return { tunnels, cli, nodeArgs: values['node-arg'] ?? [], out: path.resolve(values.out ?? path.join(REPO_ROOT, 'bench', 'results', 'idle-tunnels.md')) };
}

/** Raise the proxy's own tunnel limits and idle timeout above what the bench holds, where it has them. */
function limitFlags(cli: string, tunnels: number): string[] {
  const known = serveFlags(cli);
  const wanted: Array<[string, string]> = [
    ['--max-tunnels', String(tunnels + WARM_UP_TUNNELS)],
    ['--max-tunnels-per-source', String(tunnels + WARM_UP_TUNNELS)],
    ['--tunnel-idle-timeout', '30m'],
  ];
  return wanted.filter(([flag]) => known.has(flag)).flat();
}

/** Refuse up front a count the proxy cannot hold, rather than measure a run full of EMFILE. */
function checkFdBudget(proxy: ProxyProcess, tunnels: number): { limit: number; base: number; note: string } {
  const limit = fdLimit(proxy.pid);
  const base = openFds(proxy.pid);
  const most = Math.floor((limit - base - FD_SPARE) / 2);
  const note =
    `fds: the proxy holds 2 per tunnel (client + upstream) on top of its ${base} own, under a limit of ${limit}: ` +
    `at most ${most.toLocaleString('en-US')} tunnels with ${FD_SPARE} spare. 10,000 would need ${(20_000 + base).toLocaleString('en-US')} fds, hence 9,500 by default.`;
  if (tunnels > most) throw new Error(`--tunnels ${tunnels} does not fit: ${note}`);
  return { limit, base, note };
}

async function establish(proxy: ProxyProcess, origin: OriginProcess, count: number): Promise<{ sockets: Socket[]; ms: number }> {
  const failures: TunnelFailures = { count: 0, first: [] };
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`establishing ${count} tunnels took longer than ${ESTABLISH_LIMIT_MS / 1000} s`)), ESTABLISH_LIMIT_MS);
  });
  const open = (): Promise<Socket> => openIdleTunnel(proxy.port, `127.0.0.1:${origin.port}`);
  try {
    const sockets = await Promise.race([openTunnels(count, CONNECT_BATCH, open, failures), deadline]);
    if (failures.count > 0) throw new Error(`${failures.count} of ${count} tunnels failed, e.g.: ${failures.first.join(' | ')}`);
    return { sockets, ms: Date.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

/** Close the tunnels and wait until the proxy has completed every record (it has let go of them). */
async function closeAll(sockets: Socket[], audit: AuditFile): Promise<void> {
  await closeTunnels(sockets);
  await pollUntil(() => audit.counts().open === 0, CLOSE_LIMIT_MS, 'every tunnel record completed');
}

async function measure(options: BenchOptions, proxy: ProxyProcess, origin: OriginProcess, audit: AuditFile): Promise<IdleTunnelResult> {
  const budget = checkFdBudget(proxy, options.tunnels);
  log(`proxy pid ${proxy.pid}, RSS at start ${(rssKiB(proxy.pid) / 1024).toFixed(1)} MiB; warming up with ${WARM_UP_TUNNELS} tunnels`);
  await closeAll((await establish(proxy, origin, WARM_UP_TUNNELS)).sockets, audit);
  const baseline = await sampleRss(proxy.pid, SAMPLE_FOR_MS, SAMPLE_EVERY_MS);
  const baseFds = openFds(proxy.pid);
  log(`baseline RSS ${(baseline.medianKiB / 1024).toFixed(1)} MiB; opening ${options.tunnels} tunnels`);
  const { sockets, ms } = await establish(proxy, origin, options.tunnels);
  const fdsWithTunnels = openFds(proxy.pid);
  log(`${sockets.length} tunnels open in ${(ms / 1000).toFixed(1)} s; sampling RSS`);
  const loaded = await sampleRss(proxy.pid, SAMPLE_FOR_MS, SAMPLE_EVERY_MS);
  const counts = audit.counts();
  if (counts.open !== options.tunnels) throw new Error(`expected ${options.tunnels} open records, the audit has ${counts.open}`);
  await closeAll(sockets, audit);
  const after = await sampleRss(proxy.pid, SAMPLE_FOR_MS, SAMPLE_EVERY_MS);
  const completed = audit.counts();
  if (completed.completedOk !== completed.total) throw new Error(`${completed.total - completed.completedOk} tunnel records ended with an error`);
  return {
    tunnels: options.tunnels,
    targetKiBPerTunnel: TARGET_KIB_PER_TUNNEL,
    baselineKiB: baseline.medianKiB,
    withTunnelsKiB: loaded.medianKiB,
    afterCloseKiB: after.medianKiB,
    establishMs: ms,
    fdLimit: budget.limit,
    baseFds,
    fdsWithTunnels,
    samples: loaded.samples,
    nodeArgs: options.nodeArgs,
    fdNote: budget.note,
  };
}

function log(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-bench-'));
  mkdirSync(path.join(dir, 'policies'));
  writeFileSync(path.join(dir, 'policies', 'bench.yaml'), LOOPBACK_POLICY);
  const dbFile = path.join(dir, 'audit.db');
  const origin = await startOriginProcess(path.join(__dirname, 'lib', 'echo-origin.js'));
  let proxy: ProxyProcess | null = null;
  let audit: AuditFile | null = null;
  try {
    const serveArgs = ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--policies', path.join(dir, 'policies'), '--db', dbFile];
    proxy = await startProxyProcess({ cli: options.cli, nodeArgs: options.nodeArgs, serveArgs: [...serveArgs, ...limitFlags(options.cli, options.tunnels)] });
    audit = new AuditFile(dbFile);
    const result = await measure(options, proxy, origin, audit);
    const markdown = renderMarkdown(result, new Date());
    mkdirSync(path.dirname(options.out), { recursive: true });
    writeFileSync(options.out, markdown);
    process.stdout.write(`${markdown}\nwritten to ${path.relative(process.cwd(), options.out)}\n`);
    process.exitCode = kiBPerTunnel(result) < TARGET_KIB_PER_TUNNEL ? 0 : 1;
  } finally {
    audit?.close();
    await proxy?.stop();
    await origin.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 2;
});
