import type { BatchTarget, NumberedLog } from '../audit/group-commit';
import { prepareEntry } from '../audit/log/entry-codec';
import type { PreparedEntry } from '../audit/log/entry-codec';
import type { Logger } from '../log';
import { channelEnded, spooledAfter, within } from './dead-worker';
import { newerBatch } from './spool';
import { MergedAppends } from './merged-appends';
import type { SpoolFile } from './spool';
import { encodeBlockFrame, encodeSyncFrame, decodeWorkerFrame } from './wire';
import { LEFT_OPEN_COMPLETED, leftOpenCompletions, readChannel } from './worker-batches';
import type { BatchMember, WorkerRecords } from './worker-batches';
import { newMergeState, takeBatch } from './merge-state';
import type { Block, MergeState } from './merge-state';

/** Ids per block: one block message per this many records, and the most a quiet worker holds up. */
export const BLOCK_IDS = 64;
/** Records held behind another worker's block this long: that worker is asked to give it back. */
const NUDGE_MS = 20;
/** A read barrier waits this long for each worker's answer (a stuck worker is not waited for). */
const SYNC_WAIT_MS = 1_000;
/** A dead worker's channel is read to its end for at most this long before its spool is read. */
const CHANNEL_END_WAIT_MS = 2_000;
/** Its records held behind live workers' blocks, at most this long before its slot is settled. */
const DRAIN_WAIT_MS = 5_000;
/** A worker's queue is cut back once this much of it has passed. */
const COMPACT_AT = 4_096;
/** Above every id: a dead worker gives back all it held. */
const ALL_IDS = 2 ** 48 - 1;

/**
 * The workers' records in the primary without a round trip (`--workers N`, the log store on
 * this thread). Each worker gives its records ids from blocks reserved here (BLOCK_IDS at a time,
 * asked for ahead of need), spools each batch (spool.ts) and sends it on without waiting. The box
 * keeps one log in id order: a block's entries go to the log as they come, a later block's wait
 * until every earlier one is used up or given back. A worker gives back what it holds when asked
 * (a read barrier, or records waiting behind its block for NUDGE_MS) and when it dies; its spool
 * brings in what its channel never delivered, once, by batch number. Every reader of the log
 * (the index, shipping, the access log, the chain) stays as it was.
 */
export class BlockMerge implements WorkerRecords {
  private readonly states = new Map<BatchMember, MergeState>();
  /** Every block given out and not yet passed, ascending. */
  private readonly blocks: Block[] = [];
  /** Resolved after the turn's append: read barriers whose releases passed in it. */
  private afterAppend: Array<() => void> = [];
  private scheduled: NodeJS.Immediate | null = null;
  private nudge: NodeJS.Timeout | null = null;
  private tokens = 0;
  private readonly appends: MergedAppends;

  constructor(
    private readonly log: NumberedLog,
    /** The box's target: whether it takes records now (told to the workers with each block). */
    private readonly target: BatchTarget,
    private readonly logger: Logger,
  ) {
    this.appends = new MergedAppends(log, logger, () => this.mergeNow());
  }

  /** Reads the member's frames off its channel; `broken` on a bad frame. */
  attach(member: BatchMember, broken: () => void, spoolName: string): void {
    const state = newMergeState(member, spoolName);
    this.states.set(member, state);
    // A frame that does not parse, or ids outside its blocks: the worker is replaced, and its
    // spool brings in what it answered.
    readChannel(member, this.logger, broken, (frame) => {
      const decoded = decodeWorkerFrame(frame);
      if (decoded.kind === 'batch') {
        takeBatch(state, decoded.frame);
        this.schedule();
      } else if (decoded.kind === 'want') this.grant(state, decoded.count);
      else this.released(state, decoded);
    }, () => state.closed);
    // Its first block when it asks (as soon as it reads its channel): a block given to a process
    // still starting would hold every later one back until it reads.
  }

  /**
   * The read barrier (the admin API reads the index): every worker gives back its blocks, and
   * what each sent before that is appended. A worker that does not answer in time is not waited for.
   */
  async flush(): Promise<void> {
    const waits: Array<Promise<void>> = [];
    for (const state of this.states.values()) {
      const { channel } = state.member;
      // Still starting: no block yet, so no record, and nothing held behind it.
      if (!state.hadBlock) continue;
      if (channel.destroyed || !channel.writable) {
        // Gone, maybe with batches only its spool holds: those come in with its settling.
        waits.push(within(state.ended, SYNC_WAIT_MS).then(() => undefined));
        continue;
      }
      this.tokens = (this.tokens % 0xffff_fffe) + 1;
      const token = this.tokens;
      waits.push(new Promise<void>((resolve) => {
        const timer = setTimeout(done, SYNC_WAIT_MS);
        function done(): void {
          clearTimeout(timer);
          state.syncs.delete(token);
          resolve();
        }
        state.syncs.set(token, done);
        channel.write(encodeSyncFrame(token));
      }));
    }
    await Promise.all(waits);
  }

  /**
   * A worker is gone: its channel read to the end, then the batches only its spool holds, then
   * all it held given back; once its records are in the log, what it left open is completed.
   */
  settle(member: BatchMember): Promise<void> {
    const state = this.states.get(member);
    if (state === undefined) return Promise.resolve();
    // Its exit and a drain's settling of every worker both ask: one settling.
    state.settling ??= this.settleOnce(state);
    return state.settling;
  }

  private async settleOnce(state: MergeState): Promise<void> {
    const { member } = state;
    await channelEnded(member.channel, CHANNEL_END_WAIT_MS);
    state.closed = true;
    const spooled = await spooledAfter(this.log.spool, state.spoolName, (batch) => newerBatch(batch.seq, state.lastSeq));
    let entries = 0;
    try {
      for (const batch of spooled.batches) {
        takeBatch(state, batch);
        entries += batch.entries.length;
      }
    } catch (err) {
      spooled.error ??= err;
    }
    if (spooled.error !== null) {
      // Its blocks are given back all the same, or no later record could reach the log.
      this.logger.error({ worker: member.slot, err: spooled.error }, 'a dead worker\'s spool cannot be read: records it answered that its channel did not bring are not in the log and will not be (later records are)');
    } else if (entries > 0) {
      this.logger.warn({ worker: member.slot, entries }, 'appending entries a dead worker spooled but never sent');
    }
    state.queue.push({ upTo: ALL_IDS, token: 0 });
    const finished = new Promise<void>((resolve) => state.drained.push(resolve))
      .then(() => this.finish(state, spooled.error === null ? spooled.files : []))
      .catch((err: unknown) => this.logger.error({ worker: member.slot, err }, 'settling a dead worker failed'));
    this.mergeNow();
    // Its records wait behind a live worker's block that is neither used nor given back (a
    // stopped process): they go, and what it left open is completed, once that worker moves.
    if (!(await within(finished, DRAIN_WAIT_MS))) this.logger.warn({ worker: member.slot }, 'a dead worker\'s records wait behind another worker\'s ids; they are appended when it gives them back');
  }

  /**
   * The dead worker's records have all passed: what it left open is completed through the merge
   * (after them in the log, even while it fails), and its spool goes once the log has all of it.
   */
  private finish(state: MergeState, files: readonly SpoolFile[]): void {
    const { member } = state;
    this.states.delete(member);
    member.settled = true;
    const completions = leftOpenCompletions(member);
    if (completions.length > 0) {
      this.appends.append(completions.map(([id, completion]) => prepareEntry({ type: 'complete', id, completion })));
      this.logger.warn({ worker: member.slot, records: completions.length }, LEFT_OPEN_COMPLETED);
    }
    // Kept while the log lacks any of it (a start appends it from there), removed once it has it all.
    this.appends.spent(files);
    state.end();
  }

  /** The worker gave back its ids below `upTo`: taken in its stream's order, after its entries before it. */
  private released(state: MergeState, { token, upTo }: { token: number; upTo: number }): void {
    while (state.granted.length > 0 && state.granted[0].end <= upTo) state.granted.shift();
    state.queue.push({ upTo, token });
    this.schedule();
  }

  /** `count` ids (at least a block) for the worker; a block of none while the log cannot reserve. */
  private grant(state: MergeState, count: number): void {
    const { channel } = state.member;
    if (channel.destroyed || !channel.writable) return;
    const size = Math.max(BLOCK_IDS, count);
    let first = 0;
    let given = 0;
    try {
      first = this.log.reserveIds(size);
      given = size;
    } catch {
      // The log is failing: the worker refuses its records (503) until it is told otherwise.
    }
    if (given > 0) {
      const block: Block = { first, end: first + given, next: first, owner: state, released: false };
      this.blocks.push(block);
      state.granted.push(block);
      state.hadBlock = true;
    }
    channel.write(encodeBlockFrame({ writable: this.target.writable(), first, count: given, appended: state.appendedSeq }));
  }

  private schedule(): void {
    this.scheduled ??= setImmediate(() => this.mergeNow());
  }

  /**
   * Passes every entry whose turn has come: a worker's completions and releases as they come in
   * its stream, a record once its block is the lowest outstanding. One append for all of it.
   */
  private mergeNow(): void {
    if (this.scheduled !== null) {
      clearImmediate(this.scheduled);
      this.scheduled = null;
    }
    const out: PreparedEntry[] = [];
    let moved = true;
    while (moved) {
      moved = false;
      for (const state of this.states.values()) {
        if (this.pass(state, out)) moved = true;
      }
    }
    this.appends.append(out);
    if (this.appends.empty) for (const state of this.states.values()) state.appendedSeq = state.passedSeq;
    if (this.afterAppend.length > 0) {
      const done = this.afterAppend;
      this.afterAppend = [];
      for (const resolve of done) resolve();
    }
    let held = false;
    for (const state of this.states.values()) {
      if (state.at < state.queue.length) {
        held = true;
        if (state.at >= COMPACT_AT) {
          state.queue = state.queue.slice(state.at);
          state.at = 0;
        }
        continue;
      }
      if (state.at > 0) {
        state.queue = [];
        state.at = 0;
      }
      if (state.drained.length > 0) {
        const drained = state.drained;
        state.drained = [];
        for (const resolve of drained) resolve();
      }
    }
    if (held) this.nudgeLater();
  }

  /** Moves what of the worker's queue can go; true when anything did. */
  private pass(state: MergeState, out: PreparedEntry[]): boolean {
    const { member, queue } = state;
    const start = state.at;
    while (state.at < queue.length) {
      const item = queue[state.at];
      if ('batchEnd' in item) {
        state.passedSeq = item.batchEnd;
      } else if (!('type' in item)) {
        for (const block of this.blocks) if (block.owner === state && block.end <= item.upTo) block.released = true;
        this.dropPassed();
        const resolve = state.syncs.get(item.token);
        if (resolve !== undefined) this.afterAppend.push(resolve);
      } else if (item.type === 'complete') {
        out.push(item);
        member.open.delete(item.id);
      } else {
        const head = this.blocks[0];
        if (head === undefined || head.owner !== state) break;
        if (item.id >= head.end) {
          // It moved on to a later block: the rest of this one is not used.
          head.released = true;
          this.dropPassed();
          continue;
        }
        out.push(item);
        head.next = item.id + 1;
        if (item.type === 'open') member.open.add(item.id);
        member.records += 1;
        this.dropPassed();
      }
      state.at += 1;
    }
    return state.at > start;
  }

  private dropPassed(): void {
    while (this.blocks.length > 0 && (this.blocks[0].released || this.blocks[0].next >= this.blocks[0].end)) this.blocks.shift();
  }

  /** Records wait behind the lowest block: its worker is asked to give back what it holds. */
  private nudgeLater(): void {
    if (this.nudge !== null) return;
    const head = this.blocks[0];
    this.nudge = setTimeout(() => {
      this.nudge = null;
      const now = this.blocks[0];
      if (now === undefined) return;
      const { channel } = now.owner.member;
      if (now === head && !channel.destroyed && channel.writable) channel.write(encodeSyncFrame(0));
      // Asked again while anything still waits (a stuck or dead owner is settled meanwhile).
      for (const state of this.states.values()) if (state.at < state.queue.length) return this.nudgeLater();
    }, NUDGE_MS);
    this.nudge.unref();
  }
}
