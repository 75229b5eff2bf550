import type Database from 'better-sqlite3';
import type { BatchOutcome, CompletionEntry, FinishedEntry } from './connection';
import type { IndexStatus } from './index-protocol';
import { IndexThread } from './index-thread';
import type { IndexThreadOptions } from './index-thread';
import type { AuditOpen } from './record-types';
import type { PreparedEntry } from './log/entry-codec';
import type { NumberedLog } from './group-commit';
import type { AuditChainHead, AuditHealth } from './write-health';
import { LogAuditStore } from './log-store';
import { openReader, WriterThread } from './writer-thread';
import type { ServingStore, WriterThreadOptions } from './writer-thread';

/** What appends: the writer thread, or the log store itself on this thread (see the constructor). */
type LogWriter = Omit<ServingStore, 'file' | 'db'>;

/**
 * `serve`'s audit store for a file (issue 14): the log is appended to, and the index thread
 * follows it into the SQLite file that the admin API reads through a connection of its own.
 * Writes and their failures are the writer's; the index only lags.
 */
export class LoggedStore implements ServingStore {
  private readonly writer: LogWriter;
  private readonly index: IndexThread;
  /** The admin API's reads; the writer thread has one of its own, used under --audit-fsync. */
  private readonly reader: () => Database.Database;
  private readonly closeReader: () => void;
  /** Workers' encoded entries, appended as they came: without --audit-fsync only (the writer is here then). */
  readonly commitPrepared?: (entries: readonly PreparedEntry[]) => BatchOutcome;
  /** The log store itself, for workers that give their records ids (without --audit-fsync only). */
  readonly numbered?: NumberedLog;
  /** Runs before every index sync: `--workers` brings the records workers spooled into the log first. */
  private syncBarrier: (() => Promise<void>) | null = null;

  constructor(
    readonly file: string,
    options: WriterThreadOptions & Pick<IndexThreadOptions, 'onDamage' | 'onSegmentsDropped' | 'onFailed' | 'waitForShipping' | 'accessPositionFile'>,
  ) {
    const { onDamage, onSegmentsDropped, onFailed, waitForShipping, accessPositionFile, ...writerOptions } = options;
    // The writer first: it takes over an older file and applies what the last run appended.
    // With --audit-fsync each batch waits for the disk (fdatasync): that wait runs on the writer
    // thread, so it never holds up relaying. Without it an append is a write() into the page
    // cache, made here (issue 14: posting it to a thread cost more than the write itself).
    if (options.fsync === true) {
      const thread = new WriterThread(file, { ...writerOptions, log: true, onPruned: undefined });
      this.writer = thread;
      this.reader = () => thread.db;
      this.closeReader = () => undefined;
    } else {
      const store = new LogAuditStore(file, writerOptions, options.retainMs ?? 0);
      this.writer = store;
      this.commitPrepared = (entries) => store.commitPrepared(entries);
      this.numbered = store;
      const reader = openReader(file);
      this.reader = () => reader;
      this.closeReader = () => reader.close();
    }
    this.index = new IndexThread(file, { retainMs: options.retainMs, onPruned: options.onPruned, onDamage, onSegmentsDropped, onFailed, waitForShipping, accessPositionFile });
  }

  get db(): Database.Database {
    return this.reader();
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

  head(): AuditChainHead | null {
    return this.writer.head?.() ?? null;
  }

  completeOpenRecords(endedAt: Date, error: string): number {
    return this.writer.completeOpenRecords(endedAt, error);
  }

  heldCompletions(): CompletionEntry[] {
    return this.writer.heldCompletions();
  }

  /** The admin API's read barrier: true once every answered batch is in the index. */
  async syncIndex(): Promise<boolean> {
    if (this.syncBarrier !== null) await this.syncBarrier();
    return this.index.sync();
  }

  /** What must reach the log before an index sync (the workers' spooled records: cluster/pool.ts). */
  setSyncBarrier(barrier: () => Promise<void>): void {
    this.syncBarrier = barrier;
  }

  indexStatus(): IndexStatus {
    return this.index.status();
  }

  /** Shutdown: the index applies the last completions and closes its file; then close(). */
  closeIndex(): Promise<void> {
    return this.index.close();
  }

  close(): void {
    this.closeReader();
    this.writer.close();
  }
}
