import fs from 'node:fs';
import { SegmentLog } from '../src/audit/log/segment-log';
import { listSegments } from '../src/audit/log/segment-files';
import { scanSegment } from '../src/audit/log/segment-scan';
import { opens, tempLogDir } from './helpers/audit-log-fixtures';

let dir: string;
let remove: () => void;

beforeEach(() => ({ dir, remove } = tempLogDir()));
afterEach(() => {
  jest.restoreAllMocks();
  remove();
});

describe('audit log reader: cost of a long segment', () => {
  // The index consumer reads every segment in full, and segments grow to 64 MiB. The reader once
  // asked for the largest possible frame (1 MiB) at every frame, refilling its window with a
  // megabyte per entry: about 150 µs per entry in the index benchmark, more than the SQLite write
  // it feeds. Counted in bytes read rather than timed, so a busy machine cannot fail it.
  test('a 6 MiB segment is scanned with each byte read about once, not a megabyte per entry', () => {
    const log = SegmentLog.open({ dir });
    for (let b = 0; b < 200; b += 1) log.appendBatch(opens(b * 100, 100));
    log.close();
    const file = listSegments(dir)[0].file;
    const size = fs.statSync(file).size;
    expect(size).toBeGreaterThan(2 << 20);

    const readSync = fs.readSync;
    let bytesRead = 0;
    let reads = 0;
    jest.spyOn(fs, 'readSync').mockImplementation((...args: Parameters<typeof fs.readSync>) => {
      const n = readSync(...args);
      bytesRead += n;
      reads += 1;
      return n;
    });
    let entries = 0;
    for (const item of scanSegment(file)) if (item.kind === 'frame') entries += 1;

    // 20,000 entries and the segment's chain checkpoint.
    expect(entries).toBe(20_001);
    // A window refilled at a megabyte boundary re-reads at most one frame's bytes per refill.
    expect(bytesRead).toBeGreaterThanOrEqual(size);
    expect(bytesRead).toBeLessThan(size * 1.05);
    expect(reads).toBeLessThanOrEqual(Math.ceil(size / (1 << 20)) + 2);
  });
});
