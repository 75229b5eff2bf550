import type { PreparedEntry } from '../audit/log/entry-codec';
import type { RemoteError } from '../audit/writer-protocol';

/**
 * The audit channel between a worker and the primary: a socket pair of its own (fd 4 in the
 * worker, `stdio[4]` in the primary), not the cluster's JSON channel. A worker sends its group
 * commit's batches as entries the log's codec already encoded (entry-codec.ts prepareEntry), so
 * the primary frames, chains and appends them without parsing or re-encoding a record. In the
 * spooled mode (below, and block-merge.ts) the worker has given the ids already and the same frames
 * fill its spool files; otherwise the primary answers with the ids. The cluster's JSON channel cost
 * more on both sides, and the primary then parsed every record and encoded it again
 * (docs/performance.md, "Workers").
 *
 *   frame:  u32 length of what follows | u8 kind | u32 seq | body
 *   batch (kind 1, worker to primary):  u32 count, then per entry
 *           u8 type | u48 id (a record's: 0 until the log gives one, unless the worker gave it)
 *           | u48 time ms | u32 body bytes | body
 *   ids   (kind 2, primary to worker):  u8 writable | u32 count | count × u48 id
 *   json  (kind 3, primary to worker):  u8 writable | UTF-8 JSON of a BatchAnswer (errors, refusals)
 *
 * Integers are little-endian. Both ends are this release's own processes; a frame that does not
 * parse is a bug, and the reader throws rather than guess.
 */

/** The channel's descriptor in a worker: after stdin, stdout, stderr and the cluster's IPC (pool.ts). */
export const AUDIT_CHANNEL_FD = 4;

const KIND = { batch: 1, ids: 2, json: 3 } as const;
const TYPES: ReadonlyArray<PreparedEntry['type']> = ['open', 'complete', 'finished'];
const FRAME_HEAD = 4 + 1 + 4;
const ENTRY_HEAD = 1 + 6 + 6 + 4;
/**
 * Far above a real batch: entries' text fields are clipped to 2,048 characters, so a batch this
 * large would hold some hundred thousand records of one turn. A length above it is damage.
 */
const MAX_FRAME_BYTES = 256 * 1024 * 1024;

/** What the primary answers for one batch that is not a plain list of ids. */
export type BatchAnswer =
  | { ok: true; ids: Array<number | RemoteError>; refusedCompletions: number }
  | { ok: false; error: RemoteError };

export class WireError extends Error {
  constructor(message: string) {
    super(`audit channel: ${message}`);
    this.name = 'WireError';
  }
}

export function encodeBatchFrame(seq: number, entries: readonly PreparedEntry[]): Buffer {
  let total = FRAME_HEAD + 4;
  for (const entry of entries) total += ENTRY_HEAD + entry.bodyBytes;
  const out = Buffer.allocUnsafe(total);
  let at = writeHead(out, KIND.batch, seq);
  out.writeUInt32LE(entries.length, at);
  at += 4;
  for (const entry of entries) {
    out[at] = TYPES.indexOf(entry.type);
    out.writeUIntLE(entry.id, at + 1, 6);
    out.writeUIntLE(entry.timeMs, at + 7, 6);
    out.writeUInt32LE(entry.bodyBytes, at + 13);
    at += ENTRY_HEAD;
    at += typeof entry.body === 'string' ? out.write(entry.body, at, 'utf8') : entry.body.copy(out, at);
  }
  return out;
}

/** The answer to a batch: ids alone when every record got one and no completion was refused. */
export function encodeAnswerFrame(seq: number, writable: boolean, answer: BatchAnswer): Buffer {
  if (answer.ok && answer.refusedCompletions === 0 && answer.ids.every((id): id is number => typeof id === 'number')) {
    const out = Buffer.allocUnsafe(FRAME_HEAD + 1 + 4 + 6 * answer.ids.length);
    let at = writeHead(out, KIND.ids, seq);
    out[at] = writable ? 1 : 0;
    out.writeUInt32LE(answer.ids.length, at + 1);
    at += 5;
    for (const id of answer.ids as number[]) {
      out.writeUIntLE(id, at, 6);
      at += 6;
    }
    return out;
  }
  const json = Buffer.from(JSON.stringify(answer), 'utf8');
  const out = Buffer.allocUnsafe(FRAME_HEAD + 1 + json.length);
  const at = writeHead(out, KIND.json, seq);
  out[at] = writable ? 1 : 0;
  json.copy(out, at + 1);
  return out;
}

function writeHead(out: Buffer, kind: number, seq: number): number {
  out.writeUInt32LE(out.length - 4, 0);
  out[4] = kind;
  out.writeUInt32LE(seq, 5);
  return FRAME_HEAD;
}

export interface BatchFrame {
  seq: number;
  /** Bodies are views into the received bytes: no copy until they are framed into the log. */
  entries: PreparedEntry[];
}

export interface AnswerFrame {
  seq: number;
  writable: boolean;
  answer: BatchAnswer;
}

export function decodeBatchFrame(frame: Buffer): BatchFrame {
  const { kind, seq } = readHead(frame);
  if (kind !== KIND.batch) throw new WireError(`expected a batch, got frame kind ${kind}`);
  need(frame, FRAME_HEAD + 4);
  const count = frame.readUInt32LE(FRAME_HEAD);
  const entries: PreparedEntry[] = [];
  let at = FRAME_HEAD + 4;
  for (let i = 0; i < count; i += 1) {
    need(frame, at + ENTRY_HEAD);
    const type = TYPES[frame[at]];
    if (type === undefined) throw new WireError(`unknown entry type ${frame[at]}`);
    const bodyBytes = frame.readUInt32LE(at + 13);
    const start = at + ENTRY_HEAD;
    need(frame, start + bodyBytes);
    entries.push({ type, id: frame.readUIntLE(at + 1, 6), timeMs: frame.readUIntLE(at + 7, 6), body: frame.subarray(start, start + bodyBytes), bodyBytes });
    at = start + bodyBytes;
  }
  if (at !== frame.length) throw new WireError(`${frame.length - at} bytes after a batch's last entry`);
  return { seq, entries };
}

export function decodeAnswerFrame(frame: Buffer): AnswerFrame {
  const { kind, seq } = readHead(frame);
  need(frame, FRAME_HEAD + 1);
  const writable = frame[FRAME_HEAD] === 1;
  if (kind === KIND.json) return { seq, writable, answer: JSON.parse(frame.toString('utf8', FRAME_HEAD + 1)) as BatchAnswer };
  if (kind !== KIND.ids) throw new WireError(`expected an answer, got frame kind ${kind}`);
  need(frame, FRAME_HEAD + 5);
  const count = frame.readUInt32LE(FRAME_HEAD + 1);
  need(frame, FRAME_HEAD + 5 + 6 * count);
  const ids: number[] = new Array<number>(count);
  for (let i = 0; i < count; i += 1) ids[i] = frame.readUIntLE(FRAME_HEAD + 5 + 6 * i, 6);
  return { seq, writable, answer: { ok: true, ids, refusedCompletions: 0 } };
}

function readHead(frame: Buffer): { kind: number; seq: number } {
  need(frame, FRAME_HEAD);
  return { kind: frame[4], seq: frame.readUInt32LE(5) };
}

function need(frame: Buffer, bytes: number): void {
  if (frame.length < bytes) throw new WireError(`a frame of ${frame.length} bytes ends early (needs ${bytes})`);
}

/**
 * Frames of the spooled mode (cluster/block-merge.ts, cluster/spool-audit.ts), where a worker
 * gives its records ids from blocks the primary reserved for it and waits for no answer:
 *
 *   block   (kind 4, primary to worker):  u8 writable | u48 first id | u32 count | u48 appended
 *           (`count` ids from `first`; count 0: none can be reserved now. `appended`: the number
 *           of this worker's last batch whose entries are all in the log, so its spool files up
 *           to that batch can go; 2^48 - 1: none yet)
 *   want    (kind 5, worker to primary):  u32 count: this worker is running low on ids (a batch
 *           needs `count` more than it holds, or 0: ahead of need)
 *   release (kind 6, worker to primary):  u48 up to: the worker gives back every id below it it
 *           has not used; seq is the token of the sync that asked for it (0: none)
 *   sync    (kind 7, primary to worker):  no body: give back the ids you hold (seq: a token)
 */
const SPOOL_KIND = { block: 4, want: 5, release: 6, sync: 7 } as const;

export interface BlockFrame {
  writable: boolean;
  first: number;
  count: number;
  /** The worker's last batch number whose entries are all in the log; null: none yet. */
  appended: number | null;
}

const NO_BATCH = 2 ** 48 - 1;

export function encodeBlockFrame({ writable, first, count, appended }: BlockFrame): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEAD + 1 + 6 + 4 + 6);
  const at = writeHead(out, SPOOL_KIND.block, 0);
  out[at] = writable ? 1 : 0;
  out.writeUIntLE(first, at + 1, 6);
  out.writeUInt32LE(count, at + 7);
  out.writeUIntLE(appended ?? NO_BATCH, at + 11, 6);
  return out;
}

export function encodeWantFrame(count: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEAD + 4);
  const at = writeHead(out, SPOOL_KIND.want, 0);
  out.writeUInt32LE(count, at);
  return out;
}

export function encodeReleaseFrame(token: number, upTo: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEAD + 6);
  const at = writeHead(out, SPOOL_KIND.release, token);
  out.writeUIntLE(upTo, at, 6);
  return out;
}

export function encodeSyncFrame(token: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEAD);
  writeHead(out, SPOOL_KIND.sync, token);
  return out;
}

/** What a worker sends in the spooled mode. */
export type WorkerFrame =
  | { kind: 'batch'; frame: BatchFrame }
  | { kind: 'want'; count: number }
  | { kind: 'release'; token: number; upTo: number };

export function decodeWorkerFrame(frame: Buffer): WorkerFrame {
  const { kind, seq } = readHead(frame);
  if (kind === KIND.batch) return { kind: 'batch', frame: decodeBatchFrame(frame) };
  if (kind === SPOOL_KIND.want) {
    need(frame, FRAME_HEAD + 4);
    return { kind: 'want', count: frame.readUInt32LE(FRAME_HEAD) };
  }
  if (kind !== SPOOL_KIND.release) throw new WireError(`expected a worker's frame, got frame kind ${kind}`);
  need(frame, FRAME_HEAD + 6);
  return { kind: 'release', token: seq, upTo: frame.readUIntLE(FRAME_HEAD, 6) };
}

/** What the primary sends: an answer (the round trip's mode), a block or a sync (the spooled one's). */
export type PrimaryFrame =
  | { kind: 'answer'; answer: AnswerFrame }
  | { kind: 'block'; block: BlockFrame }
  | { kind: 'sync'; token: number };

export function decodePrimaryFrame(frame: Buffer): PrimaryFrame {
  const { kind, seq } = readHead(frame);
  if (kind === SPOOL_KIND.sync) return { kind: 'sync', token: seq };
  if (kind !== SPOOL_KIND.block) return { kind: 'answer', answer: decodeAnswerFrame(frame) };
  need(frame, FRAME_HEAD + 17);
  const at = FRAME_HEAD;
  const appended = frame.readUIntLE(at + 11, 6);
  return { kind: 'block', block: { writable: frame[at] === 1, first: frame.readUIntLE(at + 1, 6), count: frame.readUInt32LE(at + 7), appended: appended === NO_BATCH ? null : appended } };
}

/**
 * Cuts a byte stream into frames. A frame that arrived whole in one chunk is a view into it (the
 * common case under load: no copy); one split across chunks is joined once. After a bad length it
 * refuses everything: nothing after it can be framed with certainty.
 */
export class FrameReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private broken: WireError | null = null;

  constructor(private readonly onFrame: (frame: Buffer) => void) {}

  push(chunk: Buffer): void {
    if (this.broken !== null) throw this.broken;
    let data = chunk;
    if (this.pendingBytes > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes < 4 || this.pendingBytes < 4 + this.checkedLength(Buffer.concat(this.pending, 4), 0)) return;
      data = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }
    let at = 0;
    while (data.length - at >= 4) {
      const length = this.checkedLength(data, at);
      if (data.length - at < 4 + length) break;
      this.onFrame(data.subarray(at, at + 4 + length));
      at += 4 + length;
    }
    if (at < data.length) {
      this.pending = [data.subarray(at)];
      this.pendingBytes = data.length - at;
    }
  }

  private checkedLength(data: Buffer, at: number): number {
    const length = data.readUInt32LE(at);
    if (length >= FRAME_HEAD - 4 && length <= MAX_FRAME_BYTES) return length;
    this.broken = new WireError(`bad frame length ${length}`);
    throw this.broken;
  }
}
