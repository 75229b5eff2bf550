import os from 'node:os';
import { performance } from 'node:perf_hooks';
import type Database from 'better-sqlite3';
import type { AuditCompletion, AuditOpen, AuditRecordJson } from './record-types';
import { completionParams, openParams } from './record-params';
import type { Action } from '../policy/types';
import type { RequestKind } from '../request/target-types';
import { parseRequestFilters } from './filters';
import type { RequestFilters } from './filters';
import { QueryInputError } from './query-errors';
import { openIdWalk } from './request-plan';
import { statement } from './statement-cache';

export { QueryInputError } from './query-errors';
export type { RawRequestFilters, RequestFilters } from './filters';
export { parseRequestFilters } from './filters';

/** The fields of an audit record as the API returns them, in SPEC §4 order. */
export const AUDIT_RECORD_FIELDS = [
  'id', 'started_at', 'ended_at', 'duration_ms', 'client_ip', 'client_port', 'peer_ip', 'clients', 'user',
  'kind', 'method', 'scheme', 'host', 'port', 'path', 'resolved_ip', 'sni', 'tunnel_id', 'decision', 'would_deny',
  'rule', 'rule_source', 'reason', 'status', 'bytes_up', 'bytes_down', 'error', 'policy_version', 'node',
] as const satisfies readonly (keyof AuditRecordJson)[];

/** Compile-time check that AUDIT_RECORD_FIELDS names every field of AuditRecordJson. */
type UnlistedField = Exclude<keyof AuditRecordJson, (typeof AUDIT_RECORD_FIELDS)[number]>;
export type AuditRecordFieldsComplete = [UnlistedField] extends [never] ? true : UnlistedField;
const fieldsComplete: AuditRecordFieldsComplete = true;
void fieldsComplete;

export const DEFAULT_PAGE_LIMIT = 50;
export const MAX_PAGE_LIMIT = 1000;

/**
 * How long one page may search before it answers with what it has. The admin app shares the
 * proxy's thread and database connection: a rare `q` over a million records is about 750 ms of
 * scanning, which would stall every proxied request for as long.
 */
export const PAGE_SEARCH_BUDGET_MS = 40;

/** How a search paces itself; the defaults serve production, tests shrink them. */
export interface SearchPace {
  /** Search time per page (default PAGE_SEARCH_BUDGET_MS); at least one slice is always read. */
  budgetMs?: number;
  /** Ids in a walk's first slice (default FIRST_SLICE_IDS). */
  firstSliceIds?: number;
}

export interface ListRequestsOptions {
  limit?: number;
  cursor?: string | null;
  /** Validated filters (parseRequestFilters); absent: every record. */
  filters?: RequestFilters;
  /** Only records with a higher id: a live view catching up stops at the newest row it has. */
  afterId?: number;
  pace?: SearchPace;
  /** The node name every record of this store carries (default: the host name). */
  node?: string;
}

/** A single store's node name when none is given: what --node defaults to (SPEC §6). */
export const DEFAULT_NODE = os.hostname();

export interface RequestPage {
  items: AuditRecordJson[];
  next_cursor: string | null;
  /**
   * The highest id in the log when the page was read (null: empty log). A live view passes it
   * back as `after_id` to read only what arrived since, however far down its last match was.
   */
  newest_id: number | null;
  /**
   * True when the page stopped on its search budget before it was full: older records may
   * still match, and next_cursor continues the search below `searched_to_id`.
   */
  partial: boolean;
  /** With `partial`: every record with an id at or above this one was examined. */
  searched_to_id?: number;
  /** With `partial`: when that record started, to say how far back the search has reached. */
  searched_to?: string | null;
}

/** A row of `requests` as SQLite returns it (the PostgreSQL reader converts its rows to this). */
export interface RequestRow {
  id: number;
  started_at_ms: number;
  ended_at_ms: number | null;
  client_ip: string;
  client_port: number;
  peer_ip: string | null;
  clients: string;
  user: string | null;
  kind: RequestKind;
  method: string | null;
  scheme: string | null;
  host: string | null;
  port: number | null;
  path: string | null;
  resolved_ip: string | null;
  sni: string | null;
  tunnel_id: number | null;
  decision: Action;
  would_deny: number;
  rule: string | null;
  rule_source: string | null;
  reason: string;
  status: number | null;
  bytes_up: number;
  bytes_down: number;
  error: string | null;
  policy_version: string | null;
}

const ROW_COLUMNS = `id, started_at_ms, ended_at_ms, client_ip, client_port, peer_ip, clients, user, kind,
  method, scheme, host, port, path, resolved_ip, sni, tunnel_id, decision, would_deny, rule, rule_source, reason,
  status, bytes_up, bytes_down, error, policy_version`;

function parseClients(text: string): string[] {
  const value: unknown = JSON.parse(text);
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/** The one mapping from a stored row to the API shape (SPEC §4). */
export function rowToJson(row: RequestRow, node: string): AuditRecordJson {
  return {
    id: row.id,
    started_at: new Date(row.started_at_ms).toISOString(),
    ended_at: row.ended_at_ms === null ? null : new Date(row.ended_at_ms).toISOString(),
    // Wall-clock times can step backwards (NTP); a negative duration would only mislead.
    duration_ms: row.ended_at_ms === null ? null : Math.max(0, row.ended_at_ms - row.started_at_ms),
    client_ip: row.client_ip,
    client_port: row.client_port,
    peer_ip: row.peer_ip,
    clients: parseClients(row.clients),
    user: row.user,
    kind: row.kind,
    method: row.method,
    scheme: row.scheme,
    host: row.host,
    port: row.port,
    path: row.path,
    resolved_ip: row.resolved_ip,
    sni: row.sni,
    tunnel_id: row.tunnel_id,
    decision: row.decision,
    would_deny: row.would_deny === 1,
    rule: row.rule,
    rule_source: row.rule_source,
    reason: row.reason,
    status: row.status,
    bytes_up: row.bytes_up,
    bytes_down: row.bytes_down,
    error: row.error,
    policy_version: row.policy_version,
    node,
  };
}

/**
 * A completed record as the audit log holds it (an open and its completion) in the API shape:
 * through the store's own row parameters and rowToJson, so both shapes are one mapping.
 */
export function recordToJson(id: number, open: AuditOpen, completion: AuditCompletion, node: string): AuditRecordJson {
  return rowToJson({ id, ...openParams(open), ...completionParams(completion) } as unknown as RequestRow, node);
}

/** The cursor is opaque to clients: base64url of the last id returned. */
export function encodeCursor(lastId: number): string {
  return Buffer.from(String(lastId), 'utf8').toString('base64url');
}

/**
 * Decodes a cursor, accepting only what encodeCursor produces. Node's base64 decoder skips
 * characters it does not know, so the round trip is compared to reject anything non-canonical.
 */
export function decodeCursor(cursor: string): number {
  const invalid = new QueryInputError('cursor', 'cursor is not valid; use next_cursor from a previous page');
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(cursor)) throw invalid;
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!/^[1-9][0-9]{0,15}$/.test(text)) throw invalid;
  const id = Number(text);
  if (!Number.isSafeInteger(id) || encodeCursor(id) !== cursor) throw invalid;
  return id;
}

export function checkLimit(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_PAGE_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_LIMIT) {
    throw new QueryInputError('limit', `limit must be an integer from 1 to ${MAX_PAGE_LIMIT}`);
  }
  return limit;
}

const NO_FILTERS: RequestFilters = parseRequestFilters({}, new Date(0));

/** The ids' records, newest first. */
function recordsByIds(db: Database.Database, ids: readonly number[], node: string): AuditRecordJson[] {
  if (ids.length === 0) return [];
  const rows = statement(
    db,
    `SELECT ${ROW_COLUMNS} FROM requests WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id DESC`,
  ).all(JSON.stringify(ids)) as RequestRow[];
  return rows.map((row) => rowToJson(row, node));
}

/** Above every id: a first page starts here. */
export const TOP = Number.MAX_SAFE_INTEGER;

/** The start time of the oldest record at or above `id`: how far back a search reached. */
function startedAtFrom(db: Database.Database, id: number): string | null {
  const ms = statement(db, 'SELECT started_at_ms FROM requests WHERE id >= ? ORDER BY id LIMIT 1').pluck().get(id) as
    | number
    | undefined;
  return ms === undefined ? null : new Date(ms).toISOString();
}

/**
 * One page of records, newest first. Keyset pagination (`id < cursor`) rather than OFFSET: a page
 * costs the same wherever it is (a range walk down an index), and records written between two
 * requests can neither shift a record into a second page nor appear in a later one, because ids
 * only grow (AUTOINCREMENT). The cursor is the last id returned, or for a partial page the lowest
 * id examined, so it holds under any filter.
 *
 * The walk goes down the ids in slices until the page is full or its search budget is spent.
 * Filters that match often fill a page in the first slice; a rare match (a `q` found nowhere)
 * answers after the budget with the records found so far, `partial: true` and a cursor that
 * resumes the search where it stopped, as CloudWatch's FilterLogEvents or a DynamoDB Scan do.
 */
export function listRequests(db: Database.Database, opts: ListRequestsOptions = {}): RequestPage {
  const limit = checkLimit(opts.limit);
  const before = opts.cursor === undefined || opts.cursor === null ? TOP : decodeCursor(opts.cursor);
  const deadline = performance.now() + (opts.pace?.budgetMs ?? PAGE_SEARCH_BUDGET_MS);
  // One id more than asked tells whether another page exists, without an empty last page.
  const want = limit + 1;
  const ids: number[] = [];
  let resumeBelow: number | null = null;
  const walk = openIdWalk(db, opts.filters ?? NO_FILTERS, { before, after: opts.afterId ?? 0 }, opts.pace?.firstSliceIds);
  while (walk !== null) {
    const slice = walk.slice(want - ids.length);
    ids.push(...slice.ids);
    resumeBelow = slice.resumeBelow;
    if (ids.length === want || resumeBelow === null || performance.now() >= deadline) break;
  }
  const items = recordsByIds(db, ids.slice(0, limit), opts.node ?? DEFAULT_NODE);
  const newest = statement(db, 'SELECT max(id) FROM requests').pluck().get() as number | null;
  const page = { items, newest_id: newest };
  if (ids.length > limit) return { ...page, next_cursor: encodeCursor(items[items.length - 1].id), partial: false };
  if (resumeBelow === null) return { ...page, next_cursor: null, partial: false };
  return {
    ...page,
    next_cursor: encodeCursor(resumeBelow),
    partial: true,
    searched_to_id: resumeBelow,
    searched_to: startedAtFrom(db, resumeBelow),
  };
}

/** Records per batch of an export: one short query each, so the proxy's writes interleave. */
export const EXPORT_BATCH = 500;

/**
 * Every record the filters match, newest first, in batches. Lazy: a batch is read only when
 * the consumer asks for it (a stream's backpressure). Each batch is one slice of the walk, a
 * short synchronous query, never an open iterator: better-sqlite3 marks the connection busy
 * while an iterator is open, and this is the connection the proxy writes its audit records
 * through, so an export paused by a slow client would make every proxied request fail with 503.
 * A slice that matched nothing yields an empty batch, so a consumer can let the proxy run
 * between slices of a rare match. Records written after the export started are not included.
 */
export function* exportRecords(
  db: Database.Database,
  filters: RequestFilters,
  pace: SearchPace = {},
  node: string = DEFAULT_NODE,
): Generator<AuditRecordJson[], void, undefined> {
  const walk = openIdWalk(db, filters, { before: TOP, after: 0 }, pace.firstSliceIds);
  if (walk === null) return;
  for (;;) {
    const slice = walk.slice(EXPORT_BATCH);
    yield recordsByIds(db, slice.ids, node);
    if (slice.resumeBelow === null) return;
  }
}

/** One record by id, or null. */
export function getRequest(db: Database.Database, id: number, node: string = DEFAULT_NODE): AuditRecordJson | null {
  const row = statement(db, `SELECT ${ROW_COLUMNS} FROM requests WHERE id = ?`).get(id) as RequestRow | undefined;
  return row === undefined ? null : rowToJson(row, node);
}
