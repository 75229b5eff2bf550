import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { applyMigrations } from './migrate';
import {
  COMPLETION_COLUMNS, completionParams, OPEN_COLUMNS, openParams, probeRecord,
} from './record-params';
import type { RowParams } from './record-params';
import type { AuditCompletion, AuditOpen } from './record-types';
import { SideTableBatch } from './log/side-tables';
import { isRecordError } from './write-health';

/** A completion waiting for the next batch: the record's id and how it ended. */
export type CompletionEntry = readonly [id: number, completion: AuditCompletion];

/** A record inserted whole: a request refused or abandoned before anything was forwarded. */
export type FinishedEntry = readonly [open: AuditOpen, completion: AuditCompletion];

/**
 * One commit's outcome: per open and then per finished record, in the order given, its new id
 * or the error that refused that one record (too big, a constraint) while the others were
 * written; and how many completions were refused the same way (their records stay open).
 */
export interface BatchOutcome {
  ids: Array<number | Error>;
  refusedCompletions: number;
}

/** Which file a path named when it was opened; compared later to notice removal or replacement. */
export interface FileIdentity {
  dev: bigint;
  ino: bigint;
}

/** One open SQLite connection to the audit file, with its prepared writes. */
export interface AuditConnection {
  readonly db: Database.Database;
  /** Null for an in-memory database, which cannot be removed. */
  readonly identity: FileIdentity | null;
  readonly statements: Statements;
  /** Read back from SQLite after configuring: synchronous is FULL (or EXTRA), each commit fsynced. */
  readonly fsync: boolean;
  /**
   * A real write that leaves no trace: inserts a record in a savepoint and rolls it back (so a
   * full database fails it, as it fails real inserts), and rewrites the heartbeat row (so the
   * commit reaches the write-ahead log, and a disk that refuses writes fails it). Throws when
   * the log cannot be written.
   */
  probe(now: Date): void;
  /**
   * One transaction: insert every open and every finished record, apply every completion, and
   * keep migration 002's side tables for the records inserted (side-tables.ts; there is no
   * trigger since 003). Throws (and writes nothing) when the file cannot be written; a single
   * bad record is reported in the outcome instead. The only way to insert a record.
   */
  commitBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished?: readonly FinishedEntry[]): BatchOutcome;
}

export interface ConnectOptions {
  clock: () => Date;
  busyTimeoutMs: number;
  /** synchronous=FULL instead of NORMAL: each commit fsyncs the log (--audit-fsync). */
  fsync?: boolean;
}

/** bigint: inode numbers above 2^53 (some network and copy-on-write file systems) stay exact. */
export function identify(file: string): FileIdentity | null {
  const stat = fs.statSync(file, { bigint: true, throwIfNoEntry: false });
  return stat === undefined ? null : { dev: stat.dev, ino: stat.ino };
}

/** True while `file` still names the inode the connection writes to (about 2.5 µs: one stat). */
export function stillAtPath(connection: AuditConnection, file: string): boolean {
  const opened = connection.identity;
  if (opened === null) return true;
  const now = identify(file);
  return now !== null && now.dev === opened.dev && now.ino === opened.ino;
}

/** SQLite's in-memory database: no file, no write-ahead log, one connection. */
export function isInMemory(file: string): boolean {
  return file === ':memory:' || file === '';
}

function configureDatabase(db: Database.Database, busyTimeoutMs: number, fsync: boolean): void {
  // WAL: readers (the admin API, policy replay) never block the proxy's writes.
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode: a committed transaction is in the OS page cache on return, so it survives
  // SIGKILL or a crash of this process; it does NOT survive power loss or a kernel crash (the last
  // transactions may roll back). That is the default guarantee. FULL (--audit-fsync) fsyncs the
  // log at every commit, which extends it to a power cut at the cost of one fsync per batch.
  db.pragma(fsync ? 'synchronous = FULL' : 'synchronous = NORMAL');
  db.pragma(`busy_timeout = ${busyTimeoutMs}`);
  // A checkpoint copies the log into the database and syncs both, which on this write path made
  // the p99 of every request (docs/performance.md). The store checkpoints from a worker thread
  // instead (checkpointer.ts); a connection used without one still checkpoints when it closes.
  db.pragma('wal_autocheckpoint = 0');
}

function insertSql(columns: readonly string[]): string {
  return `INSERT INTO requests (${columns.join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`;
}

function prepareStatements(db: Database.Database) {
  return {
    // Inserts only through commitBatch (which keeps the side tables) or the probe (rolled back).
    insertOpen: db.prepare(insertSql(OPEN_COLUMNS)),
    insertFinished: db.prepare(insertSql([...OPEN_COLUMNS, ...COMPLETION_COLUMNS])),
    // `ended_at_ms IS NULL`: the first completion wins, so a connection that ends after shutdown
    // already closed its record cannot rewrite it, and completing twice is harmless.
    complete: db.prepare(
      `UPDATE requests SET ${COMPLETION_COLUMNS.map((c) => `${c} = @${c}`).join(', ')}
       WHERE id = @id AND ended_at_ms IS NULL`,
    ),
    // MAX: a record a previous run left open may have started after that run's last sign of
    // life (left-open.ts), and a clock set back must not give a negative duration either.
    completeOpen: db.prepare(
      `UPDATE requests SET ended_at_ms = MAX(started_at_ms, @ended_at_ms), error = COALESCE(error, @error)
       WHERE ended_at_ms IS NULL`,
    ),
    heartbeat: db.prepare(
      `INSERT INTO heartbeat (id, at_ms) VALUES (1, ?)
       ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms`,
    ),
    savepoint: db.prepare('SAVEPOINT write_probe'),
    rollbackSavepoint: db.prepare('ROLLBACK TO write_probe'),
    releaseSavepoint: db.prepare('RELEASE write_probe'),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;

function probeWith(db: Database.Database, statements: Statements): (now: Date) => void {
  // The rollback also undoes the sqlite_sequence bump, so a probe never uses up a record id.
  const run = db.transaction((now: Date) => {
    const { open, completion } = probeRecord(now);
    statements.savepoint.run();
    statements.insertFinished.run({ ...openParams(open), ...completionParams(completion) });
    statements.rollbackSavepoint.run();
    statements.releaseSavepoint.run();
    statements.heartbeat.run(now.getTime());
  });
  return (now) => run.immediate(now);
}

/**
 * Each record's insert, and its side-table upkeep on success: the side tables are kept here, not
 * by a trigger (migration 003), so every insert of the store goes through this function.
 */
function inserter(sideTables: SideTableBatch, outcome: BatchOutcome) {
  return (statement: Database.Statement, params: RowParams): void => {
    let id: number;
    try {
      id = Number(statement.run(params).lastInsertRowid);
    } catch (err) {
      // SQLite undid that statement only; the transaction and the other records go on.
      if (!isRecordError(err)) throw err;
      outcome.ids.push(err as Error);
      return;
    }
    sideTables.add(id, params);
    outcome.ids.push(id);
  };
}

function batchWith(db: Database.Database, statements: Statements): AuditConnection['commitBatch'] {
  const sideTables = new SideTableBatch(db);
  const run = db.transaction((opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished: readonly FinishedEntry[]): BatchOutcome => {
    const outcome: BatchOutcome = { ids: [], refusedCompletions: 0 };
    const insert = inserter(sideTables, outcome);
    for (const open of opens) insert(statements.insertOpen, openParams(open));
    for (const [open, completion] of finished) insert(statements.insertFinished, { ...openParams(open), ...completionParams(completion) });
    for (const [id, completion] of completions) {
      try {
        statements.complete.run({ id, ...completionParams(completion) });
      } catch (err) {
        if (!isRecordError(err)) throw err;
        outcome.refusedCompletions += 1;
      }
    }
    // One upsert per key for the whole batch, in the same transaction as the rows.
    sideTables.flush();
    return outcome;
  });
  return (opens, completions, finished = []) => {
    try {
      return run.immediate(opens, completions, finished);
    } catch (err) {
      sideTables.clear();
      throw err;
    }
  };
}

/** Opens (creating the folder and file if missing), configures and migrates the audit file. */
export function connectAudit(file: string, opts: ConnectOptions): AuditConnection {
  if (!isInMemory(file)) fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const db = new Database(file);
  try {
    configureDatabase(db, opts.busyTimeoutMs, opts.fsync === true);
    applyMigrations(db, { clock: opts.clock });
    const statements = prepareStatements(db);
    const identity = isInMemory(file) ? null : identify(file);
    const fsync = (db.pragma('synchronous', { simple: true }) as number) >= 2;
    return { db, identity, statements, fsync, probe: probeWith(db, statements), commitBatch: batchWith(db, statements) };
  } catch (err) {
    db.close();
    throw err;
  }
}

/** Runs `fn` with another busy_timeout, e.g. 0 to probe a locked file without stalling. */
export function withBusyTimeout<T>(db: Database.Database, ms: number, fn: () => T): T {
  const previous = db.pragma('busy_timeout', { simple: true }) as number;
  if (previous === ms) return fn();
  db.pragma(`busy_timeout = ${ms}`);
  try {
    return fn();
  } finally {
    db.pragma(`busy_timeout = ${previous}`);
  }
}

/**
 * Copies the write-ahead log into the database file and empties it; true when every frame was
 * copied. Needed before closing a connection to a renamed or unlinked file: SQLite skips its
 * checkpoint-on-close for a file that has moved (databaseIsUnmoved() in pager.c), and a new
 * database created at the path deletes the -wal it finds there, so without this the last
 * transactions would end up in neither file.
 */
export function checkpointMovedFile(db: Database.Database): boolean {
  try {
    const [result] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number; log: number; checkpointed: number }>;
    return result.busy === 0 && result.log === result.checkpointed;
  } catch {
    return false;
  }
}

/** Closes without throwing: the connection may belong to a file that is full, locked or gone. */
export function closeConnection(db: Database.Database, opts: { optimize: boolean }): void {
  if (!db.open) return;
  try {
    // Recommended before closing a long-lived connection: refreshes the planner's statistics.
    if (opts.optimize) db.pragma('optimize');
  } catch {
    // Statistics are an optimisation; a full or locked file must still be closed.
  }
  db.close();
}
