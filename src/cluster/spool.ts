import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { PreparedEntry } from '../audit/log/entry-codec';
import { errnoCode } from '../audit/log/segment-files';
import { decodeBatchFrame, FrameReader } from './wire';
import type { BatchFrame } from './wire';

/**
 * A worker's spool (`serve --workers N` without --audit-fsync's writer thread): every batch it
 * sends the primary is first appended here, one write, so a record is in the kernel before the
 * worker forwards a byte (SPEC §4) without waiting for the primary's append. The files hold the
 * audit channel's batch frames as sent (wire.ts), named `<name>.<n>.spool` in the log's `spool/`
 * folder, where the primary gives each worker process a name of its own (`w<slot>-<random>`: a
 * reused pid never meets an older process's files). A worker deletes a closed file once the
 * primary says the last batch in it is in the log; the primary reads a dead worker's files for the
 * batches it never received, and at start appends whatever records any spool holds past the log's
 * end (log-store.ts).
 */

export const SPOOL_FOLDER = 'spool';
/** A file is closed and the next begun past this size: small enough to delete soon. */
const ROTATE_BYTES = 1024 * 1024;
const SPOOL_NAME = /^(w\d+-[0-9a-f]{8})\.(\d+)\.spool$/;

export function spoolDir(logDir: string): string {
  return path.join(logDir, SPOOL_FOLDER);
}

export interface SpoolFile {
  file: string;
  /** The worker process's spool name (`w<slot>-<random>`). */
  name: string;
  n: number;
}

/** A new worker process's spool name. */
export function newSpoolName(slot: number): string {
  return `w${slot}-${crypto.randomBytes(4).toString('hex')}`;
}

/** The folder's spool files (or one process's), in the order written; none when it is missing. */
export function listSpoolFiles(dir: string, name?: string): SpoolFile[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw err;
  }
  const files: SpoolFile[] = [];
  for (const entry of names) {
    const match = SPOOL_NAME.exec(entry);
    if (match === null) continue;
    const file: SpoolFile = { file: path.join(dir, entry), name: match[1], n: Number(match[2]) };
    if (name === undefined || file.name === name) files.push(file);
  }
  return files.sort((a, b) => (a.name === b.name ? a.n - b.n : a.name < b.name ? -1 : 1));
}

/**
 * The whole batches a spool file holds, in order. A torn or damaged end (a worker killed
 * mid-write, a power cut's unwritten pages) ends the file there: a batch not whole was never
 * answered, so its requests were refused or never forwarded. `damaged` says whether that happened.
 */
export function readSpoolFile(file: string): { batches: BatchFrame[]; damaged: boolean } {
  const batches: BatchFrame[] = [];
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { batches, damaged: false };
    throw err;
  }
  let whole = 0;
  const reader = new FrameReader((frame) => {
    batches.push(decodeBatchFrame(frame));
    whole += frame.length;
  });
  try {
    reader.push(bytes);
  } catch {
    return { batches, damaged: true };
  }
  return { batches, damaged: whole !== bytes.length };
}

/**
 * Removes spool files; false when one could not be (a read-only volume): it is read again at the
 * next start, and what it holds that is in the log skipped by id.
 */
export function removeSpoolFiles(files: readonly SpoolFile[]): boolean {
  let all = true;
  for (const { file } of files) {
    try {
      fs.rmSync(file, { force: true });
    } catch {
      all = false;
    }
  }
  return all;
}

export interface SpooledRecovery {
  /** Records past the log's end in id order, then the completions to append: to append. */
  entries: PreparedEntry[];
  records: number;
  completions: number;
  files: SpoolFile[];
  damaged: string[];
}

/**
 * What the spools left by an earlier run hold that the log does not: every record with an id past
 * `lastId` (the log's highest record id: the log is in id order, so a lower one is in it or was
 * never used), then the completions of those records and of records the log holds still open
 * (`open`: a completion of one the log has completed is already written).
 */
export function spooledPast(dir: string, lastId: number, open: ReadonlySet<number>): SpooledRecovery {
  const files = listSpoolFiles(dir);
  const records = new Map<number, PreparedEntry>();
  const completions = new Map<number, PreparedEntry>();
  const damaged: string[] = [];
  for (const spool of files) {
    const { batches, damaged: torn } = readSpoolFile(spool.file);
    if (torn) damaged.push(path.basename(spool.file));
    for (const batch of batches) {
      for (const entry of batch.entries) {
        if (entry.type === 'complete') {
          if (entry.id > lastId || open.has(entry.id)) completions.set(entry.id, entry);
        } else if (entry.id > lastId) {
          records.set(entry.id, entry);
        }
      }
    }
  }
  const ids = [...records.keys()].sort((a, b) => a - b);
  const entries = ids.map((id) => records.get(id) as PreparedEntry);
  let completed = 0;
  for (const [id, completion] of completions) {
    if (open.has(id) || records.get(id)?.type === 'open') {
      entries.push(completion);
      completed += 1;
    }
  }
  return { entries, records: ids.length, completions: completed, files, damaged };
}

/** Whether batch `seq` came after `last` (a u32 that wraps; null: nothing before it). */
export function newerBatch(seq: number, last: number | null): boolean {
  if (last === null) return true;
  const ahead = (seq - last) >>> 0;
  return ahead !== 0 && ahead < 2 ** 31;
}

/** A closed spool file and the number of the last batch in it: it goes once that batch is in the log. */
interface Written {
  file: string;
  lastSeq: number;
}

/**
 * The worker's side: appends each batch frame with one write, rotates past ROTATE_BYTES, and
 * deletes closed files the primary has appended. No fdatasync: spooling runs only without
 * --audit-fsync (whose writer thread keeps the round trip), so a write into the page cache is
 * the durability one process's log gives.
 */
export class SpoolWriter {
  private fd = -1;
  private file = '';
  private bytes = 0;
  private n = 0;
  private lastSeq = 0;
  private readonly closedFiles: Written[] = [];

  constructor(
    private readonly dir: string,
    private readonly name: string,
  ) {}

  /** Throws when the frame (batch number `seq`) cannot be written whole; the file then ends where it did. */
  append(frame: Buffer, seq: number): void {
    if (this.fd < 0) this.open();
    try {
      let done = 0;
      while (done < frame.length) done += fs.writeSync(this.fd, frame, done, frame.length - done);
    } catch (err) {
      try {
        fs.ftruncateSync(this.fd, this.bytes);
      } catch {
        // A reader stops at the torn frame; the next batch goes to a new file.
        this.rotate();
      }
      throw err;
    }
    this.bytes += frame.length;
    this.lastSeq = seq;
    if (this.bytes >= ROTATE_BYTES) this.rotate();
  }

  /** Every entry of this worker's batches up to `seq` is in the log: closed files holding none later go. */
  appended(seq: number): void {
    while (this.closedFiles.length > 0 && !newerBatch(this.closedFiles[0].lastSeq, seq)) {
      const { file } = this.closedFiles.shift() as Written;
      try {
        fs.rmSync(file, { force: true });
      } catch {
        // Left for the primary: it removes this process's files when it has settled it.
      }
    }
  }

  close(): void {
    if (this.fd >= 0) this.closeFile();
  }

  private open(): void {
    this.n += 1;
    this.file = path.join(this.dir, `${this.name}.${this.n}.spool`);
    this.fd = fs.openSync(this.file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_APPEND, 0o640);
    this.bytes = 0;
  }

  private rotate(): void {
    this.closedFiles.push({ file: this.file, lastSeq: this.lastSeq });
    this.closeFile();
  }

  private closeFile(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      // Released even when close reports an error.
    }
    this.fd = -1;
  }
}
