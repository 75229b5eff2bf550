import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir, readTextIfExists } from '../log/segment-files';
import type { LogPosition } from '../log/segment-reader';
import type { FileMark } from './access-sink';

/**
 * How far the access log has got, stored beside it after each batch of lines is written:
 *
 * - `next`: every entry before it has been handled; a line for every record completed before it
 *   is in the file. A restart writes lines only for completions from `next` on.
 * - `replay`: where the oldest record still open at `next` was opened (or `next` when none was).
 *   A completion needs its open's fields, so a restart re-reads the log from here to rebuild the
 *   open records, writing nothing before `next`.
 * - `file`: the access file's identity and size right after those lines (see FileSink.open).
 */
export interface AccessPosition {
  replay: LogPosition;
  next: LogPosition;
  file: FileMark | null;
}

const FORMAT = 1;

function isPosition(value: unknown): value is LogPosition {
  const p = value as LogPosition | null;
  return typeof p === 'object' && p !== null && Number.isSafeInteger(p.segment) && Number.isSafeInteger(p.offset);
}

function isMark(value: unknown): value is FileMark | null {
  if (value === null) return true;
  const m = value as FileMark;
  return typeof m === 'object' && [m.dev, m.ino, m.size].every((n) => typeof n === 'number');
}

/** The stored position, or null when there is none (first start). Throws on a file that is not one. */
export function readAccessPosition(file: string): AccessPosition | null {
  const text = readTextIfExists(file);
  if (text === null) return null;
  const value = JSON.parse(text) as { format?: unknown; replay?: unknown; next?: unknown; file?: unknown };
  if (value.format !== FORMAT || !isPosition(value.replay) || !isPosition(value.next) || !isMark(value.file)) {
    throw new Error(`${file} is not an access log position file of this release`);
  }
  return { replay: value.replay, next: value.next, file: value.file };
}

/** Written whole to a temporary file and renamed over the old one: a crash leaves one or the other. */
export function writeAccessPosition(file: string, position: AccessPosition, fsync: boolean): void {
  const temp = `${file}.tmp`;
  const fd = fs.openSync(temp, 'w', 0o640);
  try {
    fs.writeSync(fd, JSON.stringify({ format: FORMAT, ...position }));
    if (fsync) fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
  if (fsync) fsyncDir(path.dirname(file));
}
