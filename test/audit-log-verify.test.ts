import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { encodeBatch } from '../src/audit/log/entry-codec';
import { FRAME_HEADER_BYTES, segmentHeader } from '../src/audit/log/frame';
import { IndexConsumer } from '../src/audit/log/index-consumer';
import { readStep } from '../src/audit/log/index-step';
import { dropSegmentsBefore } from '../src/audit/log/retention';
import { SegmentLog } from '../src/audit/log/segment-log';
import type { SegmentLogOptions } from '../src/audit/log/segment-log';
import { listSegments, segmentName } from '../src/audit/log/segment-files';
import { scanSegment } from '../src/audit/log/segment-scan';
import { verifyChain } from '../src/audit/log/verify-chain';
import { completion, openFacts, opens, readAll, tempLogDir } from './helpers/audit-log-fixtures';
import { runCli } from './helpers/serve-process';

/**
 * The tamper-evident chain (issue 17): every kind of tampering is caught by `tollgate audit
 * verify` at the right record, on real segment files written by the real writer.
 */

let dir: string;
let remove: () => void;
let db: string;

beforeEach(() => {
  ({ dir, remove } = tempLogDir());
  db = path.join(path.dirname(dir), 'audit.db');
});
afterEach(() => remove());

/** 60 records in 30 batches (opens, then their completions a batch later), several segments. */
function writeLog(options: Partial<SegmentLogOptions> = {}, batches = 30): void {
  const log = SegmentLog.open({ dir, maxSegmentBytes: 4096, ...options });
  try {
    let previous: number[] = [];
    for (let b = 0; b < batches; b += 1) {
      const ids = log.appendBatch([...opens(b * 2, 2), ...previous.map((id) => ({ type: 'complete' as const, id, completion: completion(id) }))]);
      previous = ids.slice(0, 2);
    }
    log.appendBatch(previous.map((id) => ({ type: 'complete' as const, id, completion: completion(id) })));
  } finally {
    log.close();
  }
}

interface Frame { file: string; offset: number; end: number; payload: Buffer }

/** Every frame of the log in order, with its file and byte range (payloads copied). */
function frames(): Frame[] {
  const out: Frame[] = [];
  for (const { file } of listSegments(dir)) {
    for (const item of scanSegment(file)) if (item.kind === 'frame') out.push({ file, offset: item.offset, end: item.end, payload: Buffer.from(item.payload) });
  }
  return out;
}

/** The frames of record entries (not chain checkpoints): tag 4 is a checkpoint. */
function entryFrames(): Frame[] {
  return frames().filter((f) => (f.payload[0] & 0x7f) !== 4);
}

const idOf = (f: Frame): number => f.payload.readUIntLE(1, 6);

function replaceRange(file: string, from: number, to: number, bytes: Buffer): void {
  const all = fs.readFileSync(file);
  fs.writeFileSync(file, Buffer.concat([all.subarray(0, from), bytes, all.subarray(to)]));
}

function verify(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return runCli('audit', 'verify', '--db', db, ...args);
}

function headOf(stdout: string): string {
  const match = /head ([0-9a-f]{64})/.exec(stdout);
  if (match === null) throw new Error(`no head in ${stdout}`);
  return match[1];
}

describe('audit verify: a whole chain', () => {
  test('a clean log of several segments verifies, with its count, ids and head', () => {
    writeLog();
    expect(listSegments(dir).length).toBeGreaterThan(3);
    const run = verify();
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    // 60 opens and 60 completions.
    expect(run.stdout).toMatch(/^verified 120 entries \(records 1\.\.60\), head [0-9a-f]{64}\n$/);
  });

  test('the chain goes on across a restart: the writer recovers the last hash', () => {
    writeLog({}, 10);
    const before = headOf(verify().stdout);
    writeLog({}, 10);
    const run = verify();
    expect(run.status).toBe(0);
    // Ids go on after the block reserved by the first run (id-reservation.ts).
    expect(run.stdout).toMatch(/^verified 80 entries \(records 1\.\.\d+\)/);
    expect(headOf(run.stdout)).not.toBe(before);
    // The head the writer reports is what verify ends at.
    const log = SegmentLog.open({ dir });
    try {
      expect(log.head().hash.toString('hex')).toBe(headOf(run.stdout));
      expect(String(log.head().id)).toBe(/records 1\.\.(\d+)/.exec(run.stdout)?.[1]);
    } finally {
      log.close();
    }
  });

  test('after retention dropped the oldest segments, the log verifies from the checkpoint at the cut', () => {
    writeLog();
    const whole = verify();
    const segments = listSegments(dir);
    const report = dropSegmentsBefore(dir, { position: { segment: segments[3].sequence, offset: 0 } }, () => false);
    expect(report.dropped).toHaveLength(3);
    const run = verify();
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^verified \d+ entries \(records \d+\.\.60\), head [0-9a-f]{64}; from the checkpoint after record \d+ \(older segments removed\)\n$/);
    expect(headOf(run.stdout)).toBe(headOf(whole.stdout));
  });

  test('entries written before the chain are counted apart, not as a break', () => {
    fs.mkdirSync(dir, { recursive: true });
    // A segment as the release before the chain wrote it: no checkpoint, entries without hashes.
    const old = encodeBatch([{ type: 'open', id: 1, open: openFacts(0) }, { type: 'complete', id: 1, completion: completion(1) }]);
    fs.writeFileSync(path.join(dir, segmentName(1)), Buffer.concat([segmentHeader(), old]));
    writeLog({}, 3);
    const run = verify();
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^verified 12 entries \(records 2\.\.7\), head [0-9a-f]{64}; 2 entries written before the chain not verified\n$/);
    // Readers still read both kinds.
    expect(readAll(dir).entries.map(({ entry }) => entry.id).slice(0, 3)).toEqual([1, 1, 2]);
  });

  test('--expect-head: the witnessed head passes, any other fails with both', () => {
    writeLog({}, 5);
    const head = headOf(verify().stdout);
    expect(verify('--expect-head', head.toUpperCase()).status).toBe(0);
    const other = 'ab'.repeat(32);
    const run = verify('--expect-head', other);
    expect(run.status).toBe(1);
    expect(run.stdout).toContain(`record 10: the chain ends at head ${head}, not at the expected head ${other}`);
    // Entries removed at the end pass the walk; the witnessed head catches them.
    writeLog({}, 1);
    expect(verify('--expect-head', head).status).toBe(1);
  });
});

describe('audit verify: a forged log of one checkpoint', () => {
  test('a checkpoint carrying a witnessed head (heads are public) does not meet --expect-head: nothing recomputes it', () => {
    writeLog({}, 5);
    const head = headOf(verify().stdout);
    const all = frames();
    const checkpoint = all[0];
    // A whole log replaced by one segment: its header and a checkpoint made to carry the witnessed head.
    const forged = Buffer.from(checkpoint.payload);
    Buffer.from(head, 'hex').copy(forged, 13);
    const frame = Buffer.alloc(12 + forged.length);
    frame.writeUInt32LE(0x4c4754ff, 0);
    frame.writeUInt32LE(forged.length, 4);
    forged.copy(frame, 12);
    frame.writeUInt32LE(zlib.crc32(forged), 8);
    const header = fs.readFileSync(checkpoint.file).subarray(0, checkpoint.offset);
    for (const { file } of listSegments(dir)) fs.rmSync(file);
    fs.writeFileSync(checkpoint.file, Buffer.concat([header, frame]));
    const run = verify('--expect-head', head);
    expect(run.status).toBe(1);
    expect(run.stdout).toContain('no entry after its opening checkpoint, so nothing recomputes the expected head');
  });
});

describe('audit verify: each kind of tampering, at the right record', () => {
  test('an edited field (the frame checksum fixed, so only the chain catches it)', () => {
    writeLog();
    const target = entryFrames().filter((f) => (f.payload[0] & 0x7f) === 1)[12];
    const id = idOf(target);
    const payload = Buffer.from(target.payload);
    const at = payload.indexOf('host');
    expect(at).toBeGreaterThan(0);
    payload[at] = 'g'.charCodeAt(0);
    const frame = Buffer.alloc(FRAME_HEADER_BYTES + payload.length);
    fs.readFileSync(target.file).copy(frame, 0, target.offset, target.offset + FRAME_HEADER_BYTES);
    payload.copy(frame, FRAME_HEADER_BYTES);
    frame.writeUInt32LE(zlib.crc32(payload), 8);
    replaceRange(target.file, target.offset, target.end, frame);
    // The edit is invisible to the readers: the frame's checksum holds.
    expect(readAll(dir).damage).toEqual([]);
    const run = verify();
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(new RegExp(`^record ${id}: its content was edited`));
  });

  test('a deleted entry (a whole frame removed)', () => {
    writeLog();
    const all = entryFrames();
    const gone = all[30];
    replaceRange(gone.file, gone.offset, gone.end, Buffer.alloc(0));
    expect(readAll(dir).damage).toEqual([]);
    const run = verify();
    expect(run.status).toBe(1);
    // The break shows at the entry after the one removed.
    expect(run.stdout).toMatch(new RegExp(`^record ${idOf(all[31])}: `));
  });

  test('two entries swapped', () => {
    writeLog();
    const all = entryFrames();
    // Two neighbours in one segment.
    let i = 20;
    while (all[i].file !== all[i + 1].file) i += 1;
    const [a, b] = [all[i], all[i + 1]];
    const bytes = fs.readFileSync(a.file);
    replaceRange(a.file, a.offset, b.end, Buffer.concat([bytes.subarray(b.offset, b.end), bytes.subarray(a.offset, a.end)]));
    const run = verify();
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(new RegExp(`^record ${idOf(b)}: chain broken at this entry: .*reordered`));
  });

  test('a dropped middle segment', () => {
    writeLog();
    const segments = listSegments(dir);
    fs.unlinkSync(segments[2].file);
    const firstAfter = entryFrames().find((f) => f.file === segments[3].file) as Frame;
    const run = verify();
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(/^record \d+: chain broken before it: segments 3\.\.3 are missing; the checkpoint at the start of 000000000004\.seg/);
    // The checkpoint names the last record before the cut, which came before the first one after.
    expect(Number(/^record (\d+)/.exec(run.stdout)?.[1])).toBeLessThanOrEqual(idOf(firstAfter));
  });

  test('a damaged frame is a break too, reported at the next record', () => {
    writeLog();
    const all = entryFrames();
    const hit = all[12];
    const bytes = fs.readFileSync(hit.file);
    bytes[hit.offset + FRAME_HEADER_BYTES + 20] ^= 0xff;
    fs.writeFileSync(hit.file, bytes);
    const run = verify();
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(new RegExp(`^record ${idOf(all[13])}: the log is damaged before it \\(\\d+\\.seg, \\d+ bytes at byte ${hit.offset}: checksum mismatch\\)`));
  });

  test('an entry stripped of its hash after the chain began', () => {
    writeLog({}, 4);
    const target = entryFrames()[3];
    const payload = Buffer.concat([Buffer.from([target.payload[0] & 0x7f]), target.payload.subarray(1, 13), target.payload.subarray(45)]);
    const frame = Buffer.alloc(FRAME_HEADER_BYTES + payload.length);
    fs.readFileSync(target.file).copy(frame, 0, target.offset, target.offset + 4);
    frame.writeUInt32LE(payload.length, 4);
    frame.writeUInt32LE(zlib.crc32(payload), 8);
    payload.copy(frame, FRAME_HEADER_BYTES);
    replaceRange(target.file, target.offset, target.end, frame);
    const run = verify();
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(new RegExp(`^record ${idOf(target)}: the entry has no hash, but the chain began before it`));
  });
});

describe('audit verify --audit-key', () => {
  function keyFile(name: string, bytes: string, mode = 0o600): string {
    const file = path.join(path.dirname(dir), name);
    fs.writeFileSync(file, bytes, { mode });
    fs.chmodSync(file, mode);
    return file;
  }

  test('a keyed chain verifies with its key, and fails without it or with another', () => {
    const key = keyFile('audit.key', 'a secret of some length\n');
    writeLog({ chainKey: fs.readFileSync(key) }, 6);
    const run = verify('--audit-key', key);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^verified 24 entries/);
    const without = verify();
    expect(without.status).toBe(1);
    expect(without.stdout).toMatch(/^record 1: chain broken at this entry: .*another key/);
    expect(verify('--audit-key', keyFile('other.key', 'another secret')).status).toBe(1);
    // The key's bytes never show.
    expect(without.stdout + run.stdout).not.toContain('secret');
  });

  test('bad input exits 2: no such store, an empty key, a key others can read, a bad head', () => {
    writeLog({}, 2);
    expect(runCli('audit', 'verify', '--db', path.join(path.dirname(dir), 'nope.db')).status).toBe(2);
    expect(verify('--audit-key', path.join(path.dirname(dir), 'missing.key')).status).toBe(2);
    expect(verify('--audit-key', keyFile('empty.key', '')).status).toBe(2);
    const loose = verify('--audit-key', keyFile('loose.key', 'k', 0o644));
    expect(loose.status).toBe(2);
    expect(loose.stderr).toContain('readable or writable by group or others');
    expect(verify('--expect-head', 'xyz').status).toBe(2);
    expect(verify('--audit-url', 'postgres://x@localhost/y').status).toBe(2);
  });
});

describe('the chain in the writer', () => {
  test('a failed encode leaves the head unchanged, and verify stays whole', () => {
    writeLog({}, 2);
    const log = SegmentLog.open({ dir });
    try {
      const before = log.head();
      // The first entry is hashed before the second is refused: none of it may count.
      expect(() => log.appendBatch([...opens(50, 1), { type: 'finished', open: openFacts(1), completion: completion(1, { endedAt: new Date(-1) }) }])).toThrow('out of range');
      expect(log.head()).toEqual(before);
      log.appendBatch(opens(100, 1));
    } finally {
      log.close();
    }
    expect(verifyChain(dir, { key: null }).break).toBeNull();
  });
});

describe('readers of records skip the chain checkpoints', () => {
  test('the index holds every record of a chained log of many segments, and reads nothing else', () => {
    writeLog();
    expect(listSegments(dir).length).toBeGreaterThan(3);
    const consumer = new IndexConsumer({ file: db, logDir: dir });
    try {
      // 120 entries applied; no checkpoint read as an entry, none counted as damage.
      expect(consumer.catchUp()).toBe(120);
      const rows = consumer.db.prepare('SELECT id, host, ended_at_ms IS NOT NULL AS done FROM requests ORDER BY id').all() as Array<{ id: number; host: string; done: number }>;
      expect(rows.map((r) => r.id)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      expect(rows.every((r) => r.done === 1 && /^host\d+\.example\.com$/.test(r.host))).toBe(true);
    } finally {
      consumer.close();
    }
  });

  test('a follower step (index, shipping, access log) moves past checkpoints and never returns one', () => {
    writeLog({}, 3);
    // A new segment holding nothing but its checkpoint.
    SegmentLog.open({ dir }).close();
    const segments = listSegments(dir);
    const read = readStep(dir, { segment: 0, offset: 0 }, 1000);
    expect(read.damage).toEqual([]);
    expect(read.entries.map((e) => e.type).sort()).toEqual([...Array(6).fill('complete'), ...Array(6).fill('open')]);
    // The trailing checkpoint is passed too, so a follower does not re-read it each step.
    expect(read.next).toEqual({ segment: segments.at(-1)?.sequence, offset: fs.statSync(segments.at(-1)?.file ?? '').size });
    expect(readStep(dir, read.next, 1000).entries).toEqual([]);
  });
});
