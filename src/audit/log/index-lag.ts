import fs from 'node:fs';
import { entryHeads } from './entry-heads';
import { listSegments } from './segment-files';
import type { LogPosition } from './segment-reader';

/**
 * How far the index is behind the log, for /metrics (tollgate_audit_index_lag_seconds) and
 * /readyz detail. Read from the entries' binary heads only (no JSON), from the index's position
 * to the log's end.
 */
export interface IndexLag {
  /** Entries not yet applied (opens, completions, finished records). */
  entriesBehind: number;
  /** Of those, the ones that add a record (opens and finished records). */
  recordsBehind: number;
  /** Segment bytes after the position: exact even when the count stopped at its cap. */
  bytesBehind: number;
  /**
   * How old the oldest entry not yet applied is (now minus its time), 0 when the index is caught
   * up: how long the admin API has been missing something. Grows while the index is stuck even
   * if nothing new is appended, which a "newest append minus last applied" figure would not.
   */
  secondsBehind: number;
  /** The time of the newest entry not yet applied (the log's last append), null when caught up. */
  newestEntryAt: Date | null;
  /** True when counting stopped at `maxEntries`: the counts are then lower bounds. */
  capped: boolean;
}

/** Counting a deep backlog (a rebuild) on every scrape would cost as much as applying it. */
export const LAG_COUNT_CAP = 1_000_000;

export function measureLag(dir: string, from: LogPosition, now: Date, maxEntries = LAG_COUNT_CAP): IndexLag {
  const lag: IndexLag = { entriesBehind: 0, recordsBehind: 0, bytesBehind: 0, secondsBehind: 0, newestEntryAt: null, capped: false };
  let oldestMs: number | null = null;
  let newestMs: number | null = null;
  for (const { sequence, file } of listSegments(dir)) {
    if (sequence < from.segment) continue;
    const start = sequence === from.segment ? from.offset : 0;
    lag.bytesBehind += Math.max(0, sizeOf(file) - start);
    if (lag.capped) continue;
    for (const timeMs of countEntries(file, start, lag)) {
      oldestMs ??= timeMs;
      newestMs = timeMs;
      if (lag.entriesBehind >= maxEntries) {
        lag.capped = true;
        break;
      }
    }
  }
  if (oldestMs !== null) lag.secondsBehind = Math.max(0, (now.getTime() - oldestMs) / 1000);
  if (newestMs !== null) lag.newestEntryAt = new Date(newestMs);
  return lag;
}

/** Counts each readable entry into `lag` and yields its time; damage is the reader's to report. */
function* countEntries(file: string, start: number, lag: IndexLag): Generator<number> {
  try {
    for (const head of entryHeads(file, start)) {
      lag.entriesBehind += 1;
      if (head.type !== 'complete') lag.recordsBehind += 1;
      yield head.timeMs;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

function sizeOf(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch (err) {
    // Removed by retention since it was listed.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}
