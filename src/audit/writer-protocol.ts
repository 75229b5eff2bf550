import type { MessagePort } from 'node:worker_threads';
import type { CompletionEntry } from './connection';
import type { AuditCompletion, AuditOpen } from './record-types';
import type { AuditStoreOptions } from './store-options';
import type { AuditHealth, AuditStateChange } from './write-health';

/** The messages between writer-thread.ts (the proxy's thread) and writer-worker.ts. */

export interface WriterWorkerData {
  file: string;
  /** Everything but onStateChange, which becomes a 'state' message. */
  options: Omit<AuditStoreOptions, 'onStateChange'>;
  /** Int32 flag: the worker sets it to 1 after posting a call's reply on `calls`. */
  flag: SharedArrayBuffer;
  calls: MessagePort;
}

/**
 * An error as it crosses the thread boundary: structured cloning keeps an Error's message but
 * drops its `code`, which says what kind of failure it was.
 */
export interface RemoteError {
  message: string;
  code: string | null;
  /** One record refused (too big, a constraint), not the database failing. */
  recordError: boolean;
}

export type CallRequest =
  | { method: 'record'; open: AuditOpen; completion: AuditCompletion }
  | { method: 'isWritable' }
  | { method: 'completeOpenRecords'; endedAt: Date; error: string }
  | { method: 'close' };

/** health is null only when the store could not be opened at all. */
export type CallReply =
  | { seq: number; ok: true; value: number | boolean | null; health: AuditHealth }
  | { seq: number; ok: false; error: RemoteError; health: AuditHealth | null };

/** Parent to worker. */
export type WorkerMessage =
  | { kind: 'batch'; seq: number; opens: readonly AuditOpen[]; completions: readonly CompletionEntry[] }
  | { kind: 'call'; seq: number; request: CallRequest };

/** Worker to parent, on the parent port: a batch's outcome, or a state change to log. */
export type BatchReply =
  | { kind: 'batch'; seq: number; ok: true; ids: Array<number | RemoteError>; refusedCompletions: number; health: AuditHealth }
  | { kind: 'batch'; seq: number; ok: false; error: RemoteError; health: AuditHealth };

export type ParentMessage = BatchReply | { kind: 'state'; change: AuditStateChange };
