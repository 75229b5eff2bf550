import path from 'node:path';
import { Worker } from 'node:worker_threads';

/**
 * Checkpoints the audit file's write-ahead log from a worker thread, so the proxy's thread never
 * pays for one (connection.ts turns SQLite's automatic checkpoint off). A checkpoint copies the
 * log into the database file and syncs both, which on the proxy's thread was the whole p99 of a
 * proxied request (figures: docs/performance.md, "Measurements behind the code").
 *
 * Every tick the worker runs a PASSIVE checkpoint: it copies what is committed and never blocks
 * the writer. Under steady load the writer appends while that runs, so the log would never be
 * wholly copied and never start over; once it holds more than `restartFrames`, a RESTART
 * checkpoint follows. It takes the write lock in a gap between the proxy's commits (or gives up
 * until the next tick), copies the few frames written since the PASSIVE one, and lets the next
 * commit start the log from the beginning. The proxy's commits wait for it (busy handler) only
 * while those few frames are copied and synced.
 */
export interface CheckpointerOptions {
  /** How often the worker checkpoints. */
  intervalMs: number;
  /** Past this many frames in the log (4 KiB each) a RESTART checkpoint bounds its size. */
  restartFrames: number;
}

/**
 * A PASSIVE checkpoint with little to copy is cheap, so it runs often and stays close behind the
 * writer; whenever the proxy pauses for longer than one checkpoint, the log starts over by
 * itself. RESTART is the backstop for load with no such pause: at 64 MiB of log.
 */
export const CHECKPOINTER_DEFAULTS: CheckpointerOptions = Object.freeze({ intervalMs: 50, restartFrames: 16_384 });

/** The longest close() waits for the worker to let go of the file. */
const STOP_WAIT_MS = 2000;

// Plain JavaScript, started as it is from src/ (ts-jest) and dist/ alike: a store opens one per
// file, so it must start fast, without the TypeScript compile of worker-entry.js. The driver's
// path comes from the parent, so no module resolution depends on the working folder.
const WORKER_FILE = path.join(__dirname, 'checkpoint-worker.js');

export class Checkpointer {
  private readonly worker: Worker;
  private readonly done = new Int32Array(new SharedArrayBuffer(4));
  private stopped = false;

  constructor(file: string, opts: CheckpointerOptions = CHECKPOINTER_DEFAULTS) {
    this.worker = new Worker(WORKER_FILE, {
      workerData: { file, driver: require.resolve('better-sqlite3'), done: this.done.buffer, ...opts },
    });
    // The proxy must not wait on this thread to exit, nor die with it.
    this.worker.unref();
    this.worker.on('error', () => undefined);
  }

  /**
   * Synchronous on purpose: the store closes its own connection right after, and SQLite only
   * checkpoints and removes the log when the last connection to the file closes.
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.worker.postMessage('stop');
    Atomics.wait(this.done, 0, 0, STOP_WAIT_MS);
    void this.worker.terminate();
  }
}
