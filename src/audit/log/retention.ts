import fs from 'node:fs';
import { entryHeads } from './entry-heads';
import type { LogPosition } from './segment-reader';
import { listSegments } from './segment-files';
import type { SegmentFile } from './segment-files';

/**
 * Where retention may cut: a segment is dropped only when every entry in it is older than `time`
 * (by the entry's own time: started_at of an open, ended_at of a completion) and the whole segment
 * lies before `position` (what every consumer has applied). Give one or both.
 */
export interface RetentionCutoff {
  time?: Date;
  position?: LogPosition;
}

export interface RetentionReport {
  dropped: string[];
  /** Segments kept only because they hold the open entry of a record still open. */
  keptForOpenRecords: string[];
}

interface SegmentContents {
  newestMs: number;
  /** Ids opened in this segment and not completed in it. */
  openIds: number[];
}

function contentsOf(file: string): SegmentContents {
  const contents: SegmentContents = { newestMs: -Infinity, openIds: [] };
  const completed = new Set<number>();
  for (const head of entryHeads(file)) {
    contents.newestMs = Math.max(contents.newestMs, head.timeMs);
    if (head.type === 'open') contents.openIds.push(head.id);
    if (head.type === 'complete') completed.add(head.id);
  }
  contents.openIds = contents.openIds.filter((id) => !completed.has(id));
  return contents;
}

/**
 * Removes whole segments older than the cutoff, oldest first. A segment holding the open entry of
 * a record that `isStillOpen` says has no completion yet (a long tunnel) is kept until it closes,
 * so the record's start is never lost while the record is live; later segments may still go.
 * The newest segment is never dropped: the writer appends to it.
 *
 * Entries are appended as they happen, so segments are in time order give or take a batch: the
 * walk stops at the first segment that is not old enough, which bounds the work per call to the
 * segments dropped plus one. Deleting a file that a reader has open is safe on POSIX systems.
 */
export function dropSegmentsBefore(dir: string, cutoff: RetentionCutoff, isStillOpen: (id: number) => boolean): RetentionReport {
  if (cutoff.time === undefined && cutoff.position === undefined) throw new Error('dropSegmentsBefore needs a time or a position');
  const report: RetentionReport = { dropped: [], keptForOpenRecords: [] };
  const sealed = listSegments(dir).slice(0, -1);
  for (const segment of sealed) {
    if (!beforePosition(segment, cutoff.position)) break;
    const contents = contentsOf(segment.file);
    if (cutoff.time !== undefined && contents.newestMs >= cutoff.time.getTime()) break;
    // Kept for a record still open, and so is every later segment: a hole in the middle of the
    // log would read as segments removed, and break the audit chain (audit verify).
    if (contents.openIds.some(isStillOpen)) {
      report.keptForOpenRecords.push(segment.file);
      break;
    }
    removeSegment(segment.file);
    report.dropped.push(segment.file);
  }
  return report;
}

/** The whole segment precedes the position, which names a later segment. */
function beforePosition(segment: SegmentFile, position: LogPosition | undefined): boolean {
  return position === undefined || segment.sequence < position.segment;
}

function removeSegment(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
