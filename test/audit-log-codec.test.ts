import zlib from 'node:zlib';
import { EntryEncodeError, encodeBatch } from '../src/audit/log/entry-codec';
import { decodeEntry, EntryDecodeError, readEntryHead } from '../src/audit/log/entry-decode';
import type { LogEntry } from '../src/audit/log/entry-codec';
import { checkFrame, FRAME_HEADER_BYTES, headerProblem, segmentHeader, UnsupportedLogFormatError } from '../src/audit/log/frame';
import { MAX_TEXT_LENGTH } from '../src/audit/record-params';
import type { AuditCompletion, AuditOpen } from '../src/audit/record-types';
import { recordToJson } from '../src/audit/query';

/** Every field distinct, so a swapped pair of fields in the codec shows up as a difference. */
const OPEN: AuditOpen = {
  startedAt: new Date('2025-03-01T12:00:00.123Z'), clientIp: '10.0.8.7', clientPort: 51234,
  clients: ['ci-runners', 'everyone'], user: 'ci-bot', kind: 'http', method: 'GET', scheme: 'http',
  host: 'example.com', port: 8080, path: '/a?b=ü', resolvedIp: '203.0.113.9', decision: 'deny',
  wouldDeny: true, rule: 'block-all', ruleSource: 'policies/90.yaml:4', reason: 'matched rule block-all',
  policyVersion: 'sha256:abc',
};
const DONE: AuditCompletion = { endedAt: new Date('2025-03-01T12:00:01.500Z'), status: 403, bytesUp: 517, bytesDown: 4096, error: 'upstream_error: reset' };

const ENTRIES: LogEntry[] = [
  { type: 'open', id: 1, open: OPEN },
  { type: 'complete', id: 1, completion: DONE },
  { type: 'finished', id: 2 ** 40, open: { ...OPEN, user: null, method: null, port: null }, completion: { ...DONE, status: null, error: null } },
];

/** Splits a batch Buffer into its frames' payloads, checking each frame on the way. */
function payloads(batch: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < batch.length;) {
    const check = checkFrame(batch.subarray(at));
    if (!check.ok) throw new Error(check.reason);
    out.push(batch.subarray(at + FRAME_HEADER_BYTES, at + check.frameBytes));
    at += check.frameBytes;
  }
  return out;
}

describe('audit log entry codec', () => {
  test('each kind of entry reads back exactly as written, from one batch buffer', () => {
    expect(payloads(encodeBatch(ENTRIES)).map(decodeEntry)).toEqual(ENTRIES);
  });

  test('peer_ip (issue 16) reads back; an entry without it (a direct connection, or written before it existed) is unchanged', () => {
    const proxied: LogEntry[] = [
      { type: 'open', id: 5, open: { ...OPEN, peerIp: '10.1.2.3' } },
      { type: 'finished', id: 6, open: { ...OPEN, peerIp: '2001:db8::1' }, completion: DONE },
    ];
    expect(payloads(encodeBatch(proxied)).map(decodeEntry)).toEqual(proxied);
    // Byte for byte what the release before peer_ip wrote: its logs read with the new code.
    const direct = payloads(encodeBatch([{ type: 'open', id: 7, open: { ...OPEN, peerIp: null } }]))[0];
    const earlier = payloads(encodeBatch([{ type: 'open', id: 7, open: OPEN }]))[0];
    expect(direct.equals(earlier)).toBe(true);
    expect(JSON.parse(earlier.toString('utf8', 13))).toHaveLength(17);
    const decoded = decodeEntry(earlier);
    expect(decoded.type === 'open' && decoded.open.peerIp).toBeUndefined();
  });

  test('a peer_ip that is not a string (or null with no sni after it), or a third extra field, is refused', () => {
    const body = (extra: unknown[]): Buffer => {
      const [payload] = payloads(encodeBatch([{ type: 'open', id: 8, open: OPEN }]));
      const fields = [...(JSON.parse(payload.toString('utf8', 13)) as unknown[]), ...extra];
      return Buffer.concat([payload.subarray(0, 13), Buffer.from(JSON.stringify(fields))]);
    };
    expect(() => decodeEntry(body([42]))).toThrow(EntryDecodeError);
    expect(() => decodeEntry(body([null]))).toThrow(EntryDecodeError);
    // Since sni (issue 17) a second extra field is sni; a third is refused.
    expect(() => decodeEntry(body(['10.0.0.1', 'x', 'y']))).toThrow(EntryDecodeError);
    expect(decodeEntry(body(['10.0.0.1']))).toMatchObject({ open: { peerIp: '10.0.0.1' } });
  });

  test('sni (issue 17) reads back, with or without a peer; entries written before it are byte for byte unchanged and read as none', () => {
    const checked: LogEntry[] = [
      { type: 'open', id: 9, open: { ...OPEN, sni: 'api.github.com' } },
      { type: 'open', id: 10, open: { ...OPEN, peerIp: '10.1.2.3', sni: 'objects.githubusercontent.com' } },
      { type: 'finished', id: 11, open: { ...OPEN, sni: 'evil.example' }, completion: DONE },
      { type: 'finished', id: 12, open: { ...OPEN, peerIp: '2001:db8::1', sni: 'xn--mnchen-3ya.example' }, completion: DONE },
    ];
    expect(payloads(encodeBatch(checked)).map(decodeEntry)).toEqual(checked);
    const [open, withPeer, finished] = payloads(encodeBatch(checked)).map((p) => JSON.parse(p.toString('utf8', 13)) as unknown[]);
    // The peer's slot holds null when there is none, so sni is always the second trailing field.
    expect(open.slice(17)).toEqual([null, 'api.github.com']);
    expect(withPeer.slice(17)).toEqual(['10.1.2.3', 'objects.githubusercontent.com']);
    expect(finished.slice(-2)).toEqual([null, 'evil.example']);

    // A null sni writes what the releases before it wrote (none, or the peer alone) ...
    const before = (open: AuditOpen): Buffer => payloads(encodeBatch([{ type: 'open', id: 13, open }]))[0];
    expect(before({ ...OPEN, sni: null }).equals(before(OPEN))).toBe(true);
    expect(before({ ...OPEN, peerIp: '10.9.9.9', sni: null }).equals(before({ ...OPEN, peerIp: '10.9.9.9' }))).toBe(true);
    expect(JSON.parse(before({ ...OPEN, peerIp: '10.9.9.9' }).toString('utf8', 13))).toHaveLength(18);
    // ... and what they wrote decodes with no sni, which the record shows as null.
    for (const old of [before(OPEN), before({ ...OPEN, peerIp: '10.9.9.9' })]) {
      const decoded = decodeEntry(old);
      if (decoded.type !== 'open') throw new Error('expected an open');
      expect(decoded.open.sni).toBeUndefined();
      expect(recordToJson(13, decoded.open, DONE, 'n').sni).toBeNull();
    }
    const finishedBefore = decodeEntry(payloads(encodeBatch([{ type: 'finished', id: 14, open: OPEN, completion: DONE }]))[0]);
    expect(finishedBefore.type === 'finished' && finishedBefore.open.sni).toBeUndefined();
  });

  test('an sni that is not a string is refused; a long one is clipped like every text', () => {
    const body = (extra: unknown[]): Buffer => {
      const [payload] = payloads(encodeBatch([{ type: 'open', id: 15, open: OPEN }]));
      const fields = [...(JSON.parse(payload.toString('utf8', 13)) as unknown[]), ...extra];
      return Buffer.concat([payload.subarray(0, 13), Buffer.from(JSON.stringify(fields))]);
    };
    expect(() => decodeEntry(body([null, 7]))).toThrow(EntryDecodeError);
    expect(() => decodeEntry(body([null, null]))).toThrow(EntryDecodeError);
    expect(() => decodeEntry(body([3, 'a.example']))).toThrow(EntryDecodeError);
    expect(decodeEntry(body([null, 'a.example']))).toEqual({ type: 'open', id: 15, open: { ...OPEN, sni: 'a.example' } });
    const [long] = payloads(encodeBatch([{ type: 'open', id: 16, open: { ...OPEN, sni: 'a'.repeat(3 * MAX_TEXT_LENGTH) } }]));
    const decoded = decodeEntry(long);
    expect(decoded.type === 'open' && decoded.open.sni?.length).toBe(MAX_TEXT_LENGTH);
  });

  test('tunnel_id and kind https (issue 18) read back with or without a peer and an sni; earlier slots hold null', () => {
    const inner = { ...OPEN, kind: 'https' as const, scheme: 'https' };
    const inspected: LogEntry[] = [
      { type: 'open', id: 20, open: { ...inner, tunnelId: 19 } },
      { type: 'open', id: 21, open: { ...inner, peerIp: '10.1.2.3', tunnelId: 19 } },
      { type: 'finished', id: 22, open: { ...inner, sni: 'github.com', tunnelId: 19 }, completion: DONE },
      { type: 'finished', id: 23, open: { ...inner, peerIp: '2001:db8::1', sni: 'github.com', tunnelId: 2 ** 40 }, completion: DONE },
    ];
    expect(payloads(encodeBatch(inspected)).map(decodeEntry)).toEqual(inspected);
    const bodies = payloads(encodeBatch(inspected)).map((p) => JSON.parse(p.toString('utf8', 13)) as unknown[]);
    expect(bodies[0].slice(17)).toEqual([null, null, 19]);
    expect(bodies[1].slice(17)).toEqual(['10.1.2.3', null, 19]);
    expect(bodies[2].slice(-3)).toEqual([null, 'github.com', 19]);
    expect(bodies[3].slice(-3)).toEqual(['2001:db8::1', 'github.com', 2 ** 40]);
    expect(bodies[0][4]).toBe('https');
  });

  test('a null tunnel_id writes what the release before it wrote, for every mix of peer and sni; that reads with no tunnel', () => {
    const one = (open: AuditOpen): Buffer => payloads(encodeBatch([{ type: 'open', id: 24, open }]))[0];
    const finished = (open: AuditOpen): Buffer => payloads(encodeBatch([{ type: 'finished', id: 25, open, completion: DONE }]))[0];
    for (const mix of [{}, { peerIp: '10.9.9.9' }, { sni: 'a.example' }, { peerIp: '10.9.9.9', sni: 'a.example' }]) {
      for (const encode of [one, finished]) {
        const written = encode({ ...OPEN, ...mix, tunnelId: null });
        expect(written.equals(encode({ ...OPEN, ...mix }))).toBe(true);
        const decoded = decodeEntry(written);
        if (decoded.type === 'complete') throw new Error('expected a record');
        expect(decoded.open.tunnelId).toBeUndefined();
        expect(recordToJson(24, decoded.open, DONE, 'n').tunnel_id).toBeNull();
      }
    }
  });

  test('a tunnel_id that is not a record id, a null last field, a fourth extra field or an unknown kind is refused', () => {
    const withExtra = (extra: unknown[], open: AuditOpen = OPEN): Buffer => {
      const [payload] = payloads(encodeBatch([{ type: 'open', id: 26, open }]));
      const fields = [...(JSON.parse(payload.toString('utf8', 13)) as unknown[]), ...extra];
      return Buffer.concat([payload.subarray(0, 13), Buffer.from(JSON.stringify(fields))]);
    };
    for (const bad of ['7', 0, -1, 1.5, 2 ** 53, null, true]) expect(() => decodeEntry(withExtra([null, null, bad]))).toThrow(EntryDecodeError);
    expect(() => decodeEntry(withExtra(['10.0.0.1', 'a.example', null]))).toThrow(EntryDecodeError);
    expect(() => decodeEntry(withExtra([null, null, 7, 'x']))).toThrow(EntryDecodeError);
    expect(() => decodeEntry(withExtra([null, 3, 7]))).toThrow(EntryDecodeError);
    expect(decodeEntry(withExtra([null, null, 7]))).toEqual({ type: 'open', id: 26, open: { ...OPEN, tunnelId: 7 } });
    const [ftp] = payloads(encodeBatch([{ type: 'open', id: 27, open: { ...OPEN, kind: 'ftp' as AuditOpen['kind'] } }]));
    expect(() => decodeEntry(ftp)).toThrow(EntryDecodeError);
  });

  test('the binary head gives type, id and the entry time without parsing JSON', () => {
    const heads = payloads(encodeBatch(ENTRIES)).map(readEntryHead);
    expect(heads).toEqual([
      { type: 'open', id: 1, timeMs: OPEN.startedAt.getTime(), chained: false },
      { type: 'complete', id: 1, timeMs: DONE.endedAt.getTime(), chained: false },
      { type: 'finished', id: 2 ** 40, timeMs: DONE.endedAt.getTime(), chained: false },
    ]);
  });

  test('hostile long texts are clipped as the SQLite store clips them', () => {
    const open = { ...OPEN, host: 'h'.repeat(100_000), clients: ['c'.repeat(5000)] };
    const [decoded] = payloads(encodeBatch([{ type: 'open', id: 3, open }])).map(decodeEntry);
    if (decoded.type !== 'open') throw new Error('not an open');
    expect(decoded.open.host).toHaveLength(MAX_TEXT_LENGTH);
    expect(decoded.open.clients[0]).toHaveLength(MAX_TEXT_LENGTH);
  });

  test('an id or time out of range is refused before anything is encoded', () => {
    expect(() => encodeBatch([{ type: 'open', id: 0.5, open: OPEN }])).toThrow(EntryEncodeError);
    expect(() => encodeBatch([{ type: 'open', id: 1, open: { ...OPEN, startedAt: new Date(Number.NaN) } }])).toThrow(EntryEncodeError);
  });

  test('a checksummed payload of the wrong shape is refused, never read as an entry', () => {
    const [payload] = payloads(encodeBatch([ENTRIES[1]]));
    const forged = Buffer.concat([payload.subarray(0, 13), Buffer.from('[200,"1",2,null]')]);
    expect(() => decodeEntry(forged)).toThrow(EntryDecodeError);
    forged[0] = 9;
    expect(() => decodeEntry(forged)).toThrow('unknown entry tag 9');
  });

  test('frame checks name zeroed, torn, mis-sized and corrupted frames', () => {
    const frame = encodeBatch([ENTRIES[0]]);
    expect(checkFrame(Buffer.alloc(40))).toEqual({ ok: false, reason: 'zeroed region' });
    expect(checkFrame(frame.subarray(0, 8))).toEqual({ ok: false, reason: 'truncated frame header' });
    expect(checkFrame(frame.subarray(0, frame.length - 1))).toEqual({ ok: false, reason: 'frame runs past the end of the file' });
    const huge = Buffer.from(frame);
    huge.writeUInt32LE(0x7fffffff, 4);
    expect(checkFrame(huge)).toEqual({ ok: false, reason: `bad length ${0x7fffffff}` });
    const flipped = Buffer.from(frame);
    flipped[frame.length - 3] ^= 0x01;
    expect(checkFrame(flipped)).toEqual({ ok: false, reason: 'checksum mismatch' });
    expect(zlib.crc32(frame.subarray(FRAME_HEADER_BYTES))).toBe(frame.readUInt32LE(8));
  });

  test('segment header: good, damaged, and a newer format refused rather than misread', () => {
    expect(headerProblem(segmentHeader(), 'x.seg')).toBeNull();
    expect(headerProblem(Buffer.alloc(12), 'x.seg')).toBe('zeroed segment header');
    expect(headerProblem(segmentHeader().subarray(0, 5), 'x.seg')).toBe('truncated segment header');
    const newer = segmentHeader();
    newer.writeUInt32LE(2, 8);
    expect(() => headerProblem(newer, 'x.seg')).toThrow(UnsupportedLogFormatError);
  });
});
