import type { LogPosition } from '../log/segment-reader';
import type { WorkerModule } from '../start-worker';

/** The messages between access-log-thread.ts (the proxy's thread) and access-log-worker.ts. */

export interface AccessLogWorkerData extends WorkerModule {
  logDir: string;
  dbFile: string;
  /** A file path, or null for stdout. */
  file: string | null;
  positionFile: string;
  node: string;
  start: LogPosition;
  fsync: boolean;
  intervalMs: number;
  maxOpenRecords?: number;
}

export type AccessLogWorkerMessage = { kind: 'reopen' } | { kind: 'close' };

export type AccessLogParentMessage =
  | { kind: 'notice'; message: string }
  | { kind: 'error'; message: string }
  | { kind: 'closed' };
