import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { IndexThread } from '../src/audit/index-thread';
import { SegmentLog } from '../src/audit/log/segment-log';
import { writeAccessPosition } from '../src/audit/access-log/access-position';
import { auditLogDir, listSegments } from '../src/audit/log/segment-files';
import { withReader } from './helpers/audit-index-fixtures';
import { completion, openFacts } from './helpers/audit-log-fixtures';

/** The index thread (issue 14): follows the log into SQLite; a thread that dies is replaced. */

const OPEN = openFacts(1);
const DONE = completion(1);

describe('IndexThread', () => {
  let dir: string;
  let dbFile: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tollgate-index-thread-'));
    dbFile = path.join(dir, 'audit.db');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const countRecords = (): number => withReader(dbFile, (db) => db.prepare('SELECT count(*) FROM requests').pluck().get() as number);

  test('sync() resolves once what the log holds is in the index', async () => {
    const log = SegmentLog.open({ dir: auditLogDir(dbFile) });
    const thread = new IndexThread(dbFile);
    try {
      log.appendBatch([{ type: 'finished', open: OPEN, completion: DONE }, { type: 'open', open: OPEN }]);
      expect(await thread.sync()).toBe(true);
      expect(countRecords()).toBe(2);
    } finally {
      await thread.close();
      log.close();
    }
  });

  test('a thread that dies is replaced after a second and resumes from the log', async () => {
    const log = SegmentLog.open({ dir: auditLogDir(dbFile) });
    log.appendBatch([{ type: 'finished', open: OPEN, completion: DONE }]);
    // A folder where the index file should be: the thread cannot open it and exits.
    mkdirSync(dbFile);
    const failures: string[] = [];
    let failed: () => void = () => undefined;
    const firstFailure = new Promise<void>((resolve) => (failed = resolve));
    const thread = new IndexThread(dbFile, { onFailed: (why) => (failures.push(why), failed()) });
    try {
      await firstFailure;
      expect(thread.status().lastError).toMatch(/audit index thread (failed|exited)/);
      expect(await thread.sync()).toBe(false);
      rmSync(dbFile, { recursive: true });
      // Bounded: the replacement starts a second after each failure.
      let synced = false;
      for (let attempt = 0; attempt < 40 && !synced; attempt += 1) {
        synced = await thread.sync();
        if (!synced) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(synced).toBe(true);
      expect(countRecords()).toBe(1);
      expect(failures.length).toBeGreaterThanOrEqual(1);
    } finally {
      await thread.close();
      log.close();
    }
  });

  test('--retain keeps every segment from the access log\'s replay position on, and drops them once it moves', async () => {
    const logDir = auditLogDir(dbFile);
    const log = SegmentLog.open({ dir: logDir, maxSegmentBytes: 2048 });
    const positionFile = path.join(dir, '.access.log.position');
    // Records of 2025: older than any --retain from now.
    for (let i = 0; i < 60; i += 1) log.appendBatch([{ type: 'finished', open: openFacts(i), completion: completion(i) }]);
    const before = listSegments(logDir).map((s) => s.sequence);
    expect(before.length).toBeGreaterThan(5);
    const replay = { segment: before[3], offset: 0 };
    writeAccessPosition(positionFile, { replay, next: { segment: before.at(-1)!, offset: 0 }, file: null }, false);
    const dropped: number[] = [];
    const thread = new IndexThread(dbFile, { retainMs: 1000, accessPositionFile: positionFile, onSegmentsDropped: (n) => dropped.push(n) });
    try {
      for (let i = 0; i < 100 && dropped.length === 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(listSegments(logDir).map((s) => s.sequence)).toEqual(before.slice(3));
      writeAccessPosition(positionFile, { replay: { segment: before.at(-1)!, offset: 0 }, next: { segment: before.at(-1)!, offset: 0 }, file: null }, false);
      for (let i = 0; i < 100 && listSegments(logDir).length > 1; i += 1) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(listSegments(logDir).map((s) => s.sequence)).toEqual([before.at(-1)]);
    } finally {
      await thread.close();
      log.close();
    }
  });
});
