import path from 'node:path';
import { decodeEntry, decodeHeadEntry, EntryDecodeError, readEntryHead } from './entry-decode';
import type { ChainHead, LogEntry } from './entry-codec';
import { listSegments } from './segment-files';
import { scanSegment } from './segment-scan';

/** Where an entry begins: a segment's sequence number and a byte offset in it. Totally ordered. */
export interface LogPosition {
  segment: number;
  offset: number;
}

/** A region that is not a readable entry, and why; it is skipped, never read as one. */
export interface LogDamage {
  segment: number;
  file: string;
  offset: number;
  length: number;
  reason: string;
  /** True when nothing readable follows it in that segment (a torn tail, in the last one). */
  toEnd: boolean;
}

export type LogItem =
  /** `payload`: the entry's bytes as written, a view valid until the next item is pulled. */
  | { kind: 'entry'; entry: LogEntry; position: LogPosition; next: LogPosition; payload: Buffer }
  | { kind: 'damage'; damage: LogDamage }
  /** A chain checkpoint (a segment's first frame): no record's entry; a follower moves past it. */
  | { kind: 'checkpoint'; head: ChainHead; position: LogPosition; next: LogPosition; payload: Buffer };

export function describeDamage(d: LogDamage): string {
  return `audit log ${path.basename(d.file)}: ${d.length} bytes at offset ${d.offset} skipped (${d.reason})`;
}

export function comparePositions(a: LogPosition, b: LogPosition): number {
  return a.segment !== b.segment ? a.segment - b.segment : a.offset - b.offset;
}

/**
 * Every entry of the log in `dir` from `from` on (inclusive), in order, with the damage met on
 * the way. A consumer stores an entry's `next` once it has applied it, and resumes from there.
 *
 * Following the segment being written: its end is read as it was when the scan reached it, and a
 * frame the writer is still writing can look like damage with `toEnd` set. So damage with `toEnd`
 * in the last segment means "stop here and read again later from `damage.offset`", not a loss.
 * A segment removed by retention while this runs ends that segment's part of the walk early.
 */
export function* readLog(dir: string, from: LogPosition = { segment: 0, offset: 0 }): Generator<LogItem> {
  for (const { sequence, file } of listSegments(dir)) {
    if (sequence < from.segment) continue;
    const start = sequence === from.segment ? from.offset : 0;
    yield* itemsOf(sequence, file, scanSegment(file, start));
  }
}

function* itemsOf(segment: number, file: string, items: ReturnType<typeof scanSegment>): Generator<LogItem> {
  try {
    for (const item of items) {
      if (item.kind === 'damage') {
        const { offset, length, reason, toEnd } = item;
        yield { kind: 'damage', damage: { segment, file, offset, length, reason, toEnd } };
        continue;
      }
      let entry: LogEntry;
      try {
        if (readEntryHead(item.payload).type === 'head') {
          yield { kind: 'checkpoint', head: decodeHeadEntry(item.payload), position: { segment, offset: item.offset }, next: { segment, offset: item.end }, payload: item.payload };
          continue;
        }
        entry = decodeEntry(item.payload);
      } catch (err) {
        // The checksum held, so the bytes are what was written; they are still not read as an entry.
        if (!(err instanceof EntryDecodeError)) throw err;
        yield { kind: 'damage', damage: { segment, file, offset: item.offset, length: item.end - item.offset, reason: err.message, toEnd: false } };
        continue;
      }
      yield { kind: 'entry', entry, position: { segment, offset: item.offset }, next: { segment, offset: item.end }, payload: item.payload };
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
