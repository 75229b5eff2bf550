import type Database from 'better-sqlite3';
import { statement } from './statement-cache';
import { describeError } from './write-health';

/**
 * `serve --retain`: deletes audit records that started longer ago than the retention period.
 *
 * It runs where the writes run (the writer thread in `serve`), in small transactions with a
 * turn of the event loop between them: a batch of opens that arrives meanwhile is committed
 * before the next delete, so a large backlog (the first start with --retain on a big file)
 * delays a request's commit by one delete batch (about 8 ms) at most, never by the whole backlog. The
 * admin API reads on its own connection (WAL), so it never waits for a delete.
 *
 * An open record (ended_at_ms IS NULL: a tunnel still running) is never deleted, however old;
 * it goes at the first pass after it completes. Migration 002's AFTER DELETE trigger keeps the
 * side tables right; first_seen_* keep their entries on purpose ("new destination since..."
 * must not report a host again once its first record has aged out).
 *
 * Freed pages go to SQLite's freelist (auto_vacuum is off) and are reused by new records, so the
 * file stops growing once it holds one retention period; it does not shrink. The checkpointer
 * (checkpointer.ts) copies the deletes' log frames like any other commit.
 */

/**
 * Rows per delete transaction. A delete costs about as much as an insert (seven indexes to
 * update), so a batch holds the writer for as long as that many inserts; a request's commit waits
 * for at most one batch, and 200 rows keep that wait inside a p99 where 1,000 would not (the
 * per-row cost is in docs/performance.md, "Measurements behind the code").
 */
export const PRUNE_BATCH_ROWS = 200;

/** At least once a minute (SPEC §6); a short retention (tests) is enforced twice per period. */
export function pruneIntervalMs(retainMs: number): number {
  return Math.max(1000, Math.min(60_000, Math.floor(retainMs / 2)));
}

/** One pass's outcome, for a log line and a counter. */
export interface PruneReport {
  deleted: number;
  /** Records that started before this (ISO-8601 UTC) were due. */
  cutoff: string;
  batches: number;
  ms: number;
  /** Why the pass stopped early (busy, full, closed); null when it finished. */
  error: string | null;
}

export interface RetentionOptions {
  retainMs: number;
  /** The writer's current connection: read at each batch, the store replaces it after a reopen. */
  db: () => Database.Database;
  now?: () => number;
  batchRows?: number;
  intervalMs?: number;
  /** After every pass that deleted something or failed. */
  onPass?: (report: PruneReport) => void;
}

const DELETE_BATCH = `
  DELETE FROM requests WHERE id IN (
    SELECT id FROM requests
     WHERE started_at_ms < @cutoff AND ended_at_ms IS NOT NULL
     ORDER BY started_at_ms LIMIT @limit)`;

// A minute whose every record is gone has all counts at zero (each record is allowed or denied):
// its row bounds no record any more.
const DELETE_EMPTY_MINUTES = `
  DELETE FROM request_minutes
   WHERE minute < @minute AND allowed = 0 AND denied = 0 AND would_deny = 0`;

/** One transaction: up to `limit` completed records started before `cutoffMs`. */
export function pruneBatch(db: Database.Database, cutoffMs: number, limit: number): number {
  const run = db.transaction(() => statement(db, DELETE_BATCH).run({ cutoff: cutoffMs, limit }).changes);
  return run.immediate();
}

function dropEmptyMinutes(db: Database.Database, cutoffMs: number): void {
  statement(db, DELETE_EMPTY_MINUTES).run({ minute: Math.floor(cutoffMs / 60_000) });
}

export class Retention {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private stopped = false;
  private readonly now: () => number;
  private readonly batchRows: number;

  constructor(private readonly opts: RetentionOptions) {
    this.now = opts.now ?? Date.now;
    this.batchRows = opts.batchRows ?? PRUNE_BATCH_ROWS;
  }

  /** The first pass at once (records past retention at start), then every interval. */
  start(): void {
    if (this.opts.retainMs <= 0 || this.timer !== null) return;
    const interval = this.opts.intervalMs ?? pruneIntervalMs(this.opts.retainMs);
    setImmediate(() => this.pass());
    this.timer = setInterval(() => this.pass(), interval);
    // Retention never keeps a stopping process alive.
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** One pass: batches until one comes back short. A pass still running skips the next tick. */
  private pass(): void {
    if (this.running || this.stopped) return;
    this.running = true;
    const cutoffMs = this.now() - this.opts.retainMs;
    const started = performance.now();
    let deleted = 0;
    let batches = 0;
    const finish = (error: string | null): void => {
      this.running = false;
      if (deleted === 0 && error === null) return;
      const report = { deleted, cutoff: new Date(cutoffMs).toISOString(), batches, ms: Math.round(performance.now() - started), error };
      try {
        this.opts.onPass?.(report);
      } catch {
        // A throwing log callback must not stop retention.
      }
    };
    const step = (): void => {
      if (this.stopped) return finish(null);
      try {
        const db = this.opts.db();
        const n = pruneBatch(db, cutoffMs, this.batchRows);
        deleted += n;
        batches += 1;
        if (n < this.batchRows) {
          if (deleted > 0) dropEmptyMinutes(db, cutoffMs);
          return finish(null);
        }
      } catch (err) {
        // Busy, full or a closed connection: the next tick tries again.
        return finish(describeError(err));
      }
      // Yield: batches and calls that arrived meanwhile are handled before the next delete.
      setImmediate(step);
    };
    step();
  }
}
