import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Pool } from 'pg';
import { SegmentLog } from '../src/audit/log/segment-log';
import { applyPgMigrations } from '../src/fleet/pg-migrate';
import { pruneHistory } from '../src/fleet/pg-prune';
import { shippedHeads } from '../src/fleet/pg-chain';
import { verifyHistory } from '../src/fleet/pg-verify';
import type { PgVerifyResult } from '../src/fleet/pg-verify';
import { Shipper } from '../src/fleet/shipper';
import { completion, openFacts, STARTED, tempLogDir } from './helpers/audit-log-fixtures';
import { ShippingLog } from './helpers/pg-history';
import { describePg, freshDatabase } from './helpers/postgres';
import { CLI, ensureBuilt, REPO_ROOT } from './helpers/serve-process';

/**
 * `tollgate audit verify --audit-url` (issue 17): replicas' logs shipped by the real Shipper, their
 * chains' copy in PostgreSQL walked, and each kind of tampering with the shared history found.
 */

const STORES = [
  { storeId: '0d6a3f8e-4b0e-4f57-9a31-6c1d2e3f4a01', node: 'replica-a' },
  { storeId: '0d6a3f8e-4b0e-4f57-9a31-6c1d2e3f4a02', node: 'replica-b' },
];

interface Replica {
  dir: string;
  log: SegmentLog;
  who: (typeof STORES)[number];
  remove: () => void;
}

function replica(index: number, key: Buffer | null = null): Replica {
  const temp = tempLogDir();
  return { dir: temp.dir, log: SegmentLog.open({ dir: temp.dir, fsync: false, chainKey: key, maxSegmentBytes: 4096 }), who: STORES[index], remove: temp.remove };
}

/** Opens, completions, records written whole, a NUL PostgreSQL cannot store, and a second completion. */
function writeTraffic(r: Replica, base: number, count: number): number[] {
  const ids: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const n = base + i;
    if (i % 3 === 0) ids.push(r.log.appendBatch([{ type: 'finished', open: openFacts(n, { host: i === 3 ? 'nul\u0000.example' : `h${n}.example` }), completion: completion(n) }])[0]);
    else ids.push(r.log.appendBatch([{ type: 'open', open: openFacts(n) }])[0]);
  }
  for (let i = 0; i < count; i += 1) {
    if (i % 3 === 1) r.log.appendBatch([{ type: 'complete', id: ids[i], completion: completion(base + i, { status: 204 }) }]);
  }
  // A late second completion of a finished record changes nothing (the first wins) and still verifies.
  r.log.appendBatch([{ type: 'complete', id: ids[1], completion: completion(base + 1, { status: 500 }) }]);
  return ids;
}

async function ship(pool: Pool, r: Replica, maxBatchEntries = 7): Promise<void> {
  const shipper = new Shipper({ pool, logDir: r.dir, who: r.who, policyVersion: () => 'v1', describe: String, maxBatchEntries });
  expect(await shipper.drain(Date.now() + 30_000)).toBe(true);
}

function breakOf(result: PgVerifyResult): string | null {
  const broken = result.stores.find((s) => s.report.break !== null);
  return broken === undefined ? null : `${broken.node}: ${broken.report.break?.id}: ${broken.report.break?.message}`;
}

function verifyCli(args: string[], env: NodeJS.ProcessEnv = {}) {
  ensureBuilt();
  const base = { ...process.env };
  delete base.TOLLGATE_AUDIT_URL;
  delete base.TOLLGATE_AUDIT_KEY;
  const run = spawnSync(process.execPath, [CLI, 'audit', 'verify', ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000, env: { ...base, ...env } });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describePg('audit verify --audit-url: every replica\'s chain and every record in PostgreSQL', () => {
  let url: string;
  let pool: Pool;
  let replicas: Replica[];
  let ids: number[][];

  beforeEach(async () => {
    url = freshDatabase('verify');
    pool = new Pool({ connectionString: url });
    await applyPgMigrations(pool);
    replicas = [replica(0), replica(1)];
    ids = [writeTraffic(replicas[0], 0, 30), writeTraffic(replicas[1], 1000, 20)];
    for (const r of replicas) await ship(pool, r);
  });
  afterEach(async () => {
    for (const r of replicas) {
      r.log.close();
      r.remove();
    }
    await pool.end();
  });

  const rowOf = async (store: number, local: number): Promise<string> =>
    (await pool.query<{ id: string }>('SELECT id FROM requests WHERE store_id = $1 AND local_id = $2', [STORES[store].storeId, local])).rows[0].id;

  test('a whole history verifies, per replica, ending at each replica\'s own head; the console serves those heads', async () => {
    const result = await verifyHistory(pool, { key: null });
    expect(breakOf(result)).toBeNull();
    expect(result.stores.map((s) => [s.node, s.rows])).toEqual([['replica-a', 30], ['replica-b', 20]]);
    // Both logs rolled segments (4 KiB): the checkpoints were shipped and walked too.
    for (const [i, store] of result.stores.entries()) {
      expect(store.report.head.hash.equals(replicas[i].log.head().hash)).toBe(true);
      expect(store.report.verified).toBe([30 + 10 + 1, 20 + 7 + 1][i]);
    }
    const heads = await shippedHeads(pool);
    expect(heads.map((h) => [h.node, h.chain, h.hash])).toEqual(replicas.map((r) => [r.who.node, r.who.storeId, r.log.head().hash.toString('hex')]));
  });

  test.each([
    ['a field of a row edited', async () => {
      await pool.query("UPDATE requests SET host = 'innocent.example' WHERE store_id = $1 AND local_id = $2", [STORES[0].storeId, ids[0][6]]);
      return { node: 'replica-a', local: ids[0][6], says: /row's host is "innocent.example" in the shared history, but "h6.example"/ };
    }],
    ['a completion edited (status)', async () => {
      await pool.query('UPDATE requests SET status = 200 WHERE store_id = $1 AND local_id = $2', [STORES[1].storeId, ids[1][4]]);
      return { node: 'replica-b', local: ids[1][4], says: /row's status is 200 in the shared history, but 204/ };
    }],
    ['a row deleted', async () => {
      await pool.query('DELETE FROM requests WHERE store_id = $1 AND local_id = $2', [STORES[0].storeId, ids[0][10]]);
      return { node: 'replica-a', local: ids[0][10], says: /row is missing from the shared history \(deleted\)/ };
    }],
    ['a row inserted that no entry made', async () => {
      await pool.query(`INSERT INTO requests (store_id, local_id, node, started_at_ms, client_ip, client_port, kind, decision, reason)
        VALUES ($1, 999999, 'replica-b', 1, '10.9.9.9', 1, 'http', 'allow', 'planted')`, [STORES[1].storeId]);
      return { node: 'replica-b', local: 999999, says: /no entry of its replica's chain made it \(a row inserted\)/ };
    }],
    ['an open record marked completed', async () => {
      await pool.query('UPDATE requests SET ended_at_ms = 1, status = 200 WHERE store_id = $1 AND local_id = $2', [STORES[0].storeId, ids[0][2]]);
      return { node: 'replica-a', local: ids[0][2], says: /completed in the shared history, but its replica's chain holds no completion/ };
    }],
    ['an entry of the chain edited with its row (the hash no longer holds)', async () => {
      const { rows } = await pool.query<{ seq: string; entry: Buffer }>(
        "SELECT seq, entry FROM audit_chain WHERE store_id = $1 AND local_id = $2 AND position('h9.example' in convert_from(substring(entry from 46), 'UTF8')) > 0",
        [STORES[0].storeId, ids[0][9]],
      );
      const edited = Buffer.from(rows[0].entry.toString('latin1').replace('h9.example', 'x9.example'), 'latin1');
      await pool.query('UPDATE audit_chain SET entry = $3 WHERE store_id = $1 AND seq = $2', [STORES[0].storeId, rows[0].seq, edited]);
      await pool.query("UPDATE requests SET host = 'x9.example' WHERE store_id = $1 AND local_id = $2", [STORES[0].storeId, ids[0][9]]);
      return { node: 'replica-a', local: ids[0][9], says: /its content was edited/ };
    }],
    ['entries removed from the chain with their rows', async () => {
      const { rows } = await pool.query<{ seq: string }>('SELECT seq FROM audit_chain WHERE store_id = $1 AND local_id = $2 ORDER BY seq LIMIT 1', [STORES[1].storeId, ids[1][12]]);
      await pool.query('DELETE FROM audit_chain WHERE store_id = $1 AND seq = $2', [STORES[1].storeId, rows[0].seq]);
      await pool.query('DELETE FROM requests WHERE store_id = $1 AND local_id = $2', [STORES[1].storeId, ids[1][12]]);
      return { node: 'replica-b', local: null, says: /missing from audit_chain/ };
    }],
    ['two entries swapped', async () => {
      const { rows } = await pool.query<{ seq: string }>('SELECT seq FROM audit_chain WHERE store_id = $1 AND local_id = $2 ORDER BY seq LIMIT 1', [STORES[0].storeId, ids[0][14]]);
      const a = Number(rows[0].seq);
      await pool.query(`UPDATE audit_chain SET seq = CASE WHEN seq = $2 THEN -1 ELSE seq END WHERE store_id = $1 AND seq = $2`, [STORES[0].storeId, a]);
      await pool.query('UPDATE audit_chain SET seq = $2 WHERE store_id = $1 AND seq = $3', [STORES[0].storeId, a, a + 1]);
      await pool.query('UPDATE audit_chain SET seq = $2 WHERE store_id = $1 AND seq = -1', [STORES[0].storeId, a + 1]);
      // The first entry out of place is the later record's, now first.
      return { node: 'replica-a', local: ids[0][15], says: /chain broken at this entry|edited/ };
    }],
  ])('%s is a break at the right record', async (_name, tamper) => {
    expect(breakOf(await verifyHistory(pool, { key: null }))).toBeNull();
    const expected = await tamper();
    const result = await verifyHistory(pool, { key: null });
    const broken = result.stores.filter((s) => s.report.break !== null);
    expect(broken.map((s) => s.node)).toEqual([expected.node]);
    if (expected.local !== null) expect(broken[0].report.break?.id).toBe(expected.local);
    expect(broken[0].report.break?.message).toMatch(expected.says);
  });

  test.each([
    ['the prune cut moved to the future, then a row deleted', async () => {
      await pool.query('UPDATE audit_stores SET chain_cut_ms = $2, chain_cut_seq = chain_entries WHERE store_id = $1', [STORES[0].storeId, Date.now() + 86_400_000]);
      await pool.query('DELETE FROM requests WHERE store_id = $1 AND local_id = $2', [STORES[0].storeId, ids[0][7]]);
      return { node: 'replica-a', local: null, says: /prune cut .* is in the future/ };
    }],
    ['the prune cut moved later (but past), then a row shipped after it deleted', async () => {
      await pool.query('UPDATE audit_stores SET chain_cut_ms = $2, chain_cut_seq = 3 WHERE store_id = $1', [STORES[0].storeId, Date.now() - 1000]);
      await pool.query('DELETE FROM requests WHERE store_id = $1 AND local_id = $2', [STORES[0].storeId, ids[0][7]]);
      return { node: 'replica-a', local: ids[0][7], says: /row is missing/ };
    }],
    ['the chain\'s start moved up to hide inserted rows', async () => {
      await pool.query('UPDATE audit_stores SET chain_after_local_id = 999999 WHERE store_id = $1', [STORES[1].storeId]);
      return { node: 'replica-b', local: ids[1][0], says: /records up to 999999 were shipped before the copy began/ };
    }],
    ['a row moved to the newest place (deleted and re-inserted)', async () => {
      await pool.query(`WITH gone AS (DELETE FROM requests WHERE store_id = $1 AND local_id = $2 RETURNING *)
        INSERT INTO requests (store_id, local_id, node, started_at_ms, ended_at_ms, client_ip, client_port, clients, "user", kind, method, scheme, host, port, path,
          resolved_ip, decision, would_deny, rule, rule_source, reason, status, bytes_up, bytes_down, error, policy_version, peer_ip, sni, tunnel_local_id)
        SELECT store_id, local_id, node, started_at_ms, ended_at_ms, client_ip, client_port, clients, "user", kind, method, scheme, host, port, path,
          resolved_ip, decision, would_deny, rule, rule_source, reason, status, bytes_up, bytes_down, error, policy_version, peer_ip, sni, tunnel_local_id FROM gone`,
      [STORES[0].storeId, ids[0][3]]);
      return { node: 'replica-a', local: ids[0][4], says: /out of its replica's order/ };
    }],
    ['the newest entries of a copy removed', async () => {
      await pool.query('DELETE FROM audit_chain WHERE store_id = $1 AND seq >= (SELECT chain_entries - 2 FROM audit_stores WHERE store_id = $1)', [STORES[1].storeId]);
      return { node: 'replica-b', local: null, says: /at the end of its chain are missing/ };
    }],
  ])('%s is a break', async (_name, tamper) => {
    const expected = await tamper();
    const result = await verifyHistory(pool, { key: null });
    const broken = result.stores.filter((s) => s.report.break !== null);
    expect(broken.map((s) => s.node)).toEqual([expected.node]);
    if (expected.local !== null) expect(broken[0].report.break?.id).toBe(expected.local);
    expect(broken[0].report.break?.message).toMatch(expected.says);
  });

  test('a forged copy that opens with a checkpoint carrying a witnessed head does not meet it', async () => {
    const witnessed = replicas[0].log.head().hash.toString('hex');
    const { rows } = await pool.query<{ entry: Buffer }>('SELECT entry FROM audit_chain WHERE store_id = $1 ORDER BY seq LIMIT 1', [STORES[0].storeId]);
    const forged = Buffer.from(rows[0].entry);
    replicas[0].log.head().hash.copy(forged, 13);
    await pool.query('DELETE FROM audit_chain WHERE store_id = $1', [STORES[0].storeId]);
    await pool.query('DELETE FROM requests WHERE store_id = $1', [STORES[0].storeId]);
    await pool.query('INSERT INTO audit_chain (store_id, seq, local_id, entry) VALUES ($1, 0, $2, $3)', [STORES[0].storeId, forged.readUIntLE(1, 6), forged]);
    await pool.query('UPDATE audit_stores SET chain_entries = 1 WHERE store_id = $1', [STORES[0].storeId]);
    const result = await verifyHistory(pool, { key: null, expectHeads: [witnessed] });
    expect(result.headsNotMet).toEqual([witnessed]);
  });

  test('the CLI: exit 0 with a line per replica, exit 1 at a break naming the record, --expect-head met or not', async () => {
    const whole = verifyCli(['--audit-url', url]);
    expect(whole.stderr).toBe('');
    expect(whole.status).toBe(0);
    expect(whole.stdout).toMatch(/^replica-a \(store 0d6a3f8e-\S+\): verified 41 entries .*head [0-9a-f]{64}.*; 30 records checked\n/m);
    expect(whole.stdout).toMatch(/^replica-b \(store \S+\): verified 28 entries/m);

    const headA = replicas[0].log.head().hash.toString('hex');
    expect(verifyCli(['--expect-head', headA], { TOLLGATE_AUDIT_URL: url }).status).toBe(0);
    // A head witnessed earlier is met along the chain, though the copy has moved on since.
    const earlier = replicas[1].log.head().hash.toString('hex');
    writeTraffic(replicas[1], 2000, 4);
    await ship(pool, replicas[1]);
    expect(verifyCli(['--audit-url', url, '--expect-head', earlier]).status).toBe(0);
    const unknown = verifyCli(['--audit-url', url, '--expect-head', 'ab'.repeat(32)]);
    expect(unknown.status).toBe(1);
    expect(unknown.stdout).toContain(`expected head ${'ab'.repeat(32)}: no chain passes through it`);

    await pool.query("UPDATE requests SET path = '/changed' WHERE store_id = $1 AND local_id = $2", [STORES[0].storeId, ids[0][5]]);
    const row = await rowOf(0, ids[0][5]);
    const edited = verifyCli(['--audit-url', url]);
    expect(edited.status).toBe(1);
    expect(edited.stdout).toContain(`replica-a (store ${STORES[0].storeId}): record ${row} (local ${ids[0][5]}): its row's path is "/changed"`);
    expect(edited.stdout).toMatch(/^replica-b .*verified/m);
    expect(verifyCli(['--audit-url', url, '--db', '/x']).status).toBe(2);
  });

  test('audit prune cuts each chain at its oldest kept record: what is left verifies from a checkpoint, and a later deletion still breaks', async () => {
    // replica-a's records started at STARTED + 0..29 ms, replica-b's at + 1000..1019: keep a's from + 15 ms on.
    const first = await pruneHistory(pool, { cutoffMs: STARTED.getTime() + 15, batchSize: 4 });
    expect(first.deleted).toBe(15);
    expect(first.chainEntriesRemoved).toBeGreaterThanOrEqual(15);
    const after = await verifyHistory(pool, { key: null });
    expect(breakOf(after)).toBeNull();
    expect(after.stores.map((s) => s.rows)).toEqual([15, 20]);
    expect(after.stores[0].report.fromCheckpoint).not.toBeNull();
    expect(after.stores[1].report.fromCheckpoint).toBeNull();
    expect(after.stores[0].report.head.hash.equals(replicas[0].log.head().hash)).toBe(true);
    // A deletion among the kept records is still a break.
    await pool.query('DELETE FROM requests WHERE store_id = $1 AND local_id = $2', [STORES[0].storeId, ids[0][20]]);
    expect(breakOf(await verifyHistory(pool, { key: null }))).toBe(`replica-a: ${ids[0][20]}: its row is missing from the shared history (deleted), though its replica's chain holds it`);

    // Everything pruned: each copy is one checkpoint of its head, and new traffic goes on from it.
    await pruneHistory(pool, { cutoffMs: STARTED.getTime() + 5000 });
    const left = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_chain GROUP BY store_id ORDER BY store_id');
    expect(left.rows.map((r) => r.n)).toEqual([1, 1]);
    expect(breakOf(await verifyHistory(pool, { key: null }))).toBeNull();
    writeTraffic(replicas[1], 9000, 3);
    await ship(pool, replicas[1]);
    const last = await verifyHistory(pool, { key: null });
    expect(breakOf(last)).toBeNull();
    expect(last.stores[1].rows).toBe(3);
    expect(last.stores[1].report.head.hash.equals(replicas[1].log.head().hash)).toBe(true);
  });
});

describePg('audit verify --audit-url: keyed chains and replicas upgraded from before the chain\'s copy', () => {
  test('a keyed chain verifies with its key only', async () => {
    const pool = new Pool({ connectionString: freshDatabase('verify-key') });
    await applyPgMigrations(pool);
    const keyed = replica(0, Buffer.from('k'.repeat(32)));
    try {
      writeTraffic(keyed, 0, 6);
      await ship(pool, keyed);
      expect(breakOf(await verifyHistory(pool, { key: Buffer.from('k'.repeat(32)) }))).toBeNull();
      expect(breakOf(await verifyHistory(pool, { key: null }))).toMatch(/replica-a/);
    } finally {
      keyed.log.close();
      keyed.remove();
      await pool.end();
    }
  });

  /** A replica of the release before the copy (ShippingLog ships rows only), then upgraded: its Shipper ships the copy. */
  async function upgradedReplica(name: string, store: (typeof STORES)[number], body: (old: ShippingLog, pool: Pool, upgrade: () => Promise<void>) => Promise<void>): Promise<void> {
    const pool = new Pool({ connectionString: freshDatabase(name) });
    await applyPgMigrations(pool);
    const temp = tempLogDir();
    const old = new ShippingLog(temp.dir, store);
    const upgrade = async (): Promise<void> => {
      const shipper = new Shipper({ pool, logDir: temp.dir, who: store, policyVersion: () => 'v1', describe: String });
      expect(await shipper.drain(Date.now() + 30_000)).toBe(true);
    };
    try {
      await body(old, pool, upgrade);
    } finally {
      old.close();
      temp.remove();
      await pool.end();
    }
  }

  test('a replica still shipping without the copy (a rolling upgrade) is reported as not verified, not as a break; a late second completion after the upgrade is not an edit', async () => {
    await upgradedReplica('verify-rolling', STORES[1], async (old, pool, upgrade) => {
      const done = old.record(openFacts(1), completion(1));
      await old.ship(pool, 10_000, false);
      const before = await verifyHistory(pool, { key: null });
      expect(breakOf(before)).toBeNull();
      expect(before.stores[0]).toMatchObject({ noCopy: true, rowsBeforeChain: 1, rows: 0 });
      // Upgraded: a second completion of a record completed before the copy began differs from the row's.
      old.complete(done, completion(1, { status: 500 }));
      old.record(openFacts(2), completion(2));
      await upgrade();
      const after = await verifyHistory(pool, { key: null });
      expect(breakOf(after)).toBeNull();
      expect(after.stores[0]).toMatchObject({ noCopy: false, rowsBeforeChain: 1, rows: 1 });
    });
  });

  test('rows shipped before the chain was copied are counted apart; the copy starts from a checkpoint and verifies', async () => {
    await upgradedReplica('verify-upgrade', STORES[0], async (old, pool, upgrade) => {
      for (let n = 0; n < 5; n += 1) old.record(openFacts(n), completion(n));
      const open = old.open(openFacts(5));
      await old.ship(pool, 10_000, false);
      old.complete(open, completion(5));
      for (let n = 6; n < 9; n += 1) old.record(openFacts(n), completion(n));
      await upgrade();
      const result = await verifyHistory(pool, { key: null });
      expect(breakOf(result)).toBeNull();
      expect(result.stores[0].rowsBeforeChain).toBe(6);
      expect(result.stores[0].rows).toBe(3);
      expect(result.stores[0].report.fromCheckpoint).not.toBeNull();
    });
  });
});
