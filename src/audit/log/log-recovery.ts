import fs from 'node:fs';
import { EntryDecodeError, readEntryHead } from './entry-codec';
import type { LogDamage } from './segment-reader';
import { listSegments } from './segment-files';
import type { SegmentFile } from './segment-files';
import { scanSegment } from './segment-scan';

/** What the writer found and did at start, for one log line and /readyz detail. */
export interface RecoveryReport {
  /** Damage found in the segments read at start (the newest, and older ones back to the last id). */
  damage: LogDamage[];
  /** The torn tail cut off the newest segment, if there was one. */
  truncated: { file: string; offset: number; bytes: number } | null;
  /** The highest record id in the log; 0 when it holds none. */
  lastId: number;
  /** The newest segment's sequence number; 0 when there is none. */
  lastSegment: number;
}

interface SegmentSummary {
  damage: LogDamage[];
  lastId: number;
}

function summarise({ sequence, file }: SegmentFile): SegmentSummary {
  const summary: SegmentSummary = { damage: [], lastId: 0 };
  for (const item of scanSegment(file)) {
    if (item.kind === 'damage') {
      const { offset, length, reason, toEnd } = item;
      summary.damage.push({ segment: sequence, file, offset, length, reason, toEnd });
      continue;
    }
    try {
      summary.lastId = Math.max(summary.lastId, readEntryHead(item.payload).id);
    } catch (err) {
      if (!(err instanceof EntryDecodeError)) throw err;
    }
  }
  return summary;
}

/**
 * Reads the log's end at start. A torn tail of the newest segment (a write cut short by a crash
 * or a power cut) is cut off, so it is reported once rather than by every reader for ever; the
 * writer then starts a new segment, so no position a consumer may have stored before the cut is
 * ever given to a different entry. Damage with good frames after it is left in place: those
 * frames are acknowledged entries, and readers skip the damage between them.
 *
 * The last id: the newest segment may hold only completions (or nothing, after a restart), so
 * older segments are read, newest first, until one holds an id.
 */
export function recoverLog(dir: string): RecoveryReport {
  const segments = listSegments(dir);
  const report: RecoveryReport = { damage: [], truncated: null, lastId: 0, lastSegment: segments.at(-1)?.sequence ?? 0 };
  for (let i = segments.length - 1; i >= 0 && report.lastId === 0; i -= 1) {
    const summary = summarise(segments[i]);
    report.damage.unshift(...summary.damage);
    report.lastId = summary.lastId;
    const tail = summary.damage.at(-1);
    if (i === segments.length - 1 && tail !== undefined && tail.toEnd) {
      fs.truncateSync(tail.file, tail.offset);
      report.truncated = { file: tail.file, offset: tail.offset, bytes: tail.length };
    }
  }
  return report;
}
