import os from 'node:os';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { auditLogDir } from '../log/segment-files';
import type { LogPosition } from '../log/segment-reader';
import { startWorker, workerModule } from '../start-worker';
import type { AccessLogParentMessage, AccessLogWorkerData, AccessLogWorkerMessage } from './access-log-protocol';

export interface AccessLogOptions {
  /** `stdout` or a file path (--access-log). */
  target: string;
  /** The audit file (--db); its log is what the access log follows. */
  dbFile: string;
  /** Where to begin when nothing was stored: the log's end now (see indexPosition). */
  start: LogPosition;
  /** The replica's name (--node); the host name by default. */
  node?: string;
  fsync?: boolean;
  intervalMs?: number;
  maxOpenRecords?: number;
  onNotice?: (message: string) => void;
  onError?: (message: string) => void;
}

/**
 * The index's position, read on the proxy's thread once it is in sync with the log and before
 * it accepts a connection: at a first start the access log begins there, with no record open
 * (the ones an earlier run left open were completed just before).
 */
export function indexPosition(db: Database.Database): LogPosition {
  const row = db.prepare('SELECT segment, byte_offset AS offset FROM index_position WHERE id = 1').get() as LogPosition | undefined;
  return row ?? { segment: 0, offset: 0 };
}

/** How long close() waits for the last lines. */
const CLOSE_WAIT_MS = 10_000;

/**
 * Where the follower's position is kept: beside a FILE, hidden (`.access.log.position`) so that
 * a logrotate glob such as `*.log*` does not rotate it; for stdout, beside the audit file.
 */
export function accessPositionFile(target: string, dbFile: string): string {
  if (target !== 'stdout') return path.join(path.dirname(path.resolve(target)), `.${path.basename(target)}.position`);
  const db = path.resolve(dbFile);
  return path.join(path.dirname(db), `${path.parse(db).name}-access-stdout.position`);
}

/**
 * `serve --access-log` (SPEC §6): one JSON line per completed record, written by a thread of
 * its own (access-log-worker.ts) that follows the audit log's files. The proxy's thread posts
 * nothing per request: it starts the thread, forwards SIGUSR1 and waits for it at shutdown.
 */
export class AccessLogThread {
  private readonly worker: Worker;
  private closedWaiter: (() => void) | null = null;

  constructor(options: AccessLogOptions) {
    const data: AccessLogWorkerData = {
      logDir: auditLogDir(options.dbFile),
      dbFile: options.dbFile,
      file: options.target === 'stdout' ? null : path.resolve(options.target),
      positionFile: accessPositionFile(options.target, options.dbFile),
      node: options.node ?? os.hostname(),
      start: options.start,
      fsync: options.fsync ?? false,
      intervalMs: options.intervalMs ?? 200,
      maxOpenRecords: options.maxOpenRecords,
      ...workerModule(path.join(__dirname, 'access-log-worker')),
    };
    this.worker = startWorker(data);
    this.worker.on('message', (message: AccessLogParentMessage) => {
      if (message.kind === 'notice') options.onNotice?.(message.message);
      else if (message.kind === 'error') options.onError?.(message.message);
      else this.closedWaiter?.();
    });
    this.worker.on('error', (err) => options.onError?.(`access log thread failed: ${err.message}; lines resume at the next start`));
    this.worker.unref();
  }

  /** SIGUSR1 (logrotate): the file is opened again at its path. */
  reopen(): void {
    this.worker.postMessage({ kind: 'reopen' } satisfies AccessLogWorkerMessage);
  }

  /** Writes the lines of every completion in the log now (the shutdown's included), then stops. */
  async close(): Promise<void> {
    this.worker.ref();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, CLOSE_WAIT_MS);
      this.closedWaiter = () => {
        clearTimeout(timer);
        resolve();
      };
      this.worker.once('exit', () => this.closedWaiter?.());
      this.worker.postMessage({ kind: 'close' } satisfies AccessLogWorkerMessage);
    });
    await this.worker.terminate();
  }
}
