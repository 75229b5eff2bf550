import { setImmediate as nextTurn } from 'node:timers/promises';
import type Database from 'better-sqlite3';
import { DISTINCT_CLIENT_GROUPS, DISTINCT_CLIENT_IPS } from './distinct';
import { statement } from './statement-cache';
import { fullMinutes, MINUTE_MS, partialMinuteRecords, strayRecords, windowMinutes } from './window-scan';
import type { WindowMinutes } from './window-scan';
import type { IdRange } from './time-window';

/** A closed window for aggregates: [sinceMs, untilMs). */
export interface StatsWindow {
  sinceMs: number;
  untilMs: number;
}

export interface CountedHost {
  host: string;
  count: number;
}

export interface CountedClient {
  client: string;
  count: number;
}

export interface SeriesPoint {
  /** Start of the bucket, ISO-8601 UTC; buckets are aligned to multiples of their size. */
  t: string;
  allowed: number;
  denied: number;
  would_deny: number;
}

export interface Stats {
  since: string;
  until: string;
  total: number;
  /** decision=allow, including what report mode let through (would_deny). */
  allowed: number;
  denied: number;
  /** Policy denials let through by report mode; a subset of allowed. */
  would_deny: number;
  top_hosts: CountedHost[];
  top_denied_hosts: CountedHost[];
  /** By client address. */
  top_clients: CountedClient[];
  /** By client group name (a record in several groups counts in each). */
  top_client_groups: CountedClient[];
  bucket_seconds: number;
  series: SeriesPoint[];
}

/** Bucket sizes, smallest first: the first that gives at most MAX_BUCKETS points is used. */
export const BUCKET_SECONDS = [60, 300, 900, 3600, 21_600, 86_400] as const;
const MAX_BUCKETS = 200;

/** 1 min up to 3 h 20 min, 15 min for a day, 1 h up to 8 days, 6 h up to 50 days, then 1 day. */
export function bucketSecondsFor(window: StatsWindow): number {
  const seconds = (window.untilMs - window.sinceMs) / 1000;
  for (const size of BUCKET_SECONDS) if (seconds / size <= MAX_BUCKETS) return size;
  return BUCKET_SECONDS[BUCKET_SECONDS.length - 1];
}

interface KeyCount {
  key: string;
  count: number;
}

/**
 * Counts per key over the window's id range, from an index alone: the keys (a few hundred
 * destinations, a handful of clients) each get one count of their (key, rowid) range. A loop of
 * small counts beats `key IN (...) GROUP BY key` by about half on a day's window.
 */
const KEYED_COUNTS = {
  hosts: {
    keys: 'SELECT host FROM first_seen_hosts',
    count: 'SELECT count(*) FROM requests INDEXED BY requests_host WHERE host = @key AND id BETWEEN @lo AND @hi',
  },
  clientIps: {
    keys: DISTINCT_CLIENT_IPS,
    count: 'SELECT count(*) FROM requests INDEXED BY requests_client_ip WHERE client_ip = @key AND id BETWEEN @lo AND @hi',
  },
  groups: {
    keys: DISTINCT_CLIENT_GROUPS,
    count: 'SELECT count(*) FROM request_clients WHERE client = @key AND request_id BETWEEN @lo AND @hi',
  },
} as const;

/**
 * Ids per step of an aggregate. The admin app shares the proxy's thread: a week's top lists
 * are about 300 ms of counting, so they are counted a step at a time, and the route lets the
 * proxy run between steps (computeStatsPaced). A step of 32,768 ids is about 5–15 ms.
 */
export const STATS_STEP_IDS = 32_768;

/** The range in steps of `size` ids, lowest first. */
function* steps(range: IdRange, size: number): Generator<IdRange, void, undefined> {
  for (let lo = range.lo; lo <= range.hi; lo += size) yield { lo, hi: Math.min(range.hi, lo + size - 1) };
}

/** One kind of keyed count: its keys, read once, and their counts so far. */
interface KeyedTally {
  which: keyof typeof KEYED_COUNTS;
  keys: string[];
  counts: Map<string, number>;
}

function keyedTally(db: Database.Database, which: keyof typeof KEYED_COUNTS): KeyedTally {
  return { which, keys: statement(db, KEYED_COUNTS[which].keys).pluck().all() as string[], counts: new Map() };
}

/** Adds each key's count over one step. */
function addKeyedCounts(db: Database.Database, tally: KeyedTally, part: IdRange): void {
  const count = statement(db, KEYED_COUNTS[tally.which].count).pluck();
  for (const key of tally.keys) tally.counts.set(key, (tally.counts.get(key) ?? 0) + (count.get({ ...part, key }) as number));
}

/** Denials are a tenth of the log: their index range, each row tested for its start time. */
const DENIED_HOSTS = `SELECT r.host AS key, count(*) AS count FROM requests AS r INDEXED BY requests_decision
  WHERE r.decision = 'deny' AND r.id BETWEEN @lo AND @hi AND r.started_at_ms >= @since AND r.started_at_ms < @until
    AND r.host IS NOT NULL
  GROUP BY r.host`;

function groupsOf(json: string): string[] {
  const value: unknown = JSON.parse(json);
  return Array.isArray(value) ? [...new Set(value.filter((v): v is string => typeof v === 'string'))] : [];
}

/** Range counts minus the stray records' keys: the exact count of the window's records per key. */
function subtractStray(counts: Map<string, number>, strayKeys: Array<string | null>): Map<string, number> {
  for (const key of strayKeys) if (key !== null) counts.set(key, (counts.get(key) ?? 0) - 1);
  return counts;
}

export function ranked(counts: Map<string, number>, top: number): Array<{ key: string; count: number }> {
  return [...counts]
    .filter(([, count]) => count > 0)
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, top)
    .map(([key, count]) => ({ key, count }));
}

type Tops = Pick<Stats, 'top_hosts' | 'top_denied_hosts' | 'top_clients' | 'top_client_groups'>;

const NO_TOPS: Tops = { top_hosts: [], top_denied_hosts: [], top_clients: [], top_client_groups: [] };

/** The top lists, counted one step of ids at a time; yields between steps. */
function* tops(
  db: Database.Database,
  minutes: WindowMinutes,
  window: StatsWindow,
  top: number,
  stepIds: number,
): Generator<void, Tops, undefined> {
  if (minutes.range === null) return NO_TOPS;
  const stray = strayRecords(db, minutes, window);
  const keyed = [keyedTally(db, 'hosts'), keyedTally(db, 'clientIps'), keyedTally(db, 'groups')];
  const [hosts, ips, groups] = keyed.map((k) => k.counts);
  const denied = new Map<string, number>();
  for (const part of steps(minutes.range, stepIds)) {
    for (const tally of keyed) addKeyedCounts(db, tally, part);
    const rows = statement(db, DENIED_HOSTS).all({ ...part, since: window.sinceMs, until: window.untilMs }) as KeyCount[];
    for (const row of rows) denied.set(row.key, (denied.get(row.key) ?? 0) + row.count);
    yield;
  }
  subtractStray(hosts, stray.map((r) => r.host));
  subtractStray(ips, stray.map((r) => r.client_ip));
  subtractStray(groups, stray.flatMap((r) => groupsOf(r.clients)));
  return {
    top_hosts: ranked(hosts, top).map(({ key, count: n }) => ({ host: key, count: n })),
    top_denied_hosts: ranked(denied, top).map(({ key, count: n }) => ({ host: key, count: n })),
    top_clients: ranked(ips, top).map(({ key, count: n }) => ({ client: key, count: n })),
    top_client_groups: ranked(groups, top).map(({ key, count: n }) => ({ client: key, count: n })),
  };
}

/** Buckets from the counts of whole minutes plus the records of the partly covered ones. */
function series(db: Database.Database, minutes: WindowMinutes, window: StatsWindow, bucketMs: number): SeriesPoint[] {
  const first = Math.floor(window.sinceMs / bucketMs);
  const points: SeriesPoint[] = [];
  for (let b = first; b * bucketMs < window.untilMs; b += 1) {
    points.push({ t: new Date(b * bucketMs).toISOString(), allowed: 0, denied: 0, would_deny: 0 });
  }
  const add = (minute: number, allowed: number, denied: number, wouldDeny: number): void => {
    const point = points[Math.floor((minute * MINUTE_MS) / bucketMs) - first];
    point.allowed += allowed;
    point.denied += denied;
    point.would_deny += wouldDeny;
  };
  for (const row of fullMinutes(minutes, window)) add(row.minute, row.allowed, row.denied, row.would_deny);
  for (const record of partialMinuteRecords(db, minutes, window)) {
    add(record.minute, record.decision === 'allow' ? 1 : 0, record.decision === 'deny' ? 1 : 0, record.would_deny);
  }
  return points;
}

/**
 * GET /api/stats, as steps. Totals and series come from the per-minute counts (migration 002);
 * the top lists count index ranges over the window's ids and subtract the few records in that
 * range that started outside the window (window-scan.ts). Only the denied records are read one
 * by one. The minutes and the id range are read once, at the start: records written between
 * steps have higher ids and are not counted, so the answer is exact for that moment.
 */
function* statsSteps(db: Database.Database, window: StatsWindow, top: number, stepIds: number): Generator<void, Stats, undefined> {
  const bucketSeconds = bucketSecondsFor(window);
  const minutes = windowMinutes(db, window);
  const points = series(db, minutes, window, bucketSeconds * 1000);
  yield;
  const lists = yield* tops(db, minutes, window, top, stepIds);
  return assembleStats(window, bucketSeconds, points, lists);
}

/** The stats in one go: for tools and tests. */
export function computeStats(db: Database.Database, window: StatsWindow, top: number, stepIds = STATS_STEP_IDS): Stats {
  const run = statsSteps(db, window, top, stepIds);
  for (;;) {
    const next = run.next();
    if (next.done === true) return next.value;
  }
}

/**
 * The stats with a turn of the event loop between steps, so proxied requests and their audit
 * writes go on while a long window is counted. `db` is read at each step: the store replaces
 * its connection when it reopens the file, and the old one is closed.
 */
export async function computeStatsPaced(
  db: () => Database.Database,
  window: StatsWindow,
  top: number,
  stepIds = STATS_STEP_IDS,
): Promise<Stats> {
  const first = db();
  const run = statsSteps(first, window, top, stepIds);
  for (;;) {
    const next = run.next();
    if (next.done === true) return next.value;
    await nextTurn();
    // Reopened meanwhile (the file was moved): count again on the new connection.
    if (db() !== first) return computeStatsPaced(db, window, top, stepIds);
  }
}

export type TopLists = Pick<Stats, 'top_hosts' | 'top_denied_hosts' | 'top_clients' | 'top_client_groups'>;

/** The stats answer from its series and top lists (both engines): totals are the series' sums. */
export function assembleStats(window: StatsWindow, bucketSeconds: number, points: SeriesPoint[], lists: TopLists): Stats {
  const sum = (pick: (p: SeriesPoint) => number): number => points.reduce((total, p) => total + pick(p), 0);
  const allowed = sum((p) => p.allowed);
  const denied = sum((p) => p.denied);
  return {
    since: new Date(window.sinceMs).toISOString(),
    until: new Date(window.untilMs).toISOString(),
    total: allowed + denied,
    allowed,
    denied,
    would_deny: sum((p) => p.would_deny),
    ...lists,
    bucket_seconds: bucketSeconds,
    series: points,
  };
}
