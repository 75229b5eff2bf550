import fs from 'node:fs';
import path from 'node:path';
import { encodeHeadEntry, frameEntries, prepareEntry } from './entry-codec';
import type { ChainHead, NewEntry, PreparedEntry } from './entry-codec';
import { SEGMENT_HEADER_BYTES, segmentHeader, UnsupportedLogFormatError } from './frame';
import { DEFAULT_ID_BLOCK, IdReservation, readIdMark } from './id-reservation';
import { recoverLog } from './log-recovery';
import type { RecoveryReport } from './log-recovery';
import type { LogPosition } from './segment-reader';
import { errnoCode, fsyncDir, segmentName } from './segment-files';

export interface SegmentLogOptions {
  /** The log's folder (auditLogDir(--db)); created if missing. */
  dir: string;
  /** A segment is closed and a new one started before a batch would take it past this. */
  maxSegmentBytes?: number;
  /** fdatasync after each batch (`--audit-fsync`): the batch then survives a power cut too. */
  fsync?: boolean;
  /** How many ids one fsynced reservation covers. */
  idBlock?: number;
  /** Ids start at least here: a store being taken over keeps its ids. */
  firstId?: number;
  /**
   * A segment is also closed once it is this old, so retention, which drops whole segments, can
   * keep disk use flat when fewer than maxSegmentBytes arrive per retention period. 0: no limit.
   */
  maxSegmentAgeMs?: number;
  /** For segment ages; performance.now() by default. */
  now?: () => number;
  /** --audit-key: the chain is HMAC-SHA256 with this key; plain SHA-256 without. */
  chainKey?: Uint8Array | null;
  /** The time written in a segment's checkpoint; the wall clock by default. */
  clock?: () => Date;
}

export const DEFAULT_MAX_SEGMENT_BYTES = 64 * 1024 * 1024;

/** The log cannot be written: the caller fails closed (503) and tries again later. */
export class AuditLogWriteError extends Error {
  readonly code: string | null;
  constructor(doing: string, file: string, cause: unknown) {
    const code = errnoCode(cause);
    // Duck-typed: an fs error need not be `instanceof Error` of this realm (jest, worker threads).
    const detail = (cause as { message?: unknown } | null)?.message;
    super(`audit log cannot be written: ${doing} ${file} failed (${typeof detail === 'string' ? detail : String(cause)})`);
    this.name = 'AuditLogWriteError';
    this.code = code;
  }
}

/**
 * The append side of the audit log: a batch of entries is encoded into one Buffer and written
 * with one write() to the newest segment, opened O_APPEND. Returned from appendBatch, the batch
 * is in the kernel, so it survives SIGKILL of the process (like SQLite's WAL in synchronous=NORMAL);
 * with `fsync` it survives a power cut too.
 *
 * After a failed or short write (ENOSPC, EIO, a file size limit) the segment is cut back to the
 * end of the last whole batch at once; if even that fails, the next append starts a new segment,
 * and readers skip the old segment's torn end by its checksums. Either way no partial batch is
 * ever followed by a good one in a way a reader could misread.
 */
export class SegmentLog {
  readonly recovery: RecoveryReport;
  private readonly dir: string;
  private readonly maxSegmentBytes: number;
  private readonly fsync: boolean;
  private readonly maxSegmentAgeMs: number;
  private readonly now: () => number;
  private segmentStartedAt = 0;
  private readonly ids: IdReservation;
  private readonly chainKey: Buffer | null;
  private readonly clock: () => Date;
  /** The chain's head after the last batch written; adopted only once a write succeeded. */
  private chainHead: ChainHead;
  /** Where a new segment's entries begin: after its header and its checkpoint. */
  private segmentStart = SEGMENT_HEADER_BYTES;
  private sequence: number;
  private fd = -1;
  private file = '';
  /** Bytes of the current segment that hold whole batches. */
  private size = 0;
  /** Set when a failed write could not be cut back: the segment's end is not trusted. */
  private tornEnd = false;
  private closed = false;

  private constructor(options: SegmentLogOptions, recovery: RecoveryReport, mark: number | null) {
    this.dir = options.dir;
    this.maxSegmentBytes = options.maxSegmentBytes ?? DEFAULT_MAX_SEGMENT_BYTES;
    this.fsync = options.fsync ?? false;
    this.maxSegmentAgeMs = options.maxSegmentAgeMs ?? 0;
    this.now = options.now ?? (() => performance.now());
    this.recovery = recovery;
    this.sequence = recovery.lastSegment;
    this.chainKey = options.chainKey === undefined || options.chainKey === null ? null : Buffer.from(options.chainKey);
    this.clock = options.clock ?? (() => new Date());
    this.chainHead = recovery.chainHead;
    this.ids = new IdReservation(options.dir, mark, recovery.lastId, options.firstId ?? 1, options.idBlock ?? DEFAULT_ID_BLOCK);
  }

  /** Recovers the log's end and starts a new segment; throws AuditLogWriteError when it cannot. */
  static open(options: SegmentLogOptions): SegmentLog {
    try {
      fs.mkdirSync(options.dir, { recursive: true });
    } catch (err) {
      throw new AuditLogWriteError('creating', options.dir, err);
    }
    let recovery: RecoveryReport;
    try {
      recovery = recoverLog(options.dir);
    } catch (err) {
      // A newer format is the operator's to resolve; a read or truncate failure is a write failure.
      if (err instanceof UnsupportedLogFormatError) throw err;
      throw new AuditLogWriteError('recovering', options.dir, err);
    }
    const log = new SegmentLog(options, recovery, readIdMark(options.dir));
    log.startSegment();
    return log;
  }

  /** The id the next open or finished entry will get. */
  nextId(): number {
    return this.ids.peek();
  }

  /** The chain's head: the last entry written's record id and hash (0 and zeros before any). */
  head(): ChainHead {
    return { id: this.chainHead.id, hash: Buffer.from(this.chainHead.hash) };
  }

  /** Where the next batch will begin. */
  end(): LogPosition {
    return { segment: this.sequence, offset: this.size };
  }

  /**
   * Appends a batch with one write and returns each entry's record id (a completion's is the one
   * it names). Throws AuditLogWriteError, with nothing of the batch left in the log, when it
   * cannot be written; EntryEncodeError, before writing, when an entry cannot be encoded.
   */
  appendBatch(entries: readonly NewEntry[]): number[] {
    const prepared = entries.map(prepareEntry);
    this.appendPrepared(prepared);
    return prepared.map((entry) => entry.id);
  }

  /**
   * appendBatch for entries already encoded (entry-codec.ts prepareEntry, here or in a worker):
   * each open and finished entry is given its id in place, in order.
   */
  appendPrepared(entries: readonly PreparedEntry[]): void {
    if (this.closed) throw new AuditLogWriteError('appending to', this.dir, new Error('the log is closed'));
    // No segment after a failed rotation, or one whose end could not be cut back: start anew.
    if (this.fd < 0 || this.tornEnd) this.startSegment();
    this.giveIds(entries);
    this.appendFramed(entries);
  }

  /**
   * Reserves `count` consecutive ids for a `--workers` worker to give its records itself
   * (cluster/block-merge.ts) and returns the first; none of them is handed out by appendPrepared.
   */
  reserveIds(count: number): number {
    try {
      return this.ids.take(count);
    } catch (err) {
      throw new AuditLogWriteError('reserving ids in', this.dir, err);
    }
  }

  /**
   * appendPrepared for entries whose records already have ids (from reserveIds, or found in a
   * worker's spool at start), written as they are. The caller keeps ids rising through the log.
   */
  appendNumbered(entries: readonly PreparedEntry[]): void {
    if (this.closed) throw new AuditLogWriteError('appending to', this.dir, new Error('the log is closed'));
    if (this.fd < 0 || this.tornEnd) this.startSegment();
    let highest = 0;
    for (const entry of entries) if (entry.type !== 'complete' && entry.id > highest) highest = entry.id;
    // An id found in a spool may lie beyond a mark an operator removed: never handed out again.
    this.ids.skipTo(highest + 1);
    this.appendFramed(entries);
  }

  private appendFramed(entries: readonly PreparedEntry[]): void {
    const { bytes, head } = frameEntries(entries, { key: this.chainKey, head: this.chainHead });
    if (this.size > this.segmentStart && (this.size + bytes.length > this.maxSegmentBytes || this.tooOld())) this.startSegment();
    this.write(bytes);
    this.chainHead = head;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.fd >= 0) this.closeQuietly();
  }

  private tooOld(): boolean {
    return this.maxSegmentAgeMs > 0 && this.now() - this.segmentStartedAt >= this.maxSegmentAgeMs;
  }

  private giveIds(entries: readonly PreparedEntry[]): void {
    let needed = 0;
    for (const entry of entries) if (entry.type !== 'complete') needed += 1;
    let next: number;
    try {
      next = needed === 0 ? 0 : this.ids.take(needed);
    } catch (err) {
      throw new AuditLogWriteError('reserving ids in', this.dir, err);
    }
    for (const entry of entries) if (entry.type !== 'complete') entry.id = next++;
  }

  private write(bytes: Buffer): void {
    try {
      let done = 0;
      while (done < bytes.length) {
        // A regular file returns a short count only when it cannot take more (full disk, size
        // limit); writing the rest then reports the real error.
        done += fs.writeSync(this.fd, bytes, done, bytes.length - done);
      }
      if (this.fsync) fs.fdatasyncSync(this.fd);
    } catch (err) {
      this.cutBack();
      // The next batch starts a new segment: a follower may already have read whole frames of
      // the failed batch (or, with fsync, all of it before fdatasync failed), and a position it
      // stored must never come to name a different entry.
      this.tornEnd = true;
      throw new AuditLogWriteError('appending to', this.file, err);
    }
    this.size += bytes.length;
  }

  /** Removes a failed batch's bytes, so a reader of this segment never takes them for records. */
  private cutBack(): void {
    try {
      fs.ftruncateSync(this.fd, this.size);
      if (this.fsync) fs.fdatasyncSync(this.fd);
    } catch {
      // Readers then skip the partial frame by its checksum; the next append moves on anyway.
    }
  }

  /**
   * Closes the current segment and creates the next, named one more than the last number used
   * (a failed attempt uses its number up, so a half-created file is never reopened). The folder
   * is fsynced so that a segment name, once entries are in it, is not lost and reused. The
   * header and the chain's checkpoint are one write: a segment this release wrote never lacks it.
   */
  private startSegment(): void {
    if (this.fd >= 0) this.closeQuietly();
    this.sequence += 1;
    const file = path.join(this.dir, segmentName(this.sequence));
    let fd = -1;
    let start = SEGMENT_HEADER_BYTES;
    try {
      fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_APPEND, 0o640);
      const header = Buffer.concat([segmentHeader(), encodeHeadEntry(this.chainHead, this.clock())]);
      if (fs.writeSync(fd, header) !== header.length) throw new Error('short write of the segment header');
      start = header.length;
      if (this.fsync) fs.fdatasyncSync(fd);
      fsyncDir(this.dir);
    } catch (err) {
      if (fd >= 0) fs.closeSync(fd);
      throw new AuditLogWriteError('creating', file, err);
    }
    this.fd = fd;
    this.file = file;
    this.size = start;
    this.segmentStart = start;
    this.segmentStartedAt = this.now();
    this.tornEnd = false;
  }

  /** A close error (EIO on some file systems) must not hide the write error that got us here. */
  private closeQuietly(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      // The descriptor is released even when close reports an error (POSIX close(2)).
    }
    this.fd = -1;
  }
}
