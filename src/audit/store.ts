import type Database from 'better-sqlite3';
import { collectCarriedRows, restoreCarriedRows } from './carry-over';
import type { CarriedRows } from './carry-over';
import { Checkpointer } from './checkpointer';
import { checkpointMovedFile, closeConnection, connectAudit, stillAtPath, withBusyTimeout } from './connection';
import type { AuditConnection, BatchOutcome, CompletionEntry, FinishedEntry } from './connection';
import { clipText, completionParams } from './record-params';
import type { AuditCompletion, AuditOpen, AuditWriter } from './record-types';
import { describeError, isRecordError, WriteHealth } from './write-health';
import type { AuditHealth } from './write-health';
import { settingsFrom } from './store-options';
import type { AuditStoreOptions, Settings } from './store-options';

export { clipText, MAX_TEXT_LENGTH } from './record-params';
export { AuditUnavailableError } from './write-health';
export type { AuditHealth, AuditStateChange } from './write-health';
export { AUDIT_STORE_DEFAULTS } from './store-options';
export type { AuditStoreOptions } from './store-options';
export type { BatchOutcome, CompletionEntry, FinishedEntry } from './connection';

/**
 * The SQLite audit log. No method here receives credentials: the proxy passes the proxy
 * username (`user`) but never a password or a Proxy-Authorization value, and nothing in this
 * file may be widened to take one.
 *
 * When the file cannot be written (full, locked, unreadable), open() and record() throw, so the
 * proxy answers 503 (SPEC §3, fail closed); after the first failure they throw at once without
 * touching the file, until a background probe write succeeds. complete() does not throw then:
 * the completion is held in memory (bounded) and written when writes work again. A file that is
 * removed or renamed while open is noticed (inode check) and reopened at its path.
 */
export interface AuditStore extends AuditWriter {
  readonly file: string;
  /**
   * The current connection, for read queries (query.ts). Read it at each use, do not keep it:
   * it is replaced when the file is reopened after a removal. Writes go through the methods.
   */
  readonly db: Database.Database;
  /**
   * One transaction for many opens, completions and finished records (group-commit.ts). Throws
   * when the file cannot be written; the completions are then held, as complete() holds them.
   */
  commitBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished?: readonly FinishedEntry[]): BatchOutcome;
  /**
   * Ends every record still open (graceful shutdown; at start, those a previous run left open),
   * never before its own start; returns how many were ended.
   */
  completeOpenRecords(endedAt: Date, error: string): number;
  /** The completions held in memory because they could not be written (a shutdown saves them). */
  heldCompletions(): CompletionEntry[];
  /** A real probe write now (for /readyz); updates health(). Never throws. */
  isWritable(): boolean;
  /** The last known state, without touching the file (for logs and metrics). */
  health(): AuditHealth;
  close(): void;
}

class SqliteAuditStore implements AuditStore {
  private connection: AuditConnection | null;
  private checkpointer: Checkpointer | null;
  /** What `db` returns while no connection is open (a failed reopen): closed, so reads fail. */
  private lastDb: Database.Database;
  private readonly state: WriteHealth;
  private readonly pending = new Map<number, AuditCompletion>();
  private dropped = 0;
  /** Ids inserted or completed since the file was last seen at its path (see carry-over.ts). */
  private readonly touched = new Set<number>();
  /** Rows read from a removed file that still have to reach the new one. */
  private carried: CarriedRows | null = null;
  private fileCheckedAt = performance.now();
  private closed = false;

  constructor(
    readonly file: string,
    private readonly settings: Settings,
    onStateChange: AuditStoreOptions['onStateChange'],
    private readonly beforeReopen: () => void = () => undefined,
  ) {
    this.connection = connectAudit(file, settings);
    this.lastDb = this.connection.db;
    this.checkpointer = this.startCheckpointer(this.connection);
    this.state = new WriteHealth({
      clock: settings.clock,
      probeIntervalMs: settings.probeIntervalMs,
      probe: () => void this.probe(false),
      counts: () => ({ pendingCompletions: this.pending.size, droppedCompletions: this.dropped, fsync: this.connection?.fsync ?? settings.fsync }),
      onStateChange,
    });
  }

  get db(): Database.Database {
    return this.connection?.db ?? this.lastDb;
  }

  open(record: AuditOpen): number {
    return this.insert((c) => c.commitBatch([record], []));
  }

  record(record: AuditOpen, completion: AuditCompletion): number {
    return this.insert((c) => c.commitBatch([], [], [[record, completion]]));
  }

  complete(id: number, completion: AuditCompletion): void {
    try {
      this.write((c) => c.statements.complete.run({ id, ...completionParams(completion) }));
      this.touched.add(id);
    } catch (err) {
      if (this.closed || isRecordError(err)) throw err;
      this.hold(id, completion);
    }
  }

  commitBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished: readonly FinishedEntry[] = []): BatchOutcome {
    let outcome: BatchOutcome;
    try {
      outcome = this.write((c) => c.commitBatch(opens, completions, finished));
    } catch (err) {
      if (!this.closed) for (const [id, completion] of completions) this.hold(id, completion);
      throw err;
    }
    this.dropped += outcome.refusedCompletions;
    for (const id of outcome.ids) if (typeof id === 'number') this.touched.add(id);
    for (const [id] of completions) this.touched.add(id);
    return outcome;
  }

  completeOpenRecords(endedAt: Date, error: string): number {
    // One real attempt first: it writes held completions, so their real byte counts win.
    this.probe(true);
    return this.write((c) => c.statements.completeOpen.run({ ended_at_ms: endedAt.getTime(), error: clipText(error) }).changes);
  }

  heldCompletions(): CompletionEntry[] {
    return [...this.pending];
  }

  isWritable(): boolean {
    // A failing store probes without waiting for locks, so /readyz cannot stall the proxy.
    return this.probe(!this.state.failing);
  }

  health(): AuditHealth {
    return this.state.snapshot();
  }

  /** Known state only, no file access: cheap enough for every request. */
  writable(): boolean {
    return !this.state.failing;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.state.stop();
    this.checkpointer?.stop();
    const connection = this.connection;
    if (connection === null) return;
    try {
      this.flushPending(connection);
    } catch {
      // Still failing: the held completions are lost, and their records stay open.
    }
    closeConnection(connection.db, { optimize: true });
  }

  /** None for an in-memory database: it has no write-ahead log. */
  private startCheckpointer(connection: AuditConnection): Checkpointer | null {
    if (connection.identity === null) return null;
    return new Checkpointer(this.file, this.settings.checkpoint);
  }

  /** One record, as a batch of one: commitBatch is the insert that keeps the side tables. */
  private insert(run: (c: AuditConnection) => BatchOutcome): number {
    const [id] = this.write(run).ids;
    // A record SQLite refused (too big, a constraint): the caller's error, the file is fine.
    if (typeof id !== 'number') throw id;
    this.touched.add(id);
    return id;
  }

  /** Every write goes through here: file check, fail fast while failing, note a failure. */
  private write<T>(run: (c: AuditConnection) => T): T {
    if (this.closed) throw new Error('the audit store is closed');
    this.checkFile(false);
    const connection = this.connection;
    if (this.state.failing || connection === null) throw this.state.unavailable();
    try {
      return run(connection);
    } catch (err) {
      if (!isRecordError(err)) this.state.fail(err);
      throw err;
    }
  }

  /** A probe write, then the held completions; the only way from failing back to writable. */
  private probe(waitForLocks: boolean): boolean {
    if (this.closed) return false;
    this.checkFile(true);
    const connection = this.connection;
    if (connection === null) return false;
    let flushed: number;
    try {
      flushed = withBusyTimeout(connection.db, waitForLocks ? this.settings.busyTimeoutMs : 0, () => {
        connection.probe(this.settings.clock());
        return this.flushPending(connection);
      });
    } catch (err) {
      this.state.fail(err);
      return false;
    }
    const dropped = this.dropped > 0 ? `, ${this.dropped} dropped since start` : '';
    this.state.recovered(`; wrote ${flushed} held completions${dropped}`);
    return true;
  }

  private hold(id: number, completion: AuditCompletion): void {
    // The first completion wins, as in the UPDATE's `ended_at_ms IS NULL`.
    if (this.pending.has(id)) return;
    if (this.pending.size >= this.settings.maxPendingCompletions) {
      const oldest = this.pending.keys().next();
      if (!oldest.done) this.pending.delete(oldest.value);
      this.dropped += 1;
    }
    this.pending.set(id, completion);
  }

  private flushPending(connection: AuditConnection): number {
    if (this.pending.size === 0) return 0;
    // One bad completion must not hold back the others forever: it is refused and counted.
    const { refusedCompletions } = connection.commitBatch([], [...this.pending]);
    this.dropped += refusedCompletions;
    const written = this.pending.size - refusedCompletions;
    for (const id of this.pending.keys()) this.touched.add(id);
    this.pending.clear();
    return written;
  }

  /** At most once per fileCheckIntervalMs (unless forced): is the path still our file? */
  private checkFile(force: boolean): void {
    const now = performance.now();
    if (!force && now - this.fileCheckedAt < this.settings.fileCheckIntervalMs) return;
    this.fileCheckedAt = now;
    const connection = this.connection;
    if (connection !== null && stillAtPath(connection, this.file)) {
      this.touched.clear();
      return;
    }
    this.reopen(connection);
  }

  /**
   * SQLite keeps writing to a removed file's inode, so records would silently vanish with it.
   * Checkpoint into the old inode (so a renamed file keeps everything), close it, and open the
   * path afresh, carrying over what would otherwise be lost.
   */
  private reopen(old: AuditConnection | null): void {
    let checkpointed = true;
    if (old !== null) {
      try {
        this.carried = collectCarriedRows(old.db, this.touched);
      } catch {
        // Unreadable: nothing can be carried, but the new file must still be opened.
      }
      this.connection = null;
      this.touched.clear();
      this.checkpointer?.stop();
      this.checkpointer = null;
      checkpointed = checkpointMovedFile(old.db);
      // Before opening the path again: the new connection must not share the old -wal/-shm.
      closeConnection(old.db, { optimize: false });
    }
    this.beforeReopen();
    let fresh: AuditConnection | null = null;
    let restored = 0;
    try {
      fresh = connectAudit(this.file, this.settings);
      if (this.carried !== null) restored = restoreCarriedRows(fresh.db, this.carried);
    } catch (err) {
      if (fresh !== null) closeConnection(fresh.db, { optimize: false });
      this.state.fail(new Error(`cannot reopen ${this.file}: ${describeError(err)}`));
      return;
    }
    const lastId = this.carried?.lastId ?? 0;
    this.connection = fresh;
    this.lastDb = fresh.db;
    this.checkpointer = this.startCheckpointer(fresh);
    this.carried = null;
    this.state.emit(
      'reopened',
      `audit database ${this.file} was removed or replaced while open; reopened it at that path ` +
        `(${restored} open or recent records carried over, ids continue after ${lastId})` +
        (checkpointed ? '' : '; the last transactions could not be copied into the old file'),
    );
  }
}

/**
 * Opens (creating the folder and file if missing) and migrates the audit database. Every write
 * is committed on return (see connection.ts): one statement, or one batch in commitBatch().
 */
export function openAuditStore(file: string, opts: AuditStoreOptions = {}): AuditStore {
  return new SqliteAuditStore(file, settingsFrom(opts), opts.onStateChange, opts.beforeReopen);
}
