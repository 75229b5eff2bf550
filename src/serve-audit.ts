import { accessPositionFile } from './audit/access-log/access-log-thread';
import { isInMemory } from './audit/connection';
import { DiskWatermark, describeDiskState, gateOnFreeDisk } from './audit/disk-watermark';
import type { DiskState, StatfsFunction } from './audit/disk-watermark';
import { GroupCommit } from './audit/group-commit';
import type { BatchTarget } from './audit/group-commit';
import { Retention } from './audit/retention';
import type { PruneReport } from './audit/retention';
import { openAuditStore } from './audit/store';
import type { AuditStateChange } from './audit/store';
import { readAuditKey } from './audit/log/verify-chain';
import { LoggedStore } from './audit/logged-store';
import type { ServingStore, WriterThreadOptions } from './audit/writer-thread';
import { MIN_FREE_DISK_OFF } from './config-size';
import type { ServeConfig } from './config';
import type { Logger } from './log';
import type { ProxyMetrics } from './metrics';

/** What `serve` takes from outside for the audit log, so tests can report a full disk. */
export interface AuditDependencies {
  statfs?: StatfsFunction;
  diskCheckIntervalMs?: number;
}

/** The audit log as `serve` runs it: the store, group commit in front, the disk watermark, retention. */
export interface ServingAudit {
  store: ServingStore;
  audit: GroupCommit;
  /** What group commit writes to: the store, refused while the disk is low (workers' batches come here). */
  target: BatchTarget;
  watermark: DiskWatermark;
  /** Stops the timers (the store itself is closed by the shutdown, after the last completions). */
  stop(): void;
}

export function openServingAudit(config: ServeConfig, log: Logger, metrics: ProxyMetrics, deps: AuditDependencies = {}): ServingAudit {
  const inMemory = isInMemory(config.dbFile);
  const options: WriterThreadOptions = {
    fsync: config.auditFsync,
    // Read here, at open, so the key's bytes live in the writer alone (and its thread's data).
    chainKey: config.auditKeyFile === null ? null : readAuditKey(config.auditKeyFile),
    onStateChange: (change) => logAuditState(log, change),
    retainMs: config.retainMs,
    onPruned: (report) => logPruned(log, metrics, report),
  };
  const waitFor = {
    waitForShipping: config.auditUrl !== null,
    accessPositionFile: config.accessLog === null ? null : accessPositionFile(config.accessLog, config.dbFile),
  };
  const store = openStore(config.dbFile, options, log, waitFor);
  const indexStatus = store.indexStatus?.bind(store);
  if (indexStatus !== undefined) metrics.setAuditIndex(indexStatus);
  // An in-memory store runs on this thread (see openStore), and so does its retention.
  const localRetention = inMemory ? new Retention({ retainMs: config.retainMs, db: () => store.db, onPass: options.onPruned }) : null;
  localRetention?.start();
  if (config.retainMs === 0) {
    log.warn('--retain is 0: audit records are kept for ever and the audit file grows without end (set --retain, e.g. 30d)');
  }
  const watermark = new DiskWatermark({
    dbFile: config.dbFile,
    // An in-memory log has no volume to watch.
    limit: inMemory ? MIN_FREE_DISK_OFF : config.minFreeDisk,
    statfs: deps.statfs,
    intervalMs: deps.diskCheckIntervalMs,
    onChange: (state) => logDiskState(log, state),
  });
  watermark.start();
  metrics.setAuditWritable(() => store.health().writable);
  metrics.setAuditDisk(() => watermark.snapshot());
  const target = gateOnFreeDisk(store, watermark);
  const audit = new GroupCommit(target, (seconds) => metrics.auditWrite(seconds));
  return {
    store,
    audit,
    target,
    watermark,
    stop: () => {
      localRetention?.stop();
      watermark.stop();
    },
  };
}

/**
 * The audit log's appends run on a thread of their own and its SQLite index on another
 * (logged-store.ts), so neither holds up relaying. An in-memory database has no log and cannot be
 * shared between threads: the SQLite store (store.ts) runs here.
 */
/** What log retention waits for besides the index: shipping (--audit-url) and the access log. */
interface RetentionWaits {
  waitForShipping: boolean;
  accessPositionFile: string | null;
}

function openStore(file: string, options: WriterThreadOptions, log: Logger, waitFor: RetentionWaits): ServingStore {
  if (!isInMemory(file)) {
    return new LoggedStore(file, {
      ...options,
      ...waitFor,
      onDamage: (message) => log.warn({ damage: message }, 'audit log: skipped a damaged region (never read as records)'),
      onSegmentsDropped: (dropped, kept) => log.info({ dropped, kept_for_open_records: kept }, 'audit log segments dropped (--retain)'),
      onFailed: (why) => log.error({ err: why }, 'audit index thread stopped; a new one starts in a second (records are safe in the log; the admin API lags)'),
    });
  }
  const { retainMs: _, onPruned: __, ...storeOptions } = options;
  return openAuditStore(file, storeOptions);
}

/** /readyz detail: free space against the watermark; `reason` says why not ready. */
export function diskReadiness(watermark: DiskWatermark): { ok: boolean; detail: Record<string, unknown> } {
  const state = watermark.snapshot();
  const disk = { free_bytes: state.freeBytes, min_free_bytes: state.minFreeBytes, low: state.low, error: state.error };
  return state.low ? { ok: false, detail: { audit_disk: disk, reason: describeDiskState(state) } } : { ok: true, detail: { audit_disk: disk } };
}

/** One line when the audit log starts failing, recovers, or had to be reopened. */
function logAuditState(log: Logger, change: AuditStateChange): void {
  const level = change.event === 'failing' ? 'error' : change.event === 'reopened' || change.event === 'damaged' || change.event === 'spooled' ? 'warn' : 'info';
  log[level]({ audit: change.health }, change.message);
}

/** One line on entering the low-disk state and one on leaving it. */
function logDiskState(log: Logger, state: DiskState): void {
  const fields = { audit_disk: { free_bytes: state.freeBytes, min_free_bytes: state.minFreeBytes, low: state.low } };
  if (state.low) log.error(fields, describeDiskState(state));
  else log.info(fields, describeDiskState(state));
}

function logPruned(log: Logger, metrics: ProxyMetrics, report: PruneReport): void {
  metrics.recordsPruned(report.deleted);
  const fields = { pruned: report.deleted, older_than: report.cutoff, batches: report.batches, ms: report.ms };
  if (report.error === null) log.info(fields, 'audit records pruned (--retain)');
  else log.warn({ ...fields, err: report.error }, 'audit retention pass stopped early; it retries at the next interval');
}
