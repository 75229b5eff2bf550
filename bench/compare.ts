import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startOriginProcess } from './lib/children';
import { columnsFor, CompareResults, METRIC_KEYS, TARGETS } from './lib/compare-results';
import type { BaseTarget, TargetName } from './lib/compare-results';
import { renderCompare } from './lib/compare-report';
import type { ComparePlan } from './lib/compare-report';
import { runIdleMemory, runTimedLoads, warmOrigin } from './lib/compare-run';
import type { LoadName, RunContext } from './lib/compare-run';
import { startOrigin } from './lib/peers';
import { installed, installMissing, versions } from './lib/tools';

/**
 * tollgate against direct, squid and tinyproxy, with the same loads in one run.
 * Usage: npm run bench [-- --seconds N] [--repeat N] [--targets direct,tollgate,...] [--workers 1,2]
 *        [--bulk-mib N] [--idle-tunnels N] [--rate N] [--pause-ms N] [--skip-missing] [--out FILE]
 *        [--loads http,connect,bulk,latency,idle]
 * Writes bench/results/compare.md. Missing Debian packages (squid, tinyproxy, wrk, hey,
 * nginx-light) are installed with apt-get when run as root, unless --skip-missing is given,
 * which instead reports what they would have measured as not run (the smoke test uses it).
 * tollgate runs once per --workers count (`serve --workers N`), each its own column.
 */

const REPO_ROOT = path.resolve(__dirname, '..', '..');

interface Options {
  plan: ComparePlan;
  pauseMs: number;
  skipMissing: boolean;
  origin: 'auto' | 'nginx' | 'node';
  out: string;
  cli: string;
  nodeArgs: string[];
  /** The loads to run; the others are reported as not run. */
  loads: Set<Selectable>;
}

/** The timed loads and (4), idle tunnels, which runs in fresh processes after them. */
type Selectable = LoadName | 'idle';
const SELECTABLE: readonly Selectable[] = ['http', 'connect', 'bulk', 'latency', 'idle'];
const NOT_SELECTED = 'not run (--loads)';

function parseLoads(text: string | undefined): Set<Selectable> {
  if (text === undefined) return new Set(SELECTABLE);
  const names = text.split(',').map((name) => name.trim());
  const unknown = names.filter((name) => !(SELECTABLE as readonly string[]).includes(name));
  if (unknown.length > 0) throw new Error(`--loads: unknown ${unknown.join(', ')} (choose from ${SELECTABLE.join(', ')})`);
  return new Set(SELECTABLE.filter((load) => names.includes(load)));
}

function wholeNumber(name: string, text: string | undefined, fallback: number): number {
  const value = Number(text ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name}: expected a whole number from 1, got "${text}"`);
  return value;
}

/** --workers 1,2: each count once, in the order given. */
function parseWorkers(text: string | undefined): number[] {
  const counts = (text ?? '1,2').split(',').map((part) => wholeNumber('workers', part.trim(), 1));
  return [...new Set(counts)];
}

function parseTargets(text: string | undefined): BaseTarget[] {
  if (text === undefined) return [...TARGETS];
  const names = text.split(',').map((name) => name.trim());
  const unknown = names.filter((name) => !(TARGETS as readonly string[]).includes(name));
  if (unknown.length > 0) throw new Error(`--targets: unknown ${unknown.join(', ')} (choose from ${TARGETS.join(', ')})`);
  return TARGETS.filter((t) => names.includes(t));
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      seconds: { type: 'string' }, repeat: { type: 'string' }, connections: { type: 'string' }, rate: { type: 'string' },
      'bulk-mib': { type: 'string' }, 'bulk-limit': { type: 'string' }, 'idle-tunnels': { type: 'string' },
      'rss-sample-ms': { type: 'string' }, 'pause-ms': { type: 'string' }, targets: { type: 'string' }, origin: { type: 'string' },
      'skip-missing': { type: 'boolean' }, out: { type: 'string' }, loads: { type: 'string' }, cli: { type: 'string' }, 'node-arg': { type: 'string', multiple: true },
      workers: { type: 'string' },
    },
  });
  const origin = values.origin ?? 'auto';
  if (origin !== 'auto' && origin !== 'nginx' && origin !== 'node') throw new Error(`--origin: auto, nginx or node, got "${origin}"`);
  const cli = path.resolve(values.cli ?? path.join(REPO_ROOT, 'dist', 'cli.js'));
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run "npm run build" first`);
  const plan: ComparePlan = {
    seconds: wholeNumber('seconds', values.seconds, 10),
    repeat: wholeNumber('repeat', values.repeat, 3),
    connections: wholeNumber('connections', values.connections, 50),
    rate: wholeNumber('rate', values.rate, 1000),
    bulkBytes: wholeNumber('bulk-mib', values['bulk-mib'], 1024) * 1024 * 1024,
    bulkLimitSeconds: wholeNumber('bulk-limit', values['bulk-limit'], 60),
    // 10,000 would need 20,000 fds in the proxy alone: the limit here (see bench/idle-tunnels.ts).
    idleTunnels: wholeNumber('idle-tunnels', values['idle-tunnels'], 9_500),
    rssSampleMs: wholeNumber('rss-sample-ms', values['rss-sample-ms'], 3_000),
    workers: parseWorkers(values.workers),
    targets: [],
    columns: [],
  };
  plan.targets = columnsFor(parseTargets(values.targets), plan.workers);
  plan.columns = columnsFor(TARGETS, plan.workers);
  return {
    plan,
    pauseMs: wholeNumber('pause-ms', values['pause-ms'], 500),
    skipMissing: values['skip-missing'] ?? false,
    origin,
    out: path.resolve(values.out ?? path.join(REPO_ROOT, 'bench', 'results', 'compare.md')),
    cli,
    nodeArgs: values['node-arg'] ?? [],
    loads: parseLoads(values.loads),
  };
}

/** What this machine can run: the targets and loads to measure, and what stands in for what is missing. */
interface Capabilities {
  targets: TargetName[];
  notInstalled: TargetName[];
  unavailable: Partial<Record<LoadName, string>>;
  originKind: 'nginx' | 'node';
}

function capabilities(options: Options): Capabilities {
  const wanted = ['wrk', 'hey', ...options.plan.targets.filter((t) => t === 'squid' || t === 'tinyproxy')];
  if (options.origin !== 'node') wanted.push('nginx');
  let missing = wanted.filter((p) => !installed(p));
  // nginx alone may be missing in auto mode: the Node origin stands in.
  const onlyNginx = missing.length === 1 && missing[0] === 'nginx' && options.origin === 'auto';
  if (missing.length > 0 && !options.skipMissing && !onlyNginx) {
    installMissing(missing, log);
    missing = missing.filter((p) => !installed(p));
  }
  if (options.origin === 'nginx' && missing.includes('nginx')) throw new Error('--origin nginx: nginx is not installed');
  const unavailable: Partial<Record<LoadName, string>> = {};
  if (missing.includes('wrk')) unavailable.http = 'wrk not installed';
  if (missing.includes('hey')) unavailable.latency = 'hey not installed';
  for (const load of ['http', 'connect', 'bulk', 'latency'] as const) if (!options.loads.has(load)) unavailable[load] = NOT_SELECTED;
  return {
    targets: options.plan.targets.filter((t) => !missing.includes(t)),
    notInstalled: options.plan.targets.filter((t) => missing.includes(t)),
    unavailable,
    originKind: options.origin === 'node' || missing.includes('nginx') ? 'node' : 'nginx',
  };
}

function log(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

const loadAverage = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');

/** Every repetition, with the origins up for the whole run; returns each tollgate column's audit record counts. */
async function runAll(options: Options, can: Capabilities, results: CompareResults): Promise<Map<TargetName, number[]>> {
  const plan = { ...options.plan, targets: can.targets };
  const scratch = mkdtempSync(path.join(tmpdir(), 'tollgate-compare-'));
  // squid and tinyproxy drop root for `proxy` / `nobody`, who must reach their folders inside.
  chmodSync(scratch, 0o711);
  const auditRecords = new Map<TargetName, number[]>();
  try {
    const origin = await startOrigin(scratch, can.originKind, [plan.bulkBytes], path.join(__dirname, 'lib', 'http-origin.js'));
    const echo = await startOriginProcess(path.join(__dirname, 'lib', 'echo-origin.js'));
    try {
      log(`origin: ${can.originKind} on port ${origin.port}; targets: ${plan.targets.join(', ')}${can.notInstalled.length ? ` (not installed: ${can.notInstalled.join(', ')})` : ''}`);
      const launch = { parent: scratch, cli: options.cli, nodeArgs: options.nodeArgs };
      const ctx: RunContext = { plan, results, origin, echoPort: echo.port, launch, scratch, pauseMs: options.pauseMs, unavailable: can.unavailable, log };
      await warmOrigin(ctx);
      for (let repetition = 0; repetition < plan.repeat; repetition += 1) {
        for (const [column, records] of await runTimedLoads(ctx, repetition)) auditRecords.set(column, [...(auditRecords.get(column) ?? []), records]);
        if (options.loads.has('idle')) await runIdleMemory(ctx, repetition);
        else for (const target of plan.targets) if (target !== 'direct') results.miss('idleKiB', target, NOT_SELECTED);
      }
    } finally {
      await echo.stop();
      await origin.stop();
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return auditRecords;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const can = capabilities(options);
  const started = Date.now();
  const loadBefore = loadAverage();
  const results = new CompareResults();
  for (const target of can.notInstalled) for (const metric of METRIC_KEYS) results.miss(metric, target, `${target} not installed`);
  const auditRecords = await runAll(options, can, results);
  const markdown = renderCompare(results, options.plan, {
    when: new Date(started),
    elapsedSeconds: (Date.now() - started) / 1000,
    cpus: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}`,
    loadBefore,
    loadAfter: loadAverage(),
    origin: can.originKind === 'nginx'
      ? 'nginx-light as one process (`return 200 hello`; sparse files for /bytes/N)'
      : `the Node origin, bench/lib/http-origin.ts (${options.origin === 'node' ? '--origin node' : 'nginx is not installed'})`,
    versions: versions(),
    auditRecords,
    proxyNodeArgs: options.nodeArgs,
  });
  mkdirSync(path.dirname(options.out), { recursive: true });
  writeFileSync(options.out, markdown);
  process.stdout.write(`${markdown}\nwritten to ${path.relative(process.cwd(), options.out)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 2;
});
