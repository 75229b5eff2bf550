import { performance } from 'node:perf_hooks';
import type { Pool } from 'pg';
import { DISTINCT_CLIENT_IPS } from '../audit/distinct';
import { addressesMatching, hostsMatching, Q_COLUMNS } from '../audit/filters';
import type { MatchFilters, RequestFilters } from '../audit/filters';
import type { IdSlice } from '../audit/request-plan';
import { nextSliceSize } from '../audit/slice-size';
import { pgText } from './pg-text';

/**
 * The filtered, newest-first ids of the shared history, read as a walk down the id space in
 * slices, as the SQLite walk does (src/audit/request-plan.ts) and for the same reason: a page
 * stops after n matches and a rare match answers within a budget with a resumable cursor. Each
 * slice is one query bounded by `id >= lo AND id < hi ... ORDER BY id DESC LIMIT n`, so whatever
 * plan PostgreSQL picks (an index on (host, id), (client_ip, id), (decision, id), (node, id) or
 * (tunnel_local_id, store_id, id) walked backwards, or the GIN index on clients and a sort), it
 * never reads or sorts more than one slice. No INDEXED BY here: PostgreSQL has no hints, and with both id bounds and the LIMIT
 * its planner picks the (column, id) index (checked with EXPLAIN, see docs/performance.md).
 *
 * Host globs and CIDR ranges are resolved first, as for SQLite: globs against every host ever
 * recorded (first_seen_hosts), ranges against the distinct client addresses (the same recursive
 * loose scan, which PostgreSQL runs as is), so they mean here exactly what they mean in a rule.
 */

class Params {
  readonly values: unknown[] = [];
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** SQLite's LIKE folds ASCII case only; translate() does exactly that, whatever the collation. */
function foldAscii(text: string): string {
  return text.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

function likePattern(text: string): string {
  return `%${foldAscii(pgText(text)).replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function oneOrAny(column: string, values: readonly string[], params: Params): string {
  return values.length === 1 ? `${column} = ${params.add(values[0])}` : `${column} = ANY(${params.add(values)}::text[])`;
}

interface Resolved {
  filters: RequestFilters;
  hosts: string[] | null;
  clientIps: string[] | null;
  /** A tunnel_id filter: the tunnel row's store and the replica's own id for it (migration 006). */
  tunnel: { storeId: string; localId: string } | null;
  /** The same for the negated filters: the values and the tunnel to leave out. */
  notHosts: string[] | null;
  notClientIps: string[] | null;
  notTunnel: { storeId: string; localId: string } | null;
}

/** Free text in any searched column; negated, a NULL column counts as not matching. */
function qTest(q: string, params: Params, negate: boolean): string {
  const p = params.add(likePattern(q));
  const test = (c: string): string => {
    const col = negate ? `coalesce(r.${c}, '')` : `r.${c}`;
    return `translate(${col}, '${UPPER}', '${UPPER.toLowerCase()}') LIKE ${p} ESCAPE '\\'`;
  };
  const any = `(${Q_COLUMNS.map(test).join(' OR ')})`;
  return negate ? `NOT ${any}` : any;
}

/** The row tests of the negated filters: each keeps the records it would not match, NULLs included. */
function negatedConditions(resolved: Resolved, params: Params): string[] {
  const not = resolved.filters.not;
  const sql: string[] = [];
  if (resolved.notHosts !== null && resolved.notHosts.length > 0) {
    sql.push(`(r.host IS NULL OR NOT (${oneOrAny('r.host', resolved.notHosts.map(pgText), params)}))`);
  }
  if (resolved.notClientIps !== null && resolved.notClientIps.length > 0) sql.push(`NOT (${oneOrAny('r.client_ip', resolved.notClientIps, params)})`);
  if (not.client?.kind === 'group') sql.push(`NOT (r.clients @> ARRAY[${params.add(not.client.name)}::text])`);
  if (not.decision !== null) sql.push(`r.decision <> ${params.add(not.decision)}`);
  if (not.wouldDeny !== null) sql.push(not.wouldDeny ? 'NOT r.would_deny' : 'r.would_deny');
  if (not.status !== null) {
    const low = not.status.kind === 'exact' ? not.status.code : not.status.low;
    const high = not.status.kind === 'exact' ? not.status.code : not.status.high;
    sql.push(`(r.status IS NULL OR r.status NOT BETWEEN ${params.add(low)} AND ${params.add(high)})`);
  }
  if (not.q !== null) sql.push(qTest(not.q, params, true));
  if (not.node !== null) sql.push(`r.node <> ${params.add(pgText(not.node))}`);
  if (resolved.notTunnel !== null) {
    sql.push(`(r.tunnel_local_id IS DISTINCT FROM ${params.add(resolved.notTunnel.localId)}::bigint OR r.store_id <> ${params.add(resolved.notTunnel.storeId)}::uuid)`);
  }
  if (not.rule !== null) sql.push(`(r.rule IS NULL OR r.rule <> ${params.add(pgText(not.rule))})`);
  if (not.user !== null) sql.push(`(r."user" IS NULL OR r."user" <> ${params.add(pgText(not.user))})`);
  return sql;
}

/** The row tests of every filter, with their parameters added to `params`. */
function conditions(resolved: Resolved, params: Params): string[] {
  const { filters, hosts, clientIps } = resolved;
  const sql: string[] = [];
  if (hosts !== null) sql.push(oneOrAny('r.host', hosts.map(pgText), params));
  if (clientIps !== null) sql.push(oneOrAny('r.client_ip', clientIps, params));
  if (filters.client?.kind === 'group') sql.push(`r.clients @> ARRAY[${params.add(filters.client.name)}::text]`);
  if (filters.decision !== null) sql.push(`r.decision = ${params.add(filters.decision)}`);
  // Written out, not a parameter: only `would_deny` as such can use the partial index.
  if (filters.wouldDeny !== null) sql.push(filters.wouldDeny ? 'r.would_deny' : 'NOT r.would_deny');
  if (filters.status !== null) {
    const low = filters.status.kind === 'exact' ? filters.status.code : filters.status.low;
    const high = filters.status.kind === 'exact' ? filters.status.code : filters.status.high;
    sql.push(`r.status BETWEEN ${params.add(low)} AND ${params.add(high)}`);
  }
  if (filters.window.sinceMs !== null) sql.push(`r.started_at_ms >= ${params.add(filters.window.sinceMs)}`);
  if (filters.window.untilMs !== null) sql.push(`r.started_at_ms < ${params.add(filters.window.untilMs)}`);
  if (filters.q !== null) sql.push(qTest(filters.q, params, false));
  if (filters.rule !== null) sql.push(`r.rule = ${params.add(pgText(filters.rule))}`);
  if (filters.user !== null) sql.push(`r."user" = ${params.add(pgText(filters.user))}`);
  if (filters.node !== null) sql.push(`r.node = ${params.add(pgText(filters.node))}`);
  if (resolved.tunnel !== null) {
    sql.push(`r.tunnel_local_id = ${params.add(resolved.tunnel.localId)}::bigint AND r.store_id = ${params.add(resolved.tunnel.storeId)}::uuid`);
  }
  return [...sql, ...negatedConditions(resolved, params)];
}

async function resolveHosts(pool: Pool, filter: MatchFilters['host']): Promise<string[] | null> {
  if (filter === null) return null;
  const known = filter.exactName === null ? (await pool.query<{ host: string }>('SELECT host FROM first_seen_hosts')).rows.map((r) => r.host) : [];
  return hostsMatching(filter, () => known);
}

async function resolveClientIps(pool: Pool, filter: MatchFilters['client']): Promise<string[] | null> {
  if (filter?.kind !== 'address') return null;
  const known = (await pool.query<{ x: string }>(DISTINCT_CLIENT_IPS)).rows.map((r) => r.x);
  return addressesMatching(filter.range, known);
}

/**
 * Rows name their tunnel by the replica's id for it: the shared id asked for is turned into that.
 * Null: no such row (never shipped, or pruned).
 */
async function resolveTunnel(pool: Pool, id: number | null): Promise<Resolved['tunnel']> {
  if (id === null) return null;
  const found = await pool.query<{ store_id: string; local_id: string }>('SELECT store_id, local_id FROM requests WHERE id = $1', [id]);
  return found.rows.length === 0 ? null : { storeId: found.rows[0].store_id, localId: found.rows[0].local_id };
}

async function resolve(pool: Pool, filters: RequestFilters): Promise<Resolved | null> {
  const hosts = await resolveHosts(pool, filters.host);
  const clientIps = await resolveClientIps(pool, filters.client);
  if (hosts?.length === 0 || clientIps?.length === 0) return null;
  const tunnel = await resolveTunnel(pool, filters.tunnelId);
  // Nothing can be found inside a tunnel that is not there.
  if (filters.tunnelId !== null && tunnel === null) return null;
  return {
    filters,
    hosts,
    clientIps,
    tunnel,
    notHosts: await resolveHosts(pool, filters.not.host),
    notClientIps: await resolveClientIps(pool, filters.not.client),
    notTunnel: await resolveTunnel(pool, filters.not.tunnelId),
  };
}

const MINUTE_MS = 60_000;

/**
 * The ids a time window's records can have. Ids follow arrival in the shared history, not start
 * time (a replica's backlog arrives late), so the window becomes the union of its minutes' id
 * ranges (request_minutes first_id/last_id, migration 003): a few thousand rows for a week, where
 * the window's own min and max id meant reading its whole (started_at_ms, id) index range. The
 * edge minutes are whole minutes here; the walk tests started_at_ms on every row. Null: nothing
 * in the window.
 */
async function windowIds(pool: Pool, filters: RequestFilters): Promise<{ lo: number; hi: number } | null> {
  const { sinceMs, untilMs } = filters.window;
  if (sinceMs === null && untilMs === null) return { lo: 1, hi: Number.MAX_SAFE_INTEGER };
  if (sinceMs !== null && untilMs !== null && untilMs <= sinceMs) return null;
  // minute = started_at_ms / 60000 truncates toward zero in PostgreSQL: floor below and trunc above
  // cover it whatever the sign (they differ only before 1970, where they widen the range).
  const result = await pool.query<{ lo: string | null; hi: string | null }>(
    'SELECT min(first_id) AS lo, max(last_id) AS hi FROM request_minutes WHERE minute >= $1 AND minute <= $2',
    [
      sinceMs === null ? Number.MIN_SAFE_INTEGER : Math.floor(sinceMs / MINUTE_MS),
      untilMs === null ? Number.MAX_SAFE_INTEGER : Math.trunc((untilMs - 1) / MINUTE_MS),
    ],
  );
  const row = result.rows[0];
  return row.lo === null || row.hi === null ? null : { lo: Number(row.lo), hi: Number(row.hi) };
}

/** First slice of a walk, in ids; later ones grow while cheap and shrink when dear. */
export const PG_FIRST_SLICE_IDS = 16_384;
const PG_MAX_SLICE_IDS = 4_194_304;
/** What one slice should cost: the console waits on it, the proxy does not. */
const PG_SLICE_TARGET_MS = 50;

export interface PreparedWalk {
  sql: string;
  params: unknown[];
  /** The walk's row tests, ` AND `-joined, on parameters from $4 on (for a count of the same set). */
  where: string;
  /** Lowest id to visit, and one above the highest. */
  lo: number;
  top: number;
}

/** The slice query of a walk and its bounds (exported for the EXPLAIN test). `select`: its columns. */
export async function preparePgWalk(pool: Pool, filters: RequestFilters, after: number, select = 'r.id'): Promise<PreparedWalk | null> {
  const resolved = await resolve(pool, filters);
  if (resolved === null) return null;
  const range = await windowIds(pool, filters);
  if (range === null) return null;
  const newest = await pool.query<{ max: string | null }>('SELECT max(id) FROM requests');
  if (newest.rows[0].max === null) return null;
  const params = new Params();
  // $1..$3 are the slice's bounds and size, set per query.
  params.add(0);
  params.add(0);
  params.add(0);
  const more = conditions(resolved, params).map((c) => ` AND ${c}`).join('');
  return {
    sql: `SELECT ${select} FROM requests AS r WHERE r.id >= $1 AND r.id < $2${more} ORDER BY r.id DESC LIMIT $3`,
    params: params.values,
    where: more,
    lo: Math.max(range.lo, after + 1),
    top: Math.min(range.hi, Number(newest.rows[0].max)) + 1,
  };
}

/** A slice of a walk with the rows its query returned (the walk's `select` columns). */
export interface RowSlice<Row> extends IdSlice {
  rows: Row[];
}

/** A walk over the shared history; the same contract as request-plan.ts IdWalk, asynchronously. */
export class PgIdWalk<Row extends { id: string } = { id: string }> {
  private hi: number;
  private size: number;
  private openLo: number | null = null;
  private openMs = 0;

  constructor(private readonly pool: Pool, private readonly walk: PreparedWalk, before: number, private readonly firstSlice: number) {
    this.hi = Math.min(before, walk.top);
    this.size = firstSlice;
  }

  async slice(want: number): Promise<RowSlice<Row>> {
    const walk = this.walk;
    if (this.openLo === null) {
      if (this.hi <= walk.lo) return { ids: [], rows: [], resumeBelow: null };
      this.openLo = Math.max(walk.lo, this.hi - this.size);
      this.openMs = 0;
    }
    const lo = this.openLo;
    const started = performance.now();
    const params = [lo, this.hi, want, ...walk.params.slice(3)];
    const rows = (await this.pool.query<Row>(walk.sql, params)).rows;
    const ids = rows.map((r) => Number(r.id));
    this.openMs += performance.now() - started;
    if (ids.length === want) {
      this.hi = ids[ids.length - 1];
      return { ids, rows, resumeBelow: this.hi };
    }
    this.openLo = null;
    this.hi = lo;
    this.size = nextSliceSize(this.size, this.openMs, { targetMs: PG_SLICE_TARGET_MS, min: this.firstSlice, max: PG_MAX_SLICE_IDS, grow: 4 });
    return { ids, rows, resumeBelow: lo > walk.lo ? lo : null };
  }
}

/** A walk of the filtered ids in (after, before); null when nothing can match. `select` must include r.id. */
export async function openPgIdWalk<Row extends { id: string } = { id: string }>(
  pool: Pool,
  filters: RequestFilters,
  bounds: { before: number; after: number },
  firstSlice = PG_FIRST_SLICE_IDS,
  select = 'r.id',
): Promise<PgIdWalk<Row> | null> {
  const walk = await preparePgWalk(pool, filters, bounds.after, select);
  return walk === null ? null : new PgIdWalk<Row>(pool, walk, bounds.before, Math.max(1, Math.floor(firstSlice)));
}
