import { CHECKPOINTER_DEFAULTS } from './checkpointer';
import type { CheckpointerOptions } from './checkpointer';
import type { AuditStateChange } from './write-health';

export interface AuditStoreOptions {
  clock?: () => Date;
  /** How long a write waits for another connection's lock before failing (SQLITE_BUSY). */
  busyTimeoutMs?: number;
  /** While failing, how often a probe write checks whether writes work again. */
  probeIntervalMs?: number;
  /** At most how often a write first checks that the path still names the open file. */
  fileCheckIntervalMs?: number;
  /** Completions held in memory while failing; past this the oldest is dropped (stays open). */
  maxPendingCompletions?: number;
  /** PRAGMA synchronous=FULL: every commit is fsynced before it returns (--audit-fsync). */
  fsync?: boolean;
  /** The write-ahead log's checkpoints, run from a worker thread (checkpointer.ts). */
  checkpoint?: Partial<CheckpointerOptions>;
  /**
   * --audit-key (the audit log's writer only): the chain of the log is HMAC-SHA256 with this key
   * rather than plain SHA-256. Bytes, so it crosses to the writer thread in its worker data.
   */
  chainKey?: Uint8Array | null;
  /** One call per transition (failing, recovered, reopened), meant for one log line each. */
  onStateChange?: (change: AuditStateChange) => void;
  /**
   * Called after the connection to a removed or renamed file is closed and before the path is
   * opened again: every other connection of this process to the old file must close now
   * (writer-thread.ts closes its read connection). SQLite tells connections of one process
   * apart by the file's inode, so a new connection would take the old -wal/-shm at the path for
   * its own, and truncate a log index another connection still has mapped.
   */
  beforeReopen?: () => void;
}

export const AUDIT_STORE_DEFAULTS = Object.freeze({
  /**
   * better-sqlite3 is synchronous: while a write waits for a lock, the whole event loop waits
   * (every tunnel, every request, the admin API). Our own writes hold the lock for well under a
   * millisecond, and the other writers (a `policy replay` migration, a backup, an operator's
   * sqlite3 shell) are brief, so a lock held longer than this is an outage, not contention.
   * After one timeout the store fails fast, so a lock stalls the loop once, not per request.
   */
  busyTimeoutMs: 250,
  probeIntervalMs: 1000,
  /** One stat costs about 2.5 µs against about 35 µs per insert; once a second is noise. */
  fileCheckIntervalMs: 1000,
  /** About 100 bytes each: at most about 1 MB held. */
  maxPendingCompletions: 10_000,
});

export type Settings = Required<Omit<AuditStoreOptions, 'onStateChange' | 'beforeReopen' | 'checkpoint' | 'chainKey'>> & { checkpoint: CheckpointerOptions };

/** Defaults filled in and checked once, at open: a bad value is a RangeError, not a stuck store. */
export function settingsFrom(opts: AuditStoreOptions): Settings {
  const settings: Settings = {
    clock: opts.clock ?? (() => new Date()),
    busyTimeoutMs: opts.busyTimeoutMs ?? AUDIT_STORE_DEFAULTS.busyTimeoutMs,
    probeIntervalMs: opts.probeIntervalMs ?? AUDIT_STORE_DEFAULTS.probeIntervalMs,
    fileCheckIntervalMs: opts.fileCheckIntervalMs ?? AUDIT_STORE_DEFAULTS.fileCheckIntervalMs,
    maxPendingCompletions: opts.maxPendingCompletions ?? AUDIT_STORE_DEFAULTS.maxPendingCompletions,
    fsync: opts.fsync ?? false,
    checkpoint: { ...CHECKPOINTER_DEFAULTS, ...opts.checkpoint },
  };
  const numbers: Array<[string, number, number]> = [
    ['busyTimeoutMs', settings.busyTimeoutMs, 0],
    ['probeIntervalMs', settings.probeIntervalMs, 1],
    ['fileCheckIntervalMs', settings.fileCheckIntervalMs, 0],
    ['maxPendingCompletions', settings.maxPendingCompletions, 1],
    ['checkpoint.intervalMs', settings.checkpoint.intervalMs, 1],
    ['checkpoint.restartFrames', settings.checkpoint.restartFrames, 1],
  ];
  for (const [name, value, least] of numbers) {
    if (!Number.isSafeInteger(value) || value < least) throw new RangeError(`${name} must be an integer >= ${least}, got ${value}`);
  }
  return settings;
}
