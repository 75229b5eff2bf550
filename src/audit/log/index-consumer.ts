import { IndexDb } from './index-db';
import { measureLag } from './index-lag';
import type { IndexLag } from './index-lag';
import { planStep, readStep } from './index-step';
import type { LogDamage, LogPosition } from './segment-reader';

/**
 * The SQLite index of the audit log (issue 14): follows the log from the position stored in the
 * audit file and writes the `requests` table and its side tables, which the admin API reads.
 *
 * - Idempotent by log position: a step's rows and the position after them commit together, so a
 *   crash between steps re-reads exactly the entries not yet applied, and nothing twice.
 * - Each short-lived record is written once: an open whose completion is in the same step is one
 *   INSERT of the completed row (index-step.ts). Steps are large (up to `maxBatchEntries`) and
 *   run every `intervalMs`, so requests shorter than that mostly pair up; a step takes whatever
 *   arrived since the last one, so an open record shows as open within about `intervalMs` plus
 *   one step's time (the 1 s bound of issue 14 holds with the defaults).
 * - Side tables are kept per batch, one upsert per key (side-tables.ts).
 * - A lost audit file is rebuilt from the oldest segment retention kept: a new file has no
 *   position, so reading starts at the log's beginning.
 * - Damage the reader reports is counted, passed to `onDamage` and skipped, never applied.
 */
export interface IndexConsumerOptions {
  /** The audit file the admin API reads (--db). */
  file: string;
  /** The log's folder (auditLogDir(file)). */
  logDir: string;
  /** Entries per step, that is per SQLite transaction. */
  maxBatchEntries?: number;
  /** The pause between steps once caught up. */
  intervalMs?: number;
  clock?: () => Date;
  busyTimeoutMs?: number;
  onDamage?: (damage: LogDamage) => void;
  /** A record SQLite refused on its own (a constraint): skipped, so the index does not stall. */
  onRecordRefused?: (id: number, error: Error) => void;
  /** A step that failed as a whole (full disk, lock): retried at the next interval. */
  onError?: (error: unknown) => void;
}

export const INDEX_CONSUMER_DEFAULTS = Object.freeze({ maxBatchEntries: 5000, intervalMs: 200, busyTimeoutMs: 5000 });

export interface StepResult {
  entries: number;
  inserted: number;
  completed: number;
  damaged: number;
}

/** Running totals since the consumer was opened, for logs and metrics. */
export interface IndexCounters {
  entriesApplied: number;
  recordsInserted: number;
  damagedRegions: number;
  damagedBytes: number;
  refusedRecords: number;
}

export class IndexConsumer {
  readonly counters: IndexCounters = { entriesApplied: 0, recordsInserted: 0, damagedRegions: 0, damagedBytes: 0, refusedRecords: 0 };
  private readonly index: IndexDb;
  private readonly maxBatch: number;
  private readonly intervalMs: number;
  private readonly clock: () => Date;
  private at: LogPosition;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly options: IndexConsumerOptions) {
    this.maxBatch = options.maxBatchEntries ?? INDEX_CONSUMER_DEFAULTS.maxBatchEntries;
    this.intervalMs = options.intervalMs ?? INDEX_CONSUMER_DEFAULTS.intervalMs;
    this.clock = options.clock ?? (() => new Date());
    this.index = new IndexDb(options.file, { clock: this.clock, busyTimeoutMs: options.busyTimeoutMs ?? INDEX_CONSUMER_DEFAULTS.busyTimeoutMs });
    this.at = this.index.position();
  }

  /** The audit file's connection, for reads (the admin API's queries). */
  get db(): IndexDb['db'] {
    return this.index.db;
  }

  /** Where the next entry to apply begins. */
  position(): LogPosition {
    return this.at;
  }

  /**
   * The floor for the log's ids (SegmentLog `firstId`): above every id of this file, so a store
   * written before the log existed is taken over with its ids, none handed out again.
   */
  firstFreeId(): number {
    return this.index.firstFreeId();
  }

  /** Reads and applies one batch; throws (applying nothing) when the file cannot be written. */
  step(): StepResult {
    const read = readStep(this.options.logDir, this.at, this.maxBatch);
    if (read.entries.length === 0 && read.damage.length === 0) return { entries: 0, inserted: 0, completed: 0, damaged: 0 };
    const outcome = this.index.apply(planStep(read.entries), read.next);
    this.at = read.next;
    this.count(read.entries.length, outcome.inserted, read.damage);
    for (const { id, error } of outcome.refused) this.options.onRecordRefused?.(id, error);
    this.counters.refusedRecords += outcome.refused.length;
    return { entries: read.entries.length, inserted: outcome.inserted, completed: outcome.completed, damaged: read.damage.length };
  }

  /** Steps until the log's end as it is now; returns the entries applied. Bounded by the log. */
  catchUp(): number {
    let applied = 0;
    for (;;) {
      const result = this.step();
      applied += result.entries;
      if (result.entries < this.maxBatch) return applied;
    }
  }

  /**
   * Follows the log: one step per timer tick, the next at once when a step was full (a backlog),
   * after `intervalMs` otherwise. One step per tick lets the event loop run between steps.
   * The timer does not keep the process alive.
   */
  follow(): void {
    if (this.timer !== null) return;
    const tick = (): void => {
      let full = false;
      try {
        full = this.step().entries >= this.maxBatch;
      } catch (err) {
        this.options.onError?.(err);
      }
      if (this.timer !== null) this.timer = setTimeout(tick, full ? 0 : this.intervalMs).unref();
    };
    this.timer = setTimeout(tick, 0).unref();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** How far behind the log the index is (reads the unapplied part's entry heads). */
  lag(): IndexLag {
    return measureLag(this.options.logDir, this.at, this.clock());
  }

  close(): void {
    this.stop();
    this.index.close();
  }

  private count(entries: number, inserted: number, damage: readonly LogDamage[]): void {
    this.counters.entriesApplied += entries;
    this.counters.recordsInserted += inserted;
    for (const d of damage) {
      this.counters.damagedRegions += 1;
      this.counters.damagedBytes += d.length;
      this.options.onDamage?.(d);
    }
  }
}
