import type { AuditCompletion, AuditOpen } from '../record-types';
import type { LogEntry } from './entry-codec';
import { listSegments } from './segment-files';
import { readLog } from './segment-reader';
import type { LogDamage, LogPosition } from './segment-reader';

/**
 * One step of the index consumer, before any SQL: read a batch of entries from the log, then pair
 * them so that a record opened and completed within the batch becomes one row, written once,
 * already complete (issue 14: an INSERT and a later UPDATE cost about twice one INSERT).
 */

export interface StepRead {
  entries: LogEntry[];
  /** Where each entry begins (a follower that stops within a step resumes there). */
  positions: LogPosition[];
  /** Damage to count and skip: never applied, reported once (the position moves past it). */
  damage: LogDamage[];
  /** Where the next step starts; stored with the step's rows. */
  next: LogPosition;
  /**
   * With `keepPayloads`: every payload read, checkpoints included, copied, in log order (the
   * shipper's copy of the chain, fleet/pg-ship.ts); else empty.
   */
  payloads: Buffer[];
}

/**
 * Up to `max` entries from `from`. Damage reaching the end of the newest segment may be a batch
 * the writer is still writing (segment-reader.ts), so the read stops before it and tries again
 * next step. Once a newer segment exists, the writer has left that one for good (it starts the
 * next segment only after its last write returned, or after cutting a failed one back), so damage
 * at its end is real: counted and skipped. `newest` is read before the log is, for that reason.
 */
export function readStep(dir: string, from: LogPosition, max: number, keepPayloads = false): StepRead {
  const newest = listSegments(dir).at(-1)?.sequence ?? 0;
  const read: StepRead = { entries: [], positions: [], damage: [], next: from, payloads: [] };
  for (const item of readLog(dir, from)) {
    if (item.kind === 'damage') {
      const { damage } = item;
      if (damage.toEnd && damage.segment >= newest) break;
      read.damage.push(damage);
      read.next = { segment: damage.segment, offset: damage.offset + damage.length };
      continue;
    }
    if (keepPayloads) read.payloads.push(Buffer.from(item.payload));
    if (item.kind === 'checkpoint') {
      read.next = item.next;
      continue;
    }
    read.entries.push(item.entry);
    read.positions.push(item.position);
    read.next = item.next;
    if (read.entries.length >= max) break;
  }
  return read;
}

/** A row to insert: completed when its completion was in the same step, else open (null). */
export interface RowToInsert {
  id: number;
  open: AuditOpen;
  completion: AuditCompletion | null;
}

export interface StepPlan {
  rows: RowToInsert[];
  /** Completions of records inserted by an earlier step (or kept from before the log). */
  completions: Array<readonly [id: number, completion: AuditCompletion]>;
}

/**
 * Pairs opens with their completions. Rows keep log order, which is id order (ids are assigned at
 * append). A second completion of a row already completed here is dropped: the first one wins, as
 * the store's `ended_at_ms IS NULL` update makes it win.
 */
export function planStep(entries: readonly LogEntry[]): StepPlan {
  const plan: StepPlan = { rows: [], completions: [] };
  const opened = new Map<number, RowToInsert>();
  for (const entry of entries) {
    if (entry.type === 'complete') {
      const row = opened.get(entry.id);
      if (row === undefined) plan.completions.push([entry.id, entry.completion]);
      else if (row.completion === null) row.completion = entry.completion;
      continue;
    }
    const row: RowToInsert = { id: entry.id, open: entry.open, completion: entry.type === 'finished' ? entry.completion : null };
    plan.rows.push(row);
    if (entry.type === 'open') opened.set(entry.id, row);
  }
  return plan;
}
