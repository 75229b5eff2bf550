import fs from 'node:fs';
import path from 'node:path';
import { dropSegmentsBefore } from '../src/audit/log/retention';
import { SegmentLog } from '../src/audit/log/segment-log';
import { listSegments } from '../src/audit/log/segment-files';
import { completion, openFacts, readAll, STARTED, tempLogDir } from './helpers/audit-log-fixtures';

let dir: string;
let remove: () => void;
let log: SegmentLog;

/** Entries at STARTED + minute * 60 s, so a cutoff in whole minutes selects whole segments. */
const at = (minute: number): number => minute * 60_000;

beforeEach(() => {
  ({ dir, remove } = tempLogDir());
  log = SegmentLog.open({ dir, maxSegmentBytes: 400 });
});
afterEach(() => {
  log.close();
  remove();
});

/** One finished record per minute; with 400-byte segments, one segment each. */
function finishedPerMinute(minutes: number): void {
  for (let m = 0; m < minutes; m += 1) {
    log.appendBatch([{ type: 'finished', open: openFacts(at(m)), completion: completion(at(m)) }]);
  }
}

const names = (files: string[]): string[] => files.map((file) => path.basename(file));
const cutoffAt = (minute: number): Date => new Date(STARTED.getTime() + at(minute));

describe('audit log retention', () => {
  test('drops whole segments whose entries are all older than the cutoff, oldest first', () => {
    finishedPerMinute(6);
    expect(listSegments(dir)).toHaveLength(6);
    const report = dropSegmentsBefore(dir, { time: cutoffAt(3) }, () => false);
    expect(names(report.dropped)).toEqual(['000000000001.seg', '000000000002.seg', '000000000003.seg']);
    expect(readAll(dir).entries.map(({ entry }) => entry.id)).toEqual([4, 5, 6]);
    expect(dropSegmentsBefore(dir, { time: cutoffAt(3) }, () => false).dropped).toEqual([]);
  });

  test('never drops the segment being written, however old', () => {
    finishedPerMinute(2);
    dropSegmentsBefore(dir, { time: cutoffAt(60) }, () => false);
    expect(names(listSegments(dir).map((s) => s.file))).toEqual(['000000000002.seg']);
    log.appendBatch([{ type: 'finished', open: openFacts(at(61)), completion: completion(at(61)) }]);
    expect(readAll(dir).damage).toEqual([]);
  });

  test('keeps a segment holding the open entry of a record still open, and the later ones (no hole in the chain), and drops them once closed', () => {
    const [tunnel] = log.appendBatch([{ type: 'open', open: openFacts(0) }]);
    finishedPerMinute(4);
    const stillOpen = new Set([tunnel]);
    const first = dropSegmentsBefore(dir, { time: cutoffAt(3) }, (id) => stillOpen.has(id));
    expect(names(first.keptForOpenRecords)).toEqual(['000000000001.seg']);
    expect(first.dropped).toHaveLength(0);
    expect(readAll(dir).entries[0].entry).toEqual({ type: 'open', id: tunnel, open: openFacts(0) });

    log.appendBatch([{ type: 'complete', id: tunnel, completion: completion(at(5)) }]);
    stillOpen.delete(tunnel);
    expect(names(dropSegmentsBefore(dir, { time: cutoffAt(3) }, (id) => stillOpen.has(id)).dropped)).toEqual(['000000000001.seg', '000000000002.seg', '000000000003.seg', '000000000004.seg']);
  });

  test('an open entry completed in the same segment does not hold it', () => {
    const [id] = log.appendBatch([{ type: 'open', open: openFacts(0) }]);
    log.appendBatch([{ type: 'complete', id, completion: completion(0) }]);
    finishedPerMinute(2);
    const asked: number[] = [];
    dropSegmentsBefore(dir, { time: cutoffAt(1) }, (open) => asked.push(open) > 0);
    expect(asked).toEqual([]);
    expect(readAll(dir).entries.some((e) => e.entry.id === id)).toBe(false);
  });

  test('a position cutoff drops only segments wholly before it (what every consumer has applied)', () => {
    finishedPerMinute(5);
    const report = dropSegmentsBefore(dir, { position: { segment: 3, offset: 12 } }, () => false);
    expect(names(report.dropped)).toEqual(['000000000001.seg', '000000000002.seg']);
    const both = dropSegmentsBefore(dir, { time: cutoffAt(10), position: { segment: 4, offset: 50 } }, () => false);
    expect(names(both.dropped)).toEqual(['000000000003.seg']);
  });

  test('empty segments left by restarts are dropped; a damaged one is judged by its good entries', () => {
    finishedPerMinute(1);
    log.close();
    log = SegmentLog.open({ dir, maxSegmentBytes: 400 });
    log.close();
    log = SegmentLog.open({ dir, maxSegmentBytes: 400 });
    finishedPerMinute(1);
    fs.appendFileSync(listSegments(dir)[0].file, Buffer.from('garbage'));
    const report = dropSegmentsBefore(dir, { time: cutoffAt(1) }, () => false);
    expect(names(report.dropped)).toEqual(['000000000001.seg', '000000000002.seg']);
  });

  test('a cutoff with neither time nor position is a programming error', () => {
    expect(() => dropSegmentsBefore(dir, {}, () => false)).toThrow('needs a time or a position');
  });
});
