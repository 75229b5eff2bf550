import { encodeChainedBatch, frameEntries, prepareEntry, ZERO_HASH } from '../src/audit/log/entry-codec';
import { decodePrepared } from '../src/audit/log/entry-decode';
import type { LogEntry, NewEntry } from '../src/audit/log/entry-codec';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LogAuditStore } from '../src/audit/log-store';
import { openAuditStore } from '../src/audit/store';
import { PrimaryAudit } from '../src/cluster/primary-audit';
import { commitDecoded } from '../src/cluster/worker-batches';
import { decodeAnswerFrame, decodeBatchFrame, encodeAnswerFrame, encodeBatchFrame, FrameReader, WireError } from '../src/cluster/wire';
import { catchUpIndex } from './helpers/audit-index';
import { withReader } from './helpers/audit-index-fixtures';
import { completion, openFacts } from './helpers/audit-log-fixtures';

/**
 * The audit channel between a `--workers` worker and the primary (cluster/wire.ts): a worker's
 * batch crosses as the log codec's prepared entries, and what the primary frames from them must be
 * byte for byte what one process writes for the same records.
 */

const ENTRIES: NewEntry[] = [
  { type: 'open', open: openFacts(1, { peerIp: '10.1.0.5', sni: 'api.example.com', user: 'ci-bot' }) },
  // Multi-byte text: lengths are bytes, not characters.
  { type: 'open', open: openFacts(2, { host: 'bücher.example', path: '/ünï/✓/\u{1F600}', reason: 'matched rule "q\\uote"' }) },
  { type: 'finished', open: openFacts(3, { decision: 'deny', rule: '(default)', tunnelId: 9 }), completion: completion(3, { status: 403 }) },
  { type: 'complete', id: 123_456_789, completion: completion(4, { error: 'upstream_reset: ECONNRESET' }) },
];

function crossed(entries: readonly NewEntry[]): ReturnType<typeof decodeBatchFrame> {
  return decodeBatchFrame(encodeBatchFrame(41, entries.map(prepareEntry)));
}

describe('the audit channel (cluster/wire.ts)', () => {
  test('a batch crosses with every field of every entry kind, and its seq', () => {
    const { seq, entries } = crossed(ENTRIES);
    expect(seq).toBe(41);
    expect(entries.map((e) => [e.type, e.id])).toEqual([['open', 0], ['open', 0], ['finished', 0], ['complete', 123_456_789]]);
    const expected: LogEntry[] = ENTRIES.map((entry) => ({ ...entry, id: entry.type === 'complete' ? entry.id : 0 }) as LogEntry);
    expect(entries.map(decodePrepared)).toEqual(expected);
  });

  test('the primary frames what crossed into the same log bytes one process writes for those records', () => {
    const key = Buffer.alloc(32, 7);
    const head = { id: 17, hash: Buffer.alloc(32, 3) };
    const withIds: LogEntry[] = ENTRIES.map((entry, i) => ({ ...entry, id: entry.type === 'complete' ? entry.id : 100 + i }) as LogEntry);
    const direct = encodeChainedBatch(withIds, { key, head });
    const { entries } = crossed(ENTRIES);
    entries.forEach((entry, i) => {
      if (entry.type !== 'complete') entry.id = 100 + i;
    });
    const viaWire = frameEntries(entries, { key, head });
    expect(viaWire.bytes.equals(direct.bytes)).toBe(true);
    expect(viaWire.head.hash.equals(direct.head.hash)).toBe(true);
    expect(viaWire.head.hash.equals(ZERO_HASH)).toBe(false);
  });

  test('frames arriving in pieces of any size, or several in one chunk, come out whole and in order', () => {
    const frames = [encodeBatchFrame(1, ENTRIES.map(prepareEntry)), encodeBatchFrame(2, []), encodeAnswerFrame(3, true, { ok: true, ids: [5, 6], refusedCompletions: 0 })];
    const stream = Buffer.concat(frames);
    for (const size of [1, 2, 3, 7, 64, stream.length]) {
      const seen: Buffer[] = [];
      const reader = new FrameReader((frame) => seen.push(Buffer.from(frame)));
      for (let at = 0; at < stream.length; at += size) reader.push(stream.subarray(at, Math.min(stream.length, at + size)));
      expect(seen.map((f) => f.toString('hex'))).toEqual(frames.map((f) => f.toString('hex')));
    }
  });

  test('answers carry ids up to 2^48 - 1 and the log state, or, for errors and refusals, JSON', () => {
    const big = 2 ** 48 - 1;
    expect(decodeAnswerFrame(encodeAnswerFrame(9, true, { ok: true, ids: [1, big], refusedCompletions: 0 }))).toEqual({
      seq: 9, writable: true, answer: { ok: true, ids: [1, big], refusedCompletions: 0 },
    });
    const refusal = { ok: true as const, ids: [7, { message: 'too large', code: null }], refusedCompletions: 1 };
    expect(decodeAnswerFrame(encodeAnswerFrame(10, false, refusal))).toEqual({ seq: 10, writable: false, answer: refusal });
    const failure = { ok: false as const, error: { message: 'audit log unavailable', code: 'audit_unavailable' } };
    expect(decodeAnswerFrame(encodeAnswerFrame(11, true, failure))).toEqual({ seq: 11, writable: true, answer: failure });
  });

  test('a frame that does not parse is refused with a WireError, never read as something else', () => {
    const good = encodeBatchFrame(1, ENTRIES.map(prepareEntry));
    // Cut inside the last entry's body (the length prefix adjusted, so only the entry is short).
    const short = Buffer.from(good.subarray(0, good.length - 3));
    short.writeUInt32LE(short.length - 4, 0);
    expect(() => decodeBatchFrame(short)).toThrow(WireError);
    const trailing = Buffer.concat([good, Buffer.from([0])]);
    trailing.writeUInt32LE(trailing.length - 4, 0);
    expect(() => decodeBatchFrame(trailing)).toThrow(/after a batch's last entry/);
    const badType = Buffer.from(good);
    badType[13] = 9;
    expect(() => decodeBatchFrame(badType)).toThrow(/unknown entry type 9/);
    expect(() => decodeAnswerFrame(good)).toThrow(/expected an answer/);
    expect(() => decodeBatchFrame(encodeAnswerFrame(1, true, { ok: true, ids: [], refusedCompletions: 0 }))).toThrow(/expected a batch/);
    const reader = new FrameReader(() => undefined);
    expect(() => reader.push(Buffer.from([1, 0, 0, 0, 0]))).toThrow(/bad frame length 1/);
  });

  test('a store that takes records as objects gets them decoded, and each record its own id back in the order sent', async () => {
    const store = openAuditStore(':memory:');
    try {
      const batch: NewEntry[] = [
        { type: 'finished', open: openFacts(1, { host: 'first-finished.example' }), completion: completion(1, { status: 403 }) },
        { type: 'open', open: openFacts(2, { host: 'first-open.example' }) },
        { type: 'finished', open: openFacts(3, { host: 'second-finished.example' }), completion: completion(3, { status: 407 }) },
        { type: 'open', open: openFacts(4, { host: 'second-open.example' }) },
      ];
      const outcome = await commitDecoded(store, crossed(batch).entries);
      expect(outcome.refusedCompletions).toBe(0);
      const hostOf = store.db.prepare('SELECT host FROM requests WHERE id = ?').pluck();
      expect(outcome.ids.map((id) => hostOf.get(id))).toEqual(['first-finished.example', 'first-open.example', 'second-finished.example', 'second-open.example']);
      const [, firstOpen] = outcome.ids as number[];
      await commitDecoded(store, crossed([{ type: 'complete', id: firstOpen, completion: completion(2, { status: 204 }) }]).entries);
      expect(store.db.prepare('SELECT status FROM requests WHERE id = ?').pluck().get(firstOpen)).toBe(204);
    } finally {
      store.close();
    }
  });

  test('a length that does not fit is refused even when its bytes arrive in pieces, and the reader takes nothing after it', () => {
    const reader = new FrameReader(() => undefined);
    reader.push(Buffer.from([0xff, 0xff]));
    expect(() => reader.push(Buffer.from([0xff, 0xff, 1, 2, 3]))).toThrow(/bad frame length 4294967295/);
    expect(() => reader.push(encodeBatchFrame(1, []))).toThrow(/bad frame length/);
  });

  test('batch numbers wrap within the frame\'s u32: a worker that stays up for weeks keeps recording', async () => {
    const sent: Buffer[] = [];
    const primary = new PrimaryAudit((frame) => sent.push(frame) > 0, true);
    const answer = async (id: number): Promise<unknown> => {
      const pending = primary.commitBatch([openFacts(id)], [], []);
      const { seq } = decodeBatchFrame(sent[sent.length - 1]);
      primary.answered(decodeAnswerFrame(encodeAnswerFrame(seq, true, { ok: true, ids: [id], refusedCompletions: 0 })));
      return { seq, outcome: await pending };
    };
    (primary as unknown as { seq: number }).seq = 2 ** 32 - 2;
    await expect(answer(1)).resolves.toEqual({ seq: 2 ** 32 - 1, outcome: { ids: [1], refusedCompletions: 0 } });
    await expect(answer(2)).resolves.toEqual({ seq: 0, outcome: { ids: [2], refusedCompletions: 0 } });
    await expect(answer(3)).resolves.toEqual({ seq: 1, outcome: { ids: [3], refusedCompletions: 0 } });
  });

  test('in a worker, an entry the codec refuses fails alone: the rest of the batch is sent and answered', async () => {
    const sent: Buffer[] = [];
    const primary = new PrimaryAudit((frame) => sent.push(frame) > 0, true);
    const pending = primary.commitBatch([openFacts(1), openFacts(2, { startedAt: new Date(2 ** 49) })], [[2 ** 48, completion(1)]], []);
    const { seq, entries } = decodeBatchFrame(sent[0]);
    expect(entries.map((e) => e.type)).toEqual(['open']);
    primary.answered(decodeAnswerFrame(encodeAnswerFrame(seq, true, { ok: true, ids: [41], refusedCompletions: 0 })));
    const outcome = await pending;
    expect(outcome.ids[0]).toBe(41);
    expect(String(outcome.ids[1])).toMatch(/audit entry time .* is out of range/);
    expect(outcome.refusedCompletions).toBe(1);
  });

  test('two workers\' batches appended as one: each record gets its own id, with a refused completion between them', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-wire-'));
    const dbFile = path.join(dir, 'audit.db');
    const store = new LogAuditStore(dbFile, {});
    try {
      const a = crossed([{ type: 'open', open: openFacts(1, { host: 'a-open.example' }) }, { type: 'finished', open: openFacts(2, { host: 'a-finished.example' }), completion: completion(2) }]).entries;
      const b = crossed([{ type: 'finished', open: openFacts(3, { host: 'b-finished.example' }), completion: completion(3) }, { type: 'open', open: openFacts(4, { host: 'b-open.example' }) }]).entries;
      // Framing refuses an id past u48 (the worker's codec would have refused it first): the recursion in commitPrepared.
      const bad = { ...prepareEntry({ type: 'complete', id: 1, completion: completion(5) }), id: 2 ** 48 };
      const outcome = store.commitPrepared([...a, bad, ...b]);
      expect(outcome.refusedCompletions).toBe(1);
      catchUpIndex(dbFile);
      const hostOf = withReader(dbFile, (db) => new Map((db.prepare('SELECT id, host FROM requests').all() as Array<{ id: number; host: string }>).map((r) => [r.id, r.host])));
      expect(outcome.ids.map((id) => hostOf.get(id as number))).toEqual(['a-open.example', 'a-finished.example', 'b-finished.example', 'b-open.example']);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
