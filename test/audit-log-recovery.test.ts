import fs from 'node:fs';
import { SegmentLog } from '../src/audit/log/segment-log';
import { listSegments } from '../src/audit/log/segment-files';
import { readLog } from '../src/audit/log/segment-reader';
import type { ReadBack } from './helpers/audit-log-fixtures';
import { completion, opens, overwrite, readAll, tempLogDir } from './helpers/audit-log-fixtures';

let dir: string;
let remove: () => void;

beforeEach(() => ({ dir, remove } = tempLogDir()));
afterEach(() => remove());

/** Writes `batches` batches of 3 opens and the previous batch's completions, then closes. */
function writeLog(batches: number, maxSegmentBytes?: number): ReadBack {
  const log = SegmentLog.open({ dir, maxSegmentBytes });
  let previous: number[] = [];
  for (let b = 0; b < batches; b += 1) {
    const completions = previous.map((id) => ({ type: 'complete' as const, id, completion: completion(id) }));
    previous = log.appendBatch([...opens(b * 3, 3), ...completions]).slice(0, 3);
  }
  log.close();
  const clean = readAll(dir);
  expect(clean.damage).toEqual([]);
  return clean;
}

function onlySegment(): string {
  const [segment] = listSegments(dir);
  return segment.file;
}

/** The entries expected to survive: all but those whose bytes lie in [from, to) of segment 1. */
function untouched(clean: ReadBack, from: number, to: number): ReadBack['entries'] {
  return clean.entries.filter((e, i) => {
    const end = clean.entries[i + 1]?.segment === e.segment ? clean.entries[i + 1].offset : Number.MAX_SAFE_INTEGER;
    return e.segment !== 1 || end <= from || e.offset >= to;
  });
}

describe('audit log: torn and damaged regions are reported and skipped, never misread', () => {
  test('a last segment cut mid-entry: readers report the torn tail; the writer cuts it off at open', () => {
    const clean = writeLog(4);
    const last = clean.entries.at(-1)!;
    fs.truncateSync(onlySegment(), last.offset + 20);
    const torn = readAll(dir);
    expect(torn.entries).toEqual(clean.entries.slice(0, -1));
    expect(torn.damage).toEqual([expect.objectContaining({ segment: 1, offset: last.offset, length: 20, reason: 'frame runs past the end of the file', toEnd: true })]);

    const log = SegmentLog.open({ dir });
    expect(log.recovery.truncated).toEqual({ file: onlySegment(), offset: last.offset, bytes: 20 });
    expect(log.recovery.damage).toHaveLength(1);
    expect(fs.statSync(onlySegment()).size).toBe(last.offset);
    log.appendBatch(opens(100, 1));
    log.close();
    const after = readAll(dir);
    expect(after.damage).toEqual([]);
    expect(after.entries.slice(0, -1)).toEqual(torn.entries);
    expect(after.entries.at(-1)).toMatchObject({ segment: 2 });
  });

  test('a zeroed tail (file grown, data never written back) is reported and cut off at open', () => {
    const clean = writeLog(2);
    const size = fs.statSync(onlySegment()).size;
    fs.appendFileSync(onlySegment(), Buffer.alloc(4096));
    expect(readAll(dir).damage).toEqual([expect.objectContaining({ offset: size, length: 4096, reason: 'zeroed region', toEnd: true })]);
    SegmentLog.open({ dir }).close();
    expect(fs.statSync(onlySegment()).size).toBe(size);
    expect(readAll(dir).entries.filter((e) => e.segment === 1)).toEqual(clean.entries);
  });

  test('a zeroed region mid-segment: entries before and after it are read, the region reported', () => {
    const clean = writeLog(5);
    const from = clean.entries[4].offset + 7;
    const to = clean.entries[8].offset + 3;
    overwrite(onlySegment(), from, Buffer.alloc(to - from));
    const back = readAll(dir);
    expect(back.entries).toEqual(untouched(clean, from, to));
    expect(back.damage).toEqual([expect.objectContaining({ offset: clean.entries[4].offset, length: clean.entries[9].offset - clean.entries[4].offset, toEnd: false })]);
    const log = SegmentLog.open({ dir });
    expect(log.recovery.truncated).toBeNull();
    log.close();
    expect(readAll(dir).entries.filter((e) => e.segment === 1)).toEqual(back.entries);
  });

  test('one flipped byte: that entry alone is skipped, as a checksum mismatch', () => {
    const clean = writeLog(3);
    const hit = clean.entries[2];
    const file = onlySegment();
    const byte = fs.readFileSync(file)[hit.offset + 30];
    overwrite(file, hit.offset + 30, Buffer.from([byte ^ 0x20]));
    const back = readAll(dir);
    expect(back.entries).toEqual(clean.entries.filter((e) => e !== hit));
    expect(back.damage).toEqual([expect.objectContaining({ offset: hit.offset, length: clean.entries[3].offset - hit.offset, reason: 'checksum mismatch' })]);
  });

  test('a zeroed segment header: reported, and the frames after it are still read', () => {
    const clean = writeLog(2);
    overwrite(onlySegment(), 0, Buffer.alloc(12));
    const back = readAll(dir);
    expect(back.damage).toEqual([expect.objectContaining({ offset: 0, length: 12, reason: 'zeroed segment header' })]);
    expect(back.entries).toEqual(clean.entries);
  });

  test('reading resumes from a stored position, across segments', () => {
    const clean = writeLog(6, 700);
    expect(listSegments(dir).length).toBeGreaterThan(2);
    const items = [...readLog(dir)].filter((item) => item.kind === 'entry');
    const middle = items[7];
    if (middle.kind !== 'entry') throw new Error('expected an entry');
    expect(readAll(dir, readLog(dir, middle.next)).entries).toEqual(clean.entries.slice(8));
  });

  test('random damage anywhere: no entry is misread, and every untouched entry is read', () => {
    const clean = writeLog(8);
    const file = onlySegment();
    const original = fs.readFileSync(file);
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (let round = 0; round < 150; round += 1) {
      fs.writeFileSync(file, original);
      const from = 12 + random(original.length - 12);
      const to = Math.min(original.length, from + 1 + random(300));
      const damage = Buffer.alloc(to - from);
      const style = round % 3;
      for (let i = 0; i < damage.length; i += 1) damage[i] = style === 0 ? 0 : style === 1 ? random(256) : original[from + i] ^ 0xff;
      if (damage.equals(original.subarray(from, to))) continue;
      overwrite(file, from, damage);
      const back = readAll(dir);
      expect(back.entries).toEqual(untouched(clean, from, to));
      expect(back.damage.length).toBeGreaterThan(0);
    }
  });
});
