import type { BatchOutcome, CompletionEntry, FinishedEntry } from '../audit/connection';
import type { BatchTarget } from '../audit/group-commit';
import type { AuditOpen } from '../audit/record-types';
import { AuditUnavailableError } from '../audit/write-health';
import { fromRemote, outcomeFromRemote } from '../audit/remote-error';
import { packBatch } from './wire';
import type { PrimaryMessage, WorkerMessage } from './protocol';

interface Waiting {
  resolve: (outcome: BatchOutcome) => void;
  reject: (err: Error) => void;
}

/**
 * A worker's audit log: its group commit's batches go to the primary, which appends them to the
 * box's one log and answers with the ids once they are written. The open's promise settles on
 * that answer, so a record is in the log before the worker forwards a byte (SPEC §4), as with
 * one process. A primary that is gone fails every waiting batch closed (503).
 */
export class PrimaryAudit implements BatchTarget {
  private readonly waiting = new Map<number, Waiting>();
  private seq = 0;
  private primaryWritable: boolean;
  private gone = false;

  constructor(
    private readonly send: (message: WorkerMessage) => boolean,
    writable: boolean,
  ) {
    this.primaryWritable = writable;
  }

  writable(): boolean {
    return !this.gone && this.primaryWritable;
  }

  commitBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished: readonly FinishedEntry[]): Promise<BatchOutcome> {
    if (this.gone) return Promise.reject(new AuditUnavailableError('audit log unavailable: the primary process is gone'));
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(seq, { resolve, reject });
      if (!this.send({ t: 'batch', seq, batch: packBatch(opens, completions, finished) })) this.disconnected();
    });
  }

  /** A message from the primary: the answer to a batch, or a change of the log's state. */
  received(message: PrimaryMessage): void {
    if (message.t === 'writable') {
      this.primaryWritable = message.writable;
      return;
    }
    if (message.t !== 'batchDone') return;
    this.primaryWritable = message.writable;
    const waiting = this.waiting.get(message.seq);
    if (waiting === undefined) return;
    this.waiting.delete(message.seq);
    if (message.ok) waiting.resolve(outcomeFromRemote(message.ids, message.refusedCompletions));
    else waiting.reject(fromRemote(message.error));
  }

  /** The IPC channel closed: nothing can be recorded any more, so nothing is forwarded. */
  disconnected(): void {
    this.gone = true;
    const error = new AuditUnavailableError('audit log unavailable: the primary process is gone');
    for (const waiting of this.waiting.values()) waiting.reject(error);
    this.waiting.clear();
  }
}
