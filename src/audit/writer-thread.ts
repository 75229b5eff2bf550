import path from 'node:path';
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { closeConnection } from './connection';
import type { BatchOutcome, CompletionEntry } from './connection';
import type { BatchTarget } from './group-commit';
import type { AuditCompletion, AuditOpen } from './record-types';
import type { AuditStore } from './store';
import type { AuditStoreOptions } from './store-options';
import { AuditUnavailableError } from './write-health';
import type { AuditHealth, AuditStateChange } from './write-health';
import type {
  CallReply, CallRequest, ParentMessage, RemoteError, WorkerMessage, WriterWorkerData,
} from './writer-protocol';

/**
 * What `serve` needs of the audit log: group commit's target, the admin API's reads, /readyz,
 * /metrics and shutdown. The store itself (store.ts) is one; so is the writer thread below.
 */
export type ServingStore = BatchTarget & Pick<AuditStore, 'file' | 'db' | 'isWritable' | 'health' | 'completeOpenRecords' | 'close'>;

/** Options for the writer thread: the store's, less the clock (a function cannot cross threads). */
export type WriterThreadOptions = Omit<AuditStoreOptions, 'clock'>;

/**
 * Opening runs the migrations, which can take a while on a large file the first time a new
 * version starts; after that a call waits for at most one batch and its own write.
 */
const OPEN_WAIT_MS = 120_000;
const CALL_WAIT_MS = 10_000;

// Plain JavaScript run with `eval` (as in checkpointer.ts): from dist/ it loads the compiled
// writer-worker.js; under ts-jest, which has no loader in other threads, it compiles the .ts
// sources on the fly with TypeScript's transpileModule.
const BOOTSTRAP = `
const { workerData } = require('node:worker_threads');
if (workerData.typescript !== null) {
  const ts = require(workerData.typescript);
  const fs = require('node:fs');
  const compilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
  require.extensions['.ts'] = (module, filename) => {
    const source = fs.readFileSync(filename, 'utf8');
    module._compile(ts.transpileModule(source, { fileName: filename, compilerOptions }).outputText, filename);
  };
}
require(workerData.entry);
`;

interface Waiting {
  resolve: (outcome: BatchOutcome) => void;
  reject: (err: Error) => void;
}

/**
 * The audit store on a thread of its own (writer-worker.ts runs store.ts there). The proxy's
 * thread never runs a SQLite write: a commit of fifty records, a log that starts over, a
 * busy wait for another writer's lock all happen on the writer thread while the proxy goes on
 * relaying. Opens and completions are posted in batches (group-commit.ts keeps one in flight);
 * a batch's promise settles when the writer thread has committed it.
 *
 * The few writes the proxy makes synchronously (a refusal's record, which its 403 names; the
 * /readyz probe; shutdown) post a call and wait for the answer with Atomics.wait, which is what
 * they cost before on this thread, and are answered after the batches posted before them.
 *
 * Reads (the admin API) use a connection of their own on this thread, reopened when the writer
 * reopens a removed file. If the writer thread dies, every write fails from then on (fail
 * closed: new requests get 503, /readyz says not ready) and the error is logged.
 */
export class WriterThread implements ServingStore {
  private readonly worker: Worker;
  private readonly flag = new Int32Array(new SharedArrayBuffer(4));
  private readonly calls: MessagePort;
  private readonly waiting = new Map<number, Waiting>();
  private reader: Database.Database;
  private mirror: AuditHealth;
  private seq = 0;
  private lost: Error | null = null;
  private closed = false;

  constructor(
    readonly file: string,
    private readonly opts: WriterThreadOptions = {},
  ) {
    const { port1, port2 } = new MessageChannel();
    this.calls = port1;
    const typescript = path.extname(__filename) === '.ts' ? require.resolve('typescript') : null;
    const { onStateChange: _, ...options } = opts;
    const data: WriterWorkerData & { entry: string; typescript: string | null } = {
      file,
      options,
      flag: this.flag.buffer as SharedArrayBuffer,
      calls: port2,
      entry: path.join(__dirname, `writer-worker${path.extname(__filename)}`),
      typescript,
    };
    this.worker = new Worker(BOOTSTRAP, { eval: true, workerData: data, transferList: [port2] });
    this.worker.on('message', (message: ParentMessage) => this.received(message));
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`audit writer thread exited (code ${code})`)));
    const opened = this.waitForReply(0, OPEN_WAIT_MS);
    if (!opened.ok) {
      void this.worker.terminate();
      throw fromRemote(opened.error);
    }
    this.mirror = opened.health;
    this.reader = openReader(file);
  }

  /** The read connection, for query.ts. Read it at each use: it is replaced after a reopen. */
  get db(): Database.Database {
    return this.reader;
  }

  /** Known state, no round trip: refreshed by every answer and state change from the thread. */
  writable(): boolean {
    return this.lost === null && this.mirror.writable;
  }

  health(): AuditHealth {
    return this.mirror;
  }

  commitBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[]): Promise<BatchOutcome> {
    if (this.lost !== null) return Promise.reject(this.unavailable());
    const seq = ++this.seq;
    return new Promise<BatchOutcome>((resolve, reject) => {
      this.waiting.set(seq, { resolve, reject });
      this.post({ kind: 'batch', seq, opens, completions });
    });
  }

  record(record: AuditOpen, completion: AuditCompletion): number {
    return this.call({ method: 'record', open: record, completion }) as number;
  }

  isWritable(): boolean {
    try {
      return this.call({ method: 'isWritable' }) as boolean;
    } catch {
      return false;
    }
  }

  completeOpenRecords(endedAt: Date, error: string): number {
    return this.call({ method: 'completeOpenRecords', endedAt, error }) as number;
  }

  /** The reader first, so the writer's close is the last one: it checkpoints and removes the log. */
  close(): void {
    if (this.closed) return;
    closeConnection(this.reader, { optimize: false });
    if (this.lost === null) {
      try {
        this.call({ method: 'close' });
      } catch {
        // The thread is stuck or gone: terminating it is all that is left.
      }
    }
    this.closed = true;
    void this.worker.terminate();
  }

  private post(message: WorkerMessage): void {
    this.worker.postMessage(message);
  }

  private call(request: CallRequest): number | boolean | null {
    if (this.closed) throw new Error('the audit store is closed');
    if (this.lost !== null) throw this.unavailable();
    const seq = ++this.seq;
    Atomics.store(this.flag, 0, 0);
    this.post({ kind: 'call', seq, request });
    const reply = this.waitForReply(seq, CALL_WAIT_MS);
    if (!reply.ok) throw fromRemote(reply.error);
    return reply.value;
  }

  /** Blocks this thread until the call `seq` is answered (earlier, late answers are skipped). */
  private waitForReply(seq: number, timeoutMs: number): CallReply {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0 || this.lost !== null) break;
      Atomics.wait(this.flag, 0, 0, left);
      Atomics.store(this.flag, 0, 0);
      let received = receiveMessageOnPort(this.calls);
      while (received !== undefined) {
        const reply = received.message as CallReply;
        if (reply.health !== null) this.mirror = reply.health;
        if (reply.seq === seq) return reply;
        received = receiveMessageOnPort(this.calls);
      }
    }
    const why = this.lost?.message ?? `no answer within ${timeoutMs} ms`;
    return { seq, ok: false, error: { message: `audit writer thread: ${why}`, code: 'audit_unavailable', recordError: false }, health: null };
  }

  private received(message: ParentMessage): void {
    if (message.kind === 'state') {
      this.stateChanged(message.change);
      return;
    }
    this.mirror = message.health;
    const waiting = this.waiting.get(message.seq);
    if (waiting === undefined) return;
    this.waiting.delete(message.seq);
    if (!message.ok) return waiting.reject(fromRemote(message.error));
    waiting.resolve({
      ids: message.ids.map((id) => (typeof id === 'number' ? id : fromRemote(id))),
      refusedCompletions: message.refusedCompletions,
    });
  }

  private stateChanged(change: AuditStateChange): void {
    this.mirror = change.health;
    if (change.event === 'reopened') this.reopenReader();
    try {
      this.opts.onStateChange?.(change);
    } catch {
      // A throwing log callback must not break the writer's messages.
    }
  }

  /** The writer moved to a new file at the path; reads follow it (the old one stays on failure). */
  private reopenReader(): void {
    try {
      const fresh = openReader(this.file);
      closeConnection(this.reader, { optimize: false });
      this.reader = fresh;
    } catch {
      // Reads keep the old file until the next reopen.
    }
  }

  private fail(err: Error): void {
    if (this.lost !== null || this.closed) return;
    this.lost = err;
    const error = this.unavailable();
    for (const waiting of this.waiting.values()) waiting.reject(error);
    this.waiting.clear();
    this.mirror = { ...this.mirror, writable: false, lastError: error.message, failingSince: new Date().toISOString() };
    this.stateChanged({ event: 'failing', message: `audit log cannot be written, new requests get 503: ${error.message}`, health: this.mirror });
  }

  private unavailable(): AuditUnavailableError {
    return new AuditUnavailableError(`audit writer thread stopped: ${this.lost?.message ?? 'closed'}`);
  }
}

/** A second connection to the same file, for reads only (WAL: it never blocks the writer). */
function openReader(file: string): Database.Database {
  const db = new Database(file, { fileMustExist: true });
  db.pragma('busy_timeout = 250');
  db.pragma('query_only = 1');
  return db;
}

/** The error as the proxy would have seen it thrown on this thread (record.ts reads `code`). */
function fromRemote(error: RemoteError): Error {
  if (error.code === 'audit_unavailable') return new AuditUnavailableError(error.message);
  return Object.assign(new Error(error.message), { code: error.code ?? undefined });
}
