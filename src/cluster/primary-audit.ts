import type { BatchOutcome, CompletionEntry, FinishedEntry } from '../audit/connection';
import type { BatchTarget } from '../audit/group-commit';
import { batchOutcome, isPrepared, prepareBatch } from '../audit/log/entry-codec';
import type { PreparedEntry, RefusedEntry } from '../audit/log/entry-codec';
import type { AuditOpen } from '../audit/record-types';
import { AuditUnavailableError } from '../audit/write-health';
import { fromRemote, outcomeFromRemote } from '../audit/remote-error';
import { encodeBatchFrame } from './wire';
import type { AnswerFrame } from './wire';

interface Waiting {
  /** The batch as prepared here: entries the codec refused are not sent and keep their place. */
  entries: Array<PreparedEntry | RefusedEntry>;
  resolve: (outcome: BatchOutcome) => void;
  reject: (err: Error) => void;
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
    // An entry the codec refuses (a time out of range, a record too large) fails that record
    // alone, here, as the log store does with one process.
    const entries = prepareBatch(opens, completions, finished);
    const sent = entries.filter(isPrepared);
    // Nothing to send: every record answers with the error that refused it.
    if (sent.length === 0) return Promise.resolve(batchOutcome(entries, () => 0));
    // The frame carries a u32: a worker that stays up sends more batches than that in weeks.
    this.seq = (this.seq + 1) >>> 0;
    const seq = this.seq;
    const frame = encodeBatchFrame(seq, sent);
    return new Promise((resolve, reject) => {
      this.waiting.set(seq, { entries, resolve, reject });
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
    // The primary's ids go to the records it was sent; those refused here keep their errors.
    let next = 0;
    const outcome = batchOutcome(waiting.entries, () => remote.ids[next++]);
    outcome.refusedCompletions += remote.refusedCompletions;
    waiting.resolve(outcome);
  }

  /** The channel closed: nothing can be recorded any more, so nothing is forwarded. */
  disconnected(): void {
    this.gone = true;
    const error = new AuditUnavailableError('audit log unavailable: the primary process is gone');
    for (const waiting of this.waiting.values()) waiting.reject(error);
    this.waiting.clear();
  }
}
