import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir } from './segment-files';

/**
 * Record ids are never reused, even after a power cut (SPEC §6): the fleet keys records by store
 * and id, so an id handed out, answered in X-Tollgate-Request-Id and shipped, then lost with the
 * log's unsynced tail, must not be handed out again. The log alone cannot promise that (its tail
 * is what a power cut takes), so ids are reserved in blocks: before any id of a block is handed
 * out, the block's end is written to `next-id` and fsynced. At the next start, ids resume at that
 * mark (or after the last id found in the log, if higher), skipping whatever was left of the block.
 * Cost: one fsynced rename per block, not per batch.
 */

export const ID_MARK_FILE = 'next-id';
// Reserving a block fsyncs the mark on the appending thread (the proxy's, without --audit-fsync):
// at 1,000 requests a second, once a minute rather than every 4 s.
export const DEFAULT_ID_BLOCK = 65_536;

/** The mark cannot be read: guessing could reuse ids, so the log refuses to start. */
export class IdMarkError extends Error {
  constructor(file: string, detail: string) {
    super(`${file}: ${detail}. It records the first record id not yet handed out; if it is lost, `
      + 'remove it to resume after the last id found in the log (ids handed out but lost in a power cut may then be reused)');
    this.name = 'IdMarkError';
  }
}

/** The first id not reserved by the mark, or null when there is no mark yet. */
export function readIdMark(dir: string): number | null {
  const file = path.join(dir, ID_MARK_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new IdMarkError(file, `cannot be read (${(err as Error).message})`);
  }
  if (!/^\d{1,15}\n?$/.test(text)) throw new IdMarkError(file, 'is damaged');
  return Number(text.trim());
}

/** Temp file, fsync, rename, fsync the folder: the mark is the old one or the new one, whole. */
function writeIdMark(dir: string, value: number): void {
  const temp = path.join(dir, `${ID_MARK_FILE}.tmp`);
  const fd = fs.openSync(temp, 'w');
  try {
    fs.writeSync(fd, `${value}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, path.join(dir, ID_MARK_FILE));
  fsyncDir(dir);
}

export class IdReservation {
  private nextId: number;
  /** Ids below this are covered by the mark on disk. */
  private reservedUntil: number;

  /**
   * `mark`: the mark read at start (null if none); `lastIdInLog`: the highest id the log holds
   * (0 if none); `firstId`: a floor from elsewhere (the ids of a store being taken over).
   */
  constructor(private readonly dir: string, mark: number | null, lastIdInLog: number, firstId: number, private readonly block: number) {
    this.nextId = Math.max(mark ?? 1, lastIdInLog + 1, firstId, 1);
    this.reservedUntil = mark ?? 0;
  }

  /** The id the next take() starts at. */
  peek(): number {
    return this.nextId;
  }

  /** Ids below `id` are taken (written by someone who had them reserved): never handed out here. */
  skipTo(id: number): void {
    if (id > this.nextId) this.nextId = id;
  }

  /**
   * Hands out `count` consecutive ids and returns the first, reserving a block on disk first when
   * the reserved ones run out. Throws (handing out nothing) when the mark cannot be written.
   */
  take(count: number): number {
    const first = this.nextId;
    const end = first + count;
    if (end > this.reservedUntil) {
      const until = end + this.block;
      writeIdMark(this.dir, until);
      this.reservedUntil = until;
    }
    this.nextId = end;
    return first;
  }
}
