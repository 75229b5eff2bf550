import fs from 'node:fs';
import path from 'node:path';
import type Database from 'better-sqlite3';
import type { BatchOutcome, CompletionEntry, FinishedEntry } from './connection';
import { clipText } from './record-params';
import type { AuditCompletion, AuditOpen } from './record-types';
import { batchOutcome, EntryEncodeError, isPrepared, prepareBatch, refusedByFrame } from './log/entry-codec';
import { decodePrepared } from './log/entry-decode';
import type { PreparedEntry, RefusedEntry } from './log/entry-codec';
import { IndexConsumer } from './log/index-consumer';
import type { RecoveryReport } from './log/log-recovery';
import type { AuditChainHead } from './write-health';
import { AuditLogWriteError, SegmentLog } from './log/segment-log';
import { removeSpoolFiles, spooledPast, spoolDir } from '../cluster/spool';
import { auditLogDir } from './log/segment-files';
import { settingsFrom } from './store-options';
import type { AuditStoreOptions, Settings } from './store-options';
import { WriteHealth } from './write-health';
import type { AuditHealth } from './write-health';

/**
 * The audit store of `serve` (issue 14): every open, completion and refused request is appended
 * to the log (log/segment-log.ts), one write() per batch, and that append is the durability SPEC
 * §4 asks for before a byte is forwarded: in the kernel on return (a crash of the process loses
 * nothing), fsynced with --audit-fsync. Nothing else runs on this path: the SQLite index that the
 * admin API reads follows the log on a thread of its own (index-thread.ts).
 *
 * What the SQLite store (store.ts) does for its file, this does for the log: fail closed (a
 * failed append throws, requests get 503, a probe brings writes back), hold completions in memory
 * while failing (bounded), complete every record still open at shutdown and at the next start.
 * Records a crash left open are found in the index, which catches up with the log at open.
 */
export class LogAuditStore {
  private readonly log: SegmentLog;
  private readonly settings: Settings;
  private readonly state: WriteHealth;
  /** Records opened and not completed: completed at shutdown, kept by retention. */
  private readonly open: Set<number>;
  /** Completions held while the log cannot be written, by record id, already encoded. */
  private readonly pending = new Map<number, PreparedEntry>();
  private dropped = 0;
  private closed = false;

  constructor(
    readonly file: string,
    options: AuditStoreOptions,
    retainMs = 0,
  ) {
    this.settings = settingsFrom(options);
    const dir = auditLogDir(file);
    // The index first: it takes over a file written before the log existed (its ids stay taken)
    // and applies what an earlier run appended, so the records that run left open are known.
    const index = new IndexConsumer({ file, logDir: dir, clock: this.settings.clock });
    let firstId: number;
    try {
      index.catchUp();
      firstId = index.firstFreeId();
      this.open = new Set(openIds(index.db));
    } finally {
      index.close();
    }
    this.log = SegmentLog.open({ dir, fsync: this.settings.fsync, firstId, maxSegmentAgeMs: segmentAgeFor(retainMs), chainKey: options.chainKey ?? null, clock: this.settings.clock });
    this.spool = spoolDir(dir);
    // Before anything is appended: what workers of an earlier run spooled and the log lacks.
    const spooled = this.appendSpooled();
    this.damage = describeRecovery(this.log.recovery);
    this.state = new WriteHealth({
      clock: this.settings.clock,
      probeIntervalMs: this.settings.probeIntervalMs,
      probe: () => void this.probe(),
      counts: () => ({ pendingCompletions: this.pending.size, droppedCompletions: this.dropped, fsync: this.settings.fsync, logDamage: this.damage }),
      onStateChange: options.onStateChange,
    });
    if (this.damage !== null) this.state.emit('damaged', `audit log: ${this.damage}`);
    if (spooled !== null) this.state.emit('spooled', spooled);
  }

  /** The folder `--workers` workers spool their batches in (cluster/spool.ts). */
  readonly spool: string;

  /**
   * Appends the records workers spooled but the log lacks (their primary was killed, or its log
   * failed, before it appended them), then removes the spools. Null when there were none.
   */
  private appendSpooled(): string | null {
    try {
      fs.mkdirSync(this.spool, { recursive: true });
    } catch (err) {
      throw new AuditLogWriteError('creating', this.spool, err);
    }
    const found = spooledPast(this.spool, this.log.recovery.lastId, this.open);
    if (found.files.length === 0) return null;
    for (let at = 0; at < found.entries.length; at += SPOOLED_PER_APPEND) {
      const entries = found.entries.slice(at, at + SPOOLED_PER_APPEND);
      this.log.appendNumbered(entries);
      this.track(entries);
    }
    const kept = removeSpoolFiles(found.files) ? '' : '; some spool files could not be removed (read again, and skipped, at the next start)';
    if (found.entries.length === 0 && found.damaged.length === 0 && kept === '') return null;
    const torn = found.damaged.length === 0 ? '' : `; torn ends skipped in ${found.damaged.join(', ')}`;
    return `audit log: appended ${found.records} records and ${found.completions} completions that workers spooled and the log lacked${torn}${kept}`;
  }

  /** Reserves ids for a worker to give its records itself (cluster/block-merge.ts). */
  reserveIds(count: number): number {
    if (this.closed || this.state.failing) throw this.state.unavailable();
    try {
      return this.log.reserveIds(count);
    } catch (err) {
      this.state.fail(err);
      throw this.state.unavailable();
    }
  }

  /**
   * Appends workers' entries whose records have their ids already, in id order (the merge's
   * job). Nothing is held here when it fails: the caller keeps the entries and comes back.
   */
  commitNumbered(entries: readonly PreparedEntry[]): void {
    if (this.closed || this.state.failing) throw this.state.unavailable();
    try {
      this.log.appendNumbered(entries);
    } catch (err) {
      // A worker's codec checked what it sent: an entry refused here is a bug, written without it.
      if (err instanceof EntryEncodeError) {
        const kept = entries.filter((entry) => refusedByFrame(entry) === null);
        if (kept.length < entries.length) return this.commitNumbered(kept);
      }
      this.state.fail(err);
      throw this.state.unavailable();
    }
    this.track(entries);
  }

  /** Reported in health() for the life of this run: recovery ran once, at open. */
  private readonly damage: string | null;

  /** Known state, no write (group commit asks before every batch). */
  writable(): boolean {
    return !this.closed && !this.state.failing;
  }

  /** Appends one batch: opens and finished records get their ids, in that order. */
  commitBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished: readonly FinishedEntry[] = []): BatchOutcome {
    return this.commitPrepared(prepareBatch(opens, completions, finished));
  }

  /**
   * Appends entries already encoded (entry-codec.ts prepareEntry: here, or in a `--workers`
   * worker) as one batch. The outcome's ids are the records' (open and finished entries) in the
   * order given; an entry the codec refused (an EntryEncodeError in its place, or found here: an
   * id or a time out of range) fails that record alone, with a 503 for its request, as the SQLite
   * store answers a record it refuses.
   */
  commitPrepared(entries: ReadonlyArray<PreparedEntry | RefusedEntry>): BatchOutcome {
    const kept = entries.filter(isPrepared);
    if (this.closed || this.state.failing) {
      this.holdCompletions(kept);
      throw this.state.unavailable();
    }
    try {
      if (kept.length > 0) this.log.appendPrepared(kept);
    } catch (err) {
      // One entry the codec refuses fails that record alone: the others go again without it.
      if (err instanceof EntryEncodeError) {
        const checked = entries.map((entry) => (isPrepared(entry) ? refusedByFrame(entry) ?? entry : entry));
        if (checked.filter(isPrepared).length < kept.length) return this.commitPrepared(checked);
      }
      this.holdCompletions(kept);
      this.state.fail(err);
      throw this.state.unavailable();
    }
    this.track(kept);
    // appendPrepared gave each record its id in place.
    return batchOutcome(entries, (entry) => entry.id);
  }

  /** Ends every record still open: held completions first (their real ends win). */
  completeOpenRecords(endedAt: Date, error: string): number {
    if (this.state.failing) this.probe();
    if (this.state.failing) throw this.state.unavailable();
    const ids = [...this.open];
    const completion = { endedAt, status: null, bytesUp: 0, bytesDown: 0, error: clipText(error) };
    this.commitBatch([], ids.map((id): CompletionEntry => [id, completion]));
    return ids.length;
  }

  /** What a failed shutdown saves beside the database (left-open.ts). */
  heldCompletions(): CompletionEntry[] {
    return [...this.pending.values()].map((entry): CompletionEntry => {
      const decoded = decodePrepared(entry);
      if (decoded.type !== 'complete') throw new Error(`held entry ${entry.id} is not a completion`);
      return [decoded.id, decoded.completion];
    });
  }

  /** The records left open, as entries just appended open and complete them. */
  private track(entries: readonly PreparedEntry[]): void {
    for (const entry of entries) {
      if (entry.type === 'open') this.open.add(entry.id);
      else if (entry.type === 'complete') this.open.delete(entry.id);
    }
  }

  /** A real write now (/readyz): a full or read-only volume shows before a request finds it. */
  isWritable(): boolean {
    this.probe();
    return !this.state.failing;
  }

  health(): AuditHealth {
    return this.state.snapshot();
  }

  /** The chain's head (GET /api/audit/head): what `audit verify` ends at, as of the last batch. */
  head(): AuditChainHead {
    const { id, hash } = this.log.head();
    return { id, hash: hash.toString('hex') };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.state.stop();
    this.log.close();
  }

  /**
   * A real write to the log's folder (a full disk or a read-only volume fails it), then the held
   * completions: the only way from failing back to writable.
   */
  private probe(): void {
    try {
      probeFolder(auditLogDir(this.file));
    } catch (err) {
      return this.state.fail(err);
    }
    const held = [...this.pending.values()];
    this.pending.clear();
    this.state.recovered(held.length > 0 ? `; writing ${held.length} held completions` : '');
    if (held.length === 0) return;
    try {
      this.commitPrepared(held);
    } catch {
      // Held again by commitPrepared; the next probe tries again.
    }
  }

  private holdCompletions(entries: readonly PreparedEntry[]): void {
    for (const entry of entries) if (entry.type === 'complete') this.hold(entry);
  }

  private hold(entry: PreparedEntry): void {
    if (this.pending.size >= this.settings.maxPendingCompletions && !this.pending.has(entry.id)) {
      const oldest = this.pending.keys().next().value as number;
      this.pending.delete(oldest);
      this.dropped += 1;
    }
    // A worker's entry is a view into the chunk it came in: held alone, it must not keep that alive.
    this.pending.set(entry.id, typeof entry.body === 'string' ? entry : { ...entry, body: Buffer.from(entry.body) });
  }
}

/** Spooled entries appended at start per write: a long outage's spools do not become one buffer. */
const SPOOLED_PER_APPEND = 4096;

/**
 * Retention drops whole segments: with --retain, a segment is closed after a quarter of the
 * retention period (1 s to 1 h), so the log on disk stays within about 1.25 periods.
 */
function segmentAgeFor(retainMs: number): number {
  return retainMs <= 0 ? 0 : Math.min(3_600_000, Math.max(1000, Math.floor(retainMs / 4)));
}

/** What recovery at open found: a torn or damaged tail is cut off and reported, never read. */
function describeRecovery({ truncated, damage }: RecoveryReport): string | null {
  const parts = damage.map((d) => `${d.reason} in ${path.basename(d.file)} at byte ${d.offset} (${d.length} bytes skipped)`);
  if (truncated !== null) parts.push(`torn tail of ${path.basename(truncated.file)} cut at byte ${truncated.offset} (${truncated.bytes} bytes)`);
  return parts.length === 0 ? null : parts.join('; ');
}

function openIds(db: Database.Database): number[] {
  return db.prepare('SELECT id FROM requests WHERE ended_at_ms IS NULL').pluck().all() as number[];
}

/** 4 KiB written and removed: what a segment append needs from the volume, without touching one. */
function probeFolder(dir: string): void {
  const file = path.join(dir, '.write-probe');
  const fd = fs.openSync(file, 'w');
  try {
    // A short count is how a full volume or a file-size limit first shows (write(2)).
    const written = fs.writeSync(fd, Buffer.alloc(4096));
    if (written !== 4096) throw new Error(`write probe: only ${written} of 4096 bytes written`);
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
}
