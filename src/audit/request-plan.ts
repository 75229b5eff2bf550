import { performance } from 'node:perf_hooks';
import type Database from 'better-sqlite3';
import { addressesMatching, hostsMatching, Q_COLUMNS } from './filters';
import type { MatchFilters, RequestFilters } from './filters';
import { DISTINCT_CLIENT_IPS } from './distinct';
import { MergedIds } from './merge-ids';
import { nextSliceSize } from './slice-size';
import { statement } from './statement-cache';
import { idRangeFor } from './time-window';

/**
 * How a filtered, newest-first id list is read. One filter "drives": its index is walked
 * backwards from the cursor, so a page stops after n matches instead of sorting every match.
 * The others are tested on each row the walk meets. The driver is the filter most likely to be
 * selective, in a fixed order (a destination before a client, before a decision); dense filters
 * (decision=allow, would_deny=false, status, since, q) never drive, the rowid walk serves them
 * (bounded by the window's id range). See bench/results/audit.md for what each costs.
 */
type Driver =
  | { kind: 'scan' }
  | { kind: 'tunnel' }
  | { kind: 'column'; column: 'host' | 'client_ip' | 'decision'; index: string; keys: readonly string[] }
  | { kind: 'would_deny' }
  | { kind: 'group'; name: string };

type Params = Record<string, string | number>;

/** A glob matching more known hosts than this is walked by rowid with the host set as a test. */
const MAX_MERGED_KEYS = 512;

/** Resolved filter values: the recorded hosts and client addresses the patterns match. */
interface Resolved {
  filters: RequestFilters;
  hosts: string[] | null;
  clientIps: string[] | null;
  /** The same for the negated filters (`not.host`, `not.client`): the values to leave out. */
  notHosts: string[] | null;
  notClientIps: string[] | null;
}

/**
 * Every host ever recorded (first_seen_hosts, migration 002) tested with the policy matcher
 * itself, so `*.x`, `**.x`, `?` and CIDR entries mean here exactly what they mean in a rule.
 * It costs one pass over the distinct hosts, not over the records.
 */
function matchingHosts(db: Database.Database, filters: MatchFilters): string[] | null {
  const host = filters.host;
  if (host === null) return null;
  return hostsMatching(host, () => statement(db, 'SELECT host FROM first_seen_hosts').pluck().all() as string[]);
}

function matchingClientIps(db: Database.Database, filters: MatchFilters): string[] | null {
  const client = filters.client;
  if (client === null || client.kind !== 'address') return null;
  return addressesMatching(client.range, statement(db, DISTINCT_CLIENT_IPS).pluck().all() as string[]);
}

function chooseDriver(resolved: Resolved): Driver {
  const { filters, hosts, clientIps } = resolved;
  // The requests of one tunnel: the fewest rows any filter can name.
  if (filters.tunnelId !== null) return { kind: 'tunnel' };
  if (hosts !== null && hosts.length <= MAX_MERGED_KEYS) {
    return { kind: 'column', column: 'host', index: 'requests_host', keys: hosts };
  }
  if (clientIps !== null && clientIps.length <= MAX_MERGED_KEYS) {
    return { kind: 'column', column: 'client_ip', index: 'requests_client_ip', keys: clientIps };
  }
  if (filters.client?.kind === 'group') return { kind: 'group', name: filters.client.name };
  if (filters.wouldDeny === true) return { kind: 'would_deny' };
  if (filters.decision === 'deny') return { kind: 'column', column: 'decision', index: 'requests_decision', keys: ['deny'] };
  return { kind: 'scan' };
}

/** `%`, `_` and the escape itself are literal in q. */
function likePattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * Free text in any of the searched columns, as SQL on the parameter `@name`. SQLite's LIKE reads
 * its pattern as a C string: a NUL in q would end the pattern at `%` and match every record
 * (`q=%00zzzz`). instr() compares by length, NUL included, and lower() folds ASCII only, as LIKE
 * does; it is only used then, LIKE being the faster of the two.
 */
function qTest(q: string, name: string, params: Params, negate: boolean): string {
  const literal = q.includes('\u0000');
  params[name] = literal ? q.replace(/[A-Z]/g, (c) => c.toLowerCase()) : likePattern(q);
  const test = (column: string): string => {
    // A negated test must hold for a NULL column: coalesce, or NOT (NULL) would drop the row.
    const col = negate ? `coalesce(r.${column}, '')` : `r.${column}`;
    return literal ? `instr(lower(${col}), @${name}) > 0` : `${col} LIKE @${name} ESCAPE '\\'`;
  };
  const any = `(${Q_COLUMNS.map(test).join(' OR ')})`;
  return negate ? `NOT ${any}` : any;
}

/** The row tests of the negated filters: each keeps the records it would not match, NULLs included. */
function negatedConditions(resolved: Resolved, sql: string[], params: Params): void {
  const not = resolved.filters.not;
  if (resolved.notHosts !== null && resolved.notHosts.length > 0) {
    sql.push('(r.host IS NULL OR r.host NOT IN (SELECT value FROM json_each(@not_hosts)))');
    params.not_hosts = JSON.stringify(resolved.notHosts);
  }
  if (resolved.notClientIps !== null && resolved.notClientIps.length > 0) {
    sql.push('r.client_ip NOT IN (SELECT value FROM json_each(@not_client_ips))');
    params.not_client_ips = JSON.stringify(resolved.notClientIps);
  }
  if (not.client?.kind === 'group') {
    sql.push('NOT EXISTS (SELECT 1 FROM request_clients AS ng WHERE ng.client = @not_group AND ng.request_id = r.id)');
    params.not_group = not.client.name;
  }
  if (not.decision !== null) {
    sql.push('r.decision <> @not_decision');
    params.not_decision = not.decision;
  }
  if (not.wouldDeny !== null) sql.push(`r.would_deny = ${not.wouldDeny ? 0 : 1}`);
  if (not.status !== null) {
    sql.push('(r.status IS NULL OR r.status NOT BETWEEN @not_status_low AND @not_status_high)');
    params.not_status_low = not.status.kind === 'exact' ? not.status.code : not.status.low;
    params.not_status_high = not.status.kind === 'exact' ? not.status.code : not.status.high;
  }
  if (not.q !== null) sql.push(qTest(not.q, 'not_q', params, true));
  if (not.tunnelId !== null) {
    sql.push('(r.tunnel_id IS NULL OR r.tunnel_id <> @not_tunnel_id)');
    params.not_tunnel_id = not.tunnelId;
  }
  for (const column of ['rule', 'user'] as const) {
    if (not[column] === null) continue;
    sql.push(`(r.${column} IS NULL OR r.${column} <> @not_${column})`);
    params[`not_${column}`] = not[column];
  }
}


/** The row tests for every filter but the driver's, with their parameters. */
function rowConditions(resolved: Resolved, driver: Driver): { sql: string[]; params: Params } {
  const { filters, hosts, clientIps } = resolved;
  const sql: string[] = [];
  const params: Params = {};
  if (hosts !== null && !(driver.kind === 'column' && driver.column === 'host')) {
    sql.push('r.host IN (SELECT value FROM json_each(@hosts))');
    params.hosts = JSON.stringify(hosts);
  }
  if (clientIps !== null && !(driver.kind === 'column' && driver.column === 'client_ip')) {
    sql.push('r.client_ip IN (SELECT value FROM json_each(@client_ips))');
    params.client_ips = JSON.stringify(clientIps);
  }
  if (filters.client?.kind === 'group' && driver.kind !== 'group') {
    sql.push('EXISTS (SELECT 1 FROM request_clients AS g WHERE g.client = @group AND g.request_id = r.id)');
    params.group = filters.client.name;
  }
  if (filters.decision !== null && !(driver.kind === 'column' && driver.column === 'decision')) {
    sql.push('r.decision = @decision');
    params.decision = filters.decision;
  }
  // A literal, not a parameter: only `would_deny = 1` written out can use the partial index.
  if (filters.wouldDeny !== null && driver.kind !== 'would_deny') sql.push(`r.would_deny = ${filters.wouldDeny ? 1 : 0}`);
  if (filters.status !== null) {
    sql.push('r.status BETWEEN @status_low AND @status_high');
    params.status_low = filters.status.kind === 'exact' ? filters.status.code : filters.status.low;
    params.status_high = filters.status.kind === 'exact' ? filters.status.code : filters.status.high;
  }
  if (filters.window.sinceMs !== null) {
    sql.push('r.started_at_ms >= @since');
    params.since = filters.window.sinceMs;
  }
  if (filters.window.untilMs !== null) {
    sql.push('r.started_at_ms < @until');
    params.until = filters.window.untilMs;
  }
  if (filters.q !== null) sql.push(qTest(filters.q, 'q', params, false));
  for (const column of ['rule', 'user'] as const) {
    if (filters[column] === null) continue;
    sql.push(`r.${column} = @${column}`);
    params[column] = filters[column];
  }
  // A tunnel filter always drives (chooseDriver): its test is the walk's own, on its parameter.
  if (filters.tunnelId !== null) params.tunnel_id = filters.tunnelId;
  negatedConditions(resolved, sql, params);
  return { sql, params };
}

/**
 * What a driver's statement over [lo, before) selects: its ids newest first, `take` at a time (an
 * IdWalk's fetch); or a whole id slice, unordered, counted or as columns of `r` (a SliceScanner).
 */
type Selecting = { kind: 'ids' } | { kind: 'count' } | { kind: 'columns'; columns: string };

function walkSql(driver: Driver, conditions: string[], selecting: Selecting): string {
  const more = conditions.map((c) => ` AND ${c}`).join('');
  const select = selecting.kind === 'ids' ? 'r.id AS id' : selecting.kind === 'count' ? 'count(*)' : selecting.columns;
  const tail = selecting.kind === 'ids' ? ' ORDER BY id DESC LIMIT @take' : '';
  switch (driver.kind) {
    case 'scan':
      // NOT INDEXED keeps the walk on the rowid: the planner would otherwise pick
      // requests_started_at for a since filter and sort every record of the window.
      return `SELECT ${select} FROM requests AS r NOT INDEXED WHERE r.id < @before AND r.id >= @lo${more}${tail}`;
    case 'column':
      return `SELECT ${select} FROM requests AS r INDEXED BY ${driver.index}
        WHERE r.${driver.column} = @key AND r.id < @before AND r.id >= @lo${more}${tail}`;
    case 'tunnel':
      // requests_tunnel_id is partial (tunnel_id IS NOT NULL), which `tunnel_id = ?` implies.
      return `SELECT ${select} FROM requests AS r INDEXED BY requests_tunnel_id
        WHERE r.tunnel_id = @tunnel_id AND r.id < @before AND r.id >= @lo${more}${tail}`;
    case 'would_deny':
      return `SELECT ${select} FROM requests AS r INDEXED BY requests_would_deny
        WHERE r.would_deny = 1 AND r.id < @before AND r.id >= @lo${more}${tail}`;
    case 'group': {
      // CROSS JOIN fixes the order: walk the group's ids, look each record up by rowid. Ids or a
      // count with no row test need no record: the group's own index range is the answer.
      const join = selecting.kind === 'columns' || conditions.length > 0 ? ' CROSS JOIN requests AS r ON r.id = rc.request_id' : '';
      const ofGroup = selecting.kind === 'ids' ? 'rc.request_id AS id' : select;
      return `SELECT ${ofGroup} FROM request_clients AS rc${join}
        WHERE rc.client = @key AND rc.request_id < @before AND rc.request_id >= @lo${more}${tail}`;
    }
  }
}

/** The scan and would_deny walks have one range and no key; '' stands for it. */
function driverKeys(driver: Driver): readonly string[] {
  if (driver.kind === 'column') return driver.keys;
  if (driver.kind === 'group') return [driver.name];
  return [''];
}

/** A prepared walk: the driver's statement, its parameters, and the ids it may visit. */
interface Walk {
  keys: readonly string[];
  fetch: Database.Statement;
  driver: Driver;
  conditions: string[];
  params: Params;
  /** Lowest id the window can hold. */
  lo: number;
  /** One above the highest id that exists (or that the window can hold). */
  top: number;
}

function prepareWalk(db: Database.Database, filters: RequestFilters, after: number): Walk | null {
  const range = idRangeFor(db, filters.window);
  if (range === null) return null;
  const resolved: Resolved = {
    filters,
    hosts: matchingHosts(db, filters),
    clientIps: matchingClientIps(db, filters),
    notHosts: matchingHosts(db, filters.not),
    notClientIps: matchingClientIps(db, filters.not),
  };
  if (resolved.hosts?.length === 0 || resolved.clientIps?.length === 0) return null;
  const driver = chooseDriver(resolved);
  const conditions = rowConditions(resolved, driver);
  const newest = statement(db, 'SELECT max(id) FROM requests').pluck().get() as number | null;
  if (newest === null) return null;
  return {
    keys: driverKeys(driver),
    fetch: statement(db, walkSql(driver, conditions.sql, { kind: 'ids' })).pluck(),
    driver,
    conditions: conditions.sql,
    params: conditions.params,
    // A request inside a tunnel is recorded after the tunnel's record (it names that id), and
    // ids only grow: nothing at or below the tunnel's id can match.
    lo: Math.max(range.lo, after + 1, (filters.tunnelId ?? 0) + 1),
    top: Math.min(range.hi, newest) + 1,
  };
}

/** The first slice of ids a walk reads; later ones grow or shrink with what a slice costs. */
export const FIRST_SLICE_IDS = 4096;
/**
 * Growth stops here: a slice that was cheap over a sparse stretch of the driver's index may meet
 * a dense one next, where every id costs an index entry and a row test (about 2 µs).
 */
const MAX_SLICE_IDS = 16_384;
/** What one slice should cost: short enough that the proxy, on the same thread, barely notices. */
const SLICE_TARGET_MS = 8;

/** What one slice of a walk found. */
export interface IdSlice {
  /** Matching ids, newest first, at most the number asked for. */
  ids: number[];
  /**
   * Every id at or above this was examined (for a full slice: down to its last id), so the
   * walk resumes below it. Null: nothing below can match.
   */
  resumeBelow: number | null;
}

/** A slice being read: its merged index ranges, its lowest id and what it has cost so far. */
interface OpenSlice {
  merged: MergedIds<string>;
  lo: number;
  ms: number;
}

/**
 * The filtered ids below a starting id, newest first, read as a walk down the id space in
 * slices. A slice is bounded in ids (the driver's index range for those ids, or the rowid range
 * itself), so no call holds the thread the proxy shares for long however rare the matches are;
 * slices grow while they are cheap and shrink when they are not. A slice with more matches than
 * asked for is kept and read on at the next call (an export's next batch). Nothing stays open
 * in SQLite between calls: an export can pause for a slow client in between.
 */
export class IdWalk {
  private hi: number;
  private size: number;
  private open: OpenSlice | null = null;

  constructor(private readonly walk: Walk, before: number, private readonly firstSlice: number) {
    this.hi = Math.min(before, walk.top);
    this.size = firstSlice;
  }

  /** Up to `want` ids: from the slice being read, or from a new one below it. */
  slice(want: number): IdSlice {
    const walk = this.walk;
    const started = performance.now();
    if (this.open === null) {
      if (this.hi <= walk.lo) return { ids: [], resumeBelow: null };
      const lo = Math.max(walk.lo, this.hi - this.size);
      const base = { ...walk.params, lo };
      const fetch = (key: string, below: number, take: number): number[] =>
        walk.fetch.all({ ...base, key, before: below, take }) as number[];
      this.open = { merged: new MergedIds(walk.keys, fetch, Math.min(want, 256), this.hi), lo, ms: 0 };
    }
    const open = this.open;
    const ids = open.merged.take(want);
    open.ms += performance.now() - started;
    if (ids.length === want) return { ids, resumeBelow: ids[ids.length - 1] };
    // Used up: the next slice starts below this one, sized by what this one cost.
    this.open = null;
    this.hi = open.lo;
    this.size = nextSliceSize(this.size, open.ms, { targetMs: SLICE_TARGET_MS, min: this.firstSlice, max: MAX_SLICE_IDS });
    return { ids, resumeBelow: open.lo > walk.lo ? open.lo : null };
  }
}

/**
 * A walk of the filtered ids in (after, before); null when nothing can match. `firstSlice` is
 * for tests, which need several slices out of a few hundred records.
 */
export function openIdWalk(
  db: Database.Database,
  filters: RequestFilters,
  bounds: { before: number; after: number },
  firstSlice = FIRST_SLICE_IDS,
): IdWalk | null {
  const walk = prepareWalk(db, filters, bounds.after);
  return walk === null ? null : new IdWalk(walk, bounds.before, Math.max(1, Math.floor(firstSlice)));
}

/**
 * The filtered records of an id slice, whole and unordered: counted, or their columns read. For
 * facets and filtered stats (facets-sqlite.ts), which tally every match of a slice and need no
 * newest-first order inside it.
 */
export interface SliceScanner<Row> {
  /** Lowest id the filters can match, and one above the highest. */
  readonly lo: number;
  readonly top: number;
  /** Matching records with an id in [lo, before). */
  count(lo: number, before: number): number;
  /** Their columns. */
  rows(lo: number, before: number): Row[];
}

/** A scanner of the filtered set reading `columns` (of `r`); null when nothing can match. */
export function openSliceScanner<Row>(db: Database.Database, filters: RequestFilters, columns: string): SliceScanner<Row> | null {
  const walk = prepareWalk(db, filters, 0);
  if (walk === null) return null;
  const counting = statement(db, walkSql(walk.driver, walk.conditions, { kind: 'count' })).pluck();
  const reading = statement(db, walkSql(walk.driver, walk.conditions, { kind: 'columns', columns }));
  const each = <T>(lo: number, before: number, run: (params: Params) => T): T[] =>
    walk.keys.map((key) => run({ ...walk.params, key, lo: Math.max(lo, walk.lo), before: Math.min(before, walk.top) }));
  return {
    lo: walk.lo,
    top: walk.top,
    count: (lo, before) => each(lo, before, (p) => counting.get(p) as number).reduce((a, b) => a + b, 0),
    rows: (lo, before) => each(lo, before, (p) => reading.all(p) as Row[]).flat(),
  };
}
