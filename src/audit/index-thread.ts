import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import type { IndexParentMessage, IndexStatus, IndexWorkerData, IndexWorkerMessage } from './index-protocol';
import { auditLogDir } from './log/segment-files';
import type { PruneReport } from './retention';
import { startWorker, workerModule } from './start-worker';

export interface IndexThreadOptions {
  retainMs?: number;
  intervalMs?: number;
  /** Log retention waits for shipping (--audit-url). */
  waitForShipping?: boolean;
  /** Log retention waits for the access log (--access-log): its position file. */
  accessPositionFile?: string | null;
  /** A damaged log region was skipped (one log line each). */
  onDamage?: (message: string) => void;
  onPruned?: (report: PruneReport) => void;
  onSegmentsDropped?: (dropped: number, keptForOpenRecords: number) => void;
  /** The thread died (a new one starts after a second): one log line each time. */
  onFailed?: (why: string) => void;
}

/** How long after a thread died a new one starts. */
const RESTART_MS = 1000;

/** How long a read barrier waits before the admin API answers from the index as it is. */
const SYNC_WAIT_MS = 5000;

/**
 * The audit index on a thread of its own (index-worker.ts): it follows the log that the writer
 * thread appends to, so SQLite's inserts, index upkeep and checkpoints never delay an append.
 * `sync()` is the admin API's read barrier: it resolves once every batch already answered is in
 * the index, so a record shows up in the API as soon as its request was answered.
 */
export class IndexThread {
  private worker: Worker;
  private readonly data: IndexWorkerData;
  private readonly waiting = new Map<number, (ok: boolean) => void>();
  private seq = 0;
  private latest: IndexStatus = { lagSeconds: 0, entriesBehind: 0, damagedRegions: 0, lastDamage: null, lastError: null };
  private exited: string | null = null;
  private closing = false;
  private restarting = false;

  constructor(file: string, private readonly opts: IndexThreadOptions = {}) {
    this.data = {
      file,
      logDir: auditLogDir(file),
      retainMs: opts.retainMs ?? 0,
      intervalMs: opts.intervalMs ?? 200,
      waitForShipping: opts.waitForShipping ?? false,
      accessPositionFile: opts.accessPositionFile ?? null,
      ...workerModule(path.join(__dirname, 'index-worker')),
    };
    this.worker = this.start();
  }

  private start(): Worker {
    const worker = startWorker(this.data);
    const current = (): boolean => this.worker === worker;
    worker.on('message', (message: IndexParentMessage) => current() && this.received(message));
    worker.on('error', (err) => current() && this.gone(`audit index thread failed: ${err.message}`));
    worker.on('exit', (code) => current() && this.gone(`audit index thread exited (code ${code})`));
    worker.unref();
    return worker;
  }

  status(): IndexStatus {
    return this.exited === null ? this.latest : { ...this.latest, lastError: this.exited };
  }

  /** Resolves (true) once the index holds everything the log held when called; false on failure or time-out. */
  sync(): Promise<boolean> {
    return this.ask('sync');
  }

  /** Catches up one last time and closes the file; the thread then exits. */
  async close(): Promise<void> {
    this.closing = true;
    await this.ask('close');
    await this.worker.terminate();
  }

  private ask(kind: IndexWorkerMessage['kind']): Promise<boolean> {
    if (this.exited !== null) return Promise.resolve(false);
    const seq = ++this.seq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => settle(false), SYNC_WAIT_MS).unref();
      const settle = (ok: boolean): void => {
        clearTimeout(timer);
        if (!this.waiting.delete(seq)) return;
        if (this.waiting.size === 0) this.worker.unref();
        resolve(ok);
      };
      this.worker.ref();
      this.waiting.set(seq, settle);
      this.worker.postMessage({ kind, seq } satisfies IndexWorkerMessage);
    });
  }

  private received(message: IndexParentMessage): void {
    if (message.kind === 'damage') return this.opts.onDamage?.(message.message);
    if (message.kind === 'pruned') return this.opts.onPruned?.(message.report);
    if (message.kind === 'segments') return this.opts.onSegmentsDropped?.(message.dropped, message.keptForOpenRecords);
    this.latest = message.status;
    if (message.kind === 'answer') this.waiting.get(message.seq)?.(message.ok);
  }

  /**
   * The index is rebuilt from the log, so a thread that died loses nothing: a new one starts
   * after a second and resumes at the position stored in the file. Meanwhile reads answer from
   * the index as it is, and the status says why it lags.
   */
  private gone(why: string): void {
    this.exited = why;
    for (const settle of [...this.waiting.values()]) settle(false);
    // A thread that throws emits both 'error' and 'exit': one restart.
    if (this.closing || this.restarting) return;
    this.restarting = true;
    void this.worker.terminate();
    this.opts.onFailed?.(why);
    setTimeout(() => {
      this.restarting = false;
      if (this.closing) return;
      this.exited = null;
      this.worker = this.start();
    }, RESTART_MS).unref();
  }
}
