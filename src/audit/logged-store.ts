import type Database from 'better-sqlite3';
import type { BatchOutcome, CompletionEntry, FinishedEntry } from './connection';
import type { IndexStatus } from './index-protocol';
import { IndexThread } from './index-thread';
import type { IndexThreadOptions } from './index-thread';
import type { AuditOpen } from './record-types';
import type { AuditHealth } from './write-health';
import { LogAuditStore } from './log-store';
import { openReader, WriterThread } from './writer-thread';
import type { ServingStore, WriterThreadOptions } from './writer-thread';

/**
 * `serve`'s audit store for a file (issue 14): the writer thread appends to the log, the index
 * thread follows it into the SQLite file that the admin API reads (this thread's read connection,
 * the writer thread's `db`). Writes and their failures are the writer's; the index only lags.
 */
/** What appends: the writer thread, or the log on this thread (see the constructor). */
type LogWriter = Omit<ServingStore, 'file'>;

/**
 * The log appended to on this thread: a write() of one batch into the page cache, a few
 * microseconds, cheaper than posting the batch to another thread and waiting for its answer.
 * Reads go through a connection of their own, as with the writer thread.
 */
class LocalLogWriter implements LogWriter {
  private readonly store: LogAuditStore;
  readonly db: Database.Database;

  constructor(file: string, options: WriterThreadOptions) {
    this.store = new LogAuditStore(file, options, options.retainMs ?? 0);
    this.db = openReader(file);
  }

  writable(): boolean {
    return this.store.writable();
  }

  health(): AuditHealth {
    return this.store.health();
  }

  commitBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished: readonly FinishedEntry[] = []): BatchOutcome {
    return this.store.commitBatch(opens, completions, finished);
  }

  isWritable(): boolean {
    return this.store.isWritable();
  }

  completeOpenRecords(endedAt: Date, error: string): number {
    return this.store.completeOpenRecords(endedAt, error);
  }

  heldCompletions(): CompletionEntry[] {
    return this.store.heldCompletions();
  }

  close(): void {
    this.db.close();
    this.store.close();
  }
}

export class LoggedStore implements ServingStore {
  private readonly writer: LogWriter;
  private readonly index: IndexThread;

  constructor(
    readonly file: string,
    options: WriterThreadOptions & Pick<IndexThreadOptions, 'onDamage' | 'onSegmentsDropped' | 'onFailed'>,
  ) {
    const { onDamage, onSegmentsDropped, onFailed, ...writerOptions } = options;
    // The writer first: it takes over an older file and applies what the last run appended.
    // With --audit-fsync each batch waits for the disk (fdatasync): that wait runs on the writer
    // thread, so it never holds up relaying. Without it an append is a write() into the page
    // cache, made here (issue 14: posting it to a thread cost more than the write itself).
    this.writer = options.fsync === true
      ? new WriterThread(file, { ...writerOptions, log: true, onPruned: undefined })
      : new LocalLogWriter(file, writerOptions);
    this.index = new IndexThread(file, { retainMs: options.retainMs, onPruned: options.onPruned, onDamage, onSegmentsDropped, onFailed });
  }

  get db(): Database.Database {
    return this.writer.db;
  }

  writable(): boolean {
    return this.writer.writable();
  }

  health(): AuditHealth {
    return this.writer.health();
  }

  commitBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished: readonly FinishedEntry[] = []): BatchOutcome | Promise<BatchOutcome> {
    return this.writer.commitBatch(opens, completions, finished);
  }

  isWritable(): boolean {
    return this.writer.isWritable();
  }

  completeOpenRecords(endedAt: Date, error: string): number {
    return this.writer.completeOpenRecords(endedAt, error);
  }

  heldCompletions(): CompletionEntry[] {
    return this.writer.heldCompletions();
  }

  /** The admin API's read barrier: true once every answered batch is in the index. */
  syncIndex(): Promise<boolean> {
    return this.index.sync();
  }

  indexStatus(): IndexStatus {
    return this.index.status();
  }

  /** Shutdown: the index applies the last completions and closes its file; then close(). */
  closeIndex(): Promise<void> {
    return this.index.close();
  }

  close(): void {
    this.writer.close();
  }
}
