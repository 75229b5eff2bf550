import fs from 'node:fs';
import { ZERO_HASH } from './entry-codec';
import { EntryDecodeError, readEntryHead, storedHash } from './entry-decode';
import type { ChainHead } from './entry-codec';
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
  /**
   * Where the chain goes on: the last chained entry's id and hash (or the last head entry's),
   * zeros when the log holds no chained entry.
   */
  chainHead: ChainHead;
}

interface SegmentSummary {
  damage: LogDamage[];
  lastId: number;
  /** The last chained entry or checkpoint of the segment. */
  chain: ChainHead | null;
  /** An entry written before the chain came after `chain` (or there is no chain here). */
  unchainedAfter: boolean;
}

function summarise({ sequence, file }: SegmentFile): SegmentSummary {
  const summary: SegmentSummary = { damage: [], lastId: 0, chain: null, unchainedAfter: false };
  for (const item of scanSegment(file)) {
    if (item.kind === 'damage') {
      const { offset, length, reason, toEnd } = item;
      summary.damage.push({ segment: sequence, file, offset, length, reason, toEnd });
      continue;
    }
    try {
      const head = readEntryHead(item.payload);
      // A record's id only: a completion's, or a checkpoint's (the last chained entry's, maybe a
      // completion's), names a record that may be far older than the newest.
      if (head.type === 'open' || head.type === 'finished') summary.lastId = Math.max(summary.lastId, head.id);
      const hash = storedHash(item.payload);
      if (hash === null) {
        summary.unchainedAfter = true;
      } else {
        summary.chain = { id: head.id, hash: Buffer.from(hash) };
        summary.unchainedAfter = false;
      }
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
 * older segments are read, newest first, until one holds an id. The chain's head likewise: every
 * segment this release writes begins with a checkpoint, so the newest one nearly always has it;
 * a segment of entries written before the chain means the chain starts afresh, from zeros.
 */
export function recoverLog(dir: string): RecoveryReport {
  const segments = listSegments(dir);
  const report: RecoveryReport = { damage: [], truncated: null, lastId: 0, lastSegment: segments.at(-1)?.sequence ?? 0, chainHead: { id: 0, hash: ZERO_HASH } };
  let chainKnown = false;
  for (let i = segments.length - 1; i >= 0 && (report.lastId === 0 || !chainKnown); i -= 1) {
    const summary = summarise(segments[i]);
    report.damage.unshift(...summary.damage);
    if (report.lastId === 0) report.lastId = summary.lastId;
    if (!chainKnown && summary.unchainedAfter) chainKnown = true;
    else if (!chainKnown && summary.chain !== null) {
      report.chainHead = summary.chain;
      chainKnown = true;
    }
    const tail = summary.damage.at(-1);
    if (i === segments.length - 1 && tail !== undefined && tail.toEnd) {
      fs.truncateSync(tail.file, tail.offset);
      report.truncated = { file: tail.file, offset: tail.offset, bytes: tail.length };
    }
  }
  return report;
}
