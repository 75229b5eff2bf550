import path from 'node:path';
import { readSecretFile, SecretFileError } from '../../secret-file';
import { chainHashOf, chainInputWith, HASH_BYTES, ZERO_HASH } from './entry-codec';
import { decodeHeadEntry, EntryDecodeError, readEntryHead, storedHash } from './entry-decode';
import type { ChainHead } from './entry-codec';
import { listSegments } from './segment-files';
import { scanSegment } from './segment-scan';

/**
 * `tollgate audit verify --db FILE` (issue 17): walks every segment of the log in order and
 * recomputes the chain (entry-codec.ts). The first break is reported with the record id of the
 * entry where it shows; nothing after it is trusted, so the walk stops there.
 *
 * What a break says. An entry whose stored hash does not follow from the previous hash and its
 * own content, while the next entry does follow from the stored hash: that entry's content was
 * edited, or an entry right before it was removed (from h_i alone these two cannot be told apart:
 * both are "h_{i-1} or p_i is not what the writer hashed"). When the next entry does not follow
 * either, entries were reordered or removed. A checkpoint (a segment's first frame) that does not
 * match the chain so far: a segment, or entries at a segment's end, are missing.
 */

export interface VerifyOptions {
  /** --audit-key: the chain was written as HMAC-SHA256 with this key. */
  key: Buffer | null;
}

export interface ChainBreak {
  /** The record id of the entry where the chain breaks (a completion's is the record it completes). */
  id: number | null;
  message: string;
}

export interface VerifyReport {
  /** Chained entries whose hash was recomputed and matched, up to the break if there is one. */
  verified: number;
  /** Entries written before the chain existed: read, not verifiable, not a break. */
  unchained: number;
  /** The lowest and highest record ids among verified entries; null when none. */
  firstId: number | null;
  lastId: number | null;
  /** The chain's head at the end of the walk (or at the break): what --expect-head is compared to. */
  head: ChainHead;
  /**
   * The head was recomputed from an entry (false: it is an opening checkpoint's, taken as written,
   * so it proves nothing about an expected head: anyone can write a checkpoint carrying a public hash).
   */
  headRecomputed: boolean;
  /** The walk began at a checkpoint because older segments are gone (retention): its record id. */
  fromCheckpoint: number | null;
  break: ChainBreak | null;
}

/** A mismatch whose kind depends on whether the next entry follows from the stored hash. */
interface Suspect {
  id: number;
  stored: Buffer;
}

/** Where a payload sits, for messages. */
export interface PayloadPlace {
  /** e.g. "000007.log at byte 4096", or "node-a, entry 12". */
  where: string;
  /** Set when the payload opens a part (a segment): that part's name. */
  startOf?: string;
  /** What the holder knows is missing right before it ("segments 3..4 are missing; "). */
  gap?: string;
}

function emptyReport(): VerifyReport {
  return { verified: 0, unchained: 0, firstId: null, lastId: null, head: { id: 0, hash: ZERO_HASH }, headRecomputed: false, fromCheckpoint: null, break: null };
}

/**
 * The chain's walk over payloads in the order they were written, whatever holds them: the log's
 * segments (verifyChain) or the shared history's copy in PostgreSQL (fleet/pg-verify.ts). Fed one
 * payload at a time; `payload` answers whether it was accepted as part of the chain, and once
 * `report.break` is set the walk is over (nothing after a break is trusted).
 */
export class ChainWalk {
  readonly report: VerifyReport = emptyReport();
  /** Null until the chain begins: its first checkpoint or chained entry. */
  private prev: Buffer | null = null;
  private suspect: Suspect | null = null;
  /** A problem seen; reported at the next entry's id (the first one not to be trusted). */
  private pending: string | null = null;

  constructor(private readonly key: Buffer | null) {}

  get broken(): boolean {
    return this.report.break !== null;
  }

  /**
   * Bytes that are not an entry, or entries known to be missing (a gap): whatever they held is
   * lost, so the chain cannot be shown whole past them.
   */
  lost(message: string): void {
    if (this.broken) return;
    if (this.suspect !== null) {
      this.breakAt(this.suspect.id, suspectMessage(null));
      return;
    }
    this.pending ??= message;
  }

  /**
   * The holder's read ended early (the newest segment's unfinished end): an entry suspected of an
   * edit cannot be cleared by the one after it, so it is the break; otherwise nothing is lost.
   */
  cutShort(): void {
    if (this.suspect !== null) this.breakAt(this.suspect.id, suspectMessage(null));
  }

  /**
   * One payload, at `place`. True when it is a record entry the walk accepted (chained, or
   * written before the chain began); false for a checkpoint, or when the walk broke.
   */
  payload(payload: Buffer, place: PayloadPlace): boolean {
    const { where, gap = '' } = place;
    const at = place.startOf === undefined ? `in ${where}` : `at the start of ${place.startOf}`;
    if (this.broken) return false;
    let entryHead: ReturnType<typeof readEntryHead>;
    try {
      entryHead = readEntryHead(payload);
    } catch (err) {
      if (!(err instanceof EntryDecodeError)) throw err;
      this.lost(`an entry that does not decode is before it (${where}: ${err.message})`);
      return false;
    }
    const { report, key } = this;
    const suspect = this.suspect;
    if (entryHead.type === 'head') {
      const checkpoint = decodeHeadEntry(payload);
      if (suspect !== null) return this.breakAt(suspect.id, suspectMessage(checkpoint.hash.equals(suspect.stored)));
      if (this.pending !== null) return this.breakAt(checkpoint.id, this.pending);
      if (this.prev === null) {
        // The oldest part kept: a checkpoint of zeros is the chain's very start; any other
        // says older entries were removed (retention), and the walk starts from it.
        if (!checkpoint.hash.equals(ZERO_HASH) && report.unchained === 0) report.fromCheckpoint = checkpoint.id;
        else if (!checkpoint.hash.equals(ZERO_HASH)) {
          return this.breakAt(checkpoint.id, `chain broken before it: ${gap}the checkpoint ${at} continues a chain whose entries are not in the log`);
        }
        this.adopt(checkpoint.id, checkpoint.hash);
        report.headRecomputed = false;
        return false;
      }
      if (!checkpoint.hash.equals(this.prev)) {
        return this.breakAt(checkpoint.id, `chain broken before it: ${gap}the checkpoint ${at} says the chain stood at record ${checkpoint.id}, `
          + `the log before it ends at record ${report.head.id} with another hash (a segment or entries missing, or reordered)`);
      }
      return false;
    }

    const stored = storedHash(payload);
    if (stored === null) {
      if (suspect !== null) return this.breakAt(suspect.id, suspectMessage(null));
      if (this.prev !== null) return this.breakAt(entryHead.id, 'the entry has no hash, but the chain began before it (written without the chain, or its hash removed)');
      if (this.pending !== null) return this.breakAt(entryHead.id, this.pending);
      report.unchained += 1;
      return true;
    }
    if (this.pending !== null) return this.breakAt(entryHead.id, this.pending);
    if (suspect !== null) {
      // Does this entry follow from the suspect's stored hash? Then only the suspect is wrong.
      return this.breakAt(suspect.id, suspectMessage(chainHashOf(key, chainInputWith(payload, suspect.stored)).equals(stored)));
    }
    const expected = chainHashOf(key, chainInputWith(payload, this.prev ?? ZERO_HASH));
    if (!expected.equals(stored)) {
      this.suspect = { id: entryHead.id, stored: Buffer.from(stored) };
      return false;
    }
    this.adopt(entryHead.id, expected);
    report.headRecomputed = true;
    report.verified += 1;
    report.firstId = report.firstId === null ? entryHead.id : Math.min(report.firstId, entryHead.id);
    report.lastId = report.lastId === null ? entryHead.id : Math.max(report.lastId, entryHead.id);
    return true;
  }

  /** A break found outside the chain's own bytes (a row that differs from its entry, say). */
  breakAt(id: number | null, message: string): false {
    if (!this.broken) this.report.break = { id, message };
    return false;
  }

  /** The walk's end: a suspect or damage left pending becomes the break. */
  finish(): VerifyReport {
    if (this.broken) return this.report;
    if (this.suspect !== null) this.breakAt(this.suspect.id, suspectMessage(null));
    else if (this.pending !== null) this.breakAt(this.report.head.id, `after this record: ${this.pending.replace(' before it', '')}`);
    return this.report;
  }

  private adopt(id: number, hash: Buffer): void {
    this.prev = Buffer.from(hash);
    this.report.head = { id, hash: this.prev };
  }
}

export function verifyChain(dir: string, options: VerifyOptions): VerifyReport {
  const walk = new ChainWalk(options.key);
  let lastSegment: number | null = null;
  const segments = listSegments(dir);
  const newest = segments.at(-1)?.sequence ?? 0;
  for (const { sequence, file } of segments) {
    const name = path.basename(file);
    const gap = lastSegment !== null && sequence !== lastSegment + 1 ? `segments ${lastSegment + 1}..${sequence - 1} are missing; ` : '';
    lastSegment = sequence;
    let first = true;
    for (const item of scanSegment(file)) {
      if (walk.broken) return walk.report;
      if (item.kind === 'damage') {
        // The newest segment's unfinished end: a batch being written while this runs (or a crash's
        // torn tail the next start cuts off). Entries missing at the end are what --expect-head is for.
        if (item.toEnd && sequence === newest) {
          walk.cutShort();
          break;
        }
        // A torn or damaged region: whatever it held is lost, so the chain cannot be shown whole.
        walk.lost(`the log is damaged before it (${name}, ${item.length} bytes at byte ${item.offset}: ${item.reason})`);
        continue;
      }
      walk.payload(item.payload, { where: `${name} at byte ${item.offset}`, startOf: first ? name : undefined, gap });
      first = false;
    }
  }
  return walk.finish();
}

/** The message for a suspect entry, once the next one shows whether the chain goes on from it. */
function suspectMessage(nextFollows: boolean | null): string {
  if (nextFollows === true) {
    return 'its content was edited: its hash does not match its content and the chain before it, while the chain goes on from its stored hash '
      + '(or an entry right before it was removed: the chain cannot tell the two apart)';
  }
  if (nextFollows === false) {
    return 'chain broken at this entry: neither it nor the entry after it follows from the chain before (entries reordered or removed, or written with another key)';
  }
  return 'its hash does not follow from the chain before it and its content: the entry was edited, an entry right before it was removed, or the key differs';
}

export class AuditKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuditKeyError';
  }
}

/**
 * --audit-key FILE: the file's bytes are the HMAC key. Refused when empty, or readable or
 * writable by group or others (readSecretFile: a key others can read proves nothing). Never echoed.
 */
export function readAuditKey(file: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readSecretFile(file, 'the key file');
  } catch (err) {
    if (err instanceof SecretFileError) throw new AuditKeyError(`--audit-key ${err.message}`);
    throw err;
  }
  if (bytes.length === 0) throw new AuditKeyError(`--audit-key ${file}: the key file is empty`);
  return bytes;
}

/** A head as printed and served: 64 hex digits. */
export function hexHash(hash: Buffer): string {
  return hash.toString('hex');
}

export const HEAD_HEX = new RegExp(`^[0-9a-fA-F]{${HASH_BYTES * 2}}$`);
