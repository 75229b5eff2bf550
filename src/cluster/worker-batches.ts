import type net from 'node:net';
import type { BatchOutcome, CompletionEntry, FinishedEntry } from '../audit/connection';
import type { BatchTarget } from '../audit/group-commit';
import { decodePrepared } from '../audit/log/entry-decode';
import type { PreparedEntry } from '../audit/log/entry-codec';
import type { AuditOpen } from '../audit/record-types';
import { RecordEnd } from '../audit/record-types';
import { idsToRemote, toRemote } from '../audit/remote-error';
import { AuditUnavailableError } from '../audit/write-health';
import type { Logger } from '../log';
import { decodeBatchFrame, encodeAnswerFrame, FrameReader } from './wire';
import type { BatchAnswer } from './wire';

/** What batching keeps of a worker process (pool.ts's Member). */
export interface BatchMember {
  readonly slot: number;
  /** Its audit channel (wire.ts): batches in, answers out. */
  readonly channel: net.Socket;
  /** Records this process opened or finished (its share of the load, in /readyz). */
  records: number;
  /** Record ids it opened and has not completed: completed for it when it dies. */
  readonly open: Set<number>;
  /** Its batches being committed: their ids count before the process's death is handled. */
  readonly committing: Set<Promise<void>>;
  /** Its death was handled: what it left open was completed (the ids are kept in endedBySettle). */
  settled: boolean;
  readonly endedBySettle: Set<number>;
}

/**
 * The primary's side of the workers' records, as the pool uses it: merged from their spools
 * (block-merge.ts) or committed for them on a round trip (below).
 */
export interface WorkerRecords {
  /** Reads the member's channel; `broken` when what it sends does not parse. */
  attach(member: BatchMember, broken: () => void, spoolName: string): void;
  /** The worker is gone: its last records in, what it left open completed. */
  settle(member: BatchMember): Promise<void>;
  /** The admin API's read barrier: what every worker answered is in the log when it resolves. */
  flush(): Promise<void>;
}

/** A worker's batch waiting for this turn's append: its records first, then its completions. */
interface QueuedBatch {
  member: BatchMember;
  seq: number;
  entries: PreparedEntry[];
}

/**
 * The workers' audit batches in the primary: read off each worker's channel, appended together
 * once a turn to the box's one log, each worker answered with its records' ids (pool.ts keeps
 * the processes themselves).
 */
export class WorkerBatches implements WorkerRecords {
  private queued: QueuedBatch[] = [];
  private scheduled: NodeJS.Immediate | null = null;

  constructor(
    /** The box's one audit log (gated on free disk). */
    private readonly target: BatchTarget,
    private readonly log: Logger,
  ) {}

  /** Reads the member's batches off its channel; `broken` when a frame does not parse. */
  attach(member: BatchMember, broken: () => void): void {
    // A frame that does not parse: the worker is replaced (its acknowledged records are in the
    // log; what it left open is completed).
    readChannel(member, this.log, broken, (frame) => {
      const { seq, entries } = decodeBatchFrame(frame);
      this.queued.push({ member, seq, entries });
      this.scheduled ??= setImmediate(() => this.commitQueued());
    });
  }

  /** A worker waits for its batch's answer: what it answered is in the log already. */
  flush(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * A worker is gone: its batches in flight committed (those read but not yet appended go now),
   * then what it left open completed. A batch read even later (Node can report the exit first) is
   * appended and its opens completed at once (answer()).
   */
  async settle(member: BatchMember): Promise<void> {
    if (this.scheduled !== null) {
      clearImmediate(this.scheduled);
      this.commitQueued();
    }
    await Promise.allSettled([...member.committing]);
    member.settled = true;
    await this.completeLeftOpen(member);
  }

  /**
   * Every batch that arrived in this turn, from any worker, in one append: under load the
   * workers' batches arrive together, and one write costs about what one batch did. Records are
   * refused here too while the log cannot take them (a failing store, a low disk), as a worker's
   * own check may be behind; completions are written (or held) as ever.
   */
  private commitQueued(): void {
    this.scheduled = null;
    const batches = this.queued;
    this.queued = [];
    const refused = !this.target.writable();
    // Each batch's records stay together and in order, so its ids are a run of the outcome's.
    const entries: PreparedEntry[] = [];
    for (const { member, entries: own } of batches) {
      for (const entry of own) {
        if (entry.type !== 'complete') {
          if (!refused) entries.push(entry);
        } else if (!(member.settled && member.endedBySettle.has(entry.id))) {
          // A message read after its worker's death was handled: what settle() completed stays so.
          entries.push(entry);
        }
      }
    }
    const committing = (async (): Promise<void> => {
      let outcome: BatchOutcome | null = null;
      let failure: unknown = null;
      try {
        outcome = await (this.target.commitPrepared?.(entries) ?? commitDecoded(this.target, entries));
      } catch (err) {
        failure = err;
      }
      this.answer(batches, refused, outcome, failure);
    })();
    for (const batch of batches) {
      batch.member.committing.add(committing);
      void committing.finally(() => batch.member.committing.delete(committing));
    }
  }

  /** Each worker its part of the outcome: the ids of its records, in the order it sent them. */
  private answer(batches: readonly QueuedBatch[], refused: boolean, outcome: BatchOutcome | null, failure: unknown): void {
    const writable = this.target.writable();
    let next = 0;
    for (const batch of batches) {
      const { member } = batch;
      const records: PreparedEntry[] = [];
      for (const entry of batch.entries) {
        // A failed commit's completions are held by the store and written on recovery: not ours to end.
        if (entry.type === 'complete') member.open.delete(entry.id);
        else records.push(entry);
      }
      if (outcome === null || (refused && records.length > 0)) {
        // Built only when needed: an Error captures a stack, which costs more than the answer.
        const error = failure ?? new AuditUnavailableError('audit log unavailable: new records are refused (see /readyz)');
        answerWorker(member, batch.seq, writable, { ok: false, error: toRemote(error) });
        continue;
      }
      const own = refused ? [] : outcome.ids.slice(next, next + records.length);
      if (!refused) next += records.length;
      records.forEach((entry, i) => {
        const id = own[i];
        if (entry.type === 'open' && typeof id === 'number') member.open.add(id);
      });
      member.records += records.length;
      answerWorker(member, batch.seq, writable, { ok: true, ids: idsToRemote(own), refusedCompletions: 0 });
      if (member.settled) void this.completeLeftOpen(member);
    }
  }

  /** A dead worker's records still open, completed once all of its are in. */
  private async completeLeftOpen(member: BatchMember): Promise<void> {
    const completions = leftOpenCompletions(member);
    if (completions.length === 0) return;
    for (const [id] of completions) member.endedBySettle.add(id);
    try {
      await this.target.commitBatch([], completions, []);
      this.log.warn({ worker: member.slot, records: completions.length }, LEFT_OPEN_COMPLETED);
    } catch (err) {
      // Held by the store and written when it recovers; at worst completed at the next start.
      this.log.error({ worker: member.slot, records: completions.length, err }, 'could not complete the records a worker left open; the store holds them');
    }
  }
}

export const LEFT_OPEN_COMPLETED = 'completed the records a worker left open (error worker_exited)';

/** A dead worker's records still open, as completions (error worker_exited); its open set is emptied. */
export function leftOpenCompletions(member: BatchMember): CompletionEntry[] {
  const ids = [...member.open];
  member.open.clear();
  const completion = { endedAt: new Date(), status: null, bytesUp: 0, bytesDown: 0, error: RecordEnd.workerExited };
  return ids.map((id): CompletionEntry => [id, completion]);
}

/**
 * Reads a worker's audit channel frame by frame into `onFrame` (nothing once `closed()` says so).
 * Both ends are this release: a frame that does not parse is a bug, and the worker is replaced
 * (`broken`). A worker gone mid-write (EPIPE, ECONNRESET) is its exit's to handle.
 */
export function readChannel(member: BatchMember, log: Logger, broken: () => void, onFrame: (frame: Buffer) => void, closed = (): boolean => false): void {
  const frames = new FrameReader(onFrame);
  member.channel.on('data', (chunk: Buffer) => {
    if (closed()) return;
    try {
      frames.push(chunk);
    } catch (err) {
      log.error({ worker: member.slot, err }, 'audit channel: a frame from a worker does not parse; the worker is replaced');
      broken();
    }
  });
  member.channel.on('error', (err) => log.debug({ worker: member.slot, err }, 'audit channel error'));
}

function answerWorker(member: BatchMember, seq: number, writable: boolean, answer: BatchAnswer): void {
  if (member.channel.destroyed || !member.channel.writable) return;
  member.channel.write(encodeAnswerFrame(seq, writable, answer));
}

/**
 * A target that takes only records as objects (the SQLite store of an in-memory --db, the writer
 * thread of --audit-fsync): the entries decoded and committed, the ids back in their order.
 */
export async function commitDecoded(target: BatchTarget, entries: readonly PreparedEntry[]): Promise<BatchOutcome> {
  const opens: AuditOpen[] = [];
  const finished: FinishedEntry[] = [];
  const completions: CompletionEntry[] = [];
  /** Per record in order: its index among the opens (≥ 0) or among the finished (-1 - i). */
  const slots: number[] = [];
  for (const prepared of entries) {
    const entry = decodePrepared(prepared);
    if (entry.type === 'open') slots.push(opens.push(entry.open) - 1);
    else if (entry.type === 'finished') slots.push(-finished.push([entry.open, entry.completion]));
    else completions.push([entry.id, entry.completion]);
  }
  const outcome = await target.commitBatch(opens, completions, finished);
  return { ids: slots.map((slot) => (slot >= 0 ? outcome.ids[slot] : outcome.ids[opens.length - 1 - slot])), refusedCompletions: outcome.refusedCompletions };
}
