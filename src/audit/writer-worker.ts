import { parentPort, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import { openAuditStore } from './store';
import type { AuditStore } from './store';
import type { AuditStoreOptions } from './store-options';
import { isRecordError } from './write-health';
import type {
  BatchReply, CallReply, CallRequest, ParentMessage, RemoteError, WorkerMessage, WriterWorkerData,
} from './writer-protocol';

/**
 * The audit writer thread (writer-thread.ts starts it): the whole SqliteAuditStore runs here,
 * with its failure, held-completion, reopen and carry-over rules unchanged, so no SQLite write
 * ever runs on the proxy's thread. Batches arrive and are answered on the parent port; calls
 * that the proxy makes synchronously are answered on `calls`, with a flag the parent waits on.
 */

const data = workerData as WriterWorkerData;
const port = parentPort as MessagePort;
const flag = new Int32Array(data.flag);

function remote(err: unknown): RemoteError {
  const { message, code } = err as { message?: unknown; code?: unknown };
  return {
    message: typeof message === 'string' ? message : String(err),
    code: typeof code === 'string' ? code : null,
    recordError: isRecordError(err),
  };
}

function open(): AuditStore | null {
  const options: AuditStoreOptions = {
    ...data.options,
    onStateChange: (change) => port.postMessage({ kind: 'state', change } satisfies ParentMessage),
  };
  try {
    return openAuditStore(data.file, options);
  } catch (err) {
    answer({ seq: 0, ok: false, error: remote(err), health: null });
    return null;
  }
}

/** The parent is blocked in Atomics.wait until the flag turns: post first, then wake it. */
function answer(reply: CallReply): void {
  data.calls.postMessage(reply);
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
}

function call(store: AuditStore, seq: number, request: CallRequest): CallReply {
  try {
    switch (request.method) {
      case 'record':
        return { seq, ok: true, value: store.record(request.open, request.completion), health: store.health() };
      case 'isWritable':
        return { seq, ok: true, value: store.isWritable(), health: store.health() };
      case 'completeOpenRecords':
        return { seq, ok: true, value: store.completeOpenRecords(request.endedAt, request.error), health: store.health() };
      case 'close':
        store.close();
        return { seq, ok: true, value: null, health: store.health() };
    }
  } catch (err) {
    return { seq, ok: false, error: remote(err), health: store.health() };
  }
}

function batch(store: AuditStore, message: Extract<WorkerMessage, { kind: 'batch' }>): BatchReply {
  try {
    const outcome = store.commitBatch(message.opens, message.completions);
    return {
      kind: 'batch',
      seq: message.seq,
      ok: true,
      ids: outcome.ids.map((id) => (typeof id === 'number' ? id : remote(id))),
      refusedCompletions: outcome.refusedCompletions,
      health: store.health(),
    };
  } catch (err) {
    return { kind: 'batch', seq: message.seq, ok: false, error: remote(err), health: store.health() };
  }
}

const store = open();
if (store !== null) {
  answer({ seq: 0, ok: true, value: null, health: store.health() });
  port.on('message', (message: WorkerMessage) => {
    if (message.kind === 'batch') port.postMessage(batch(store, message));
    else if (message.kind === 'call') answer(call(store, message.seq, message.request));
  });
}
