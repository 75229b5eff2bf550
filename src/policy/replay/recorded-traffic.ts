import Database from 'better-sqlite3';
import { ReplayInputError } from './input-error';
import { HostKinds, toShape, type ShapeFields, type ShapeVerdict } from './recorded-shape';
import type { TimeWindow } from './window';

/**
 * Recorded traffic for `policy replay` and `policy unused`, from either engine: a local SQLite
 * audit database (here) or the fleet's shared history in PostgreSQL (pg-recorded-traffic.ts).
 * Both answer the same questions with the same numbers; the replay knows only this interface.
 */
export interface RecordedTraffic {
  /** Named in reports: the database file, or the audit URL without its password. */
  readonly label: string;
  /** Runs `read` on one snapshot, so every question sees the same records while writers go on. */
  snapshot<T>(read: () => Promise<T>): Promise<T>;
  coverage(window: TimeWindow): Promise<WindowCoverage>;
  /** The window's request shapes in key order (recorded-shape.ts), streamed. */
  shapes(window: TimeWindow): AsyncIterable<ShapeVerdict>;
  /** Hits in the window and the newest record (up to its end) of each named rule. */
  ruleHits(names: readonly string[], window: TimeWindow): Promise<RuleHitsInWindow>;
  /** A read's failure for a person, naming the source (never a password). */
  describeError(err: unknown): string;
  close(): Promise<void>;
}

/**
 * What `policy suggest` reads: the shapes alone. The admin route's filtered set (admin/
 * exported-shapes.ts) offers only this, since it has no whole-history questions to answer.
 */
export type ShapeSource = Pick<RecordedTraffic, 'label' | 'snapshot' | 'shapes'>;

export interface WindowCoverage {
  /** Records in the window. */
  total: number;
  firstMs: number | null;
  lastMs: number | null;
  /** The oldest record in the whole database: a window reaching further back is not covered. */
  oldestMs: number | null;
  versions: Array<{ version: string | null; requests: number }>;
}

export interface RuleHitsInWindow {
  byRule: Map<string, { hits: number; lastMs: number | null }>;
  /** Every record in the window, whichever rule (or none) decided it. */
  inWindow: number;
  oldestMs: number | null;
}

/**
 * The SQLite database is opened read-only (an exported snapshot, or the live file next to a
 * running proxy: WAL lets both read while the proxy writes) and never migrated: a replay must not
 * change the evidence.
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

/**
 * Identical request facts are grouped in SQLite, so a replay handles each shape once. The key is
 * one JSON array rather than ten GROUP BY columns: the sort compares one value per row, about a
 * third faster on a million rows, and JSON keeps NULL and every string unambiguous. The ORDER BY
 * costs nothing (the grouping sort already yields it) and makes the order a promise.
 * NOT INDEXED with a rowid bound: the window's rows are read in one sequential pass from the
 * first id in the window (ids grow with time); the index on started_at_ms would fetch every row
 * by a separate lookup. The started_at_ms test still decides what is in the window.
 */
const SHAPES_SQL = `
  SELECT json_array(kind, method, host, port, path, client_ip, user, decision, would_deny, rule, sni) AS shape,
         COUNT(*) AS n, MAX(started_at_ms) AS last_ms
    FROM requests NOT INDEXED
   WHERE id >= @first AND started_at_ms >= @since AND started_at_ms <= @until
   GROUP BY shape ORDER BY shape`;

const FIRST_ID_SQL = 'SELECT MIN(id) AS id FROM requests WHERE started_at_ms >= @since AND started_at_ms <= @until';

const VERSIONS_SQL = `
  SELECT policy_version AS version, COUNT(*) AS requests, MIN(started_at_ms) AS first_ms, MAX(started_at_ms) AS last_ms
    FROM requests NOT INDEXED
   WHERE id >= @first AND started_at_ms >= @since AND started_at_ms <= @until
   GROUP BY policy_version ORDER BY requests DESC, version`;

/** One pass over the table: hits in the window and the newest record ever, by rule. */
const HITS_SQL =
  // NOT INDEXED: this reads (nearly) every row, and one sequential pass beats a lookup per row.
  `SELECT rule, SUM(started_at_ms >= @since AND started_at_ms <= @until) AS hits, MAX(started_at_ms) AS last_ms
     FROM requests NOT INDEXED WHERE started_at_ms <= @until GROUP BY rule`;

const windowParams = (window: TimeWindow) => ({ since: window.sinceMs, until: window.untilMs });

class SqliteTraffic implements RecordedTraffic {
  constructor(
    private readonly db: Database.Database,
    readonly label: string,
  ) {}

  async snapshot<T>(read: () => Promise<T>): Promise<T> {
    this.db.exec('BEGIN');
    try {
      return await read();
    } finally {
      this.db.exec('COMMIT');
    }
  }

  /** The smallest id in the window (an index-only range scan), or null for an empty window. */
  private firstIdInWindow(window: TimeWindow): number | null {
    return (this.db.prepare(FIRST_ID_SQL).get(windowParams(window)) as { id: number | null }).id;
  }

  private oldestMs(): number | null {
    return (this.db.prepare('SELECT MIN(started_at_ms) AS ms FROM requests').get() as { ms: number | null }).ms;
  }

  async coverage(window: TimeWindow): Promise<WindowCoverage> {
    const oldestMs = this.oldestMs();
    const first = this.firstIdInWindow(window);
    if (first === null) return { total: 0, firstMs: null, lastMs: null, oldestMs, versions: [] };
    const versions = this.db.prepare(VERSIONS_SQL).all({ ...windowParams(window), first }) as Array<{ version: string | null; requests: number; first_ms: number; last_ms: number }>;
    return {
      total: versions.reduce((sum, v) => sum + v.requests, 0),
      firstMs: Math.min(...versions.map((v) => v.first_ms)),
      lastMs: Math.max(...versions.map((v) => v.last_ms)),
      oldestMs,
      versions: versions.map((v) => ({ version: v.version, requests: v.requests })),
    };
  }

  /** better-sqlite3's iterate: rows are not all held at once. */
  async *shapes(window: TimeWindow): AsyncGenerator<ShapeVerdict> {
    const first = this.firstIdInWindow(window);
    if (first === null) return;
    const hosts = new HostKinds();
    const rows = this.db.prepare(SHAPES_SQL).raw().iterate({ ...windowParams(window), first }) as IterableIterator<[string, number, number]>;
    for (const [shape, count, lastMs] of rows) yield toShape(JSON.parse(shape) as ShapeFields, count, lastMs, hosts);
  }

  async ruleHits(names: readonly string[], window: TimeWindow): Promise<RuleHitsInWindow> {
    const rows = this.db.prepare(HITS_SQL).all(windowParams(window)) as Array<{ rule: string | null; hits: number; last_ms: number }>;
    const wanted = new Set(names);
    const byRule = new Map<string, { hits: number; lastMs: number | null }>();
    for (const row of rows) if (row.rule !== null && wanted.has(row.rule)) byRule.set(row.rule, { hits: row.hits, lastMs: row.last_ms });
    return { byRule, inWindow: rows.reduce((sum, r) => sum + r.hits, 0), oldestMs: this.oldestMs() };
  }

  describeError(err: unknown): string {
    return `${this.label}: ${err instanceof Error ? err.message : String(err)}`;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

/** A local audit database as recorded traffic; throws ReplayInputError when it is not one. */
export function openSqliteTraffic(file: string): RecordedTraffic {
  return new SqliteTraffic(openAuditReadOnly(file), file);
}
