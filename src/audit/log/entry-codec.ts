import crypto from 'node:crypto';
import { clipText } from '../record-params';
import type { BatchOutcome, CompletionEntry, FinishedEntry } from '../connection';
import type { AuditCompletion, AuditOpen } from '../record-types';
import { FRAME_HEADER_BYTES, MAX_PAYLOAD_BYTES, sealFrame } from './frame';

/**
 * One entry of the audit log: a record opened (before the first byte is forwarded), a record
 * completed, or a record written whole (a refusal, or a client gone before anything was forwarded).
 */
export type LogEntry =
  | { type: 'open'; id: number; open: AuditOpen }
  | { type: 'complete'; id: number; completion: AuditCompletion }
  | { type: 'finished'; id: number; open: AuditOpen; completion: AuditCompletion };

/**
 * Payload: u8 tag | u48 id | u48 time (ms since the epoch) | JSON array of the other fields.
 * The id and time are binary so that recovery (the last id) and retention (the newest time in a
 * segment) read them without parsing JSON. The time is the entry's own: started_at for an open,
 * ended_at for a completion or a finished record. Arrays, not objects: no field names in every
 * entry, and JSON.stringify of an array literal is the cheapest encoding V8 offers.
 */
const TAG = { open: 1, complete: 2, finished: 3, head: 4 } as const;
export const PREFIX_BYTES = 13;

/**
 * The tamper-evident chain (issue 17). A tag with this bit set says HASH_BYTES follow the
 * prefix: h_i = SHA-256(prefix_i ‖ h_{i-1} ‖ body_i), or HMAC-SHA256 with --audit-key, where
 * prefix_i is the tag without the bit | id | time, and body_i the JSON (chainHashOf). The prefix stays where readEntryHead reads it and entries written before the chain read
 * unchanged. A `head` entry (the first frame of every segment) carries the chain's head at the
 * roll, not chained itself: the checkpoint a log cut by retention is verified from.
 */
export const CHAINED = 0x80;
export const HASH_BYTES = 32;
export const ZERO_HASH: Buffer = Buffer.alloc(HASH_BYTES);

/** The chain's head: the last chained entry's record id and hash (0 and zeros before any). */
export interface ChainHead {
  id: number;
  hash: Buffer;
}

/** What a writer chains with: its key (null: plain SHA-256) and the head so far. */
export interface ChainState {
  key: Buffer | null;
  head: ChainHead;
}

/**
 * h over one contiguous run: the payload with its tag unchained and its hash slot holding h_prev,
 * i.e. prefix ‖ h_prev ‖ body. The writer hashes it in place before filling the slot, so an entry
 * costs one one-shot hash and no copy (a Hash object per entry cost about 2.5 µs and its garbage).
 */
export function chainHashOf(key: Buffer | null, input: Buffer): Buffer {
  if (key === null) return crypto.hash('sha256', input, 'buffer');
  return crypto.createHmac('sha256', key).update(input).digest();
}

/** What a stored chained payload was hashed as, with `prev` in its slot (a copy: `payload` is left as read). */
export function chainInputWith(payload: Buffer, prev: Buffer): Buffer {
  const input = Buffer.from(payload);
  input[0] &= ~CHAINED;
  prev.copy(input, PREFIX_BYTES);
  return input;
}

const MAX_U48 = 2 ** 48 - 1;

/** An entry the codec refuses to write (an id or time out of range, a record too large). */
export class EntryEncodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EntryEncodeError';
  }
}

const clip = (value: string | null): string | null => (value === null ? null : clipText(value));

function openFields(o: AuditOpen): unknown[] {
  return [
    clipText(o.clientIp), o.clientPort, o.clients.map(clipText), clip(o.user), o.kind, clip(o.method),
    clip(o.scheme), clip(o.host), o.port, clip(o.path), clip(o.resolvedIp), o.decision, o.wouldDeny,
    clip(o.rule), clip(o.ruleSource), clipText(o.reason), clip(o.policyVersion),
  ];
}

/** A completion's fields, appended to `into` (a finished entry's body goes on after its open's). */
function completionFields(c: AuditCompletion, into: unknown[] = []): unknown[] {
  into.push(c.status, c.bytesUp, c.bytesDown, clip(c.error));
  return into;
}

/**
 * Appends the fields that came after the log format, at the very end of an open or finished body, in the
 * order they were added: `peer_ip` (issue 16), `sni` (issue 17), then `tunnel_id` (issue 18).
 * The body ends at the last one with a value (earlier ones without are written as null, to keep
 * their slots), so an entry with none is byte for byte what the first release wrote, one with
 * only a peer what the issue 16 release wrote, one with no tunnel what the issue 17 release
 * wrote, and logs written by any of them read unchanged.
 */
function pushTrailing(fields: unknown[], o: AuditOpen): unknown[] {
  const peer = o.peerIp === undefined || o.peerIp === null ? null : clipText(o.peerIp);
  const sni = o.sni === undefined || o.sni === null ? null : clipText(o.sni);
  const tunnel = o.tunnelId ?? null;
  if (tunnel !== null) fields.push(peer, sni, tunnel);
  else if (sni !== null) fields.push(peer, sni);
  else if (peer !== null) fields.push(peer);
  return fields;
}

/** An entry as the proxy hands it over: opens and finished records get their id at append. */
export type NewEntry =
  | { type: 'open'; open: AuditOpen }
  | { type: 'complete'; id: number; completion: AuditCompletion }
  | { type: 'finished'; open: AuditOpen; completion: AuditCompletion };

function bodyOf(entry: NewEntry): string {
  switch (entry.type) {
    case 'open': return JSON.stringify(pushTrailing(openFields(entry.open), entry.open));
    case 'complete': return JSON.stringify(completionFields(entry.completion));
    case 'finished': {
      const fields = openFields(entry.open);
      fields.unshift(entry.open.startedAt.getTime());
      return JSON.stringify(pushTrailing(completionFields(entry.completion, fields), entry.open));
    }
  }
}

export function entryTime(entry: NewEntry): Date {
  return entry.type === 'open' ? entry.open.startedAt : entry.completion.endedAt;
}

function checkU48(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0 || value > MAX_U48) throw new EntryEncodeError(`${what} ${value} is out of range`);
  return value;
}

/**
 * An entry encoded but for its record id and the chain: the JSON body and the entry's time. What
 * the box's one writer frames (frameEntries), and what a `--workers` worker sends it (cluster/
 * wire.ts), so the writer neither parses nor re-encodes a record.
 */
export interface PreparedEntry {
  type: LogEntry['type'];
  /** A completion's record id; an open or finished entry's is 0 until the log gives it one. */
  id: number;
  timeMs: number;
  /** The body as bodyOf made it: a string in the process that encoded it, bytes off the wire. */
  body: string | Buffer;
  /** The body's length in UTF-8 bytes. */
  bodyBytes: number;
}

/** Throws EntryEncodeError when the entry cannot be written (a time out of range, too large). */
export function prepareEntry(entry: NewEntry): PreparedEntry {
  const body = bodyOf(entry);
  const bodyBytes = Buffer.byteLength(body, 'utf8');
  if (PREFIX_BYTES + HASH_BYTES + bodyBytes > MAX_PAYLOAD_BYTES) throw new EntryEncodeError(`an audit entry of ${bodyBytes} bytes is too large`);
  const timeMs = checkU48(entryTime(entry).getTime(), 'audit entry time');
  const id = entry.type === 'complete' ? checkU48(entry.id, 'audit record id') : 0;
  return { type: entry.type, id, timeMs, body, bodyBytes };
}

/** An entry the codec refused, kept in its batch's place: its record answers with the error. */
export interface RefusedEntry {
  type: LogEntry['type'];
  error: EntryEncodeError;
}

export function prepareOrRefuse(entry: NewEntry): PreparedEntry | RefusedEntry {
  try {
    return prepareEntry(entry);
  } catch (err) {
    if (err instanceof EntryEncodeError) return { type: entry.type, error: err };
    throw err;
  }
}

export function isPrepared(entry: PreparedEntry | RefusedEntry): entry is PreparedEntry {
  return !('error' in entry);
}

/**
 * A group commit's batch as entries, in the order of BatchOutcome's ids (opens, then finished
 * records), completions last; an entry the codec refuses keeps its place as a RefusedEntry.
 */
export function prepareBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished: readonly FinishedEntry[]): Array<PreparedEntry | RefusedEntry> {
  const entries: Array<PreparedEntry | RefusedEntry> = [];
  for (const open of opens) entries.push(prepareOrRefuse({ type: 'open', open }));
  for (const [open, completion] of finished) entries.push(prepareOrRefuse({ type: 'finished', open, completion }));
  for (const [id, completion] of completions) entries.push(prepareOrRefuse({ type: 'complete', id, completion }));
  return entries;
}

/**
 * A batch's outcome: each record's id (`idOf`, asked of the records that were written, in order)
 * or the error that refused it; refused completions are counted.
 */
export function batchOutcome(entries: ReadonlyArray<PreparedEntry | RefusedEntry>, idOf: (entry: PreparedEntry) => number | Error): BatchOutcome {
  const outcome: BatchOutcome = { ids: [], refusedCompletions: 0 };
  for (const entry of entries) {
    if (entry.type === 'complete') {
      if (!isPrepared(entry)) outcome.refusedCompletions += 1;
    } else {
      outcome.ids.push(isPrepared(entry) ? idOf(entry) : entry.error);
    }
  }
  return outcome;
}

/** The entry refused if framing it would throw (an id out of range), or null: the rare path's check. */
export function refusedByFrame(entry: PreparedEntry): RefusedEntry | null {
  try {
    frameEntries([entry.type === 'complete' ? entry : { ...entry, id: 1 }], { key: null, head: { id: 0, hash: ZERO_HASH } });
    return null;
  } catch (err) {
    if (err instanceof EntryEncodeError) return { type: entry.type, error: err };
    throw err;
  }
}

/**
 * Every entry of a batch as frames in one Buffer, so that the batch is one write(). Throws
 * EntryEncodeError, before anything is written, when any entry cannot be encoded.
 */
export function encodeBatch(entries: readonly LogEntry[]): Buffer {
  return frameEntries(entries.map(preparedWithId), null).bytes;
}

/**
 * encodeBatch with every entry chained from `chain.head`; returns the head after the batch,
 * which the writer adopts only once the batch is written (a failed write leaves it unchanged).
 */
export function encodeChainedBatch(entries: readonly LogEntry[], chain: ChainState): { bytes: Buffer; head: ChainHead } {
  return frameEntries(entries.map(preparedWithId), chain);
}

function preparedWithId(entry: LogEntry): PreparedEntry {
  const prepared = prepareEntry(entry);
  prepared.id = entry.id;
  return prepared;
}

/**
 * Prepared entries, each with its id, as frames in one Buffer (chained from `chain.head` unless
 * `chain` is null); returns the head after them. Throws EntryEncodeError before writing anything.
 */
export function frameEntries(entries: readonly PreparedEntry[], chain: ChainState | null): { bytes: Buffer; head: ChainHead } {
  const hashBytes = chain === null ? 0 : HASH_BYTES;
  let total = 0;
  for (const entry of entries) {
    checkU48(entry.id, 'audit record id');
    checkU48(entry.timeMs, 'audit entry time');
    if (PREFIX_BYTES + hashBytes + entry.bodyBytes > MAX_PAYLOAD_BYTES) throw new EntryEncodeError(`an audit entry of ${entry.bodyBytes} bytes is too large`);
    total += FRAME_HEADER_BYTES + PREFIX_BYTES + hashBytes + entry.bodyBytes;
  }
  const out = Buffer.allocUnsafe(total);
  // The head as it moves through the batch, as two locals: one object for the batch, not per entry.
  let headId = chain?.head.id ?? 0;
  let headHash = chain?.head.hash ?? ZERO_HASH;
  let at = 0;
  for (const entry of entries) {
    const payload = at + FRAME_HEADER_BYTES;
    const body = payload + PREFIX_BYTES + hashBytes;
    out.writeUInt8(TAG[entry.type], payload);
    out.writeUIntLE(entry.id, payload + 1, 6);
    out.writeUIntLE(entry.timeMs, payload + 7, 6);
    if (typeof entry.body === 'string') out.write(entry.body, body, 'utf8');
    else entry.body.copy(out, body);
    if (chain !== null) {
      // Hashed with the tag unchained and h_prev in the slot; then the bit is set and h placed.
      headHash.copy(out, payload + PREFIX_BYTES);
      const hash = chainHashOf(chain.key, out.subarray(payload, body + entry.bodyBytes));
      out[payload] |= CHAINED;
      hash.copy(out, payload + PREFIX_BYTES);
      headId = entry.id;
      headHash = hash;
    }
    sealFrame(out, at, PREFIX_BYTES + hashBytes + entry.bodyBytes);
    at = body + entry.bodyBytes;
  }
  return { bytes: out, head: { id: headId, hash: headHash } };
}

/** The frame of a `head` entry: the chain's head as it stands, written first in a segment. */
export function encodeHeadEntry(head: ChainHead, time: Date): Buffer {
  const payloadBytes = PREFIX_BYTES + HASH_BYTES + 2;
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payloadBytes);
  const payload = FRAME_HEADER_BYTES;
  out.writeUInt8(TAG.head | CHAINED, payload);
  out.writeUIntLE(checkU48(head.id, 'audit record id'), payload + 1, 6);
  out.writeUIntLE(checkU48(time.getTime(), 'audit entry time'), payload + 7, 6);
  head.hash.copy(out, payload + PREFIX_BYTES);
  out.write('[]', payload + PREFIX_BYTES + HASH_BYTES, 'latin1');
  sealFrame(out, 0, payloadBytes);
  return out;
}
