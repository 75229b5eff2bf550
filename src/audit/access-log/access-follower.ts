import fs from 'node:fs';
import type Database from 'better-sqlite3';
import { getRequest, recordToJson } from '../query';
import type { AuditCompletion, AuditOpen, AuditRecordJson } from '../record-types';
import type { LogEntry } from '../log/entry-codec';
import { readStep } from '../log/index-step';
import { comparePositions } from '../log/segment-reader';
import type { LogDamage, LogPosition } from '../log/segment-reader';
import { openReader } from '../writer-thread';
import { readAccessPosition, writeAccessPosition } from './access-position';
import type { AccessSink } from './access-sink';

/** The access line's fixed key: it tells an access line from serve's own log lines on stdout. */
export const ACCESS_MSG = 'access';

/** One access line: `msg`, the record as the admin API returns it (SPEC §4), and the replica's name. */
export type AccessLine = { msg: typeof ACCESS_MSG } & AuditRecordJson & { node: string };

export function accessLine(record: AuditRecordJson, node: string): string {
  // JSON.stringify escapes quotes, control characters (a NUL, a newline) and lone surrogates:
  // whatever a hostile client sent, the line is one line of valid JSON.
  return `${JSON.stringify({ msg: ACCESS_MSG, ...record, node } satisfies AccessLine)}\n`;
}

export interface AccessFollowerOptions {
  /** The audit log's folder (auditLogDir(--db)). */
  logDir: string;
  /** The audit index (--db): read only for records whose open is no longer held in memory. */
  dbFile: string;
  sink: AccessSink;
  positionFile: string;
  node: string;
  /** Where to begin when there is no position file: the log's end when serve started. */
  start: LogPosition;
  /** fdatasync the lines, then the position (--audit-fsync). */
  fsync?: boolean;
  /** Opens held in memory; past it the oldest are let go and read back from the index. */
  maxOpenRecords?: number;
  maxBatchEntries?: number;
  onDamage?: (damage: LogDamage) => void;
  /** Something to say once (a shorter file, a record the index no longer has). */
  onNotice?: (message: string) => void;
}

export const ACCESS_FOLLOWER_DEFAULTS = Object.freeze({ maxOpenRecords: 100_000, maxBatchEntries: 5000 });

export interface AccessCounters {
  lines: number;
  /** Opens let go of past maxOpenRecords (their completions are read from the index). */
  released: number;
  /** Completions whose record could not be written (gone from the index: --retain). */
  missing: number;
}

/**
 * Follows the audit log and writes one access line per completed record, off the proxy's
 * thread (access-log-worker.ts runs it). An open is held (by id, in log order) until its
 * completion arrives; a finished record is written at once. After each step the lines are
 * written, then the position (access-position.ts) is stored: a crash between the two leaves
 * lines past the stored mark, which the next start cuts off and writes again, so across a
 * restart no line is lost or repeated.
 */
export class AccessFollower {
  readonly counters: AccessCounters = { lines: 0, released: 0, missing: 0 };
  private readonly maxOpen: number;
  private readonly maxBatch: number;
  /** Where the next entry to read begins. */
  private at: LogPosition;
  /** Entries before this were handled by an earlier run: no lines for them. */
  private readonly replayEnd: LogPosition;
  /** Every open record, by id, with where it was opened; insertion (log) order, so the first is the oldest. */
  private readonly pending = new Map<number, LogPosition>();
  /** The opens' fields, for at most maxOpen of them (the newest). */
  private readonly opens = new Map<number, AuditOpen>();
  private index: Database.Database | null = null;

  constructor(private readonly options: AccessFollowerOptions) {
    this.maxOpen = options.maxOpenRecords ?? ACCESS_FOLLOWER_DEFAULTS.maxOpenRecords;
    this.maxBatch = options.maxBatchEntries ?? ACCESS_FOLLOWER_DEFAULTS.maxBatchEntries;
    const saved = readAccessPosition(options.positionFile);
    const notice = options.sink.open(saved?.file ?? null);
    if (notice !== null) options.onNotice?.(notice);
    this.at = saved?.replay ?? options.start;
    this.replayEnd = saved?.next ?? options.start;
  }

  /** Reads one batch and writes its lines; returns the entries handled. Throws when a write fails. */
  step(): number {
    const read = readStep(this.options.logDir, this.at, this.maxBatch);
    const lines: string[] = [];
    let handled = 0;
    for (; handled < read.entries.length; handled += 1) {
      const line = this.handle(read.entries[handled], read.positions[handled]);
      if (line === WAIT) break;
      if (line !== null) lines.push(line);
    }
    const stoppedEarly = handled < read.entries.length;
    const next = stoppedEarly ? read.positions[handled] : read.next;
    if (!stoppedEarly) for (const damage of read.damage) this.options.onDamage?.(damage);
    if (comparePositions(next, this.at) === 0) return 0;
    if (lines.length > 0) {
      this.options.sink.write(lines.join(''));
      if (this.options.fsync === true) this.options.sink.sync();
    }
    this.at = next;
    this.counters.lines += lines.length;
    this.storePosition();
    return handled;
  }

  /** Steps until the log's end as it is now (or until the index is needed and behind). */
  catchUp(): void {
    while (this.step() >= this.maxBatch);
  }

  /** logrotate renamed the file: lines from the next step on go to a new one. */
  reopen(): void {
    this.options.sink.reopen();
    this.storePosition();
  }

  close(): void {
    this.options.sink.close();
    this.index?.close();
    this.index = null;
  }

  private handle(entry: LogEntry, position: LogPosition): string | null | typeof WAIT {
    const written = comparePositions(position, this.replayEnd) < 0;
    switch (entry.type) {
      case 'open':
        this.pending.set(entry.id, position);
        this.opens.set(entry.id, entry.open);
        if (this.opens.size > this.maxOpen) this.release();
        return null;
      case 'finished':
        return written ? null : this.line(entry.id, entry.open, entry.completion);
      case 'complete': {
        // Not pending: a second completion (the first one wins, as in the index), or a record
        // opened before this follower's first start.
        if (!this.pending.has(entry.id)) return null;
        const open = this.opens.get(entry.id);
        const line = written ? null : open === undefined ? this.fromIndex(entry.id, position) : this.line(entry.id, open, entry.completion);
        if (line === WAIT) return WAIT;
        this.pending.delete(entry.id);
        this.opens.delete(entry.id);
        return line;
      }
    }
  }

  private line(id: number, open: AuditOpen, completion: AuditCompletion): string {
    return accessLine(recordToJson(id, open, completion, this.options.node), this.options.node);
  }

  /** The oldest open held lets go of its fields; it stays pending, and holds `replay` back. */
  private release(): void {
    const oldest = this.opens.keys().next();
    if (oldest.done === true) return;
    this.opens.delete(oldest.value);
    this.counters.released += 1;
  }

  /**
   * A completed record whose open was let go, from the index (the admin API's file). The index
   * applies the log in order, so once it is past this completion it holds the record complete;
   * until then the follower waits here, at this entry.
   */
  private fromIndex(id: number, position: LogPosition): string | null | typeof WAIT {
    // The index thread creates the file; until it has, it holds nothing yet.
    if (this.index === null && !fs.existsSync(this.options.dbFile)) return WAIT;
    this.index ??= openReader(this.options.dbFile);
    const at = this.index.prepare('SELECT segment, byte_offset AS offset FROM index_position WHERE id = 1').get() as LogPosition | undefined;
    if (at === undefined || comparePositions(at, position) <= 0) return WAIT;
    const record = getRequest(this.index, id);
    if (record === null || record.ended_at === null) {
      this.counters.missing += 1;
      this.options.onNotice?.(`access log: record ${id} completed, but the audit index no longer holds it (--retain); no line written`);
      return null;
    }
    return accessLine(record, this.options.node);
  }

  private storePosition(): void {
    const oldest = this.pending.values().next();
    const replay = oldest.done === true ? this.at : oldest.value;
    const next = comparePositions(this.at, this.replayEnd) < 0 ? this.replayEnd : this.at;
    writeAccessPosition(this.options.positionFile, { replay, next, file: this.options.sink.mark() }, this.options.fsync === true);
  }
}

const WAIT = Symbol('wait for the index');
