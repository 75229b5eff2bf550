import fs from 'node:fs';
import path from 'node:path';

/**
 * Segment files are named by a sequence number, one more than the newest segment's: twelve
 * digits, so that names sort as numbers do. Not by their first entry's id: a segment may begin
 * with completions of records opened in an earlier one, and a number that only ever grows makes
 * a log position (segment, byte offset) totally ordered, which is what a consumer that follows the
 * log needs to be idempotent.
 */

const SEGMENT_NAME = /^(\d{12})\.seg$/;

/**
 * Where a store's log lives: beside the `--db` file (SPEC §6), named after it without its
 * extension, `audit.db` -> `audit-log/`, so two stores in one folder never share a log.
 */
export function auditLogDir(dbFile: string): string {
  const resolved = path.resolve(dbFile);
  return path.join(path.dirname(resolved), `${path.parse(resolved).name}-log`);
}

export function segmentName(sequence: number): string {
  return `${String(sequence).padStart(12, '0')}.seg`;
}

export interface SegmentFile {
  sequence: number;
  file: string;
}

/** The folder's segments, oldest first; other files (the id mark, temp files) are ignored. */
export function listSegments(dir: string): SegmentFile[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const segments: SegmentFile[] = [];
  for (const name of names) {
    const match = SEGMENT_NAME.exec(name);
    if (match !== null) segments.push({ sequence: Number(match[1]), file: path.join(dir, name) });
  }
  return segments.sort((a, b) => a.sequence - b.sequence);
}

/**
 * Makes a file's creation, rename or removal in `dir` survive a power cut: fsync on the file
 * covers its contents, not the directory entry that names it.
 */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** An errno code for messages and callers (EIO, ENOSPC, EACCES, ...), or null. */
export function errnoCode(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : null;
}

/** A small file's text, or null when it does not exist; any other error is thrown. */
export function readTextIfExists(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw err;
  }
}
