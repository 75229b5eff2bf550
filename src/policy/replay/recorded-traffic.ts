import { isIP } from 'node:net';
import Database from 'better-sqlite3';
import { normaliseHost } from '../../request/target';
import type { HostKind, RequestKind } from '../../request/target-types';
import type { Action } from '../types';
import { ReplayInputError } from './input-error';

/**
 * Reading recorded traffic for `policy replay` and `policy unused`. The database is opened
 * read-only (an exported snapshot, or the live file next to a running proxy: WAL lets both
 * read while the proxy writes) and never migrated: a replay must not change the evidence.
 */

/** The columns read here; a database without them is not a tollgate audit log. */
const REQUIRED_COLUMNS = [
  'id', 'started_at_ms', 'kind', 'method', 'host', 'port', 'path', 'client_ip', 'user', 'decision',
  'would_deny', 'rule', 'policy_version',
];

export function openAuditReadOnly(file: string): Database.Database {
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new ReplayInputError(`cannot open the audit database ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    const columns = new Set((db.prepare('PRAGMA table_info(requests)').all() as Array<{ name: string }>).map((c) => c.name));
    const missing = REQUIRED_COLUMNS.filter((c) => !columns.has(c));
    if (missing.length > 0) {
      throw new ReplayInputError(`${file} is not a tollgate audit database (table "requests" lacks ${missing.join(', ')})`);
    }
  } catch (err) {
    db.close();
    if (err instanceof ReplayInputError) throw err;
    throw new ReplayInputError(`cannot read the audit database ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return db;
}

/** One distinct request shape of the window and how often it was recorded. */
export interface RecordedShape {
  kind: RequestKind;
  method: string;
  host: string;
  hostKind: HostKind;
  port: number;
  /** Plain HTTP only. */
  path: string | null;
  clientIp: string;
  user: string | null;
  decision: Action;
  wouldDeny: boolean;
  rule: string;
  count: number;
  lastSeenMs: number;
}

/**
 * Identical request facts are grouped in SQLite, so a replay handles each shape once. The key is
 * one JSON array rather than ten GROUP BY columns: the sort compares one value per row, about a
 * third faster on a million rows, and JSON keeps NULL and every string unambiguous.
 * NOT INDEXED with a rowid bound: the window's rows are read in one sequential pass from the
 * first id in the window (ids grow with time); the index on started_at_ms would fetch every row
 * by a separate lookup. The started_at_ms test still decides what is in the window.
 */
const SHAPES_SQL = `
  SELECT json_array(kind, method, host, port, path, client_ip, user, decision, would_deny, rule) AS shape,
         COUNT(*) AS n, MAX(started_at_ms) AS last_ms
    FROM requests NOT INDEXED
   WHERE id >= @first AND started_at_ms >= @since AND started_at_ms <= @until
   GROUP BY shape`;

const FIRST_ID_SQL = 'SELECT MIN(id) AS id FROM requests WHERE started_at_ms >= @since AND started_at_ms <= @until';

type ShapeFields = [unknown, unknown, unknown, unknown, unknown, unknown, unknown, unknown, unknown, unknown];

export type ShapeVerdict = { ok: true; shape: RecordedShape } | { ok: false; why: 'malformed' | 'undecided'; count: number };

const nullableText = (v: unknown): v is string | null => v === null || typeof v === 'string';

/** The host as the proxy would have recorded it, or null if it is not one (a raw target). */
function hostKindOf(host: string): HostKind | null {
  if (isIP(host) === 6) return 'ipv6';
  try {
    const parsed = normaliseHost(host);
    return parsed.host === host ? parsed.hostKind : null;
  } catch {
    return null;
  }
}

/** Hosts repeat across shapes (one per client address): classify each once. */
class HostKinds {
  private readonly known = new Map<string, HostKind | null>();

  of(host: string): HostKind | null {
    let kind = this.known.get(host);
    if (kind === undefined) {
      kind = hostKindOf(host);
      this.known.set(host, kind);
    }
    return kind;
  }
}

function toShape(fields: ShapeFields, count: number, lastSeenMs: number, hosts: HostKinds): ShapeVerdict {
  const [kind, method, host, port, path, clientIp, user, decision, wouldDeny, rule] = fields;
  const malformed = { ok: false, why: 'malformed', count } as const;
  if (kind !== 'connect' && kind !== 'http') return malformed;
  if (typeof host !== 'string' || typeof method !== 'string' || typeof clientIp !== 'string') return malformed;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return malformed;
  if (!nullableText(path) || (kind === 'http' && path === null) || !nullableText(user) || !nullableText(rule)) return malformed;
  if ((decision !== 'allow' && decision !== 'deny') || isIP(clientIp) === 0) return malformed;
  const hostKind = hosts.of(host);
  if (hostKind === null) return malformed;
  // No rule: the request ended before the policy decided it (the client left, a malformed head).
  if (rule === null) return { ok: false, why: 'undecided', count };
  return {
    ok: true,
    shape: {
      kind, method, host, hostKind, port, path: kind === 'http' ? path : null, clientIp, user, decision,
      wouldDeny: wouldDeny === 1, rule, count, lastSeenMs,
    },
  };
}

/** Streams the window's request shapes (better-sqlite3 iterate: rows are not all held at once). */
export function* recordedShapes(db: Database.Database, sinceMs: number, untilMs: number): Generator<ShapeVerdict> {
  const window = { since: sinceMs, until: untilMs };
  const first = firstIdInWindow(db, window);
  if (first === null) return;
  const hosts = new HostKinds();
  const rows = db.prepare(SHAPES_SQL).raw().iterate({ ...window, first }) as IterableIterator<[string, number, number]>;
  for (const [shape, count, lastMs] of rows) yield toShape(JSON.parse(shape) as ShapeFields, count, lastMs, hosts);
}

export interface WindowCoverage {
  /** Records in the window. */
  total: number;
  firstMs: number | null;
  lastMs: number | null;
  /** The oldest record in the whole database: a window reaching further back is not covered. */
  oldestMs: number | null;
  versions: Array<{ version: string | null; requests: number }>;
}

const VERSIONS_SQL = `
  SELECT policy_version AS version, COUNT(*) AS requests, MIN(started_at_ms) AS first_ms, MAX(started_at_ms) AS last_ms
    FROM requests NOT INDEXED
   WHERE id >= @first AND started_at_ms >= @since AND started_at_ms <= @until
   GROUP BY policy_version ORDER BY requests DESC, version`;

/** The smallest id in the window (an index-only range scan), or null for an empty window. */
function firstIdInWindow(db: Database.Database, window: { since: number; until: number }): number | null {
  return (db.prepare(FIRST_ID_SQL).get(window) as { id: number | null }).id;
}

export function windowCoverage(db: Database.Database, sinceMs: number, untilMs: number): WindowCoverage {
  const window = { since: sinceMs, until: untilMs };
  const oldestMs = (db.prepare('SELECT MIN(started_at_ms) AS ms FROM requests').get() as { ms: number | null }).ms;
  const first = firstIdInWindow(db, window);
  if (first === null) return { total: 0, firstMs: null, lastMs: null, oldestMs, versions: [] };
  const versions = db.prepare(VERSIONS_SQL).all({ ...window, first }) as Array<{ version: string | null; requests: number; first_ms: number; last_ms: number }>;
  return {
    total: versions.reduce((sum, v) => sum + v.requests, 0),
    firstMs: Math.min(...versions.map((v) => v.first_ms)),
    lastMs: Math.max(...versions.map((v) => v.last_ms)),
    oldestMs,
    versions: versions.map((v) => ({ version: v.version, requests: v.requests })),
  };
}
