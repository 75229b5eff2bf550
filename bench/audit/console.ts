import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type * as AppModule from '../../src/admin/app';

/**
 * Issue 19's bench: GET /api/requests/facets (every field, several filters) and /api/stats with
 * filters at 1,000,000 records, on whichever engine the app reads. Targets: 500 ms for any filter,
 * 2 s with a free-text `q` (SPEC §6 issue 19). Each request also reports the longest the event
 * loop went without a turn while it ran: on SQLite that is how long the proxy's thread was held.
 */

type App = ReturnType<typeof AppModule.buildAdminApp>;

export interface ConsoleMeasurement {
  name: string;
  url: string;
  median: number;
  max: number;
  /** Longest event-loop gap seen during the runs, ms. */
  stallMs: number;
  target: number;
  note: string;
}

const RUNS = 5;
const ALL_FIELDS = 'client_ip,clients,host,domain,rule,decision,status,user,node';

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Ticks the event loop while `work` runs and returns the longest gap between two ticks. */
async function withStallWatch<T>(work: () => Promise<T>): Promise<{ value: T; stallMs: number }> {
  let running = true;
  let longest = 0;
  const watch = (async () => {
    let last = performance.now();
    while (running) {
      await nextTurn();
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
    }
  })();
  try {
    const value = await work();
    return { value, stallMs: longest };
  } finally {
    running = false;
    await watch;
  }
}

async function measure(app: App, name: string, url: string, target: number, describe: (body: string) => string): Promise<ConsoleMeasurement> {
  const times: number[] = [];
  let stall = 0;
  let body = '';
  for (let i = 0; i <= RUNS; i += 1) {
    const started = performance.now();
    const { value, stallMs } = await withStallWatch(() => app.inject({ url }));
    times.push(performance.now() - started);
    stall = Math.max(stall, stallMs);
    if (value.statusCode !== 200) throw new Error(`${url} answered ${value.statusCode}: ${value.body}`);
    body = value.body;
  }
  return { name, url, median: median(times.slice(1)), max: Math.max(...times), stallMs: stall, target, note: describe(body) };
}

function facetNote(body: string): string {
  const a = JSON.parse(body) as { total: number; total_exact: boolean; sampled: number; counts_exact: boolean };
  const total = `${a.total_exact ? '' : '≥ '}${a.total.toLocaleString('en-US')}`;
  return `total ${total}; counts ${a.counts_exact ? 'exact' : `from the newest ${a.sampled.toLocaleString('en-US')}`}`;
}

function statsNote(body: string): string {
  return `${(JSON.parse(body) as { total: number }).total.toLocaleString('en-US')} records`;
}

/** Facet and filtered-stats cases; `topHost` is the busiest destination of the generated log. */
export async function measureConsole(app: App, hosts: { topHost: string; rareHost: string }, group: string): Promise<ConsoleMeasurement[]> {
  const facet = (query: string): string => `/api/requests/facets?fields=${ALL_FIELDS}${query === '' ? '' : `&${query}`}`;
  const enc = encodeURIComponent;
  const cases: Array<[string, string, number, (body: string) => string]> = [
    ['facets, no filter', facet(''), 500, facetNote],
    ['facets, since=24h', facet('since=24h'), 500, facetNote],
    [`facets, host exact, the busiest`, facet(`host=${enc(hosts.topHost)}`), 500, facetNote],
    [`facets, host exact, a rare one`, facet(`host=${enc(hosts.rareHost)}`), 500, facetNote],
    ['facets, host=**.github.com', facet(`host=${enc('**.github.com')}`), 500, facetNote],
    [`facets, client=${group}`, facet(`client=${group}`), 500, facetNote],
    ['facets, decision=deny', facet('decision=deny'), 500, facetNote],
    ['facets, not.decision=deny&since=24h', facet('not.decision=deny&since=24h'), 500, facetNote],
    ['facets, not.host=**.github.com', facet(`not.host=${enc('**.github.com')}`), 500, facetNote],
    ['facets, status=5xx&not.client=10.0.8.0/22', facet(`status=5xx&not.client=${enc('10.0.8.0/22')}`), 500, facetNote],
    ['facets, rule=deny-paste-sites (no index: a row test)', facet('rule=deny-paste-sites'), 500, facetNote],
    ['facets, q=sentry (free text)', facet('q=sentry'), 2000, facetNote],
    ['facets, q=no-such-text (free text, no match)', facet('q=no-such-text'), 2000, facetNote],
    ['stats, since=24h&host=**.github.com', `/api/stats?since=24h&host=${enc('**.github.com')}`, 2000, statsNote],
    ['stats, since=24h&decision=deny', '/api/stats?since=24h&decision=deny', 2000, statsNote],
    ['stats, since=24h&not.decision=deny (dense)', '/api/stats?since=24h&not.decision=deny', 2000, statsNote],
    [`stats, since=7d&client=${group}`, `/api/stats?since=7d&client=${group}`, 5000, statsNote],
  ];
  const out: ConsoleMeasurement[] = [];
  for (const [name, url, target, note] of cases) out.push(await measure(app, name, url, target, note));
  return out;
}

export function renderConsole(title: string, rows: ConsoleMeasurement[]): string[] {
  const ms = (n: number): string => (n < 10 ? n.toFixed(2) : n.toFixed(0));
  return [
    `## ${title}`,
    '',
    '| query | median ms | slowest ms | longest event-loop stall ms | target | result |',
    '| --- | ---: | ---: | ---: | --- | --- |',
    ...rows.map((r) => `| ${r.name} | ${ms(r.median)} | ${ms(r.max)} | ${ms(r.stallMs)} | < ${r.target}: ${r.max < r.target ? 'met' : '**NOT met**'} | ${r.note} |`),
    '',
  ];
}
