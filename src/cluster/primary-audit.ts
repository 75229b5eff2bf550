import type { BatchOutcome, CompletionEntry, FinishedEntry } from '../audit/connection';
import type { BatchTarget } from '../audit/group-commit';
import { isPrepared, prepareOrRefuse } from '../audit/log/entry-codec';
import type { NewEntry, PreparedEntry } from '../audit/log/entry-codec';
import type { AuditOpen } from '../audit/record-types';
import { AuditUnavailableError } from '../audit/write-health';
import { fromRemote, outcomeFromRemote } from '../audit/remote-error';
import { encodeBatchFrame } from './wire';
import type { AnswerFrame } from './wire';

interface Waiting {
  /** Per record of the batch, in order: true where the codec refused it here (not sent). */
  refusedHere: boolean[];
  refusedCompletions: number;
  resolve: (outcome: BatchOutcome) => void;
  reject: (err: Error) => void;
  /** The refused records' errors, in order. */
  errors: Error[];
}

/**
 * A worker's audit log: its group commit's batches go to the primary over the audit channel
 * (wire.ts), encoded here as the log's entries, and the primary appends them to the box's one
 * log and answers with the ids once they are written. The open's promise settles on that answer,
 * so a record is in the log before the worker forwards a byte (SPEC §4), as with one process. A
 * primary that is gone fails every waiting batch closed (503).
 */
export class PrimaryAudit implements BatchTarget {
  private readonly waiting = new Map<number, Waiting>();
  private seq = 0;
  private primaryWritable: boolean;
  private gone = false;

  constructor(
    /** Writes one frame to the primary; false when the channel is closed. */
    private readonly send: (frame: Buffer) => boolean,
    writable: boolean,
  ) {
    this.primaryWritable = writable;
  }

  writable(): boolean {
    return !this.gone && this.primaryWritable;
  }

  commitBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished: readonly FinishedEntry[]): Promise<BatchOutcome> {
    if (this.gone) return Promise.reject(new AuditUnavailableError('audit log unavailable: the primary process is gone'));
    // Records first (opens, then finished: the order of BatchOutcome's ids), then completions.
    const entries: NewEntry[] = [];
    for (const open of opens) entries.push({ type: 'open', open });
    for (const [open, completion] of finished) entries.push({ type: 'finished', open, completion });
    for (const [id, completion] of completions) entries.push({ type: 'complete', id, completion });
    const sent: PreparedEntry[] = [];
    const waiting: Omit<Waiting, 'resolve' | 'reject'> = { refusedHere: [], refusedCompletions: 0, errors: [] };
    for (const entry of entries) {
      // An entry the codec refuses (a time out of range, a record too large) fails that record
      // alone, here, as the log store does with one process.
      const prepared = prepareOrRefuse(entry);
      if (isPrepared(prepared)) sent.push(prepared);
      else if (entry.type === 'complete') waiting.refusedCompletions += 1;
      else waiting.errors.push(prepared.error);
      if (entry.type !== 'complete') waiting.refusedHere.push(!isPrepared(prepared));
    }
    if (sent.length === 0) return Promise.resolve({ ids: waiting.errors, refusedCompletions: waiting.refusedCompletions });
    // The frame carries a u32: a worker that stays up sends more batches than that in weeks.
    this.seq = (this.seq + 1) >>> 0;
    const seq = this.seq;
    const frame = encodeBatchFrame(seq, sent);
    return new Promise((resolve, reject) => {
      this.waiting.set(seq, { ...waiting, resolve, reject });
      if (!this.send(frame)) this.disconnected();
    });
  }

  /** The audit log's state changed in the primary (a failing store, a low disk). */
  setWritable(writable: boolean): void {
    this.primaryWritable = writable;
  }

  /** The primary's answer to a batch. */
  answered({ seq, writable, answer }: AnswerFrame): void {
    this.primaryWritable = writable;
    const waiting = this.waiting.get(seq);
    if (waiting === undefined) return;
    this.waiting.delete(seq);
    if (!answer.ok) return waiting.reject(fromRemote(answer.error));
    const remote = outcomeFromRemote(answer.ids, answer.refusedCompletions);
    if (waiting.errors.length === 0 && waiting.refusedCompletions === 0) return waiting.resolve(remote);
    // Merge the records refused here back into their places.
    let fromPrimary = 0;
    let refused = 0;
    const ids = waiting.refusedHere.map((here) => (here ? waiting.errors[refused++] : remote.ids[fromPrimary++]));
    waiting.resolve({ ids, refusedCompletions: remote.refusedCompletions + waiting.refusedCompletions });
  }

  /** The channel closed: nothing can be recorded any more, so nothing is forwarded. */
  disconnected(): void {
    this.gone = true;
    const error = new AuditUnavailableError('audit log unavailable: the primary process is gone');
    for (const waiting of this.waiting.values()) waiting.reject(error);
    this.waiting.clear();
  }
}
