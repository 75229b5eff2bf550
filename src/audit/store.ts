import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { AuditCompletion, AuditOpen, AuditSink } from './record-types';
import { applyMigrations } from './migrate';

/**
 * The SQLite audit log. No method here receives credentials: the proxy passes the proxy
 * username (`user`) but never a password or a Proxy-Authorization value, and nothing in this
 * file may be widened to take one.
 */
export interface AuditStore extends AuditSink {
  readonly file: string;
  /** The connection, for read queries (query.ts). Writes go through the methods below. */
  readonly db: Database.Database;
  /** Ends every record still open (graceful shutdown); returns how many were ended. */
  completeOpenRecords(endedAt: Date, error: string): number;
  /** Whether a write succeeds right now (for /readyz). Never throws. */
  isWritable(): boolean;
  close(): void;
}

export interface AuditStoreOptions {
  clock?: () => Date;
}

/**
 * Longest string stored in any text column. Hosts, paths, usernames and error texts come from
 * hostile clients or remote servers; one multi-megabyte value per request would bloat the log
 * and every page of the admin API.
 */
export const MAX_TEXT_LENGTH = 2048;

const TRUNCATION_MARK = '…';

/** busy_timeout: every write blocks the event loop, so wait briefly for a lock, then fail closed (503). */
const BUSY_TIMEOUT_MS = 2000;

/** Cuts a string to MAX_TEXT_LENGTH UTF-16 units, never between the halves of a surrogate pair. */
export function clipText(value: string): string {
  if (value.length <= MAX_TEXT_LENGTH) return value;
  let end = MAX_TEXT_LENGTH - TRUNCATION_MARK.length;
  const last = value.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return value.slice(0, end) + TRUNCATION_MARK;
}

function clipNullable(value: string | null): string | null {
  return value === null ? null : clipText(value);
}

function configureDatabase(db: Database.Database): void {
  // WAL: readers (the admin API, policy replay) never block the proxy's writes.
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode: a committed transaction is in the OS page cache on return, so it survives
  // SIGKILL or a crash of this process; it does NOT survive power loss or a kernel crash (the last
  // transactions may roll back). That is the guarantee we make. FULL (an fsync per commit) would
  // extend it to power loss at a large cost in write throughput; offer it as an option if asked.
  db.pragma('synchronous = NORMAL');
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
}

/** Named parameters shared by both inserts, from an AuditOpen. */
function openParams(record: AuditOpen): Record<string, string | number | null> {
  return {
    started_at_ms: record.startedAt.getTime(),
    client_ip: clipText(record.clientIp),
    client_port: record.clientPort,
    clients: JSON.stringify(record.clients.map(clipText)),
    user: clipNullable(record.user),
    kind: record.kind,
    method: clipNullable(record.method),
    scheme: clipNullable(record.scheme),
    host: clipNullable(record.host),
    port: record.port,
    path: clipNullable(record.path),
    resolved_ip: clipNullable(record.resolvedIp),
    decision: record.decision,
    would_deny: record.wouldDeny ? 1 : 0,
    rule: clipNullable(record.rule),
    rule_source: clipNullable(record.ruleSource),
    reason: clipText(record.reason),
    policy_version: clipNullable(record.policyVersion),
  };
}

function completionParams(completion: AuditCompletion): Record<string, string | number | null> {
  return {
    ended_at_ms: completion.endedAt.getTime(),
    status: completion.status,
    bytes_up: completion.bytesUp,
    bytes_down: completion.bytesDown,
    error: clipNullable(completion.error),
  };
}

const OPEN_COLUMNS = [
  'started_at_ms', 'client_ip', 'client_port', 'clients', 'user', 'kind', 'method', 'scheme',
  'host', 'port', 'path', 'resolved_ip', 'decision', 'would_deny', 'rule', 'rule_source',
  'reason', 'policy_version',
] as const;
const COMPLETION_COLUMNS = ['ended_at_ms', 'status', 'bytes_up', 'bytes_down', 'error'] as const;

function insertSql(columns: readonly string[]): string {
  return `INSERT INTO requests (${columns.join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`;
}

function prepareStatements(db: Database.Database) {
  return {
    insertOpen: db.prepare(insertSql(OPEN_COLUMNS)),
    insertFinished: db.prepare(insertSql([...OPEN_COLUMNS, ...COMPLETION_COLUMNS])),
    // `ended_at_ms IS NULL`: the first completion wins, so a connection that ends after shutdown
    // already closed its record cannot rewrite it, and completing twice is harmless.
    complete: db.prepare(
      `UPDATE requests SET ${COMPLETION_COLUMNS.map((c) => `${c} = @${c}`).join(', ')}
       WHERE id = @id AND ended_at_ms IS NULL`,
    ),
    completeOpen: db.prepare(
      `UPDATE requests SET ended_at_ms = @ended_at_ms, error = COALESCE(error, @error)
       WHERE ended_at_ms IS NULL`,
    ),
    heartbeat: db.prepare(
      `INSERT INTO heartbeat (id, at_ms) VALUES (1, ?)
       ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms`,
    ),
  };
}

/**
 * Opens (creating the folder and file if missing) and migrates the audit database. Every write
 * is one autocommitted statement, so each record is durable on return (see configureDatabase).
 */
export function openAuditStore(file: string, opts: AuditStoreOptions = {}): AuditStore {
  const clock = opts.clock ?? (() => new Date());
  if (file !== ':memory:') fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const db = new Database(file);
  try {
    configureDatabase(db);
    applyMigrations(db, { clock });
  } catch (err) {
    db.close();
    throw err;
  }
  const statements = prepareStatements(db);
  return {
    file,
    db,
    open: (record) => Number(statements.insertOpen.run(openParams(record)).lastInsertRowid),
    complete: (id, completion) => {
      statements.complete.run({ id, ...completionParams(completion) });
    },
    record: (record, completion) =>
      Number(
        statements.insertFinished.run({ ...openParams(record), ...completionParams(completion) })
          .lastInsertRowid,
      ),
    completeOpenRecords: (endedAt, error) =>
      statements.completeOpen.run({ ended_at_ms: endedAt.getTime(), error: clipText(error) }).changes,
    isWritable: () => {
      try {
        statements.heartbeat.run(clock().getTime());
        return true;
      } catch {
        return false;
      }
    },
    close: () => {
      if (!db.open) return;
      // Recommended before closing a long-lived connection: refreshes the planner's statistics.
      db.pragma('optimize');
      db.close();
    },
  };
}
