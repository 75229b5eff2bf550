import { readMigrations } from '../src/audit/migrate';
import { Pool } from 'pg';
import { SegmentLog } from '../src/audit/log/segment-log';
import { planStep, readStep } from '../src/audit/log/index-step';
import { applyPgMigrations, PG_MIGRATIONS_DIR } from '../src/fleet/pg-migrate';
import { shipBatch, shippedPosition } from '../src/fleet/pg-ship';
import { completion, openFacts, tempLogDir } from './helpers/audit-log-fixtures';
import { pgRecordsByIds } from '../src/fleet/pg-records';
import { describePg, freshDatabase } from './helpers/postgres';

const STORE = { storeId: '6f1c1a52-5d1e-4c1b-9a57-3f0d8c2e1a01', node: 'replica-a' };

describePg('shipping a batch of the local log to PostgreSQL', () => {
  let pool: Pool;
  let log: ReturnType<typeof tempLogDir>;

  beforeEach(async () => {
    pool = new Pool({ connectionString: freshDatabase('ship') });
    await applyPgMigrations(pool);
    log = tempLogDir();
  });
  afterEach(async () => {
    await pool.end();
    log.remove();
  });

  async function shipAll(from = { segment: 0, offset: 0 }) {
    const read = readStep(log.dir, from, 10_000);
    return { read, outcome: await shipBatch(pool, STORE, { from, next: read.next, plan: planStep(read.entries), entries: read.entries.length, policyVersion: 'v1' }) };
  }

  test('migrations apply once, under the lock, twice at the same time', async () => {
    const again = await Promise.all([applyPgMigrations(pool), applyPgMigrations(pool)]);
    expect(again).toEqual([[], []]);
    const versions = await pool.query('SELECT version FROM schema_migrations');
    expect(versions.rows.map((r: { version: string }) => r.version)).toEqual(readMigrations(PG_MIGRATIONS_DIR).map((m) => m.version));
  });

  test('a batch lands once; a re-sent batch is stale; a later completion fills the open row', async () => {
    const writer = SegmentLog.open({ dir: log.dir, fsync: false, firstId: 1 });
    const ids = writer.appendBatch([
      { type: 'open', open: openFacts(1, { peerIp: '10.1.0.5' }) },
      { type: 'finished', open: openFacts(2, { host: 'evil\u0000.example', sni: 'sni\u0000.example' }), completion: completion(2) },
    ]);
    const first = await shipAll();
    expect(first.outcome).toEqual({ kind: 'shipped', inserted: 2, completed: 0 });
    const resent = await shipAll();
    expect(resent.outcome).toEqual({ kind: 'stale', position: first.read.next, chainEntries: 0 });
    writer.appendBatch([{ type: 'complete', id: ids[0], completion: completion(1, { status: 204 }) }]);
    const later = await shipAll(await shippedPosition(pool, STORE.storeId));
    expect(later.outcome).toEqual({ kind: 'shipped', inserted: 0, completed: 1 });
    writer.close();
    const rows = await pool.query('SELECT local_id, node, status, ended_at_ms IS NOT NULL AS done, host, peer_ip, sni FROM requests ORDER BY local_id');
    expect(rows.rows).toEqual([
      { local_id: String(ids[0]), node: 'replica-a', status: 204, done: true, host: 'host1.example.com', peer_ip: '10.1.0.5', sni: null },
      { local_id: String(ids[1]), node: 'replica-a', status: 200, done: true, host: 'evil\uFFFD.example', peer_ip: null, sni: 'sni\uFFFD.example' },
    ]);
    const records = await pgRecordsByIds(pool, (await pool.query<{ id: string }>('SELECT id FROM requests')).rows.map((r) => Number(r.id)));
    expect(records.map((r) => r.peer_ip).sort()).toEqual(['10.1.0.5', null]);
    expect(records.map((r) => r.sni).sort()).toEqual([null, 'sni\uFFFD.example']);
    const minutes = await pool.query('SELECT sum(allowed)::int AS allowed FROM request_minutes');
    expect(minutes.rows[0].allowed).toBe(2);
  });
});
