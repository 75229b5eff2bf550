import { randomUUID } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import { Pool } from 'pg';
import { SegmentLog } from '../src/audit/log/segment-log';
import { NODE_STALE_MS } from '../src/audit/reader';
import { pgNodes } from '../src/fleet/pg-aggregates';
import { applyPgMigrations } from '../src/fleet/pg-migrate';
import { touchStore } from '../src/fleet/pg-ship';
import { ShipThread } from '../src/fleet/ship-thread';
import { Shipper } from '../src/fleet/shipper';
import { readOrCreateStoreId } from '../src/fleet/store-id';
import { waitFor } from './helpers/fleet-ship';
import { completion, openFacts, tempLogDir } from './helpers/audit-log-fixtures';
import { describePg, freshDatabase } from './helpers/postgres';

/** The console's node list stays current while a replica is idle, and a retired one stops voting. */

interface StoreRow {
  last_contact_ms: string;
  policy_version: string | null;
}

describePg('an idle replica keeps in touch', () => {
  let url: string;
  let pool: Pool;
  let log: ReturnType<typeof tempLogDir>;
  beforeEach(() => {
    url = freshDatabase('ship_touch');
    pool = new Pool({ connectionString: url });
    log = tempLogDir();
  });
  afterEach(async () => {
    await pool.end();
    log.remove();
  });

  const row = async (storeId: string): Promise<StoreRow | undefined> =>
    (await pool.query<StoreRow>('SELECT last_contact_ms, policy_version FROM audit_stores WHERE store_id = $1', [storeId])).rows[0];

  test('idle, the row is refreshed every 30 s, and at once when the policy version changes', async () => {
    const storeId = readOrCreateStoreId(log.dir);
    const writer = SegmentLog.open({ dir: log.dir, fsync: false, firstId: 1 });
    writer.appendBatch([{ type: 'finished', open: openFacts(1), completion: completion(1) }]);
    let now = Date.parse('2025-06-01T00:00:00Z');
    let version = 'v1';
    const shipper = new Shipper({ pool, logDir: log.dir, who: { storeId, node: 'idle' }, policyVersion: () => version, describe: String, clock: () => new Date(now) });
    try {
      expect(await shipper.drain(now + 10_000)).toBe(true);
      const shipped = now;
      expect(await row(storeId)).toEqual({ last_contact_ms: String(shipped), policy_version: 'v1' });
      now += 10_000;
      expect(await shipper.drain(now + 10_000)).toBe(true);
      expect((await row(storeId))?.last_contact_ms).toBe(String(shipped));
      version = 'v2';
      expect(await shipper.drain(now + 10_000)).toBe(true);
      expect(await row(storeId)).toEqual({ last_contact_ms: String(now), policy_version: 'v2' });
      const reloaded = now;
      now += 29_000;
      expect(await shipper.drain(now + 10_000)).toBe(true);
      expect((await row(storeId))?.last_contact_ms).toBe(String(reloaded));
      now += 2_000;
      expect(await shipper.drain(now + 10_000)).toBe(true);
      expect((await row(storeId))?.last_contact_ms).toBe(String(now));
    } finally {
      writer.close();
    }
  });

  test('a ship thread restarted after a reload reports the version running now', async () => {
    const storeId = readOrCreateStoreId(log.dir);
    const thread = new ShipThread({ url, logDir: log.dir, storeId, node: 'restarted', policyVersion: 'v1', onEvent: () => undefined });
    try {
      await waitFor('the first contact', async () => (await row(storeId))?.policy_version === 'v1');
      const first = (thread as unknown as { worker: Worker }).worker;
      await first.terminate();
      // The thread is gone: this message is lost, and only the restart data can carry v2.
      thread.policyChanged('v2');
      await waitFor('the restarted thread\'s contact', async () => (await row(storeId))?.policy_version === 'v2', 10_000);
    } finally {
      await thread.close(1000);
    }
  });

  test('/api/nodes: a store not heard from for a day is stale and takes no part in the flags', async () => {
    await applyPgMigrations(pool);
    const now = new Date('2025-06-02T00:00:00Z');
    const live = now.getTime() - 60_000;
    const retired = now.getTime() - NODE_STALE_MS - 60_000;
    await touchStore(pool, { storeId: randomUUID(), node: 'edge-a' }, 'v2', live);
    await touchStore(pool, { storeId: randomUUID(), node: 'edge-a' }, 'v1', retired);
    await touchStore(pool, { storeId: randomUUID(), node: 'edge-b' }, 'v2', live);
    await touchStore(pool, { storeId: randomUUID(), node: 'edge-c' }, 'v1', retired);
    await touchStore(pool, { storeId: randomUUID(), node: 'edge-d' }, 'v1', retired);
    const page = await pgNodes(pool, now);
    expect(page.common_policy_version).toBe('v2');
    const flags = page.nodes.map((n) => [n.node, n.policy_version, n.stale, n.duplicate_name, n.policy_differs]);
    expect(flags.sort((x, y) => String(x).localeCompare(String(y)))).toEqual([
      ['edge-a', 'v1', true, false, false],
      ['edge-a', 'v2', false, false, false],
      ['edge-b', 'v2', false, false, false],
      ['edge-c', 'v1', true, false, false],
      ['edge-d', 'v1', true, false, false],
    ]);
  });
});
