import type { PruneReport } from './retention';
import type { WorkerModule } from './start-worker';

/** The messages between index-thread.ts (the proxy's thread) and index-worker.ts. */

export interface IndexWorkerData extends WorkerModule {
  /** The audit file the admin API reads (--db). */
  file: string;
  logDir: string;
  /** --retain in ms; 0 keeps every record. */
  retainMs: number;
  /** The consumer's pause between steps once caught up. */
  intervalMs: number;
  /**
   * --audit-url: log retention keeps every segment not yet shipped to PostgreSQL, as the local
   * copy of the ship position says (fleet/ship-position-file.ts).
   */
  waitForShipping: boolean;
  /**
   * --access-log: log retention keeps every segment from the access log's `replay` position on
   * (access-log/access-position.ts), read from this file; null without an access log.
   */
  accessPositionFile: string | null;
}

/** What the index reports about itself (/metrics, /readyz detail). */
export interface IndexStatus {
  /** How old the oldest log entry not yet in the index is; 0 when caught up. */
  lagSeconds: number;
  entriesBehind: number;
  /** Torn or damaged log regions skipped since start. */
  damagedRegions: number;
  /** The last damage skipped, as a sentence; null when none. */
  lastDamage: string | null;
  /** Why the last step or retention pass failed; null once one succeeds. */
  lastError: string | null;
}

/** Parent to worker: catch up with the log as it is now (a read barrier), or close. */
export type IndexWorkerMessage = { kind: 'sync' | 'close'; seq: number };

/** Worker to parent. */
export type IndexParentMessage =
  | { kind: 'answer'; seq: number; ok: true; status: IndexStatus }
  | { kind: 'answer'; seq: number; ok: false; error: string; status: IndexStatus }
  | { kind: 'status'; status: IndexStatus }
  | { kind: 'damage'; message: string }
  | { kind: 'pruned'; report: PruneReport }
  /** Retention removed whole log segments, or kept some for records still open. */
  | { kind: 'segments'; dropped: number; keptForOpenRecords: number };
