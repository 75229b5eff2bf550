import path from 'node:path';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import type { MessagePort, Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { closeConnection } from './connection';
import type { BatchOutcome, CompletionEntry, FinishedEntry } from './connection';
import type { BatchTarget } from './group-commit';
import type { IndexStatus } from './index-protocol';
import { startWorker, workerModule } from './start-worker';
import type { AuditOpen } from './record-types';
import type { PruneReport } from './retention';
import type { AuditStore } from './store';
import { AUDIT_STORE_DEFAULTS } from './store-options';
import type { AuditStoreOptions } from './store-options';
import { AuditUnavailableError, describeError } from './write-health';
import { fromRemote, outcomeFromRemote } from './remote-error';
import type { AuditChainHead, AuditHealth, AuditStateChange } from './write-health';
import { ASKED, CLOSED, GONE, READER, REPLY } from './writer-protocol';
import type { CallReply, CallRequest, ParentMessage, PortableStoreOptions, RemoteError, WorkerMessage, WriterWorkerData } from './writer-protocol';

/**
 * What `serve` needs of the audit log: group commit's target, the admin API's reads, /readyz,
 * /metrics and shutdown. The store itself (store.ts) is one; so is the writer thread below.
 */
export type ServingStore = BatchTarget & Pick<AuditStore, 'file' | 'db' | 'isWritable' | 'health' | 'completeOpenRecords' | 'heldCompletions' | 'close'> & {
  /** Stores whose admin reads follow an append-only log (logged-store.ts): the read barrier. */
  syncIndex?(): Promise<boolean>;
  setSyncBarrier?(barrier: () => Promise<void>): void;
  indexStatus?(): IndexStatus;
  closeIndex?(): Promise<void>;
  /** The audit log's chain head (GET /api/audit/head); null where the store keeps no chain. */
  head?(): AuditChainHead | null;
};

/** The store's options that can cross to a thread, the state-change callback, and retention. */
export type WriterThreadOptions = PortableStoreOptions & Pick<AuditStoreOptions, 'onStateChange'> & {
  /** --retain: the writer thread deletes older records (retention.ts); 0 or absent keeps all. */
  retainMs?: number;
  onPruned?: (report: PruneReport) => void;
  /** Append to the audit log (log-store.ts), which the index thread follows, instead of SQLite. */
  log?: boolean;
};

/**
 * Opening runs the migrations, which can take a while on a large file the first time a new
 * version starts. After that, a call waits behind at most the batch in flight; each write
 * waits at most busy_timeout for a lock, so past a few of those the thread is stuck.
 */
const OPEN_WAIT_MS = 120_000;
const CALL_WAIT_FLOOR_MS = 2_000;

interface Waiting {
  resolve: (outcome: BatchOutcome) => void;
  reject: (err: Error) => void;
}

/** One started worker: its handle, its flags and the port its calls are answered on. */
interface Thread {
  worker: Worker;
  flags: Int32Array;
  calls: MessagePort;
}

/**
 * The audit store on a thread of its own (writer-worker.ts runs store.ts there). The proxy's
 * thread never runs a SQLite write: a commit of fifty records, a log that starts over, a
 * busy wait for another writer's lock all happen on the writer thread while the proxy goes on
 * relaying. Opens, refusals' finished records and completions are posted in batches
 * (group-commit.ts keeps one in flight); a batch's promise settles when the writer thread has
 * committed it.
 *
 * The few writes made synchronously (the /readyz probe; shutdown) post a call and wait for the
 * answer with Atomics.wait, and are answered after the batches posted before them.
 *
 * Reads (the admin API) use a connection of their own on this thread. It is closed before the
 * writer opens a new file at the path and reopened after (see beforeReopen in store-options.ts).
 *
 * A thread that dies, or does not answer a call in time, is stopped: writes fail closed (503,
 * /readyz not ready) and a new thread is started after probeIntervalMs, which opens the file
 * afresh. Completions the lost thread held in memory are lost with it; their records stay open
 * until the next start completes them (left-open.ts).
 */
export class WriterThread implements ServingStore {
  private thread: Thread;
  private readonly waiting = new Map<number, Waiting>();
  private reader: Database.Database;
  private mirror: AuditHealth;
  /** The chain head as of the last answer from the thread (log-store.ts writers only). */
  private headMirror: AuditChainHead | null = null;
  private seq = 0;
  private lost: Error | null = null;
  private closed = false;
  private readonly callWaitMs: number;
  private readonly restartMs: number;

  constructor(
    readonly file: string,
    private readonly opts: WriterThreadOptions = {},
  ) {
    this.callWaitMs = Math.max(CALL_WAIT_FLOOR_MS, 8 * (opts.busyTimeoutMs ?? AUDIT_STORE_DEFAULTS.busyTimeoutMs));
    this.restartMs = opts.probeIntervalMs ?? AUDIT_STORE_DEFAULTS.probeIntervalMs;
    const started = this.start();
    if (!started.ok) throw fromRemote(started.error);
    this.thread = started.thread;
    this.mirror = started.health;
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

  head(): AuditChainHead | null {
    return this.headMirror;
  }

  commitBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished: readonly FinishedEntry[] = []): Promise<BatchOutcome> {
    if (this.closed || this.lost !== null) return Promise.reject(this.unavailable());
    const seq = ++this.seq;
    return new Promise<BatchOutcome>((resolve, reject) => {
      // Waiting batches keep the process alive (a shutdown drains them); an idle thread does not.
      if (this.waiting.size === 0) this.thread.worker.ref();
      this.waiting.set(seq, { resolve, reject });
      this.post({ kind: 'batch', seq, opens, completions, finished });
    });
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

  heldCompletions(): CompletionEntry[] {
    return this.call({ method: 'heldCompletions' }) as CompletionEntry[];
  }

  /** The reader first, so the writer's close is the last one: it checkpoints and removes the log. */
  close(): void {
    if (this.closed) return;
    closeConnection(this.reader, { optimize: false });
    if (this.lost === null) {
      try {
        this.call({ method: 'close' });
      } catch {
        // The thread is stuck or gone: stopping it is all that is left.
      }
    }
    this.closed = true;
    void this.thread.worker.terminate();
    for (const waiting of this.waiting.values()) waiting.reject(this.unavailable());
    this.waiting.clear();
  }

  private start(): { ok: true; thread: Thread; health: AuditHealth } | { ok: false; error: RemoteError } {
    const { port1, port2 } = new MessageChannel();
    const flags = new Int32Array(new SharedArrayBuffer(8));
    const { onStateChange: _, onPruned: __, retainMs, log, ...options } = this.opts;
    const data: WriterWorkerData = {
      file: this.file,
      options,
      retainMs: retainMs ?? 0,
      log: log ?? false,
      flags: flags.buffer as SharedArrayBuffer,
      calls: port2,
      ...workerModule(path.join(__dirname, 'writer-worker')),
    };
    const worker = startWorker(data, { transferList: [port2] });
    const thread: Thread = { worker, flags, calls: port1 };
    // Messages and exits of a thread already given up on are ignored.
    const current = (): boolean => this.thread === thread && this.lost === null && !this.closed;
    worker.on('message', (message: ParentMessage) => current() && this.received(message));
    worker.on('error', (err) => current() && this.fail(err));
    worker.on('exit', (code) => current() && this.fail(new Error(`audit writer thread exited (code ${code})`)));
    const opened = this.waitForReply(thread, 0, OPEN_WAIT_MS);
    if (!opened.ok) {
      void worker.terminate();
      return { ok: false, error: opened.error };
    }
    worker.unref();
    if (opened.ok && opened.head !== undefined) this.headMirror = opened.head;
    return { ok: true, thread, health: opened.health };
  }

  private post(message: WorkerMessage): void {
    this.thread.worker.postMessage(message);
  }

  private call(request: CallRequest): number | boolean | null | CompletionEntry[] {
    if (this.closed) throw new Error('the audit store is closed');
    if (this.lost !== null) throw this.unavailable();
    const seq = ++this.seq;
    this.post({ kind: 'call', seq, request });
    const reply = this.waitForReply(this.thread, seq, this.callWaitMs);
    if (reply.health !== null) this.mirror = reply.health;
    if (!reply.ok) throw fromRemote(reply.error);
    if (reply.head !== undefined) this.headMirror = reply.head;
    return reply.value;
  }

  /**
   * Blocks this thread until call `seq` is answered; answers to earlier calls that came too
   * late are skipped. While blocked it also closes the reader when the writer asks (it may be
   * this very call that made the writer reopen the file). No answer in time, or a thread that
   * exited, gives the thread up: fail() stops it and starts another later.
   */
  private waitForReply(thread: Thread, seq: number, timeoutMs: number): CallReply {
    const deadline = performance.now() + timeoutMs;
    let why = `no answer within ${timeoutMs} ms`;
    for (let left = timeoutMs; left > 0; left = deadline - performance.now()) {
      Atomics.wait(thread.flags, REPLY, 0, left);
      this.closeReaderIfAsked(thread);
      const state = Atomics.exchange(thread.flags, REPLY, 0);
      for (let got = receiveMessageOnPort(thread.calls); got !== undefined; got = receiveMessageOnPort(thread.calls)) {
        const reply = got.message as CallReply;
        if (reply.seq === seq) return reply;
      }
      if (state === GONE) {
        why = 'the thread exited';
        break;
      }
    }
    const error = new Error(`audit writer thread: ${why}`);
    if (thread === this.thread) this.fail(error);
    return { seq, ok: false, error: { message: error.message, code: 'audit_unavailable' }, health: null };
  }

  private received(message: ParentMessage): void {
    if (message.kind === 'closeReader') return this.closeReaderIfAsked(this.thread);
    if (message.kind === 'state') return this.stateChanged(message.change);
    if (message.kind === 'pruned') return this.pruned(message.report);
    this.mirror = message.health;
    if (message.ok) this.headMirror = message.head;
    const waiting = this.waiting.get(message.seq);
    if (waiting === undefined) return;
    this.waiting.delete(message.seq);
    if (this.waiting.size === 0) this.thread.worker.unref();
    if (!message.ok) return waiting.reject(fromRemote(message.error));
    waiting.resolve(outcomeFromRemote(message.ids, message.refusedCompletions));
  }

  private closeReaderIfAsked(thread: Thread): void {
    if (Atomics.load(thread.flags, READER) !== ASKED) return;
    closeConnection(this.reader, { optimize: false });
    Atomics.store(thread.flags, READER, CLOSED);
    Atomics.notify(thread.flags, READER);
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

  private pruned(report: PruneReport): void {
    try {
      this.opts.onPruned?.(report);
    } catch {
      // As for state changes: a throwing log callback must not break the writer's messages.
    }
  }

  /** The writer opened a file at the path: reads follow it (they fail until one opens). */
  private reopenReader(): void {
    try {
      const fresh = openReader(this.file);
      closeConnection(this.reader, { optimize: false });
      this.reader = fresh;
    } catch {
      // Reads keep failing until the next reopen or restart.
    }
  }

  /** Give the thread up: refuse what waits on it, stop it, and start another later. */
  private fail(err: Error): void {
    if (this.lost !== null || this.closed) return;
    this.lost = err;
    void this.thread.worker.terminate();
    const error = this.unavailable();
    for (const waiting of this.waiting.values()) waiting.reject(error);
    this.waiting.clear();
    this.mirror = { ...this.mirror, writable: false, lastError: error.message, failingSince: new Date().toISOString() };
    this.stateChanged({ event: 'failing', message: `audit log cannot be written, new requests get 503: ${error.message}`, health: this.mirror });
    setTimeout(() => this.restart(), this.restartMs).unref();
  }

  private restart(): void {
    if (this.closed || this.lost === null) return;
    // The file may have been replaced meanwhile: the reader lets go of it first (see beforeReopen).
    closeConnection(this.reader, { optimize: false });
    const started = this.start();
    if (!started.ok) {
      setTimeout(() => this.restart(), this.restartMs).unref();
      this.mirror = { ...this.mirror, lastError: `audit writer thread restart: ${started.error.message}` };
      return;
    }
    this.thread = started.thread;
    this.lost = null;
    this.mirror = started.health;
    this.reopenReader();
    this.stateChanged({
      event: 'recovered',
      message: 'audit writer thread restarted; completions the stopped one held are lost (their records stay open)',
      health: this.mirror,
    });
  }

  private unavailable(): AuditUnavailableError {
    return new AuditUnavailableError(`audit writer thread stopped: ${this.lost === null ? 'closed' : describeError(this.lost)}`);
  }
}

/** A second connection to the same file, for reads only (WAL: it never blocks the writer). */
export function openReader(file: string): Database.Database {
  const db = new Database(file, { fileMustExist: true });
  db.pragma(`busy_timeout = ${AUDIT_STORE_DEFAULTS.busyTimeoutMs}`);
  db.pragma('query_only = 1');
  return db;
}
