import fs from 'node:fs';
import path from 'node:path';
import { minFreeBytes } from '../config-size';
import type { MinFreeDisk } from '../config-size';
import type { BatchTarget } from './group-commit';

/**
 * `--min-free-disk`: the proxy fails closed (503, as when the audit log cannot be written) while
 * the volume holding the audit file has less free space than the watermark, so the log is
 * refused before SQLite meets a full disk mid-commit and before the disk is too full to delete
 * old records or to checkpoint. Completions and retention go on meanwhile: they are what frees
 * space again.
 */

/** What fs.statfsSync gives that is used here: blocks free to unprivileged users, and the total. */
export interface VolumeSpace {
  bsize: number;
  bavail: number;
  blocks: number;
}

/** Reads a folder's volume; injectable so a test can report a nearly full disk. */
export type StatfsFunction = (dir: string) => VolumeSpace;

export const systemStatfs: StatfsFunction = (dir) => fs.statfsSync(dir);

/** Once a second: a statfs costs a few microseconds, and a second of writes cannot fill a disk's last GiB. */
export const DISK_CHECK_INTERVAL_MS = 1000;

export interface DiskState {
  /** False when the watermark is off or the volume could not be read. */
  checked: boolean;
  freeBytes: number | null;
  minFreeBytes: number;
  low: boolean;
  /** Why the last check failed (the folder is gone, ...); null when it worked. */
  error: string | null;
}

export interface DiskWatermarkOptions {
  /** The audit file; its folder's volume is watched (the -wal and -shm files live there too). */
  dbFile: string;
  limit: MinFreeDisk;
  statfs?: StatfsFunction;
  intervalMs?: number;
  /** One call when the state turns low, and one when it recovers. */
  onChange?: (state: DiskState) => void;
}

export class DiskWatermark {
  private state: DiskState;
  private timer: NodeJS.Timeout | null = null;
  private readonly dir: string;
  private readonly statfs: StatfsFunction;
  private readonly enabled: boolean;

  constructor(private readonly opts: DiskWatermarkOptions) {
    this.dir = path.dirname(path.resolve(opts.dbFile));
    this.statfs = opts.statfs ?? systemStatfs;
    this.enabled = opts.limit.bytes !== null || opts.limit.percent !== null;
    this.state = { checked: false, freeBytes: null, minFreeBytes: 0, low: false, error: null };
  }

  /** Checks now (a start already below the watermark refuses the first request), then every interval. */
  start(): void {
    if (!this.enabled || this.timer !== null) return;
    this.check();
    this.timer = setInterval(() => this.check(), this.opts.intervalMs ?? DISK_CHECK_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  get low(): boolean {
    return this.state.low;
  }

  snapshot(): DiskState {
    return { ...this.state };
  }

  check(): void {
    const wasLow = this.state.low;
    this.state = this.measure();
    if (this.state.low !== wasLow) {
      try {
        this.opts.onChange?.(this.snapshot());
      } catch {
        // A throwing log callback must not stop the checks.
      }
    }
  }

  /**
   * An unreadable volume is not called low: the audit store's own writes show whether the file
   * can be written, and failing closed on a statfs quirk would take the proxy down for nothing.
   */
  private measure(): DiskState {
    let space: VolumeSpace;
    try {
      space = this.statfs(this.dir);
    } catch (err) {
      return { ...this.state, checked: false, low: false, error: err instanceof Error ? err.message : String(err) };
    }
    const freeBytes = space.bavail * space.bsize;
    const minFree = minFreeBytes(this.opts.limit, space.blocks * space.bsize);
    return { checked: true, freeBytes, minFreeBytes: minFree, low: freeBytes < minFree, error: null };
  }
}

/**
 * Group commit's target with the watermark in front: writable() is what the proxy asks before
 * each request (record.ts ensureAuditWritable), so a low disk gets the same 503 as a log that
 * cannot be written. Batches still go through: completions of connections already open, and
 * records of requests already answered, must reach the log.
 */
export function gateOnFreeDisk(target: BatchTarget, watermark: DiskWatermark): BatchTarget {
  const gated: BatchTarget = {
    writable: () => !watermark.low && target.writable(),
    commitBatch: (opens, completions, finished) => target.commitBatch(opens, completions, finished),
  };
  const commitPrepared = target.commitPrepared?.bind(target);
  if (commitPrepared !== undefined) gated.commitPrepared = commitPrepared;
  // Records a worker spooled were answered already: they reach the log whatever the disk.
  return target.numbered === undefined ? gated : { ...gated, numbered: target.numbered };
}

/** The log line for a change of state. */
export function describeDiskState(state: DiskState): string {
  const mib = (n: number | null): string => (n === null ? 'unknown' : `${(n / 1024 ** 2).toFixed(0)} MiB`);
  return state.low
    ? `low on disk: ${mib(state.freeBytes)} free, below --min-free-disk ${mib(state.minFreeBytes)}; new requests get 503`
    : `disk space recovered: ${mib(state.freeBytes)} free, --min-free-disk ${mib(state.minFreeBytes)}; requests accepted again`;
}
