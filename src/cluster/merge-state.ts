import type { PreparedEntry } from '../audit/log/entry-codec';
import type { BatchMember } from './worker-batches';

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

export type Queued = PreparedEntry | Release;

export interface MergeState {
  readonly member: BatchMember;
  /** Its process's spool name (spool.ts). */
  readonly spoolName: string;
  /** What it sent, in order; `at` is the first not yet passed. */
  queue: Queued[];
  at: number;
  /** Blocks given to it that its entries have not yet moved past (receipt order, for checks). */
  readonly granted: Block[];
  lastId: number;
  lastSeq: number | null;
  /** Resolved once its release with that token has passed and what came before is appended. */
  readonly syncs: Map<number, () => void>;
  /** Resolved whenever its queue empties. */
  drained: Array<() => void>;
  /** Its process is gone and its channel read: nothing more is taken from it. */
  closed: boolean;
  /** Its settling once its process is gone (block-merge.ts settle). */
  settling: Promise<void> | null;
}

export function newMergeState(member: BatchMember, spoolName: string): MergeState {
  return { member, spoolName, queue: [], at: 0, granted: [], lastId: 0, lastSeq: null, syncs: new Map(), drained: [], closed: false, settling: null };
}
