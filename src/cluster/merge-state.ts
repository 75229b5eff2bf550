import type { PreparedEntry } from '../audit/log/entry-codec';
import type { BatchMember } from './worker-batches';
import { WireError } from './wire';
import type { BatchFrame } from './wire';

/** What the primary's merge (block-merge.ts) keeps of each worker process and of each block of ids. */

export interface Block {
  first: number;
  end: number;
  /** The lowest id of it not yet passed to the log. */
  next: number;
  owner: MergeState;
  released: boolean;
}

/** A release (a sync's answer, or a dead worker's end) in the worker's stream, after its entries. */
export interface Release {
  upTo: number;
  token: number;
}

/** The end of a batch in the worker's stream: once it has passed, the whole batch has. */
export interface BatchEnd {
  batchEnd: number;
}

export type Queued = PreparedEntry | Release | BatchEnd;

export interface MergeState {
  readonly member: BatchMember;
  /** Its process's spool name (spool.ts). */
  readonly spoolName: string;
  /** What it sent, in order; `at` is the first not yet passed. */
  queue: Queued[];
  at: number;
  /** Blocks given to it that its entries have not yet moved past (receipt order, for checks). */
  readonly granted: Block[];
  /** Whether it has had a block: a process still starting (none asked for yet) holds nothing. */
  hadBlock: boolean;
  lastId: number;
  /** The last batch received; the last whose entries have all passed; the last all in the log. */
  lastSeq: number | null;
  passedSeq: number | null;
  appendedSeq: number | null;
  /** Resolved once its release with that token has passed and what came before is appended. */
  readonly syncs: Map<number, () => void>;
  /** Resolved whenever its queue empties. */
  drained: Array<() => void>;
  /** Its process is gone and its channel read: nothing more is taken from it. */
  closed: boolean;
  /** Its settling once its process is gone (block-merge.ts settle). */
  settling: Promise<void> | null;
  /** Resolved when it is settled: its records in the log, what it left open completed. */
  readonly ended: Promise<void>;
  readonly end: () => void;
}

export function newMergeState(member: BatchMember, spoolName: string): MergeState {
  let end: () => void = () => undefined;
  const ended = new Promise<void>((resolve) => {
    end = resolve;
  });
  return {
    member, spoolName, queue: [], at: 0, granted: [], hadBlock: false, lastId: 0, lastSeq: null, passedSeq: null, appendedSeq: null,
    syncs: new Map(), drained: [], closed: false, settling: null, ended, end,
  };
}

/**
 * A worker's batch into its queue, checked whole first (a batch refused leaves the state as it
 * was): each record's id in a block given to this worker, rising. Throws WireError otherwise.
 */
export function takeBatch(state: MergeState, batch: BatchFrame): void {
  let lastId = state.lastId;
  let at = 0;
  for (const entry of batch.entries) {
    if (entry.type === 'complete') continue;
    const { id } = entry;
    while (at < state.granted.length && id >= state.granted[at].end) at += 1;
    const block = state.granted[at];
    if (block === undefined || id < block.first || id <= lastId) throw new WireError(`record id ${id} is not one this worker was given`);
    lastId = id;
  }
  state.granted.splice(0, at);
  state.lastId = lastId;
  state.lastSeq = batch.seq;
  for (const entry of batch.entries) state.queue.push(entry);
  state.queue.push({ batchEnd: batch.seq });
}
