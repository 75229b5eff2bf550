import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'pg';
import { planStep, readStep } from '../src/audit/log/index-step';
import { SegmentLog } from '../src/audit/log/segment-log';
import { readMigrations } from '../src/audit/migrate';
import type { AuditCompletion, AuditOpen } from '../src/audit/record-types';
import { applyPgMigrations, PG_MIGRATIONS_DIR } from '../src/fleet/pg-migrate';
import { PgAuditReader } from '../src/fleet/pg-reader';
import { shipBatch, shippedPosition } from '../src/fleet/pg-ship';
import { completion, openFacts, tempLogDir } from './helpers/audit-log-fixtures';
import { describePg, freshDatabase } from './helpers/postgres';
import { adminOn, DENIED_INNER, expectTunnelThroughAdmin, innerOpen, NODE, pageIds, tunnelOpen } from './helpers/tunnel-records';

/**
 * Kind https and tunnel_id (issue 18) in the fleet's shared history: shipped from a replica's log,
 * the API's tunnel_id being the shared id of the same replica's tunnel row, the tunnel_id filter,
 * exports, and migration 006 on a history the previous release shipped. The local store's side is
 * test/audit-tunnel-field.test.ts.
 */

describePg('the tunnel_id record field in PostgreSQL', () => {
  let logs: Array<ReturnType<typeof tempLogDir>> = [];
  let pools: Pool[] = [];
  afterEach(async () => {
    for (const pool of pools) await pool.end();
    pools = [];
    for (const log of logs) log.remove();
    logs = [];
  });

  function pool(url: string): Pool {
    const made = new Pool({ connectionString: url, max: 3 });
    pools.push(made);
    return made;
  }

  type Entry = { type: 'open'; open: AuditOpen } | { type: 'finished'; open: AuditOpen; completion: AuditCompletion } | { type: 'complete'; id: number; completion: AuditCompletion };

  /** A replica's own log: batches appended as its writer would, ids from 1. */
  function replicaLog(build: (append: (entries: Entry[]) => number[]) => void): string {
    const log = tempLogDir();
    logs.push(log);
    const writer = SegmentLog.open({ dir: log.dir, fsync: false, firstId: 1 });
    try {
      build((entries) => writer.appendBatch(entries));
    } finally {
      writer.close();
    }
    return log.dir;
  }

  async function shipLog(into: Pool, dir: string, storeId: string, node: string, maxEntries = 10_000): Promise<void> {
    for (let batches = 0; batches < 1000; batches += 1) {
      const from = await shippedPosition(into, storeId);
      const read = readStep(dir, from, maxEntries);
      const outcome = await shipBatch(into, { storeId, node }, { from, next: read.next, plan: planStep(read.entries), entries: read.entries.length, policyVersion: 'v1' });
      expect(outcome.kind).toBe('shipped');
      if (read.entries.length === 0) return;
    }
    throw new Error('the log did not ship in 1000 batches');
  }

  /** The replica's tunnel and its requests, as in the local test: local ids 1 (tunnel), 2-3 (inside), 4 (plain). */
  function inspectedReplica(): string {
    return replicaLog((append) => {
      const [tunnel] = append([{ type: 'open', open: tunnelOpen(1) }]);
      append([
        { type: 'finished', open: innerOpen(2, tunnel), completion: completion(2) },
        { type: 'finished', open: innerOpen(3, tunnel, DENIED_INNER), completion: completion(3, { status: 403 }) },
      ]);
      append([
        { type: 'complete', id: tunnel, completion: completion(1) },
        { type: 'finished', open: openFacts(4, { kind: 'http', method: 'GET', scheme: 'http', port: 80, path: '/x', host: 'plain.example' }), completion: completion(4) },
      ]);
    });
  }

  /** Another replica's records first, so shared ids differ from local ones (and its local id 1 is a plain tunnel). */
  function otherReplica(): string {
    return replicaLog((append) => {
      append([1, 2, 3].map((n) => ({ type: 'finished' as const, open: openFacts(100 + n, { host: `other${n}.example` }), completion: completion(100 + n) })));
    });
  }

  test('shipped from the log (the jsonb batch): tunnel_id is the shared id of the same replica\'s tunnel, through the admin API, its filter, CSV and NDJSON', async () => {
    const history = pool(freshDatabase('tunnelship'));
    await applyPgMigrations(history);
    await shipLog(history, otherReplica(), '0b6f1c2e-3d4a-4b5c-8d9e-0f1a2b3c4d5e', 'other');
    // One entry a batch: the tunnel's row lands in an earlier batch than its requests.
    await shipLog(history, inspectedReplica(), '7e2d9c41-5a3b-4c6d-9e8f-1a2b3c4d5e6f', NODE, 1);

    const rows = (await history.query<{ id: string; local_id: string; node: string; kind: string; tunnel_local_id: string | null }>(
      'SELECT id, local_id, node, kind, tunnel_local_id FROM requests WHERE node = $1 ORDER BY local_id', [NODE],
    )).rows;
    expect(rows.map((r) => [r.local_id, r.kind, r.tunnel_local_id])).toEqual([['1', 'connect', null], ['2', 'https', '1'], ['3', 'https', '1'], ['4', 'http', null]]);
    const shared = rows.map((r) => Number(r.id));
    // The other replica's rows came first: local id 1 is not this tunnel's shared id.
    expect(shared[0]).toBeGreaterThan(3);
    const app = adminOn(new PgAuditReader(history));
    try {
      await expectTunnelThroughAdmin(app, { tunnel: shared[0], inner: [shared[1], shared[2]], plain: shared[3] });
      // The other replica's record with local id 1 is a tunnel with nothing inspected in it.
      const [otherFirst] = (await history.query<{ id: string }>("SELECT id FROM requests WHERE node = 'other' AND local_id = 1")).rows;
      expect(await pageIds(app, `tunnel_id=${otherFirst.id}`)).toEqual([]);
    } finally {
      await app.close();
    }
  });

  test('two replicas whose tunnels have the same local id: each request links to its own replica\'s tunnel', async () => {
    const history = pool(freshDatabase('tunneltwo'));
    await applyPgMigrations(history);
    await shipLog(history, inspectedReplica(), 'a1b2c3d4-0000-4000-8000-000000000001', 'replica-a');
    await shipLog(history, inspectedReplica(), 'a1b2c3d4-0000-4000-8000-000000000002', 'replica-b');
    const reader = new PgAuditReader(history);
    const app = adminOn(reader);
    try {
      for (const node of ['replica-a', 'replica-b']) {
        const ids = (await history.query<{ id: string }>('SELECT id FROM requests WHERE node = $1 ORDER BY local_id', [node])).rows.map((r) => Number(r.id));
        expect((await reader.getRequest(ids[1]))?.tunnel_id).toBe(ids[0]);
        expect(await pageIds(app, `tunnel_id=${ids[0]}`)).toEqual([ids[2], ids[1]]);
      }
    } finally {
      await app.close();
    }
  });

  test('the filter\'s slice query can walk the partial index on (tunnel_local_id, store_id, id)', async () => {
    const history = pool(freshDatabase('tunnelplan'));
    await applyPgMigrations(history);
    await shipLog(history, inspectedReplica(), '3c4d5e6f-0000-4000-8000-000000000003', NODE);
    const client = await history.connect();
    try {
      // A table this small is read whole; with sequential scans off, the index must be usable.
      await client.query('SET enable_seqscan = off');
      const plan = await client.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN SELECT r.id FROM requests AS r WHERE r.id >= 1 AND r.id < 100 AND r.tunnel_local_id = 1::bigint
           AND r.store_id = '3c4d5e6f-0000-4000-8000-000000000003'::uuid ORDER BY r.id DESC LIMIT 10`,
      );
      expect(plan.rows.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/requests_tunnel/);
    } finally {
      client.release();
    }
  });

  test('migration 006 on a history the previous release shipped: its rows read with tunnel_id null, kind https ships, other kinds are still refused', async () => {
    const oldDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-pg-005-'));
    try {
      for (const m of readMigrations(PG_MIGRATIONS_DIR).filter((m) => m.version < '006')) fs.writeFileSync(path.join(oldDir, `${m.version}.sql`), m.sql);
      const history = pool(freshDatabase('tunnelmigrate'));
      expect(await applyPgMigrations(history, { dir: oldDir })).toEqual(['001_fleet', '002_reader', '003_rollups', '004_peer_ip', '005_sni']);
      const storeId = '9a4e2c71-0b3d-4f6a-8e15-2d7c9b0a1f37';
      await history.query('INSERT INTO audit_stores (store_id, node, first_contact_ms, last_contact_ms) VALUES ($1, $2, 1740830400000, 1740830400000)', [storeId, NODE]);
      await history.query(
        `INSERT INTO requests (store_id, local_id, node, started_at_ms, ended_at_ms, client_ip, client_port, clients, kind,
           method, host, port, resolved_ip, sni, decision, reason, status)
         VALUES ($1, 1, $2, 1740830400000, 1740830400500, '10.0.8.7', 50001, '{ci}', 'connect', 'CONNECT', 'old.example',
           443, '203.0.113.9', 'old.example', 'allow', 'matched rule ci', 200)`,
        [storeId, NODE],
      );
      // Before 006, the kind check refuses https.
      await expect(history.query(
        `INSERT INTO requests (store_id, local_id, node, started_at_ms, client_ip, client_port, kind, decision, reason)
         VALUES ($1, 2, $2, 1740830400000, '10.0.8.7', 50002, 'https', 'allow', 'x')`, [storeId, NODE],
      )).rejects.toThrow(/requests_kind_check/);

      expect(await applyPgMigrations(history)).toEqual(readMigrations(PG_MIGRATIONS_DIR).map((m) => m.version).filter((v) => v >= '006'));
      const reader = new PgAuditReader(history);
      const [oldRow] = (await history.query<{ id: string }>('SELECT id FROM requests')).rows;
      expect(await reader.getRequest(Number(oldRow.id))).toMatchObject({ host: 'old.example', kind: 'connect', sni: 'old.example', tunnel_id: null });
      await expect(history.query(
        `INSERT INTO requests (store_id, local_id, node, started_at_ms, client_ip, client_port, kind, decision, reason)
         VALUES ($1, 3, $2, 1740830400000, '10.0.8.7', 50003, 'ftp', 'allow', 'x')`, [storeId, NODE],
      )).rejects.toThrow(/requests_kind_check/);

      await shipLog(history, inspectedReplica(), '5c8f1d20-4a6b-4e93-b7d1-0f2e3a4b5c6e', 'upgraded');
      const ids = (await history.query<{ id: string }>("SELECT id FROM requests WHERE node = 'upgraded' ORDER BY local_id")).rows.map((r) => Number(r.id));
      expect(await reader.getRequest(ids[1])).toMatchObject({ kind: 'https', scheme: 'https', tunnel_id: ids[0] });
    } finally {
      fs.rmSync(oldDir, { recursive: true, force: true });
    }
  });
});
