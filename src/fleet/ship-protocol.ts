import type { WorkerModule } from '../audit/start-worker';
import type { ShipStatus } from './ship-status';

/** The messages between ship-thread.ts (the proxy's thread) and ship-worker.ts. */

export interface ShipWorkerData extends WorkerModule {
  /** The audit URL, password included: it crosses to the thread in memory, never through a log. */
  url: string;
  logDir: string;
  storeId: string;
  node: string;
  policyVersion: string | null;
}

/** Parent to worker: the policy version changed; or ship what is left and stop (shutdown). */
export type ShipWorkerMessage =
  | { kind: 'policy'; version: string | null }
  | { kind: 'drain'; deadlineMs: number };

/** One log line the parent writes for the thread (the thread has no logger of its own). */
export interface ShipEvent {
  level: 'info' | 'warn' | 'error';
  msg: string;
  fields: Record<string, string | number | boolean | null | string[]>;
}

/** Worker to parent. */
export type ShipParentMessage =
  | { kind: 'status'; status: ShipStatus }
  | { kind: 'event'; event: ShipEvent }
  | { kind: 'drained'; ok: boolean; status: ShipStatus };
