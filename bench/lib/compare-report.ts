import { TARGETS } from './compare-results';
import { LATENCY_STREAMS } from './tool-loads';
import type { CompareResults, Metric, MetricKey, TargetName } from './compare-results';

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
  targets: TargetName[];
}

export interface RunFacts {
  when: Date;
  elapsedSeconds: number;
  cpus: string;
  loadBefore: string;
  loadAfter: string;
  origin: string;
  versions: string[];
  /** tollgate's audit records after each repetition's loads (proof the log was written). */
  auditRecords: number[];
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

const RATIOS: Array<[TargetName, TargetName]> = [
  ['tollgate', 'direct'], ['tollgate', 'squid'], ['squid', 'direct'], ['tinyproxy', 'direct'], ['tinyproxy', 'squid'],
];

function ratioRows(results: CompareResults, metrics: Metric[]): string[][] {
  return metrics
    .filter((m) => m.ratio)
    .map((m) => [m.label, ...RATIOS.map(([a, b]) => (b === 'direct' && !m.direct ? '—' : formatRatio(results.ratio(m.key, a, b))))]);
}

const formatRatio = (ratio: number | null): string => (ratio === null ? 'n/a' : `${ratio.toFixed(2)}×`);

interface Target {
  name: string;
  measure: (results: CompareResults) => { value: number | null; shown: string };
  met: (value: number) => boolean;
  shortfall: (value: number) => string;
}

function versusSquid(metric: MetricKey): Target['measure'] {
  return (results) => {
    const ratio = results.ratio(metric, 'tollgate', 'squid');
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
    measure: (results) => {
      const v = results.value('idleKiB', 'tollgate');
      return { value: v, shown: v === null ? 'n/a' : `${v.toFixed(1)} KiB` };
    },
    met: (v) => v < 25,
    shortfall: (v) => `${(v - 25).toFixed(1)} KiB over`,
  },
  {
    name: '(5) p99 added latency < 1 ms at 1,000 req/s (measured at the rate of (5) above)',
    measure: (results) => {
      const v = results.value('latencyAddedP99', 'tollgate');
      return { value: v, shown: v === null ? 'n/a' : `${v.toFixed(2)} ms` };
    },
    met: (v) => v < 1,
    shortfall: (v) => `${(v - 1).toFixed(2)} ms over`,
  },
];

function targetRows(results: CompareResults): string[][] {
  return TARGET_LIST.map((target) => {
    const { value, shown } = target.measure(results);
    const verdict = value === null ? 'not measured' : target.met(value) ? 'met' : `**missed**: ${target.shortfall(value)}`;
    return [target.name, shown, verdict];
  });
}

function everyRunRows(results: CompareResults, metrics: Metric[], plan: ComparePlan): string[][] {
  return metrics.map((m) => [
    m.label,
    ...TARGETS.map((t) => {
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
    TARGETS.map((t) => ({ m, t, cell: results.cell(m.key, t) })).filter(({ cell }) => cell.firstError !== null),
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
    ...table(['load', 'unit', ...TARGETS], metrics.map((m) => [m.label, m.unit, ...TARGETS.map((t) => cellText(results, m, t, plan))])),
    '',
    '## Ratios (of the medians; higher is faster for rates, lower is leaner for RSS)',
    '',
    ...table(['load', ...RATIOS.map(([a, b]) => `${a} ÷ ${b}`)], ratioRows(results, metrics)),
    '',
    '## Targets (tollgate, audit log on)',
    '',
    ...table(['target', 'measured', 'verdict'], targetRows(results)),
    '',
    '## Every run',
    '',
    ...table(['load', ...TARGETS], everyRunRows(results, metrics, plan)),
    '',
    `tollgate audit records after each run's loads: ${facts.auditRecords.map(count).join(' / ') || 'n/a'}.`,
    ...(firstErrors.length === 0 ? [] : ['', 'First error of each cell with errors:', ...firstErrors.map(({ m, t, cell }) => `- ${m.label}, ${t}: ${cell.firstError}`)]),
    '',
    ...howMeasured(plan),
    '',
  ].join('\n');
}

function howMeasured(plan: ComparePlan): string[] {
  return [
    '## How it is measured',
    '',
    '- Every target runs as its own process: `node dist/cli.js serve` (audit log in a SQLite file in a temp folder),',
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
    '- Proxy CPU is user + system time from /proc over the load, divided by the work done: it is less',
    '  disturbed by a shared machine than a rate is.',
    '- Loads are bounded in time; a cell with errors shows their count over all runs, and its rate counts only',
    '  successful exchanges.',
  ];
}
