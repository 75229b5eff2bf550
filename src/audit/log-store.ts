import fs from 'node:fs';
import path from 'node:path';
import type Database from 'better-sqlite3';
import type { BatchOutcome, CompletionEntry, FinishedEntry } from './connection';
import { clipText } from './record-params';
import type { AuditCompletion, AuditOpen } from './record-types';
import { encodeBatch, EntryEncodeError } from './log/entry-codec';
import { IndexConsumer } from './log/index-consumer';
import type { RecoveryReport } from './log/log-recovery';
import type { AuditChainHead } from './write-health';
import { SegmentLog } from './log/segment-log';
import type { NewEntry } from './log/segment-log';
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
  private readonly pending = new Map<number, AuditCompletion>();
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
    this.damage = describeRecovery(this.log.recovery);
    this.state = new WriteHealth({
      clock: this.settings.clock,
      probeIntervalMs: this.settings.probeIntervalMs,
      probe: () => void this.probe(),
      counts: () => ({ pendingCompletions: this.pending.size, droppedCompletions: this.dropped, fsync: this.settings.fsync, logDamage: this.damage }),
      onStateChange: options.onStateChange,
    });
    if (this.damage !== null) this.state.emit('damaged', `audit log: ${this.damage}`);
  }

  /** Reported in health() for the life of this run: recovery ran once, at open. */
  private readonly damage: string | null;

  /** Known state, no write (group commit asks before every batch). */
  writable(): boolean {
    return !this.closed && !this.state.failing;
  }

  /** Appends one batch: opens and finished records get their ids, in that order. */
  commitBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished: readonly FinishedEntry[] = []): BatchOutcome {
    if (this.closed || this.state.failing) {
      for (const [id, completion] of completions) this.hold(id, completion);
      throw this.state.unavailable();
    }
    // Opens, then finished records: the order their ids are reported in (BatchOutcome).
    const entries: NewEntry[] = [];
    for (const open of opens) entries.push({ type: 'open', open });
    for (const [open, completion] of finished) entries.push({ type: 'finished', open, completion });
    for (const [id, completion] of completions) entries.push({ type: 'complete', id, completion });
    let ids: number[];
    try {
      ids = this.log.appendBatch(entries);
    } catch (err) {
      // One entry the codec refuses (an id or a time out of range) fails that record alone.
      if (err instanceof EntryEncodeError) return this.commitEncodable(entries, opens.length + finished.length);
      for (const [id, completion] of completions) this.hold(id, completion);
      this.state.fail(err);
      throw this.state.unavailable();
    }
    for (let i = 0; i < opens.length; i += 1) this.open.add(ids[i]);
    for (const [id] of completions) this.open.delete(id);
    return { ids: ids.slice(0, opens.length + finished.length), refusedCompletions: 0 };
  }

  /**
   * The batch again without the entries the codec refuses: those records get an error in the
   * outcome (their requests a 503, as the SQLite store answers a record it refuses), the others
   * are appended as one batch.
   */
  private commitEncodable(entries: readonly NewEntry[], records: number): BatchOutcome {
    const refused = entries.map((entry) => encodeError(entry));
    const kept = entries.filter((_, i) => refused[i] === null);
    const keptIds = kept.length === 0 ? [] : this.appendOrFail(kept);
    const outcome: BatchOutcome = { ids: [], refusedCompletions: 0 };
    let next = 0;
    entries.forEach((entry, i) => {
      const error = refused[i];
      const id = error === null ? keptIds[next++] : error;
      if (i < records) outcome.ids.push(id);
      else if (error !== null) outcome.refusedCompletions += 1;
      if (typeof id !== 'number') return;
      if (entry.type === 'open') this.open.add(id);
      if (entry.type === 'complete') this.open.delete(entry.id);
    });
    return outcome;
  }

  private appendOrFail(entries: readonly NewEntry[]): number[] {
    try {
      return this.log.appendBatch(entries);
    } catch (err) {
      for (const entry of entries) if (entry.type === 'complete') this.hold(entry.id, entry.completion);
      this.state.fail(err);
      throw this.state.unavailable();
    }
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
    return [...this.pending];
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
    const held = [...this.pending];
    this.pending.clear();
    this.state.recovered(held.length > 0 ? `; writing ${held.length} held completions` : '');
    if (held.length === 0) return;
    try {
      this.commitBatch([], held);
    } catch {
      // Held again by commitBatch; the next probe tries again.
    }
  }

  private hold(id: number, completion: AuditCompletion): void {
    if (this.pending.size >= this.settings.maxPendingCompletions && !this.pending.has(id)) {
      const oldest = this.pending.keys().next().value as number;
      this.pending.delete(oldest);
      this.dropped += 1;
    }
    this.pending.set(id, completion);
  }
}

/**
 * Retention drops whole segments: with --retain, a segment is closed after a quarter of the
 * retention period (1 s to 1 h), so the log on disk stays within about 1.25 periods.
 */
function segmentAgeFor(retainMs: number): number {
  return retainMs <= 0 ? 0 : Math.min(3_600_000, Math.max(1000, Math.floor(retainMs / 4)));
}

/** Why the codec refuses this entry, or null (encoded apart, with a stand-in id where it gets one). */
function encodeError(entry: NewEntry): EntryEncodeError | null {
  try {
    encodeBatch([entry.type === 'complete' ? entry : { ...entry, id: 1 }]);
    return null;
  } catch (err) {
    if (err instanceof EntryEncodeError) return err;
    throw err;
  }
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
