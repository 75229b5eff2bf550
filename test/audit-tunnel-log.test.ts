import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import Database from 'better-sqlite3';
import { encodeBatch, PREFIX_BYTES, HASH_BYTES, CHAINED } from '../src/audit/log/entry-codec';
import type { LogEntry } from '../src/audit/log/entry-codec';
import { FRAME_HEADER_BYTES } from '../src/audit/log/frame';
import { SegmentLog } from '../src/audit/log/segment-log';
import { listSegments } from '../src/audit/log/segment-files';
import { scanSegment } from '../src/audit/log/segment-scan';
import { verifyChain } from '../src/audit/log/verify-chain';
import type { AuditOpen } from '../src/audit/record-types';
import { catchUpIndex } from './helpers/audit-index';
import { completion, openFacts, readAll, tempLogDir } from './helpers/audit-log-fixtures';
import { runCli } from './helpers/serve-process';

/**
 * The audit log of the release before tunnel_id (issue 18), read and extended by this one: its
 * entries decode unchanged (tunnel_id null), its chain goes on through entries that carry a
 * tunnel, `tollgate audit verify` passes over both, and an edit of a tunnel_id is caught.
 *
 * test/fixtures/audit-log-issue17/ is a log that release wrote (commit 831caeb, SegmentLog with a
 * fixed clock, fsync on): records 1-3 opened (one plain, one with a peer, one with an sni), 4
 * written whole with both, then 1-3 completed. See its README for how it was made.
 */

const FIXTURE = path.join(__dirname, 'fixtures', 'audit-log-issue17');

let dir: string;
let db: string;
let remove: () => void;

beforeEach(() => {
  ({ dir, remove } = tempLogDir());
  // `audit verify --db X` reads the log beside X (X's name with -log): audit.db -> audit-log.
  db = path.join(path.dirname(dir), 'audit.db');
  fs.mkdirSync(dir);
  for (const name of fs.readdirSync(FIXTURE).filter((n) => n !== 'README.md')) fs.copyFileSync(path.join(FIXTURE, name), path.join(dir, name));
});
afterEach(() => remove());

interface Frame { file: string; offset: number; end: number; payload: Buffer }

function entryFrames(): Frame[] {
  const out: Frame[] = [];
  for (const { file } of listSegments(dir)) {
    for (const item of scanSegment(file)) {
      if (item.kind === 'frame' && (item.payload[0] & 0x7f) !== 4) out.push({ file, offset: item.offset, end: item.end, payload: Buffer.from(item.payload) });
    }
  }
  return out;
}

/** The JSON body of a stored entry, chained or not. */
function bodyOf(payload: Buffer): string {
  return payload.toString('utf8', PREFIX_BYTES + ((payload[0] & CHAINED) !== 0 ? HASH_BYTES : 0));
}

function inner(n: number, tunnelId: number): AuditOpen {
  return openFacts(n, { kind: 'https', method: 'GET', scheme: 'https', host: 'host4.example.com', path: '/our-org', tunnelId });
}

describe('a log the previous release wrote', () => {
  test('reads unchanged, with no tunnel; this release writes each of its entries byte for byte as it did', () => {
    const back = readAll(dir);
    expect(back.damage).toEqual([]);
    expect(back.entries.map(({ entry }) => [entry.type, entry.id])).toEqual([
      ['open', 1], ['open', 2], ['open', 3], ['finished', 4], ['complete', 1], ['complete', 2], ['complete', 3],
    ]);
    const records = back.entries.map(({ entry }) => entry).filter((e): e is Exclude<LogEntry, { type: 'complete' }> => e.type !== 'complete');
    expect(records.map((e) => [e.open.peerIp, e.open.sni, e.open.tunnelId])).toEqual([
      [undefined, undefined, undefined], ['10.1.0.5', undefined, undefined], [undefined, 'host3.example.com', undefined],
      ['10.1.0.6', 'host4.example.com', undefined],
    ]);
    // What this release encodes for those same entries is what is stored (the hash aside).
    const stored = entryFrames().map((f) => bodyOf(f.payload));
    const rewritten = back.entries.map(({ entry }) => bodyOf(encodeBatch([entry]).subarray(FRAME_HEADER_BYTES)));
    expect(rewritten).toEqual(stored);
  });

  test('its chain goes on through entries with a tunnel; audit verify passes over both; the index reads both', () => {
    const before = verifyChain(dir, { key: null });
    expect(before.break).toBeNull();
    expect(before.verified).toBe(7);

    const log = SegmentLog.open({ dir, fsync: false });
    let ids: number[];
    try {
      const [tunnel] = log.appendBatch([{ type: 'open', open: openFacts(10, { host: 'github.com', sni: 'github.com' }) }]);
      ids = [tunnel, ...log.appendBatch([
        { type: 'finished', open: inner(11, tunnel), completion: completion(11) },
        { type: 'finished', open: { ...inner(12, tunnel), peerIp: '10.1.0.7' }, completion: completion(12) },
      ])];
      log.appendBatch([{ type: 'complete', id: tunnel, completion: completion(10) }]);
    } finally {
      log.close();
    }
    const run = runCli('audit', 'verify', '--db', db);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^verified 11 entries \\(records 1\\.\\.${ids[2]}\\), head [0-9a-f]{64}\\n$`));

    catchUpIndex(db);
    const index = new Database(db, { readonly: true });
    try {
      expect(index.prepare('SELECT id, kind, sni, tunnel_id FROM requests ORDER BY id').all()).toEqual([
        { id: 1, kind: 'connect', sni: null, tunnel_id: null },
        { id: 2, kind: 'connect', sni: null, tunnel_id: null },
        { id: 3, kind: 'connect', sni: 'host3.example.com', tunnel_id: null },
        { id: 4, kind: 'connect', sni: 'host4.example.com', tunnel_id: null },
        { id: ids[0], kind: 'connect', sni: 'github.com', tunnel_id: null },
        { id: ids[1], kind: 'https', sni: null, tunnel_id: ids[0] },
        { id: ids[2], kind: 'https', sni: null, tunnel_id: ids[0] },
      ]);
    } finally {
      index.close();
    }
  });

  test('an edited tunnel_id is caught by the chain at its record, though the frame checksum was fixed', () => {
    const log = SegmentLog.open({ dir, fsync: false });
    let id: number;
    try {
      // A record after it, so verify can tell an edit from a removal before it.
      [id] = log.appendBatch([{ type: 'finished', open: inner(20, 3), completion: completion(20) }, { type: 'open', open: openFacts(21) }]);
    } finally {
      log.close();
    }
    const target = entryFrames().find((f) => f.payload.readUIntLE(1, 6) === id) as Frame;
    // Point the request at another tunnel: ",3]" (the last field) becomes ",4]".
    const payload = Buffer.from(target.payload);
    const at = payload.lastIndexOf(',3]');
    expect(at).toBe(payload.length - 3);
    payload[at + 1] = '4'.charCodeAt(0);
    const frame = Buffer.concat([fs.readFileSync(target.file).subarray(target.offset, target.offset + FRAME_HEADER_BYTES), payload]);
    frame.writeUInt32LE(zlib.crc32(payload), 8);
    const bytes = fs.readFileSync(target.file);
    fs.writeFileSync(target.file, Buffer.concat([bytes.subarray(0, target.offset), frame, bytes.subarray(target.end)]));
    // The readers see a valid entry naming tunnel 4 ...
    const edited = readAll(dir).entries.find(({ entry }) => entry.id === id)?.entry;
    expect(edited?.type === 'finished' && edited.open.tunnelId).toBe(4);
    // ... and verify says it was edited.
    const run = runCli('audit', 'verify', '--db', db);
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(new RegExp(`^record ${id}: its content was edited`));
  });
});
