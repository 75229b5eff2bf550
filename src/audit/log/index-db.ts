import type Database from 'better-sqlite3';
import { connectAudit } from '../connection';
import { COMPLETION_COLUMNS, completionParams, OPEN_COLUMNS, openParams } from '../record-params';
import type { RowParams } from '../record-params';
import { isRecordError } from '../write-health';
import type { StepPlan } from './index-step';
import type { LogPosition } from './segment-reader';
import { SideTableBatch } from './side-tables';

/**
 * The SQLite side of the index consumer: the audit file (same schema and migrations as the store,
 * so the admin API reads it unchanged), the position stored with the rows, and one step applied
 * as one transaction.
 */

/** What one applied step changed. */
export interface ApplyOutcome {
  inserted: number;
  completed: number;
  /** Records SQLite refused one by one (a constraint): skipped so the index does not stall. */
  refused: Array<{ id: number; error: Error }>;
}

const OPEN_ROW: RowParams = { ended_at_ms: null, status: null, bytes_up: 0, bytes_down: 0, error: null };
const ALL_COLUMNS = ['id', ...OPEN_COLUMNS, ...COMPLETION_COLUMNS];

function prepare(db: Database.Database) {
  return {
    // OR IGNORE: a row already there (an entry applied before, or a store taken over) stays.
    insert: db.prepare(`INSERT OR IGNORE INTO requests (${ALL_COLUMNS.join(', ')}) VALUES (${ALL_COLUMNS.map((c) => `@${c}`).join(', ')})`),
    // As the store's: the first completion wins, and completing twice is harmless.
    complete: db.prepare(`UPDATE requests SET ${COMPLETION_COLUMNS.map((c) => `${c} = @${c}`).join(', ')}
      WHERE id = @id AND ended_at_ms IS NULL`),
    readPosition: db.prepare('SELECT segment, byte_offset AS offset FROM index_position WHERE id = 1'),
    // Only forward: a second consumer of the same file (a writer thread's catch-up at a restart)
    // that is behind must not move the position back over entries retention has since removed.
    writePosition: db.prepare(`INSERT INTO index_position (id, segment, byte_offset) VALUES (1, ?, ?)
      ON CONFLICT (id) DO UPDATE SET segment = excluded.segment, byte_offset = excluded.byte_offset
      WHERE (excluded.segment, excluded.byte_offset) > (index_position.segment, index_position.byte_offset)`),
    // AUTOINCREMENT's counter is above every id the store ever used, deleted rows' included.
    firstFreeId: db.prepare(`SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'requests'), 0),
      COALESCE((SELECT max(id) FROM requests), 0)) + 1`).pluck(),
  };
}

export class IndexDb {
  readonly db: Database.Database;
  private readonly statements: ReturnType<typeof prepare>;
  private readonly sideTables: SideTableBatch;
  private readonly applyTransaction: (plan: StepPlan, next: LogPosition) => ApplyOutcome;

  /**
   * Opens (creating if missing) and migrates the audit file, as the store does. SQLite's own
   * checkpoint is turned back on: the consumer is off the request path, and a file with no
   * store attached has no checkpointer thread.
   */
  constructor(file: string, opts: { clock: () => Date; busyTimeoutMs: number }) {
    this.db = connectAudit(file, opts).db;
    this.db.pragma('wal_autocheckpoint = 1000');
    this.statements = prepare(this.db);
    this.sideTables = new SideTableBatch(this.db);
    const run = this.db.transaction((plan: StepPlan, next: LogPosition) => this.applyInTransaction(plan, next));
    this.applyTransaction = (plan, next) => run.immediate(plan, next);
  }

  /** Where the next entry to apply begins; the log's start when nothing was applied yet. */
  position(): LogPosition {
    const row = this.statements.readPosition.get() as LogPosition | undefined;
    return row ?? { segment: 0, offset: 0 };
  }

  /** The lowest id the log may hand out without reusing one of this file's (SegmentLog firstId). */
  firstFreeId(): number {
    return this.statements.firstFreeId.get() as number;
  }

  /** The step's rows, its side-table upserts and `next` in one transaction: all or nothing. */
  apply(plan: StepPlan, next: LogPosition): ApplyOutcome {
    try {
      return this.applyTransaction(plan, next);
    } catch (err) {
      this.sideTables.clear();
      throw err;
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private applyInTransaction(plan: StepPlan, next: LogPosition): ApplyOutcome {
    const outcome: ApplyOutcome = { inserted: 0, completed: 0, refused: [] };
    for (const row of plan.rows) {
      const params = { id: row.id, ...openParams(row.open), ...(row.completion === null ? OPEN_ROW : completionParams(row.completion)) };
      const changes = this.guarded(row.id, outcome, () => this.statements.insert.run(params).changes);
      if (changes === 1) {
        outcome.inserted += 1;
        this.sideTables.add(row.id, params);
      } else if (changes === 0 && row.completion !== null) {
        // Already there, perhaps still open: the completion must not be lost with the insert.
        outcome.completed += this.complete(row.id, completionParams(row.completion), outcome);
      }
    }
    for (const [id, completion] of plan.completions) outcome.completed += this.complete(id, completionParams(completion), outcome);
    this.sideTables.flush();
    this.statements.writePosition.run(next.segment, next.offset);
    return outcome;
  }

  private complete(id: number, params: RowParams, outcome: ApplyOutcome): number {
    return this.guarded(id, outcome, () => this.statements.complete.run({ id, ...params }).changes) ?? 0;
  }

  /** A refused record is reported and skipped (SQLite undid that statement only); other errors abort the step. */
  private guarded(id: number, outcome: ApplyOutcome, write: () => number): number | null {
    try {
      return write();
    } catch (err) {
      if (!isRecordError(err)) throw err;
      outcome.refused.push({ id, error: err as Error });
      return null;
    }
  }
}
