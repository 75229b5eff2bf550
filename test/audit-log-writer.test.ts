import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import vm from 'node:vm';
import { SEGMENT_HEADER_BYTES, UnsupportedLogFormatError } from '../src/audit/log/frame';
import { ID_MARK_FILE, IdMarkError } from '../src/audit/log/id-reservation';
import { AuditLogWriteError, SegmentLog } from '../src/audit/log/segment-log';
import { auditLogDir, listSegments } from '../src/audit/log/segment-files';
import { completion, openFacts, opens, readAll, tempLogDir } from './helpers/audit-log-fixtures';

let dir: string;
let remove: () => void;
const logs: SegmentLog[] = [];

function openLog(options: Partial<Parameters<typeof SegmentLog.open>[0]> = {}): SegmentLog {
  const log = SegmentLog.open({ dir, ...options });
  logs.push(log);
  return log;
}

beforeEach(() => ({ dir, remove } = tempLogDir()));
afterEach(() => {
  for (const log of logs.splice(0)) log.close();
  remove();
});

describe('segment log: appending', () => {
  test('a batch is one write of whole entries; ids are assigned at append, in order', () => {
    const log = openLog();
    const ids = log.appendBatch([...opens(0, 3), { type: 'finished', open: openFacts(3), completion: completion(3) }]);
    expect(ids).toEqual([1, 2, 3, 4]);
    expect(log.appendBatch([{ type: 'complete', id: 2, completion: completion(1) }, ...opens(4, 1)])).toEqual([2, 5]);
    const back = readAll(dir);
    expect(back.damage).toEqual([]);
    expect(back.entries.map(({ entry }) => [entry.type, entry.id])).toEqual([
      ['open', 1], ['open', 2], ['open', 3], ['finished', 4], ['complete', 2], ['open', 5],
    ]);
    const [first] = back.entries;
    expect(first.entry).toEqual({ type: 'open', id: 1, open: openFacts(0) });
    expect(fs.statSync(listSegments(dir)[0].file).size).toBe(log.end().offset);
  });

  test('the log lives in audit-log/ beside the --db file, segments named by sequence number', () => {
    expect(auditLogDir('/var/lib/tollgate/audit.db')).toBe('/var/lib/tollgate/audit-log');
    // Two stores in one folder keep two logs.
    expect(auditLogDir('/var/lib/tollgate/eu.db')).toBe('/var/lib/tollgate/eu-log');
    openLog().appendBatch(opens(0, 1));
    expect(fs.readdirSync(dir).sort()).toEqual(['000000000001.seg', ID_MARK_FILE]);
  });

  test('segments rotate before a batch would pass the size; a big batch gets a segment of its own', () => {
    const log = openLog({ maxSegmentBytes: 1024 });
    for (let i = 0; i < 20; i += 1) log.appendBatch(opens(i * 2, 2));
    log.appendBatch(opens(100, 20));
    const segments = listSegments(dir);
    expect(segments.length).toBeGreaterThan(5);
    expect(segments.map((s) => s.sequence)).toEqual(segments.map((_, i) => i + 1));
    const sizes = segments.map((s) => fs.statSync(s.file).size);
    expect(sizes.slice(0, -1).every((size) => size <= 1024)).toBe(true);
    expect(sizes.at(-1)).toBeGreaterThan(1024);
    const back = readAll(dir);
    expect(back.damage).toEqual([]);
    expect(back.entries.map(({ entry }) => entry.id)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
  });

  test('with fsync each batch is written and synced the same way', () => {
    const log = openLog({ fsync: true });
    expect(log.appendBatch(opens(0, 17))).toHaveLength(17);
    expect(readAll(dir).entries).toHaveLength(17);
  });

  test('every open starts a new segment, so no position read before a restart is reused', () => {
    openLog().appendBatch(opens(0, 2));
    logs.splice(0).forEach((log) => log.close());
    const log = openLog();
    // After the header, the segment's chain checkpoint (a head entry: 12 + 13 + 32 + 2 bytes).
    expect(log.end()).toEqual({ segment: 2, offset: SEGMENT_HEADER_BYTES + 59 });
  });
});

describe('segment log: ids are never reused', () => {
  test('ids are reserved in fsynced blocks before any of the block is handed out', () => {
    const log = openLog({ idBlock: 8 });
    log.appendBatch(opens(0, 1));
    expect(fs.readFileSync(path.join(dir, ID_MARK_FILE), 'utf8')).toBe('10\n');
    log.appendBatch(opens(1, 8));
    expect(fs.readFileSync(path.join(dir, ID_MARK_FILE), 'utf8')).toBe('10\n');
    log.appendBatch(opens(9, 1));
    expect(fs.readFileSync(path.join(dir, ID_MARK_FILE), 'utf8')).toBe('19\n');
  });

  test('after a reopen ids resume past every id handed out, even when the log lost its tail', () => {
    const first = openLog({ idBlock: 8 });
    const handedOut = [...first.appendBatch(opens(0, 5)), ...first.appendBatch(opens(5, 6))];
    first.close();
    // A power cut takes the tail the kernel had not written back: here, all but the first batch.
    const [segment] = listSegments(dir);
    const kept = readAll(dir).entries[5].offset;
    fs.truncateSync(segment.file, kept);
    expect(readAll(dir).entries.map(({ entry }) => entry.id)).toEqual([1, 2, 3, 4, 5]);
    const again = openLog({ idBlock: 8 });
    const [next] = again.appendBatch(opens(20, 1));
    expect(next).toBeGreaterThan(Math.max(...handedOut));
  });

  test('the log itself raises the floor when the mark is behind it (a mark removed by hand)', () => {
    const first = openLog({ idBlock: 2 });
    first.appendBatch(opens(0, 6));
    first.close();
    fs.rmSync(path.join(dir, ID_MARK_FILE));
    expect(openLog({ idBlock: 2 }).appendBatch(opens(6, 1))).toEqual([7]);
  });

  test('firstId carries the ids of a store being taken over', () => {
    expect(openLog({ firstId: 1000 }).appendBatch(opens(0, 2))).toEqual([1000, 1001]);
  });

  test('a damaged mark refuses to start with the fix in the message, rather than guess', () => {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, ID_MARK_FILE), '\0\0\0\0');
    expect(() => openLog()).toThrow(IdMarkError);
    expect(() => openLog()).toThrow(/is damaged.*remove it to resume after the last id found in the log/);
  });
});

/**
 * A real short write: the kernel takes what fits under RLIMIT_FSIZE, then refuses the rest with
 * EFBIG, exactly as a filling disk takes part of a write and then says ENOSPC. Only the soft
 * limit of this test process is lowered, and only for the duration of `fn`.
 */
function withFileSizeLimit(bytes: number, fn: () => void): void {
  const pid = String(process.pid);
  const soft = execFileSync('prlimit', ['--pid', pid, '--fsize', '--raw', '--noheadings', '--output=SOFT'], { encoding: 'utf8' }).trim();
  const ignore = (): void => {};
  // SIGXFSZ's default action kills the process; handled, write() fails with EFBIG instead. The
  // handler goes on the real process object (jest's sandbox copy never starts signal watchers).
  const realProcess = vm.runInThisContext('process') as NodeJS.Process;
  realProcess.on('SIGXFSZ', ignore);
  execFileSync('prlimit', ['--pid', pid, `--fsize=${bytes}:`]);
  try {
    fn();
  } finally {
    execFileSync('prlimit', ['--pid', pid, `--fsize=${soft === '-1' ? 'unlimited' : soft}:`]);
    realProcess.off('SIGXFSZ', ignore);
  }
}

describe('segment log: failing writes fail closed and leave nothing misreadable', () => {
  test('a batch cut short by the kernel throws, is cut back, and the next batch follows in a new segment', () => {
    const log = openLog();
    log.appendBatch(opens(0, 3));
    const good = log.end().offset;
    let error: unknown;
    withFileSizeLimit(good + 100, () => {
      try {
        log.appendBatch(opens(3, 5));
      } catch (err) {
        error = err;
      }
      expect(fs.statSync(listSegments(dir)[0].file).size).toBe(good);
    });
    expect(error).toBeInstanceOf(AuditLogWriteError);
    expect((error as AuditLogWriteError).code).toBe('EFBIG');
    expect((error as Error).message).toMatch(/^audit log cannot be written: appending to .*000000000001\.seg failed/);
    const [id] = log.appendBatch(opens(8, 1));
    const back = readAll(dir);
    expect(back.damage).toEqual([]);
    expect(back.entries.map(({ entry }) => entry.id)).toEqual([1, 2, 3, id]);
    expect(id).toBeGreaterThan(8);
    // A follower may have read whole frames of the failed batch: their offsets are never reused.
    expect(back.entries.map(({ segment }) => segment)).toEqual([1, 1, 1, 2]);
  });

  test('a segment that cannot be created fails its batch, and appends resume once it can', () => {
    const log = openLog({ maxSegmentBytes: 600 });
    log.appendBatch(opens(0, 1));
    const parked = `${dir}.parked`;
    fs.renameSync(dir, parked);
    expect(() => log.appendBatch(opens(1, 4))).toThrow(/audit log cannot be written: creating .*000000000002\.seg failed \(ENOENT/);
    expect(() => log.appendBatch(opens(5, 1))).toThrow(AuditLogWriteError);
    fs.renameSync(parked, dir);
    const ids = log.appendBatch(opens(6, 1));
    const back = readAll(dir);
    expect(back.damage).toEqual([]);
    expect(back.entries.map(({ entry }) => entry.id)).toEqual([1, ...ids]);
  });

  test('a segment written by a newer format refuses the start instead of being misread', () => {
    openLog().appendBatch(opens(0, 1));
    logs.splice(0).forEach((log) => log.close());
    const [segment] = listSegments(dir);
    const bytes = fs.readFileSync(segment.file);
    bytes.writeUInt32LE(2, 8);
    fs.writeFileSync(segment.file, bytes);
    expect(() => openLog()).toThrow(UnsupportedLogFormatError);
  });

  test('a closed log refuses appends with a clear error', () => {
    const log = openLog();
    log.close();
    expect(() => log.appendBatch(opens(0, 1))).toThrow('the log is closed');
  });
});
