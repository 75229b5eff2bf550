import fs from 'node:fs';
import path from 'node:path';
import { isInMemory } from './connection';
import type { CompletionEntry } from './connection';

/**
 * Completions the store was holding in memory (it could not write them) when the proxy
 * stopped. They wait in a small file beside the database, one JSON line each, until the next
 * start writes them (left-open.ts): a record's real end (bytes, status) must neither be lost
 * nor be replaced by the next start's `proxy_restarted`.
 */

const SUFFIX = '.pending-completions.jsonl';

/** The file beside `dbFile`; none for an in-memory database, which nothing outlives. */
export function heldCompletionsFile(dbFile: string): string | null {
  return isInMemory(dbFile) ? null : `${dbFile}${SUFFIX}`;
}

interface Line {
  id: number;
  ended_at_ms: number;
  status: number | null;
  bytes_up: number;
  bytes_down: number;
  error: string | null;
}

function toLine([id, c]: CompletionEntry): string {
  const line: Line = { id, ended_at_ms: c.endedAt.getTime(), status: c.status, bytes_up: c.bytesUp, bytes_down: c.bytesDown, error: c.error };
  return JSON.stringify(line);
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** A line as written by toLine, or null: the file may have been edited, or be from elsewhere. */
function fromLine(text: string): CompletionEntry | null {
  let v: Partial<Record<keyof Line, unknown>>;
  try {
    v = JSON.parse(text) as Partial<Record<keyof Line, unknown>>;
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const { id, ended_at_ms: endedAt, status, bytes_up: up, bytes_down: down, error } = v;
  if (!isCount(id) || id === 0 || !isCount(endedAt) || !isCount(up) || !isCount(down)) return null;
  if (!(status === null || isCount(status)) || !(error === null || typeof error === 'string')) return null;
  return [id, { endedAt: new Date(endedAt), status, bytesUp: up, bytesDown: down, error }];
}

/** The completions in the file (none when it does not exist), and how many lines were unreadable. */
export function readHeldCompletions(file: string): { entries: CompletionEntry[]; unreadable: number } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], unreadable: 0 };
    throw err;
  }
  const entries: CompletionEntry[] = [];
  let unreadable = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const entry = fromLine(line);
    if (entry === null) unreadable += 1;
    else entries.push(entry);
  }
  return { entries, unreadable };
}

/**
 * Adds `entries` to the file (a record's first completion wins, as in the store's UPDATE) and
 * returns how many it then holds. Written whole to a temporary file, fsynced and renamed over
 * the old one, so a crash midway leaves the old file or the new one, never a torn mix. Throws
 * when it cannot be written.
 */
export function saveHeldCompletions(file: string, entries: readonly CompletionEntry[]): number {
  const merged = new Map<number, CompletionEntry>();
  for (const entry of [...readHeldCompletions(file).entries, ...entries]) if (!merged.has(entry[0])) merged.set(entry[0], entry);
  const temp = `${file}.tmp`;
  try {
    const fd = fs.openSync(temp, 'w', 0o600);
    try {
      fs.writeFileSync(fd, [...merged.values()].map(toLine).join('\n') + '\n');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw err;
  }
  syncFolder(path.dirname(file));
  return merged.size;
}

/** Once its completions are in the database. */
export function removeHeldCompletions(file: string): void {
  fs.rmSync(file, { force: true });
}

/** The rename is durable only once the folder is synced; the file's content already is. */
function syncFolder(folder: string): void {
  try {
    const fd = fs.openSync(folder, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // Some file systems refuse to sync a folder; the process-crash guarantee does not need it.
  }
}
