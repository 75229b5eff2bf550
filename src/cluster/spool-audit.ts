import type { BatchOutcome, CompletionEntry, FinishedEntry } from '../audit/connection';
import type { BatchTarget } from '../audit/group-commit';
import { batchOutcome, isPrepared, prepareBatch } from '../audit/log/entry-codec';
import type { PreparedEntry, RefusedEntry } from '../audit/log/entry-codec';
import type { AuditOpen } from '../audit/record-types';
import { AuditUnavailableError } from '../audit/write-health';
import type { SpoolWriter } from './spool';
import { encodeBatchFrame, encodeReleaseFrame, encodeWantFrame } from './wire';
import type { BlockFrame } from './wire';

/** Fewer ids than this left: the next block is asked for, so a batch rarely waits for one. */
const LOW_IDS = 32;
/** Completions of batches that could not be spooled, kept for the next (the store's own bound). */
const MAX_CARRIED = 10_000;
/**
 * Batches go to the primary together at most this often: each send wakes the primary, and the
 * spool already holds them, so a record reaches the log up to this much later and nothing waits.
 */
const SEND_EVERY_MS = 2;

interface Held {
  next: number;
  end: number;
}

/**
 * A worker's audit log in the spooled mode (block-merge.ts has the primary's side): the worker
 * gives its records ids from blocks the primary reserved for it, appends each batch to its spool
 * (one write: in the kernel before a byte is forwarded, SPEC §4, as one process's log write is)
 * and sends the same frames to the primary every few milliseconds, without waiting for an answer.
 * A batch waits only when the ids it needs have not come yet. A primary that is gone fails every
 * batch closed (503).
 */
export class SpoolAudit implements BatchTarget {
  private held: Held[] = [];
  private available = 0;
  private wanted = false;
  /** Batches waiting for ids: resolved when a block comes, failed when none can be given. */
  private waiting: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  private seq = 0;
  /** The end of the last block received: a release gives back everything below it. */
  private blocksEnd = 0;
  /** Completions whose batch could not be spooled: they go with the next batch. */
  private carried: PreparedEntry[] = [];
  private primaryWritable: boolean;
  private gone = false;
  /** Spooled batches not yet sent, and the timer that sends them. */
  private unsent: Buffer[] = [];
  private sendTimer: NodeJS.Timeout | null = null;

  constructor(
    /** Writes one frame to the primary; false when the channel is closed. */
    private readonly send: (frame: Buffer) => boolean,
    private readonly spool: SpoolWriter,
    writable: boolean,
  ) {
    this.primaryWritable = writable;
    // Its first block: asked for once it can read the answer (block-merge.ts gives none unasked).
    this.want(0);
  }

  writable(): boolean {
    return !this.gone && this.primaryWritable;
  }

  /** The audit log's state changed in the primary (a failing store, a low disk). */
  setWritable(writable: boolean): void {
    this.primaryWritable = writable;
  }

  commitBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished: readonly FinishedEntry[]): BatchOutcome | Promise<BatchOutcome> {
    if (this.gone) return Promise.reject(new AuditUnavailableError('audit log unavailable: the primary process is gone'));
    // An entry the codec refuses (a time out of range, a record too large) fails that record alone.
    const entries = prepareBatch(opens, completions, finished);
    const sent = entries.filter(isPrepared);
    if (sent.length === 0) return batchOutcome(entries, () => 0);
    let need = 0;
    for (const entry of sent) if (entry.type !== 'complete') need += 1;
    if (need <= this.available) return this.write(entries, sent);
    return this.writeWhenIds(entries, sent, need);
  }

  /** A block from the primary (or none: the log cannot reserve ids now). */
  block({ writable, first, count, appended }: BlockFrame): void {
    this.primaryWritable = writable;
    this.wanted = false;
    if (appended !== null) this.spool.appended(appended);
    if (count > 0) {
      this.held.push({ next: first, end: first + count });
      this.available += count;
      this.blocksEnd = first + count;
    }
    const waiting = this.waiting;
    this.waiting = [];
    const refused = count === 0 ? new AuditUnavailableError('audit log unavailable: no record ids can be reserved (see /readyz)') : null;
    for (const { resolve, reject } of waiting) {
      if (refused === null) resolve();
      else reject(refused);
    }
  }

  /** The primary asks for the ids this worker holds (a read barrier, or records waiting behind them). */
  sync(token: number): void {
    // Every block it was given, even one whose last ids went to a batch that could not be spooled.
    this.held = [];
    this.available = 0;
    // After the batches before it: the primary passes them before it takes the release.
    this.unsent.push(encodeReleaseFrame(token, this.blocksEnd));
    this.sendSpooled();
    // A read barrier (a token) comes with admin reads while this worker may be busy: a block
    // asked for now spares its next batch the wait. A nudge (0) finds it quiet: none until needed.
    if (token !== 0) this.want(0);
  }

  /** Sends the spooled batches not yet sent (the timer's turn, a sync, a worker draining). */
  sendSpooled(): void {
    if (this.sendTimer !== null) {
      clearTimeout(this.sendTimer);
      this.sendTimer = null;
    }
    if (this.unsent.length === 0) return;
    const frames = this.unsent.length === 1 ? this.unsent[0] : Buffer.concat(this.unsent);
    this.unsent = [];
    // A channel closed now is the primary gone: it reads this worker's spool when it settles it.
    if (!this.send(frames)) this.disconnected();
  }

  /** The channel closed: nothing can be recorded any more, so nothing is forwarded. */
  disconnected(): void {
    this.gone = true;
    if (this.sendTimer !== null) clearTimeout(this.sendTimer);
    this.sendTimer = null;
    this.unsent = [];
    const error = new AuditUnavailableError('audit log unavailable: the primary process is gone');
    for (const { reject } of this.waiting) reject(error);
    this.waiting = [];
    this.spool.close();
  }

  private write(entries: ReadonlyArray<PreparedEntry | RefusedEntry>, prepared: PreparedEntry[]): BatchOutcome {
    for (const entry of prepared) if (entry.type !== 'complete') entry.id = this.take();
    const sent = this.carried.length === 0 ? prepared : this.carried.concat(prepared);
    // The frame carries a u32: a worker that stays up sends more batches than that in weeks.
    this.seq = (this.seq + 1) >>> 0;
    const frame = encodeBatchFrame(this.seq, sent);
    try {
      this.spool.append(frame, this.seq);
    } catch (err) {
      // Its records' ids go unused (the primary passes over them) and their requests get 503;
      // its completions wait for the next batch, as a store holds them while it cannot write.
      this.carried = sent.filter((entry) => entry.type === 'complete').slice(-MAX_CARRIED);
      throw new AuditUnavailableError(`audit spool cannot be written: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.carried = [];
    this.unsent.push(frame);
    this.sendTimer ??= setTimeout(() => this.sendSpooled(), SEND_EVERY_MS);
    if (this.available < LOW_IDS) this.want(0);
    return batchOutcome(entries, (entry) => entry.id);
  }

  /**
   * The batch once the ids it needs have come (encoded once, whatever the wait). Group commit
   * sends one batch at a time when it waits, so ids stay in the order they are used.
   */
  private async writeWhenIds(entries: ReadonlyArray<PreparedEntry | RefusedEntry>, sent: PreparedEntry[], need: number): Promise<BatchOutcome> {
    while (need > this.available) {
      await new Promise<void>((resolve, reject) => {
        this.waiting.push({ resolve, reject });
        this.want(need - this.available);
      });
    }
    return this.write(entries, sent);
  }

  private take(): number {
    const block = this.held[0];
    const id = block.next;
    block.next += 1;
    this.available -= 1;
    if (block.next === block.end) this.held.shift();
    return id;
  }

  private want(count: number): void {
    if (this.wanted) return;
    this.wanted = true;
    this.send(encodeWantFrame(count));
  }
}
