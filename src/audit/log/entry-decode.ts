import type { AuditCompletion, AuditOpen } from '../record-types';
import { CHAINED, HASH_BYTES, PREFIX_BYTES } from './entry-codec';
import type { ChainHead, LogEntry, PreparedEntry } from './entry-codec';

/**
 * Reading the log's entries back (entry-codec.ts writes them): the binary prefix alone, for
 * recovery and retention, or the whole entry with every field type-checked, so that a mismatch
 * throws rather than misreads.
 */

/** A payload whose checksum held but whose contents are not an entry this release writes. */
export class EntryDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EntryDecodeError';
  }
}

/** The binary prefix of a payload: enough for recovery and retention, without parsing JSON. */
export interface EntryHead {
  /** `head`: a chain checkpoint, not a record's entry; every reader of records skips it. */
  type: LogEntry['type'] | 'head';
  id: number;
  timeMs: number;
  /** The entry carries a chain hash (HASH_BYTES after the prefix). */
  chained: boolean;
}

const TYPE_OF_TAG: ReadonlyArray<EntryHead['type'] | undefined> = [undefined, 'open', 'complete', 'finished', 'head'];

export function readEntryHead(payload: Buffer): EntryHead {
  const chained = (payload[0] & CHAINED) !== 0;
  const type = TYPE_OF_TAG[payload[0] & ~CHAINED];
  if (type === undefined) throw new EntryDecodeError(`unknown entry tag ${payload[0]}`);
  // A head entry is only ever written with its hash; one without is not what a writer made.
  if (type === 'head' && !chained) throw new EntryDecodeError('head entry without a hash');
  if (chained && payload.length < PREFIX_BYTES + HASH_BYTES + 2) throw new EntryDecodeError('chained entry too short for its hash');
  return { type, id: payload.readUIntLE(1, 6), timeMs: payload.readUIntLE(7, 6), chained };
}

/** The hash a chained entry (or head entry) carries; null for an entry written before the chain. */
export function storedHash(payload: Buffer): Buffer | null {
  return (payload[0] & CHAINED) === 0 ? null : payload.subarray(PREFIX_BYTES, PREFIX_BYTES + HASH_BYTES);
}

/** A head entry's checkpoint: the id and hash of the last chained entry before it. */
export function decodeHeadEntry(payload: Buffer): ChainHead {
  const head = readEntryHead(payload);
  if (head.type !== 'head') throw new EntryDecodeError(`a ${head.type} entry is not a head entry`);
  return { id: head.id, hash: Buffer.from(payload.subarray(PREFIX_BYTES, PREFIX_BYTES + HASH_BYTES)) };
}

/** Reads a payload back; every field is type-checked, so a mismatch throws rather than misreads. */
export function decodeEntry(payload: Buffer): LogEntry {
  const { type, id, timeMs, chained } = readEntryHead(payload);
  if (type === 'head') throw new EntryDecodeError('a head entry is not a record entry');
  return decodeBody(type, id, timeMs, payload.toString('utf8', PREFIX_BYTES + (chained ? HASH_BYTES : 0)));
}

/** A prepared entry read back (a worker's record, on the writer's rare paths: held, or not framed). */
export function decodePrepared(entry: PreparedEntry): LogEntry {
  return decodeBody(entry.type, entry.id, entry.timeMs, typeof entry.body === 'string' ? entry.body : entry.body.toString('utf8'));
}

function decodeBody(type: LogEntry['type'], id: number, timeMs: number, text: string): LogEntry {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new EntryDecodeError('entry body is not JSON');
  }
  if (!Array.isArray(body)) throw new EntryDecodeError('entry body is not an array');
  const time = new Date(timeMs);
  switch (type) {
    case 'open':
      expectLength(body, OPEN_CHECKS.length, true);
      return { type, id, open: withTrailing(readOpen(body, 0, time), body, OPEN_CHECKS.length) };
    case 'complete':
      expectLength(body, COMPLETION_CHECKS.length);
      return { type, id, completion: readCompletion(body, 0, time) };
    case 'finished':
      expectLength(body, 1 + OPEN_CHECKS.length + COMPLETION_CHECKS.length, true);
      return {
        type, id,
        open: withTrailing(readOpen(body, 1, new Date(checked(body[0], isCount, 'started_at'))), body, 1 + OPEN_CHECKS.length + COMPLETION_CHECKS.length),
        completion: readCompletion(body, 1 + OPEN_CHECKS.length, time),
      };
  }
}

type Check = (value: unknown) => boolean;
const isString: Check = (v) => typeof v === 'string';
const isCount: Check = (v) => Number.isSafeInteger(v) && (v as number) >= 0;
const orNull = (check: Check): Check => (v) => v === null || check(v);
const oneOf = (...values: string[]): Check => (v) => typeof v === 'string' && values.includes(v);

/** In openFields' order; the round-trip test fills every field with a distinct value. */
const OPEN_CHECKS: ReadonlyArray<readonly [keyof AuditOpen, Check]> = [
  ['clientIp', isString], ['clientPort', isCount],
  ['clients', (v) => Array.isArray(v) && v.every(isString)], ['user', orNull(isString)],
  ['kind', oneOf('connect', 'http', 'https')], ['method', orNull(isString)], ['scheme', orNull(isString)],
  ['host', orNull(isString)], ['port', orNull(isCount)], ['path', orNull(isString)],
  ['resolvedIp', orNull(isString)], ['decision', oneOf('allow', 'deny')],
  ['wouldDeny', (v) => typeof v === 'boolean'], ['rule', orNull(isString)],
  ['ruleSource', orNull(isString)], ['reason', isString], ['policyVersion', orNull(isString)],
];

/** The trailing fields (trailingFields), in their order; a record id is 1 or more. */
const TRAILING_CHECKS: ReadonlyArray<readonly [keyof AuditOpen, Check]> = [
  ['peerIp', isString], ['sni', isString], ['tunnelId', (v) => Number.isSafeInteger(v) && (v as number) >= 1],
];
const TRAILING_FIELDS = TRAILING_CHECKS.length;

const COMPLETION_CHECKS: ReadonlyArray<readonly [keyof AuditCompletion, Check]> = [
  ['status', orNull(isCount)], ['bytesUp', isCount], ['bytesDown', isCount], ['error', orNull(isString)],
];

function checked<T>(value: unknown, check: Check, name: string): T {
  if (!check(value)) throw new EntryDecodeError(`entry field ${name} has an unexpected value`);
  return value as T;
}

/** `withTrailing`: the body may hold up to TRAILING_FIELDS more fields (pushTrailing). */
function expectLength(body: unknown[], length: number, withTrailing = false): void {
  if (body.length === length || (withTrailing && body.length > length && body.length <= length + TRAILING_FIELDS)) return;
  throw new EntryDecodeError(`entry has ${body.length} fields, expected ${length}`);
}

/**
 * Entries written before a trailing field, and those without a value for it, have none: the
 * property stays absent and the record reads it as null. A null is only a placeholder before a
 * later field; a last field that is null was never written by this codec, so it is refused.
 */
function withTrailing(open: AuditOpen, body: unknown[], at: number): AuditOpen {
  const extra = body.length - at;
  for (let i = 0; i < extra; i += 1) {
    const value = body[at + i];
    // A null keeps a later field's slot; the last field always has a value.
    if (value === null && i < extra - 1) continue;
    const [name, check] = TRAILING_CHECKS[i];
    (open as unknown as Record<string, unknown>)[name] = checked(value, check, name);
  }
  return open;
}

function readOpen(body: unknown[], from: number, startedAt: Date): AuditOpen {
  const open: Record<string, unknown> = { startedAt };
  OPEN_CHECKS.forEach(([name, check], i) => { open[name] = checked(body[from + i], check, name); });
  return open as unknown as AuditOpen;
}

function readCompletion(body: unknown[], from: number, endedAt: Date): AuditCompletion {
  const completion: Record<string, unknown> = { endedAt };
  COMPLETION_CHECKS.forEach(([name, check], i) => { completion[name] = checked(body[from + i], check, name); });
  return completion as unknown as AuditCompletion;
}
