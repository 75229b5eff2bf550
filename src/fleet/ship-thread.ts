import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { startWorker, workerModule } from '../audit/start-worker';
import type { ShipEvent, ShipParentMessage, ShipWorkerData, ShipWorkerMessage } from './ship-protocol';
import { EMPTY_SHIP_STATUS } from './ship-status';
import type { ShipStatus } from './ship-status';

export interface ShipThreadOptions {
  url: string;
  logDir: string;
  storeId: string;
  node: string;
  policyVersion: string | null;
  /** A line to log for the thread (failures, recovery, migrations, a thread that died). */
  onEvent: (event: ShipEvent) => void;
}

/** How long after a thread died a new one starts. */
const RESTART_MS = 1000;

/**
 * The shipper on a thread of its own (ship-worker.ts): reading the log, building batches and
 * waiting on PostgreSQL never take the proxy's event loop. A thread that dies loses nothing (the
 * position is PostgreSQL's): a new one starts after a second. Counters add up across threads.
 */
export class ShipThread {
  private worker: Worker;
  private readonly data: ShipWorkerData;
  private latest: ShipStatus = { ...EMPTY_SHIP_STATUS };
  /** Totals of threads that died, so the counters never go back. */
  private carried = { shippedEntries: 0, failures: 0 };
  private closing = false;
  private drained: ((ok: boolean) => void) | null = null;
  private restarting = false;
  private readonly onEvent: (event: ShipEvent) => void;

  constructor(opts: ShipThreadOptions) {
    this.onEvent = opts.onEvent;
    this.data = {
      url: opts.url,
      logDir: opts.logDir,
      storeId: opts.storeId,
      node: opts.node,
      policyVersion: opts.policyVersion,
      ...workerModule(path.join(__dirname, 'ship-worker')),
    };
    this.worker = this.start();
  }

  private start(): Worker {
    const worker = startWorker(this.data);
    const current = (): boolean => this.worker === worker;
    worker.on('message', (message: ShipParentMessage) => current() && this.received(message));
    worker.on('error', (err) => current() && this.gone(`audit ship thread failed: ${err.message}`));
    worker.on('exit', (code) => current() && this.gone(`audit ship thread exited (code ${code})`));
    worker.unref();
    return worker;
  }

  status(): ShipStatus {
    return {
      ...this.latest,
      shippedEntries: this.carried.shippedEntries + this.latest.shippedEntries,
      failures: this.carried.failures + this.latest.failures,
    };
  }

  policyChanged(version: string | null): void {
    // A thread started after this (a restart) reports the version running now, not the first one.
    this.data.policyVersion = version;
    this.worker.postMessage({ kind: 'policy', version } satisfies ShipWorkerMessage);
  }

  /** Ships what the log holds now (bounded by `limitMs`), then stops the thread; true when all of it went. */
  async close(limitMs: number): Promise<boolean> {
    this.closing = true;
    const ok = await new Promise<boolean>((resolve) => {
      // The thread's own deadline ends its loop; this one covers a thread stuck in a call.
      const timer = setTimeout(() => resolve(false), limitMs + 2000);
      this.drained = (done) => {
        clearTimeout(timer);
        resolve(done);
      };
      this.worker.ref();
      this.worker.postMessage({ kind: 'drain', deadlineMs: Date.now() + limitMs } satisfies ShipWorkerMessage);
    });
    await this.worker.terminate();
    return ok;
  }

  private received(message: ShipParentMessage): void {
    if (message.kind === 'event') return this.onEvent(message.event);
    this.latest = message.status;
    if (message.kind === 'drained') this.drained?.(message.ok);
  }

  private gone(why: string): void {
    if (this.closing) {
      this.drained?.(false);
      return;
    }
    // A thread that throws emits both 'error' and 'exit': one restart, counted once.
    if (this.restarting) return;
    this.restarting = true;
    this.carried = { shippedEntries: this.status().shippedEntries, failures: this.status().failures + 1 };
    this.latest = { ...this.latest, shippedEntries: 0, failures: 0, lastError: why };
    void this.worker.terminate();
    this.onEvent({ level: 'error', msg: 'audit ship thread stopped; a new one starts in a second (records are safe in the local log)', fields: { err: why } });
    setTimeout(() => {
      this.restarting = false;
      if (this.closing) return;
      this.worker = this.start();
    }, RESTART_MS).unref();
  }
}
