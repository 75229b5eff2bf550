import fs from 'node:fs';
import Database from 'better-sqlite3';
import { SegmentLog } from '../src/audit/log/segment-log';
import type { NewEntry } from '../src/audit/log/entry-codec';
import { openAuditStore } from '../src/audit/store';
import { completion, openFacts, opens } from './helpers/audit-log-fixtures';
import {
  allRows, consumers, referenceSideTables, sideTables, tempAuditFolder, variedCompletion, variedOpen,
} from './helpers/audit-index-fixtures';

let dbFile: string;
let logDir: string;
let remove: () => void;
const pool = consumers();

beforeEach(() => ({ dbFile, logDir, remove } = tempAuditFolder()));
afterEach(() => {
  pool.closeAll();
  remove();
});

const completeEntry = (id: number, n = id): NewEntry => ({ type: 'complete', id, completion: completion(n) });

function appendAll(batches: NewEntry[][], maxSegmentBytes?: number): number[][] {
  const log = SegmentLog.open({ dir: logDir, maxSegmentBytes });
  try {
    return batches.map((batch) => log.appendBatch(batch));
  } finally {
    log.close();
  }
}

describe('index consumer: rows', () => {
  test('an open completed in the same step is inserted completed; one completed later is updated', () => {
    const [ids] = appendAll([opens(0, 3)]);
    appendAll([[completeEntry(ids[0]), completeEntry(ids[1])]]);
    const consumer = pool.open({ file: dbFile, logDir });
    expect(consumer.step()).toEqual({ entries: 5, inserted: 3, completed: 0, damaged: 0 });
    const rows = allRows(consumer.db);
    expect(rows.map((r) => [r.id, r.ended_at_ms])).toEqual([
      [ids[0], completion(ids[0]).endedAt.getTime()], [ids[1], completion(ids[1]).endedAt.getTime()], [ids[2], null],
    ]);
    expect(rows[0]).toMatchObject({ host: 'host0.example.com', status: 200, bytes_up: ids[0], bytes_down: 2 * ids[0] });

    appendAll([[completeEntry(ids[2])]]);
    expect(consumer.step()).toEqual({ entries: 1, inserted: 0, completed: 1, damaged: 0 });
    expect(allRows(consumer.db)[2]).toMatchObject({ ended_at_ms: completion(ids[2]).endedAt.getTime(), status: 200 });
    expect(consumer.step().entries).toBe(0);
  });

  test('finished entries are inserted whole; a second completion of a record does not rewrite it', () => {
    const [[open, done]] = appendAll([[
      { type: 'open', open: openFacts(1) },
      { type: 'finished', open: openFacts(2, { decision: 'deny' }), completion: completion(2, { status: 403 }) },
    ]]);
    appendAll([[completeEntry(open, 1)], [completeEntry(open, 99), completeEntry(done, 98)]]);
    const consumer = pool.open({ file: dbFile, logDir });
    consumer.catchUp();
    expect(allRows(consumer.db).map((r) => [r.id, r.status, r.bytes_up])).toEqual([[open, 200, 1], [done, 403, 2]]);
  });

  test('large batches: a backlog is applied in steps of maxBatchEntries, each one transaction', () => {
    const batches = Array.from({ length: 40 }, (_, b) => opens(b * 300, 300));
    appendAll(batches);
    const consumer = pool.open({ file: dbFile, logDir, maxBatchEntries: 5000 });
    expect(consumer.step().entries).toBe(5000);
    expect(consumer.db.prepare('SELECT count(*) FROM requests').pluck().get()).toBe(5000);
    expect(consumer.catchUp()).toBe(7000);
    expect(consumer.db.prepare('SELECT count(*) FROM requests').pluck().get()).toBe(12000);
  });
});

describe('index consumer: idempotent by log position', () => {
  test('a step whose transaction fails applies nothing, not even side tables; the retry applies it once', () => {
    appendAll([opens(0, 4)]);
    const consumer = pool.open({ file: dbFile, logDir });
    // Another connection makes the position write fail, after the rows were inserted.
    const saboteur = new Database(dbFile);
    saboteur.exec(`CREATE TRIGGER fail_position BEFORE INSERT ON index_position BEGIN SELECT RAISE(ABORT, 'disk trouble'); END`);
    expect(() => consumer.step()).toThrow('disk trouble');
    expect(allRows(consumer.db)).toEqual([]);
    expect(Object.values(sideTables(consumer.db)).flat()).toEqual([]);
    expect(consumer.position()).toEqual({ segment: 0, offset: 0 });
    saboteur.exec('DROP TRIGGER fail_position');
    saboteur.close();
    expect(consumer.step()).toMatchObject({ entries: 4, inserted: 4 });
    expect(consumer.db.prepare('SELECT sum(allowed) FROM request_minutes').pluck().get()).toBe(4);
  });

  test('entries applied again (position lost) change nothing: no row, count or completion twice', () => {
    const [ids] = appendAll([Array.from({ length: 30 }, (_, n) => ({ type: 'open' as const, open: variedOpen(n) }))]);
    appendAll([ids.slice(0, 20).map((id, n) => ({ type: 'complete' as const, id, completion: variedCompletion(n) }))]);
    const first = pool.open({ file: dbFile, logDir, maxBatchEntries: 7 });
    first.catchUp();
    const rows = allRows(first.db);
    const sides = sideTables(first.db);
    first.db.prepare('DELETE FROM index_position').run();
    pool.closeAll();
    const again = pool.open({ file: dbFile, logDir, maxBatchEntries: 7 });
    expect(again.catchUp()).toBe(50);
    expect(allRows(again.db)).toEqual(rows);
    expect(sideTables(again.db)).toEqual(sides);
  });

  test('a new consumer resumes at the stored position', () => {
    appendAll([opens(0, 3)]);
    pool.open({ file: dbFile, logDir }).catchUp();
    pool.closeAll();
    appendAll([opens(3, 2)]);
    const again = pool.open({ file: dbFile, logDir });
    expect(again.step()).toMatchObject({ entries: 2, inserted: 2 });
  });
});

describe('index consumer: side tables', () => {
  test('kept per batch exactly as 002 defines them (its backfill over the same rows), whatever the step size', () => {
    const count = 60;
    const all = Array.from({ length: count }, (_, n) => variedOpen(n));
    const [ids] = appendAll([all.map((open) => ({ type: 'open' as const, open }))]);
    appendAll([ids.filter((_, n) => n % 3 !== 0).map((id, n) => ({ type: 'complete' as const, id, completion: variedCompletion(n) }))]);
    for (const size of [1, 13, 5000]) {
      const consumer = pool.open({ file: `${dbFile}.${size}`, logDir, maxBatchEntries: size });
      consumer.catchUp();
      const rows = allRows(consumer.db);
      expect(rows).toHaveLength(count);
      expect(sideTables(consumer.db)).toEqual(referenceSideTables(rows));
    }
  });

  test('003 dropped 002\'s insert trigger; the delete trigger that retention relies on stays', () => {
    const consumer = pool.open({ file: dbFile, logDir });
    const triggers = consumer.db.prepare(`SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'requests' ORDER BY name`).pluck().all();
    expect(triggers).toEqual(['requests_side_tables_delete']);
  });
});

describe('index consumer: rebuild and upgrade', () => {
  test('an audit file that is lost is rebuilt from the log, side tables included', () => {
    const [ids] = appendAll([Array.from({ length: 25 }, (_, n) => ({ type: 'open' as const, open: variedOpen(n) }))], 4096);
    appendAll([ids.slice(5).map((id, n) => ({ type: 'complete' as const, id, completion: variedCompletion(n + 5) }))], 4096);
    const consumer = pool.open({ file: dbFile, logDir, maxBatchEntries: 10 });
    consumer.catchUp();
    const rows = allRows(consumer.db);
    const sides = sideTables(consumer.db);
    pool.closeAll();
    for (const suffix of ['', '-wal', '-shm']) fs.rmSync(`${dbFile}${suffix}`, { force: true });
    const rebuilt = pool.open({ file: dbFile, logDir });
    expect(rebuilt.catchUp()).toBe(45);
    expect(allRows(rebuilt.db)).toEqual(rows);
    expect(sideTables(rebuilt.db)).toEqual(sides);
  });

  test('a store written by the current release is taken over: every record kept, new ids above them', () => {
    const store = openAuditStore(dbFile);
    const oldDone = store.record(openFacts(1, { decision: 'deny' }), completion(1, { status: 403 }));
    const oldOpen = store.open(openFacts(2));
    const oldCompleted = store.open(openFacts(3));
    store.complete(oldCompleted, completion(3));
    store.close();
    const before = new Database(dbFile);
    const oldRows = allRows(before);
    const oldSides = sideTables(before);
    before.close();

    const consumer = pool.open({ file: dbFile, logDir });
    expect(consumer.firstFreeId()).toBe(oldCompleted + 1);
    const log = SegmentLog.open({ dir: logDir, firstId: consumer.firstFreeId() });
    const newIds = log.appendBatch([...opens(10, 2), completeEntry(oldOpen, 2)]).slice(0, 2);
    log.close();
    consumer.catchUp();

    expect(Math.min(...newIds)).toBeGreaterThan(Math.max(oldDone, oldOpen, oldCompleted));
    const rows = allRows(consumer.db);
    expect(rows.map((r) => r.id)).toEqual([oldDone, oldOpen, oldCompleted, ...newIds]);
    expect(rows.filter((r) => r.id !== oldOpen).slice(0, 2)).toEqual(oldRows.filter((r) => r.id !== oldOpen));
    expect(rows[1]).toMatchObject({ ...oldRows[1], ended_at_ms: completion(2).endedAt.getTime(), status: 200, bytes_up: 2, bytes_down: 4 });
    const sides = sideTables(consumer.db);
    expect(sides.first_seen_hosts).toEqual(expect.arrayContaining(oldSides.first_seen_hosts));
    expect(sides.first_seen_hosts).toHaveLength(oldSides.first_seen_hosts.length + 2);
  });
});
