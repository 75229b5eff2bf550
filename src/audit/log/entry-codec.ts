import { clipText } from '../record-params';
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
const TAG = { open: 1, complete: 2, finished: 3 } as const;
const PREFIX_BYTES = 13;
const MAX_U48 = 2 ** 48 - 1;

/** An entry the codec refuses to write (an id or time out of range, a record too large). */
export class EntryEncodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EntryEncodeError';
  }
}

/** A payload whose checksum held but whose contents are not an entry this release writes. */
export class EntryDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EntryDecodeError';
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

function completionFields(c: AuditCompletion): unknown[] {
  return [c.status, c.bytesUp, c.bytesDown, clip(c.error)];
}

/**
 * Fields that came after the log format, at the very end of an open or finished body, in the
 * order they were added: `peer_ip` (issue 16), then `sni` (issue 17). Each is written only when
 * it or a later one has a value (an earlier one as null then, to keep its slot), so an entry
 * with neither is byte for byte what the first release wrote, one with only a peer what the
 * issue 16 release wrote, and logs written by either read unchanged.
 */
const TRAILING_FIELDS = 2;

function trailingFields(o: AuditOpen): unknown[] {
  const peer = o.peerIp === undefined || o.peerIp === null ? null : clipText(o.peerIp);
  if (o.sni !== undefined && o.sni !== null) return [peer, clipText(o.sni)];
  return peer === null ? [] : [peer];
}

function bodyOf(entry: LogEntry): string {
  switch (entry.type) {
    case 'open': return JSON.stringify([...openFields(entry.open), ...trailingFields(entry.open)]);
    case 'complete': return JSON.stringify(completionFields(entry.completion));
    case 'finished': return JSON.stringify([entry.open.startedAt.getTime(), ...openFields(entry.open), ...completionFields(entry.completion), ...trailingFields(entry.open)]);
  }
}

export function entryTime(entry: LogEntry): Date {
  return entry.type === 'open' ? entry.open.startedAt : entry.completion.endedAt;
}

function checkU48(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0 || value > MAX_U48) throw new EntryEncodeError(`${what} ${value} is out of range`);
  return value;
}

/**
 * Every entry of a batch as frames in one Buffer, so that the batch is one write(). Throws
 * EntryEncodeError, before anything is written, when any entry cannot be encoded.
 */
export function encodeBatch(entries: readonly LogEntry[]): Buffer {
  const bodies = entries.map(bodyOf);
  const lengths = bodies.map((body) => Buffer.byteLength(body, 'utf8'));
  let total = 0;
  for (const length of lengths) {
    if (PREFIX_BYTES + length > MAX_PAYLOAD_BYTES) throw new EntryEncodeError(`an audit entry of ${length} bytes is too large`);
    total += FRAME_HEADER_BYTES + PREFIX_BYTES + length;
  }
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  entries.forEach((entry, i) => {
    const payload = at + FRAME_HEADER_BYTES;
    out.writeUInt8(TAG[entry.type], payload);
    out.writeUIntLE(checkU48(entry.id, 'audit record id'), payload + 1, 6);
    out.writeUIntLE(checkU48(entryTime(entry).getTime(), 'audit entry time'), payload + 7, 6);
    out.write(bodies[i], payload + PREFIX_BYTES, 'utf8');
    sealFrame(out, at, PREFIX_BYTES + lengths[i]);
    at = payload + PREFIX_BYTES + lengths[i];
  });
  return out;
}

/** The binary prefix of a payload: enough for recovery and retention, without parsing JSON. */
export interface EntryHead {
  type: LogEntry['type'];
  id: number;
  timeMs: number;
}

const TYPE_OF_TAG: ReadonlyArray<LogEntry['type'] | undefined> = [undefined, 'open', 'complete', 'finished'];

export function readEntryHead(payload: Buffer): EntryHead {
  const type = TYPE_OF_TAG[payload[0]];
  if (type === undefined) throw new EntryDecodeError(`unknown entry tag ${payload[0]}`);
  return { type, id: payload.readUIntLE(1, 6), timeMs: payload.readUIntLE(7, 6) };
}

/** Reads a payload back; every field is type-checked, so a mismatch throws rather than misreads. */
export function decodeEntry(payload: Buffer): LogEntry {
  const { type, id, timeMs } = readEntryHead(payload);
  let body: unknown;
  try {
    body = JSON.parse(payload.toString('utf8', PREFIX_BYTES));
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
  ['kind', oneOf('connect', 'http')], ['method', orNull(isString)], ['scheme', orNull(isString)],
  ['host', orNull(isString)], ['port', orNull(isCount)], ['path', orNull(isString)],
  ['resolvedIp', orNull(isString)], ['decision', oneOf('allow', 'deny')],
  ['wouldDeny', (v) => typeof v === 'boolean'], ['rule', orNull(isString)],
  ['ruleSource', orNull(isString)], ['reason', isString], ['policyVersion', orNull(isString)],
];

const COMPLETION_CHECKS: ReadonlyArray<readonly [keyof AuditCompletion, Check]> = [
  ['status', orNull(isCount)], ['bytesUp', isCount], ['bytesDown', isCount], ['error', orNull(isString)],
];

function checked<T>(value: unknown, check: Check, name: string): T {
  if (!check(value)) throw new EntryDecodeError(`entry field ${name} has an unexpected value`);
  return value as T;
}

/** `withTrailing`: the body may hold up to TRAILING_FIELDS more fields (trailingFields). */
function expectLength(body: unknown[], length: number, withTrailing = false): void {
  if (body.length === length || (withTrailing && body.length > length && body.length <= length + TRAILING_FIELDS)) return;
  throw new EntryDecodeError(`entry has ${body.length} fields, expected ${length}`);
}

/**
 * Entries written before a trailing field, and those without a value for it, have none: the
 * property stays absent and the record reads it as null. A null peer is only a placeholder
 * before an sni; a last field that is null was never written by this codec, so it is refused.
 */
function withTrailing(open: AuditOpen, body: unknown[], at: number): AuditOpen {
  const extra = body.length - at;
  if (extra >= 1) {
    const peer = checked<string | null>(body[at], extra === 2 ? orNull(isString) : isString, 'peerIp');
    if (peer !== null) open.peerIp = peer;
  }
  if (extra === 2) open.sni = checked<string>(body[at + 1], isString, 'sni');
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
