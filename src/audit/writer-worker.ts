import { parentPort, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import { Retention } from './retention';
import { LogAuditStore } from './log-store';
import { openAuditStore } from './store';
import type { AuditStore } from './store';
import type { AuditStoreOptions } from './store-options';
import type { AuditChainHead, AuditStateChange } from './write-health';
import { idsToRemote, toRemote } from './remote-error';
import { ANSWERED, ASKED, CLOSED, GONE, READER, REPLY } from './writer-protocol';
import type {
  BatchReply, CallReply, CallRequest, ParentMessage, WorkerMessage, WriterWorkerData,
} from './writer-protocol';

/**
 * The audit writer thread (writer-thread.ts starts it): the whole SqliteAuditStore runs here,
 * with its failure, held-completion, reopen and carry-over rules unchanged, so no SQLite write
 * ever runs on the proxy's thread. Batches arrive and are answered on the parent port; calls
 * that the proxy makes synchronously are answered on `calls`, with a flag the parent waits on.
 */

const data = workerData as WriterWorkerData;
const port = parentPort as MessagePort;
const flags = new Int32Array(data.flags);

/** How long a reopen waits for the parent to close its reader before going ahead anyway. */
const READER_CLOSE_WAIT_MS = 5000;

/** Whether the parent's reader let go before the last reopen; the log line says when not. */
let readerClosed = true;

function post(message: ParentMessage): void {
  port.postMessage(message);
}

/** The parent is blocked in Atomics.wait until the flag turns: post first, then wake it. */
function answer(reply: CallReply): void {
  data.calls.postMessage(reply);
  Atomics.store(flags, REPLY, ANSWERED);
  Atomics.notify(flags, REPLY);
}

/**
 * Before the store opens a new file at the path, the parent's read connection to the old one
 * closes (see beforeReopen in store-options.ts). The parent may be in its event loop (the
 * message) or waiting for a call's answer (woken on the reply flag, it checks this one too).
 */
function closeParentReader(): void {
  Atomics.store(flags, READER, ASKED);
  post({ kind: 'closeReader' });
  Atomics.notify(flags, REPLY);
  readerClosed = Atomics.wait(flags, READER, ASKED, READER_CLOSE_WAIT_MS) !== 'timed-out';
  Atomics.store(flags, READER, 0);
}

function stateChanged(change: AuditStateChange): void {
  const late = change.event === 'reopened' && !readerClosed;
  const message = late ? `${change.message}; the admin API's read connection did not close in time` : change.message;
  post({ kind: 'state', change: { ...change, message } });
}

/** What this thread needs of a store: the SQLite store (store.ts) or the log (log-store.ts). */
type WorkerStore = Pick<AuditStore, 'commitBatch' | 'completeOpenRecords' | 'heldCompletions' | 'isWritable' | 'health' | 'close'>
  & { head?(): AuditChainHead };

/** The chain head the parent mirrors (GET /api/audit/head); the SQLite store has none. */
function headOf(store: WorkerStore): AuditChainHead | null {
  return store.head === undefined ? null : store.head();
}

function open(): WorkerStore | null {
  const options: AuditStoreOptions = {
    ...data.options,
    onStateChange: stateChanged,
    beforeReopen: closeParentReader,
  };
  try {
    return data.log ? new LogAuditStore(data.file, options, data.retainMs) : openAuditStore(data.file, options);
  } catch (err) {
    answer({ seq: 0, ok: false, error: toRemote(err), health: null });
    return null;
  }
}

function call(store: WorkerStore, seq: number, request: CallRequest): CallReply {
  try {
    switch (request.method) {
      case 'isWritable':
        return { seq, ok: true, value: store.isWritable(), health: store.health() };
      case 'completeOpenRecords':
        return { seq, ok: true, value: store.completeOpenRecords(request.endedAt, request.error), health: store.health(), head: headOf(store) };
      case 'heldCompletions':
        return { seq, ok: true, value: store.heldCompletions(), health: store.health() };
      case 'close':
        retention?.stop();
        store.close();
        return { seq, ok: true, value: null, health: store.health() };
    }
  } catch (err) {
    return { seq, ok: false, error: toRemote(err), health: store.health() };
  }
}

function batch(store: WorkerStore, message: Extract<WorkerMessage, { kind: 'batch' }>): BatchReply {
  try {
    const outcome = store.commitBatch(message.opens, message.completions, message.finished);
    return {
      kind: 'batch',
      seq: message.seq,
      ok: true,
      ids: idsToRemote(outcome.ids),
      refusedCompletions: outcome.refusedCompletions,
      health: store.health(),
      head: headOf(store),
    };
  } catch (err) {
    return { kind: 'batch', seq: message.seq, ok: false, error: toRemote(err), health: store.health() };
  }
}

// A parent waiting for an answer learns at once that none will come.
process.on('exit', () => {
  Atomics.store(flags, REPLY, GONE);
  Atomics.notify(flags, REPLY);
});

/** --retain runs here, beside the writes it must not stall (retention.ts). */
function startRetention(store: WorkerStore): Retention | null {
  // The log's retention runs on the index thread (index-worker.ts).
  if (data.retainMs <= 0 || data.log) return null;
  const sqlite = store as AuditStore;
  const started = new Retention({ retainMs: data.retainMs, db: () => sqlite.db, onPass: (report) => post({ kind: 'pruned', report }) });
  started.start();
  return started;
}

const store = open();
const retention = store === null ? null : startRetention(store);
if (store !== null) {
  answer({ seq: 0, ok: true, value: null, health: store.health(), head: headOf(store) });
  port.on('message', (message: WorkerMessage) => {
    if (message.kind === 'batch') post(batch(store, message));
    else answer(call(store, message.seq, message.request));
  });
}
