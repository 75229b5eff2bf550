import fs from 'node:fs';
import path from 'node:path';
import { Pool } from 'pg';
import { SegmentLog } from '../src/audit/log/segment-log';
import { listSegments } from '../src/audit/log/segment-files';
import { shippedPosition } from '../src/fleet/pg-ship';
import { positionOutsideLog } from '../src/fleet/ship-position-check';
import { Shipper } from '../src/fleet/shipper';
import { readOrCreateStoreId } from '../src/fleet/store-id';
import { completion, openFacts, tempLogDir } from './helpers/audit-log-fixtures';
import { waitFor } from './helpers/fleet-ship';
import { describePg, freshDatabase } from './helpers/postgres';

/** n in 1000..8999: every record has the same encoded size, so clones stay byte-aligned. */
function finished(n: number): { type: 'finished'; open: ReturnType<typeof openFacts>; completion: ReturnType<typeof completion> } {
  return { type: 'finished', open: openFacts(n), completion: completion(n) };
}

const FOREIGN = /store-id [0-9a-f-]{36} is shipped from another log: .*remove store-id on the copy/;

describePg('one store-id shipped from two logs (a cloned volume)', () => {
  let pool: Pool;
  const folders: Array<ReturnType<typeof tempLogDir>> = [];
  beforeEach(() => {
    pool = new Pool({ connectionString: freshDatabase('ship_clone') });
  });
  afterEach(async () => {
    await pool.end();
    for (const f of folders.splice(0)) f.remove();
  });

  /** A log with `count` records, and a byte-for-byte copy of its folder (store-id included). */
  function cloned(count: number): { a: SegmentLog; b: SegmentLog; dirA: string; dirB: string } {
    const one = tempLogDir();
    const two = tempLogDir();
    folders.push(one, two);
    readOrCreateStoreId(one.dir);
    const before = SegmentLog.open({ dir: one.dir, fsync: false, firstId: 1 });
    before.appendBatch(Array.from({ length: count }, (_, i) => finished(1000 + i)));
    before.close();
    fs.cpSync(one.dir, two.dir, { recursive: true });
    // Both start a new segment and resume at the same reserved id, as a booted clone does.
    const a = SegmentLog.open({ dir: one.dir, fsync: false, firstId: 1 });
    const b = SegmentLog.open({ dir: two.dir, fsync: false, firstId: 1 });
    return { a, b, dirA: one.dir, dirB: two.dir };
  }

  function shipper(dir: string, node: string): Shipper {
    return new Shipper({ pool, logDir: dir, who: { storeId: readOrCreateStoreId(dir), node }, policyVersion: () => 'v1', describe: (e) => String((e as Error).message), backoffFirstMs: 1000 });
  }

  test('PostgreSQL beyond the copy\'s end is an error with backoff, not an idle shipper with backlog 0', async () => {
    const { a, b, dirA, dirB } = cloned(10);
    try {
      a.appendBatch([finished(2000), finished(2001)]);
      expect(await shipper(dirA, 'a').drain(Date.now() + 10_000)).toBe(true);
      const copy = shipper(dirB, 'b');
      expect(await copy.drain(Date.now() + 10_000)).toBe(false);
      expect(copy.status()).toMatchObject({ failures: 1, lastError: expect.stringMatching(FOREIGN) });
      expect(copy.status().lastError).toMatch(/offset \d+ is beyond the end of 000000000002\.seg/);
      // Running, it backs off (1 s, 2 s, ...) instead of spinning.
      copy.start();
      // The retry after the first backoff (1 s) comes; a spinning shipper would be far past 3 by then.
      await waitFor('the first retry', () => copy.status().failures >= 2, 20_000);
      await copy.stop();
      expect(copy.status().failures).toBeGreaterThanOrEqual(2);
      expect(copy.status().failures).toBeLessThanOrEqual(3);
    } finally {
      a.close();
      b.close();
    }
  });

  test('two copies taking turns: the fourth stale batch in a minute is a failure, not another jump', async () => {
    const { a, b, dirA, dirB } = cloned(10);
    const first = shipper(dirA, 'a');
    const copy = shipper(dirB, 'b');
    try {
      expect(await first.drain(Date.now() + 10_000)).toBe(true);
      const outcomes: boolean[] = [];
      for (let round = 0; round < 7; round += 1) {
        a.appendBatch([finished(3000 + round)]);
        b.appendBatch([finished(4000 + round)]);
        expect(await first.drain(Date.now() + 10_000)).toBe(true);
        outcomes.push(await copy.drain(Date.now() + 10_000));
      }
      // Round 0 reads the position afresh; rounds 1 to 3 each jump once; the fourth jump is refused,
      // and so is every later one within the minute (the round after a failure reads afresh).
      expect(outcomes).toEqual([true, true, true, true, false, true, false]);
      expect(copy.status().lastError).toMatch(FOREIGN);
      expect(copy.status().failures).toBe(2);
      expect(copy.status().lastError).toMatch(/moved under this shipper more than 3 times in a minute/);
    } finally {
      a.close();
      b.close();
    }
  });

  test('a position in a segment newer than the log\'s newest, or in a missing one, is not this log; one before the oldest is retention', async () => {
    const log = tempLogDir();
    folders.push(log);
    const writer = SegmentLog.open({ dir: log.dir, fsync: false, firstId: 1, maxSegmentBytes: 4096 });
    try {
      for (let i = 0; i < 80; i += 1) writer.appendBatch([finished(1000 + i)]);
      const segments = listSegments(log.dir);
      expect(segments.length).toBeGreaterThan(3);
      const newest = segments.at(-1)!.sequence;
      expect(positionOutsideLog(log.dir, { segment: 0, offset: 0 })).toBeNull();
      expect(positionOutsideLog(log.dir, { segment: newest, offset: 0 })).toBeNull();
      expect(positionOutsideLog(log.dir, { segment: newest + 1, offset: 0 })).toMatch(/newer than the newest/);
      fs.rmSync(segments[2].file);
      expect(positionOutsideLog(log.dir, { segment: segments[2].sequence, offset: 10 })).toMatch(/missing/);
      fs.rmSync(segments[0].file);
      expect(positionOutsideLog(log.dir, { segment: segments[0].sequence, offset: 10 })).toBeNull();

      // Retention pruned while shipping was off: the shipper starts at the oldest segment kept.
      const ship = shipper(log.dir, 'solo');
      expect(await ship.drain(Date.now() + 10_000)).toBe(true);
      await pool.query('UPDATE audit_stores SET ship_segment = $1, ship_offset = 0', [newest + 5]);
      const again = shipper(log.dir, 'solo');
      expect(await again.drain(Date.now() + 10_000)).toBe(false);
      expect(again.status().lastError).toMatch(/segment \d+ is newer than the newest local one/);
      expect(await shippedPosition(pool, readOrCreateStoreId(log.dir))).toEqual({ segment: newest + 5, offset: 0 });
    } finally {
      writer.close();
      fs.rmSync(path.join(log.dir, 'ship-position'), { force: true });
    }
  });
});
