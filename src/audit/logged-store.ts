import type Database from 'better-sqlite3';
import type { BatchOutcome, CompletionEntry, FinishedEntry } from './connection';
import type { IndexStatus } from './index-protocol';
import { IndexThread } from './index-thread';
import type { IndexThreadOptions } from './index-thread';
import type { AuditOpen } from './record-types';
import type { AuditHealth } from './write-health';
import { WriterThread } from './writer-thread';
import type { ServingStore, WriterThreadOptions } from './writer-thread';

/**
 * `serve`'s audit store for a file (issue 14): the writer thread appends to the log, the index
 * thread follows it into the SQLite file that the admin API reads (this thread's read connection,
 * the writer thread's `db`). Writes and their failures are the writer's; the index only lags.
 */
export class LoggedStore implements ServingStore {
  private readonly writer: WriterThread;
  private readonly index: IndexThread;

  constructor(
    readonly file: string,
    options: WriterThreadOptions & Pick<IndexThreadOptions, 'onDamage' | 'onSegmentsDropped'>,
  ) {
    const { onDamage, onSegmentsDropped, ...writerOptions } = options;
    // The writer first: it takes over an older file and applies what the last run appended.
    this.writer = new WriterThread(file, { ...writerOptions, log: true, onPruned: undefined });
    this.index = new IndexThread(file, { retainMs: options.retainMs, onPruned: options.onPruned, onDamage, onSegmentsDropped });
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

  commitBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished?: readonly FinishedEntry[]): Promise<BatchOutcome> {
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
