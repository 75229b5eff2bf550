import type { MessagePort } from 'node:worker_threads';
import type { CompletionEntry, FinishedEntry } from './connection';
import type { AuditOpen } from './record-types';
import type { PruneReport } from './retention';
import type { WorkerModule } from './start-worker';
import type { AuditStoreOptions } from './store-options';
import type { AuditChainHead, AuditHealth, AuditStateChange } from './write-health';

/** The messages between writer-thread.ts (the proxy's thread) and writer-worker.ts. */

/** Store options that can cross to the thread: no functions (the clock, the callbacks). */
export type PortableStoreOptions = Omit<AuditStoreOptions, 'clock' | 'onStateChange' | 'beforeReopen'>;

export interface WriterWorkerData extends WorkerModule {
  file: string;
  options: PortableStoreOptions;
  /** --retain: the thread deletes records older than this (retention.ts); 0 keeps every one. */
  retainMs: number;
  /** Append to the log (log-store.ts) instead of writing the SQLite file (store.ts). */
  log: boolean;
  /** Int32 slots, see the constants below. */
  flags: SharedArrayBuffer;
  /** Where the answers to synchronous calls go (read with receiveMessageOnPort). */
  calls: MessagePort;
}

/** flags[REPLY]: the worker sets ANSWERED after posting a call's answer, GONE when it exits. */
export const REPLY = 0;
export const ANSWERED = 1;
export const GONE = 2;
/** flags[READER]: the worker sets ASKED before reopening the file; the parent CLOSED once its reader is. */
export const READER = 1;
export const ASKED = 1;
export const CLOSED = 2;

/**
 * An error as it crosses the thread boundary: structured cloning keeps an Error's message but
 * drops its `code`, which says what kind of failure it was.
 */
export interface RemoteError {
  message: string;
  code: string | null;
}

export type CallRequest =
  | { method: 'isWritable' }
  | { method: 'completeOpenRecords'; endedAt: Date; error: string }
  | { method: 'heldCompletions' }
  | { method: 'close' };

/** health is null only when the store could not be opened at all. */
export type CallReply =
  | { seq: number; ok: true; value: number | boolean | null | CompletionEntry[]; health: AuditHealth; head?: AuditChainHead | null }
  | { seq: number; ok: false; error: RemoteError; health: AuditHealth | null };

/** Parent to worker. */
export type WorkerMessage =
  | { kind: 'batch'; seq: number; opens: readonly AuditOpen[]; completions: readonly CompletionEntry[]; finished: readonly FinishedEntry[] }
  | { kind: 'call'; seq: number; request: CallRequest };

/** Worker to parent, on the parent port: a batch's outcome, or a state change to log. */
export type BatchReply =
  /** `head`: the log's chain head after the batch (log-store.ts only), mirrored by the parent. */
  | { kind: 'batch'; seq: number; ok: true; ids: Array<number | RemoteError>; refusedCompletions: number; health: AuditHealth; head: AuditChainHead | null }
  | { kind: 'batch'; seq: number; ok: false; error: RemoteError; health: AuditHealth };

export type ParentMessage =
  | BatchReply
  | { kind: 'state'; change: AuditStateChange }
  /** A retention pass deleted records, or stopped on an error. */
  | { kind: 'pruned'; report: PruneReport }
  /** The parent is in its event loop (not waiting on a call): close the reader now. */
  | { kind: 'closeReader' };
