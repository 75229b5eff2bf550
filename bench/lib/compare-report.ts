import { isTollgate, median } from './compare-results';
import { LATENCY_STREAMS } from './tool-loads';
import type { CompareResults, Metric, MetricKey, TargetName, TollgateColumn, WorkerRun } from './compare-results';

/** bench/compare.ts's result as markdown: written to bench/results/compare.md and printed. */

export interface ComparePlan {
  seconds: number;
  repeat: number;
  connections: number;
  rate: number;
  bulkBytes: number;
  bulkLimitSeconds: number;
  idleTunnels: number;
  rssSampleMs: number;
  /** tollgate's worker counts (--workers): one column each. */
  workers: number[];
  /** The columns measured (--targets, tollgate once per worker count). */
  targets: TargetName[];
  /** Every column of the tables, measured or not. */
  columns: TargetName[];
}

export interface RunFacts {
  when: Date;
  elapsedSeconds: number;
  cpus: string;
  loadBefore: string;
  loadAfter: string;
  origin: string;
  versions: string[];
  /** Each tollgate column's audit records after each repetition's loads (proof the log was written). */
  auditRecords: Map<TargetName, number[]>;
  proxyNodeArgs: string[];
}

const count = (n: number): string => n.toLocaleString('en-US');
const perStream = (plan: ComparePlan): number => Math.max(1, Math.round(plan.rate / LATENCY_STREAMS));
const mib = (bytes: number): string => (bytes >= 1 << 30 ? `${bytes / (1 << 30)} GiB` : `${(bytes / (1 << 20)).toFixed(0)} MiB`);

export function metricsFor(plan: ComparePlan): Metric[] {
  const c = plan.connections;
  return [
    { key: 'httpRate', label: `(1) plain HTTP keep-alive GET, ${c} connections, ${plan.seconds} s`, unit: 'req/s', digits: 0, direct: true, ratio: true },
    { key: 'httpCpu', label: '(1) proxy CPU per request', unit: 'µs', digits: 0, direct: false, ratio: false },
    { key: 'connectRate', label: `(2) CONNECT + 1 GET + close, ${c} concurrent, ${plan.seconds} s`, unit: 'tunnels/s', digits: 0, direct: true, ratio: true },
    { key: 'connectCpu', label: '(2) proxy CPU per tunnel', unit: 'µs', digits: 0, direct: false, ratio: false },
    { key: 'bulkRate', label: `(3) ${mib(plan.bulkBytes)} down one tunnel`, unit: 'MiB/s', digits: 0, direct: true, ratio: true },
    { key: 'bulkCpu', label: '(3) proxy CPU per GiB', unit: 's', digits: 2, direct: false, ratio: false },
    { key: 'idleKiB', label: `(4) ${count(plan.idleTunnels)} idle tunnels: proxy RSS per tunnel`, unit: 'KiB', digits: 1, direct: false, ratio: true },
    { key: 'latencyP50', label: `(5) ${count(plan.rate)} req/s for ${plan.seconds} s: p50 latency`, unit: 'ms', digits: 2, direct: true, ratio: false },
    { key: 'latencyP99', label: `(5) ${count(plan.rate)} req/s: p99 latency`, unit: 'ms', digits: 2, direct: true, ratio: false },
    { key: 'latencyAddedP99', label: '(5) p99 added by the proxy (p99 − direct p99)', unit: 'ms', digits: 2, direct: false, ratio: false },
    { key: 'latencyCpu', label: `(5) proxy CPU per request at ${count(plan.rate)} req/s`, unit: 'µs', digits: 0, direct: false, ratio: false },
  ];
}

function figure(value: number, digits: number): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function cellText(results: CompareResults, metric: Metric, target: TargetName, plan: ComparePlan): string {
  if (!plan.targets.includes(target)) return 'not run';
  if (target === 'direct' && !metric.direct) return '—';
  const cell = results.cell(metric.key, target);
  const value = results.value(metric.key, target);
  if (value === null) return `n/a: ${cell.missing ?? 'no value'}`;
  const errors = cell.errors > 0 ? ` (${count(cell.errors)} errors)` : '';
  return `${figure(value, metric.digits)}${errors}`;
}

function table(header: string[], rows: string[][]): string[] {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((row) => `| ${row.join(' | ')} |`)];
}

/** The tollgate column the peers are compared with: one worker where measured, else the first. */
function mainTollgate(plan: ComparePlan): TollgateColumn {
  return plan.columns.find((c): c is TollgateColumn => c === 'tollgate') ?? plan.columns.find(isTollgate) ?? 'tollgate';
}

/** The other worker counts, each against the main column. */
const moreWorkers = (plan: ComparePlan): TollgateColumn[] => plan.columns.filter(isTollgate).filter((c) => c !== mainTollgate(plan));

function ratioPairs(plan: ComparePlan): Array<[TargetName, TargetName]> {
  const main = mainTollgate(plan);
  return [
    [main, 'direct'], [main, 'squid'], ['squid', 'direct'], ['tinyproxy', 'direct'], ['tinyproxy', 'squid'],
    ...moreWorkers(plan).map((c): [TargetName, TargetName] => [c, main]),
  ];
}

function ratioRows(results: CompareResults, metrics: Metric[], plan: ComparePlan): string[][] {
  return metrics
    .filter((m) => m.ratio)
    .map((m) => [m.label, ...ratioPairs(plan).map(([a, b]) => (b === 'direct' && !m.direct ? '—' : formatRatio(results.ratio(m.key, a, b))))]);
}

const formatRatio = (ratio: number | null): string => (ratio === null ? 'n/a' : `${ratio.toFixed(2)}×`);

interface Target {
  name: string;
  measure: (results: CompareResults, main: TollgateColumn) => { value: number | null; shown: string };
  met: (value: number) => boolean;
  shortfall: (value: number) => string;
}

function versusSquid(metric: MetricKey): Target['measure'] {
  return (results, main) => {
    const ratio = results.ratio(metric, main, 'squid');
    return { value: ratio, shown: ratio === null ? 'n/a' : `${ratio.toFixed(2)} × squid` };
  };
}

const TARGET_LIST: Target[] = [
  {
    name: '(1) keep-alive GET rate ≥ squid’s',
    measure: versusSquid('httpRate'),
    met: (r) => r >= 1,
    shortfall: (r) => `${((1 - r) * 100).toFixed(0)}% below squid`,
  },
  {
    name: '(2) CONNECT set-up rate ≥ squid’s',
    measure: versusSquid('connectRate'),
    met: (r) => r >= 1,
    shortfall: (r) => `${((1 - r) * 100).toFixed(0)}% below squid`,
  },
  {
    name: '(3) one tunnel’s throughput ≥ 0.9 × squid’s',
    measure: versusSquid('bulkRate'),
    met: (r) => r >= 0.9,
    shortfall: (r) => `${((0.9 - r) * 100).toFixed(0)} points below 0.9 × squid`,
  },
  {
    name: '(4) RSS per idle tunnel < 25 KiB',
    measure: (results, main) => {
      const v = results.value('idleKiB', main);
      return { value: v, shown: v === null ? 'n/a' : `${v.toFixed(1)} KiB` };
    },
    met: (v) => v < 25,
    shortfall: (v) => `${(v - 25).toFixed(1)} KiB over`,
  },
  {
    name: '(5) p99 added latency < 1 ms at 1,000 req/s (measured at the rate of (5) above)',
    measure: (results, main) => {
      const v = results.value('latencyAddedP99', main);
      return { value: v, shown: v === null ? 'n/a' : `${v.toFixed(2)} ms` };
    },
    met: (v) => v < 1,
    shortfall: (v) => `${(v - 1).toFixed(2)} ms over`,
  },
];

function targetRows(results: CompareResults, main: TollgateColumn): string[][] {
  return TARGET_LIST.map((target) => {
    const { value, shown } = target.measure(results, main);
    const verdict = value === null ? 'not measured' : target.met(value) ? 'met' : `**missed**: ${target.shortfall(value)}`;
    return [target.name, shown, verdict];
  });
}

function everyRunRows(results: CompareResults, metrics: Metric[], plan: ComparePlan): string[][] {
  return metrics.map((m) => [
    m.label,
    ...plan.columns.map((t) => {
      if (!plan.targets.includes(t) || (t === 'direct' && !m.direct)) return '—';
      const { values } = results.cell(m.key, t);
      return values.length === 0 ? 'n/a' : values.map((v) => figure(v, m.digits)).join(' / ');
    }),
  ]);
}

export function renderCompare(results: CompareResults, plan: ComparePlan, facts: RunFacts): string {
  const metrics = metricsFor(plan);
  const runs = plan.repeat === 1 ? 'one run' : `the median of ${plan.repeat} runs`;
  const firstErrors = metrics.flatMap((m) =>
    plan.columns.map((t) => ({ m, t, cell: results.cell(m.key, t) })).filter(({ cell }) => cell.firstError !== null),
  );
  return [
    '# tollgate against direct, squid and tinyproxy',
    '',
    `Measured ${facts.when.toISOString()} by \`npm run bench\` (bench/compare.ts) in ${facts.elapsedSeconds.toFixed(0)} s: ` +
      `each figure is ${runs}. Machine: ${facts.cpus}, **shared** by the origin, the proxy, the load generator and other work ` +
      `(load average ${facts.loadBefore} before, ${facts.loadAfter} after). Origin: ${facts.origin}. All traffic on 127.0.0.1.`,
    '',
    `Versions: ${facts.versions.join('; ')}${facts.proxyNodeArgs.length ? `; tollgate node flags \`${facts.proxyNodeArgs.join(' ')}\`` : ''}.`,
    '',
    `## Results (${runs})`,
    '',
    ...table(['load', 'unit', ...plan.columns], metrics.map((m) => [m.label, m.unit, ...plan.columns.map((t) => cellText(results, m, t, plan))])),
    '',
    '## Ratios (of the medians; higher is faster for rates, lower is leaner for RSS)',
    '',
    ...table(['load', ...ratioPairs(plan).map(([a, b]) => `${a} ÷ ${b}`)], ratioRows(results, metrics, plan)),
    '',
    `## Targets (${mainTollgate(plan)}, audit log on)`,
    '',
    ...table(['target', 'measured', 'verdict'], targetRows(results, mainTollgate(plan))),
    '',
    ...workersSection(results, plan),
    '',
    '## Every run',
    '',
    ...table(['load', ...plan.columns], everyRunRows(results, metrics, plan)),
    '',
    ...auditRecordLines(facts.auditRecords, plan),
    ...(firstErrors.length === 0 ? [] : ['', 'First error of each cell with errors:', ...firstErrors.map(({ m, t, cell }) => `- ${m.label}, ${t}: ${cell.firstError}`)]),
    '',
    ...howMeasured(plan),
    '',
  ].join('\n');
}

function auditRecordLines(records: Map<TargetName, number[]>, plan: ComparePlan): string[] {
  const columns = plan.columns.filter(isTollgate);
  return columns.map((c) => `${c} audit records after each run's loads: ${(records.get(c) ?? []).map(count).join(' / ') || 'n/a'}.`);
}

const LOAD_LABEL: Record<WorkerRun['load'], { load: string; unit: string }> = {
  http: { load: '(1) keep-alive GET', unit: 'request' },
  connect: { load: '(2) CONNECT', unit: 'tunnel' },
};

const runsOf = (results: CompareResults, column: TollgateColumn, load: WorkerRun['load']): WorkerRun[] =>
  results.workerRuns.filter((r) => r.column === column && r.load === load && r.operations > 0);

/** Median over repetitions of a per-operation figure, in µs (null when no run had one). */
function perOperationUs(runs: WorkerRun[], pick: (run: WorkerRun) => number | null): number | null {
  const values = runs.flatMap((r) => {
    const v = pick(r);
    return v === null ? [] : [(v / r.operations) * 1e6];
  });
  return values.length === 0 ? null : median(values);
}

const percent = (part: number, whole: number): string => (whole > 0 ? `${((part / whole) * 100).toFixed(1)}%` : 'n/a');
const us = (value: number | null, digits = 0): string => (value === null ? 'n/a' : figure(value, digits));

/** Per worker count: CPU per operation of the whole tree and of the primary, then each worker's share. */
function workersSection(results: CompareResults, plan: ComparePlan): string[] {
  const columns = plan.columns.filter(isTollgate).filter((c) => plan.targets.includes(c));
  if (columns.length === 0) return [];
  const main = mainTollgate(plan);
  const others = columns.filter((c) => c !== main);
  const loads: Array<WorkerRun['load']> = ['http', 'connect'];
  const cpuRows = loads.flatMap((load) => {
    const { load: label, unit } = LOAD_LABEL[load];
    const tree = columns.map((c) => perOperationUs(runsOf(results, c, load), (r) => r.treeCpu));
    const primary = columns.map((c) => perOperationUs(runsOf(results, c, load), (r) => r.primaryCpu));
    const base = tree[columns.indexOf(main)] ?? null;
    const ratios = others.map((c) => {
      const v = tree[columns.indexOf(c)];
      return v === null || base === null || base === 0 ? 'n/a' : `${(v / base).toFixed(2)}×`;
    });
    return [
      [`${label}: CPU per ${unit}, whole tree`, 'µs', ...tree.map((v) => us(v)), ...ratios],
      [`${label}: of which the primary`, 'µs', ...primary.map((v, i) => (columns[i] === 'tollgate' ? '(one process)' : us(v, 1))), ...others.map(() => '')],
    ];
  });
  const shareRows = columns.flatMap((column) => loads.flatMap((load) => shareRowsOf(runsOf(results, column, load), column, load)));
  return [
    '## Workers (`tollgate serve --workers N`)',
    '',
    'CPU per operation over the whole process tree (primary + workers + every thread), from /proc over the load, ÷ the',
    'operations the load generator completed; the median over runs. The load generator shares the 2 cores, so this is',
    'the steady figure; the rates above follow it. "of which the primary": the tree minus the workers\' pids (the',
    'primary holds the audit writer, index and admin threads); with one worker everything is one process.',
    process.env.NODE_CLUSTER_SCHED_POLICY === 'rr'
      ? 'Connections reached the workers by the cluster\'s round robin (`NODE_CLUSTER_SCHED_POLICY=rr`: the primary accepts and hands each over).'
      : 'Connections reached the workers as the kernel chose (the default: each worker accepts for itself).',
    '',
    ...table(['load', 'unit', ...columns, ...others.map((c) => `${c} ÷ ${main}`)], cpuRows),
    '',
    'Each worker\'s share, summed over every run: records it opened or finished (`workers[].records` in `/readyz`,',
    'read before and after each load) and the CPU of its pid (threads included), against the workers\' total; the',
    'primary\'s CPU per record is its CPU ÷ all the records the workers sent it.',
    '',
    ...table(['column', 'load', 'process', 'pid (each run)', 'share of records', 'CPU s', 'share of workers\' CPU', 'CPU per record µs'], shareRows),
  ];
}

function shareRowsOf(runs: WorkerRun[], column: TollgateColumn, load: WorkerRun['load']): string[][] {
  const label = LOAD_LABEL[load].load;
  if (runs.length === 0) return [[column, label, 'n/a', '', 'no run', '', '', '']];
  const slots = [...new Set(runs.flatMap((r) => r.workers.map((w) => w.slot)))].sort((a, b) => a - b);
  const workers = slots.map((slot) => {
    const mine = runs.flatMap((r) => r.workers.filter((w) => w.slot === slot));
    const records = mine.every((w) => w.records === null) ? null : mine.reduce((sum, w) => sum + (w.records ?? 0), 0);
    return { slot, pids: mine.map((w) => String(w.pid)).join(' / '), records, cpu: mine.reduce((sum, w) => sum + w.cpu, 0) };
  });
  const allRecords = workers.reduce((sum, w) => sum + (w.records ?? 0), 0);
  const workersCpu = workers.reduce((sum, w) => sum + w.cpu, 0);
  const rows = workers.map((w) => [
    column, label, w.records === null ? 'the one process' : `worker ${w.slot}`, w.pids,
    w.records === null ? '100%' : percent(w.records, allRecords), figure(w.cpu, 2), percent(w.cpu, workersCpu),
    w.records === null || w.records === 0 ? '—' : figure((w.cpu / w.records) * 1e6, 1),
  ]);
  const primaryRuns = runs.filter((r) => r.primaryCpu !== null);
  if (primaryRuns.length > 0) {
    const primaryCpu = primaryRuns.reduce((sum, r) => sum + (r.primaryCpu ?? 0), 0);
    rows.push([column, label, 'primary', '', '—', figure(primaryCpu, 2), '—', allRecords === 0 ? '—' : figure((primaryCpu / allRecords) * 1e6, 1)]);
  }
  return rows;
}

function howMeasured(plan: ComparePlan): string[] {
  return [
    '## How it is measured',
    '',
    `- Every target runs as its own process: \`node dist/cli.js serve\` (audit log in a temp folder; once per worker count,`,
    `  --workers ${plan.workers.join(', ')}: \`tollgate×N\` is \`serve --workers N\`, whose box-wide limits are split per worker),`,
    '  `squid -N` and `tinyproxy -d` (Debian packages; loopback clients allowed, no cache, their ordinary access log',
    '  to a file, CONNECT to any port), and the origin. "direct" is the same load sent to the origin with no proxy.',
    '  Each repetition starts fresh proxies and runs the targets in a rotated order, so slow drift of the shared machine',
    '  does not always land on the same one.',
    `- (1) \`wrk -t1 -c${plan.connections} -d${plan.seconds}s\`; through a proxy its Lua script sets \`wrk.path\` to the absolute URI.`,
    '  tinyproxy 1.11 closes its client connection after every response without sending `Connection: close`, so',
    '  wrk\'s next request on it fails (its "read" errors) and wrk reconnects; its rate counts the answered requests.',
    `- (2) a small Node client (bench/lib/tunnel-loads.ts), ${plan.connections} loops for ${plan.seconds} s: connect, CONNECT, wait for`,
    '  the 200, `GET /` with `Connection: close` inside the tunnel, read to the close. No tool does CONNECT without TLS,',
    '  and TLS handshakes would cost more CPU than the proxies. Direct: the same GET on a fresh connection.',
    `- (3) the same client, one \`GET /bytes/${plan.bulkBytes}\` through one tunnel, cut after ${plan.bulkLimitSeconds} s if unfinished.`,
    `- (4) as bench/idle-tunnels.ts, for each proxy in a fresh process: ${count(plan.idleTunnels)} tunnels to an echo origin, one round trip`,
    `  each, then idle; RSS (VmRSS summed over the process tree) sampled for ${plan.rssSampleMs / 1000} s, median, minus the`,
    '  baseline after a 200-tunnel warm-up. 9,500 rather than 10,000: the open-files limit here is 20,000 and each',
    '  tunnel holds 2 fds in the proxy.',
    `- (5) ${LATENCY_STREAMS} \`hey -z ${plan.seconds}s -c 1 -q ${perStream(plan)} -o csv\` processes (\`-x\` for a proxy), started a tenth of`,
    `  a tick apart: ${count(plan.rate)} req/s spread evenly over ${LATENCY_STREAMS} keep-alive connections. (One hey with \`-c 10\` starts`,
    '  its workers\' tickers together and sends bursts of ten.) p50/p99 over every request, from hey\'s per-request times',
    '  (0.1 ms resolution). "Added" is the proxy\'s p99 minus direct\'s p99 in the same run, then the median over runs.',
    '- Proxy CPU is user + system time from /proc over the load (every process of the tree), divided by the work done: it is less',
    '  disturbed by a shared machine than a rate is.',
    '- Loads are bounded in time; a cell with errors shows their count over all runs, and its rate counts only',
    '  successful exchanges.',
  ];
}
