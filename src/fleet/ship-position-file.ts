import fs from 'node:fs';
import path from 'node:path';
import type { LogPosition } from '../audit/log/segment-reader';

/**
 * A local copy of the ship position PostgreSQL holds, written after each commit, so that log
 * retention (on the index thread) can keep every segment not yet shipped without asking
 * PostgreSQL. PostgreSQL stays the truth: the shipper resumes from there. The copy may only lag
 * the truth (written after the commit), which makes retention keep more, never less. No fsync:
 * a copy lost in a power cut reads as "nothing shipped", which keeps everything.
 */
export const SHIP_POSITION_FILE = 'ship-position';

export function writeShippedCopy(logDir: string, position: LogPosition): void {
  const file = path.join(logDir, SHIP_POSITION_FILE);
  const temp = `${file}.tmp`;
  fs.writeFileSync(temp, `${JSON.stringify({ segment: position.segment, offset: position.offset })}\n`);
  fs.renameSync(temp, file);
}

/** The copy, or null when there is none (or it is unreadable): then nothing counts as shipped. */
export function readShippedCopy(logDir: string): LogPosition | null {
  let text: string;
  try {
    text = fs.readFileSync(path.join(logDir, SHIP_POSITION_FILE), 'utf8');
  } catch {
    return null;
  }
  try {
    const value = JSON.parse(text) as { segment?: unknown; offset?: unknown };
    const { segment, offset } = value;
    if (typeof segment !== 'number' || typeof offset !== 'number' || !Number.isSafeInteger(segment) || !Number.isSafeInteger(offset)) return null;
    return { segment, offset };
  } catch {
    return null;
  }
}
