import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import { Pool } from 'pg';
import { buildAdminApp } from '../src/admin/app';
import { accessLine } from '../src/audit/access-log/access-follower';
import { planStep, readStep } from '../src/audit/log/index-step';
import { SegmentLog } from '../src/audit/log/segment-log';
import { applyMigrations, MIGRATIONS_DIR, readMigrations } from '../src/audit/migrate';
import { AUDIT_RECORD_FIELDS, recordToJson } from '../src/audit/query';
import type { AuditReader } from '../src/audit/reader';
import { MAX_TEXT_LENGTH, OPEN_COLUMNS } from '../src/audit/record-params';
import type { AuditOpen, AuditRecordJson } from '../src/audit/record-types';
import { SqliteAuditReader } from '../src/audit/sqlite-reader';
import { applyPgMigrations, PG_MIGRATIONS_DIR } from '../src/fleet/pg-migrate';
import { PgAuditReader } from '../src/fleet/pg-reader';
import { shipBatch, shippedPosition } from '../src/fleet/pg-ship';
import { writeThroughLog } from './helpers/audit-index';
import { acrossWire, completion, openFacts, tempLogDir } from './helpers/audit-log-fixtures';
import { describePg, freshDatabase } from './helpers/postgres';
import { tempAuditFolder } from './helpers/audit-index-fixtures';

/**
 * The record field `sni` (issue 17, SPEC §6 Trust) through the whole audit pipeline, as peer_ip
 * went (issue 16): the log, the SQLite index, the admin API and its exports, the access line, the
 * cluster wire, PostgreSQL; and the migrations on files and databases the previous release wrote.
 */

const NOW = new Date('2025-03-01T12:05:00.000Z');
const NODE = 'node-sni';

/** A ClientHello's name can be anything a client sends: one plain, one a spreadsheet would run. */
const PLAIN_SNI = 'api.github.com';
const HOSTILE_SNI = '=HYPERLINK("x"),evil.example';

function adminOn(reader: AuditReader): FastifyInstance {
  return buildAdminApp({ reader, ready: () => ({ ok: true, detail: {} }), clock: () => NOW });
}

async function getJson<T>(app: FastifyInstance, url: string): Promise<T> {
  const res = await app.inject({ method: 'GET', url });
  expect(res.statusCode).toBe(200);
  return res.json<T>();
}

/** One record of each kind the field can have: checked and open, checked and refused, not checked. */
function sniRecords(): Array<{ open: AuditOpen; sni: string | null }> {
  return [
    { open: openFacts(1, { host: 'api.github.com', sni: PLAIN_SNI }), sni: PLAIN_SNI },
    { open: openFacts(2, { host: 'github.com', decision: 'deny', rule: '(sni)', reason: 'sni names another host', sni: HOSTILE_SNI }), sni: HOSTILE_SNI },
    { open: openFacts(3, { host: 'plain.example', kind: 'http', method: 'GET', scheme: 'http', port: 80, path: '/x' }), sni: null },
  ];
}

/** Every way the admin app hands a record out carries sni, after resolved_ip, as the API shape says. */
async function expectSniThroughAdmin(app: FastifyInstance, ids: number[], expected: Array<string | null>): Promise<void> {
  for (const [i, id] of ids.entries()) {
    const record = await getJson<AuditRecordJson>(app, `/api/requests/${id}`);
    expect(record.sni).toBe(expected[i]);
    expect(Object.keys(record)).toEqual([...AUDIT_RECORD_FIELDS]);
  }
  const page = await getJson<{ items: AuditRecordJson[] }>(app, '/api/requests');
  const keys = Object.keys(page.items[0]);
  expect(keys.indexOf('sni')).toBe(keys.indexOf('resolved_ip') + 1);
  expect(new Map(page.items.map((r) => [r.id, r.sni]))).toEqual(new Map(ids.map((id, i) => [id, expected[i]])));

  const csv = await app.inject({ method: 'GET', url: '/api/requests/export?format=csv' });
  expect(csv.statusCode).toBe(200);
  const lines = csv.body.split('\r\n').filter((line) => line !== '');
  expect(lines[0].split(',')).toEqual([...AUDIT_RECORD_FIELDS]);
  expect(lines[0]).toContain(',resolved_ip,sni,tunnel_id,decision,');
  // Newest first: the plain HTTP record's sni is an empty cell. The hostile name is defused (a
  // leading apostrophe) and quoted (its comma and quotes), as every text cell is.
  expect(lines).toHaveLength(4);
  expect(lines[1]).toContain(',203.0.113.9,,,allow,');
  expect(lines[2]).toContain(`,203.0.113.9,"'=HYPERLINK(""x""),evil.example",,deny,`);
  expect(lines[3]).toContain(`,203.0.113.9,${PLAIN_SNI},,allow,`);

  const ndjson = await app.inject({ method: 'GET', url: '/api/requests/export?format=ndjson' });
  const exported = ndjson.body.trimEnd().split('\n').map((line) => JSON.parse(line) as AuditRecordJson);
  expect(new Map(exported.map((r) => [r.id, r.sni]))).toEqual(new Map(ids.map((id, i) => [id, expected[i]])));
}

describe('the sni record field through the local audit log', () => {
  let t: ReturnType<typeof tempAuditFolder>;
  beforeEach(() => {
    t = tempAuditFolder();
  });
  afterEach(() => t.remove());

  test('written through the log (serve\'s store) and its SQLite index, read back through the admin API, CSV and NDJSON', async () => {
    const records = sniRecords();
    const { written: ids, db } = writeThroughLog(t.dbFile, (store) => {
      const [openId] = store.commitBatch([records[0].open], []).ids as number[];
      const finished = store.commitBatch([], [[openId, completion(1)]], records.slice(1).map((r, i) => [r.open, completion(i + 2, { status: 403 })])).ids as number[];
      return [openId, ...finished];
    });
    const app = adminOn(new SqliteAuditReader(() => db, NODE));
    try {
      const stored = db.prepare('SELECT id, sni FROM requests ORDER BY id').all();
      expect(stored).toEqual(ids.map((id, i) => ({ id, sni: records[i].sni })));
      await expectSniThroughAdmin(app, ids, records.map((r) => r.sni));
    } finally {
      await app.close();
      db.close();
    }
  });

  test('the access line (a completed record from the log) carries sni under its own name', () => {
    const [checked, , plain] = sniRecords();
    const line = JSON.parse(accessLine(recordToJson(7, checked.open, completion(1), NODE), NODE)) as Record<string, unknown>;
    expect(line).toMatchObject({ msg: 'access', id: 7, sni: PLAIN_SNI, resolved_ip: '203.0.113.9' });
    expect(JSON.parse(accessLine(recordToJson(8, plain.open, completion(3), NODE), NODE))).toMatchObject({ id: 8, sni: null });
  });

  test('a long sni is clipped like every text column', () => {
    const { db } = writeThroughLog(t.dbFile, (store) => store.commitBatch([], [], [[openFacts(1, { sni: 'a'.repeat(3 * MAX_TEXT_LENGTH) }), completion(1)]]));
    try {
      expect((db.prepare('SELECT length(sni) FROM requests').pluck().get() as number)).toBe(MAX_TEXT_LENGTH);
    } finally {
      db.close();
    }
  });

  test('migration 005 on a file the previous release wrote: its records read with sni null, new ones carry it', async () => {
    // The previous release: migrations 001-004, and a row with every column it knew.
    const oldDir = path.join(path.dirname(t.dbFile), 'migrations-004');
    fs.mkdirSync(oldDir);
    for (const m of readMigrations(MIGRATIONS_DIR).filter((m) => m.version < '005')) fs.writeFileSync(path.join(oldDir, `${m.version}.sql`), m.sql);
    const old = new Database(t.dbFile);
    expect(applyMigrations(old, { dir: oldDir })).toEqual(['001_audit', '002_admin_queries', '003_index_consumer', '004_peer_ip']);
    // (tunnel_id came later still, with 006.)
    const oldColumns = ['id', ...OPEN_COLUMNS.filter((c) => c !== 'sni' && c !== 'tunnel_id'), 'ended_at_ms', 'status', 'bytes_up', 'bytes_down', 'error'];
    old.prepare(`INSERT INTO requests (${oldColumns.join(', ')}) VALUES (${oldColumns.map(() => '?').join(', ')})`).run(
      1, 1_740_830_400_000, '10.0.8.7', 50001, null, '["ci"]', null, 'connect', 'CONNECT', null, 'old.example', 443, null,
      '203.0.113.9', 'allow', 0, 'ci', 'p.yaml:1', 'matched rule ci', 'sha256:old', 1_740_830_400_500, 200, 1, 2, null,
    );
    expect(old.prepare("SELECT count(*) FROM pragma_table_info('requests') WHERE name = 'sni'").pluck().get()).toBe(0);
    old.close();

    // This release opens it: 005 applies, nothing is lost, and the next record carries sni.
    const { written: newId, db } = writeThroughLog(t.dbFile, (store) => store.commitBatch([], [], [[openFacts(2, { host: 'new.example', sni: 'new.example' }), completion(2)]]).ids[0]);
    const app = adminOn(new SqliteAuditReader(() => db, NODE));
    try {
      expect(db.prepare("SELECT version FROM schema_migrations WHERE version = '005_sni'").pluck().get()).toBe('005_sni');
      expect(newId).toBe(2);
      expect(await getJson<AuditRecordJson>(app, '/api/requests/1')).toMatchObject({ host: 'old.example', sni: null, peer_ip: null, status: 200 });
      expect(await getJson<AuditRecordJson>(app, `/api/requests/${newId}`)).toMatchObject({ host: 'new.example', sni: 'new.example' });
    } finally {
      await app.close();
      db.close();
    }
  });
});

describe('the sni record field on the cluster wire (serve --workers)', () => {
  test('it crosses from a worker to the primary in an open and in a finished record; an open without one crosses without it', () => {
    const open = openFacts(1, { peerIp: '10.1.0.5', sni: PLAIN_SNI });
    const [crossed, finished, without] = acrossWire([
      { type: 'open', open },
      { type: 'finished', open: openFacts(3, { sni: 'x.example' }), completion: completion(3) },
      { type: 'open', open: openFacts(2) },
    ]);
    expect(crossed).toEqual({ type: 'open', id: 0, open });
    expect(finished.type === 'finished' ? finished.open.sni : 'not finished').toBe('x.example');
    expect(without.type === 'open' ? without.open.sni ?? null : 'not open').toBeNull();
  });
});

describePg('the sni record field in PostgreSQL', () => {
  let log: ReturnType<typeof tempLogDir>;
  let pools: Pool[] = [];
  beforeEach(() => {
    log = tempLogDir();
  });
  afterEach(async () => {
    for (const pool of pools) await pool.end();
    pools = [];
    log.remove();
  });

  function pool(url: string): Pool {
    const made = new Pool({ connectionString: url, max: 3 });
    pools.push(made);
    return made;
  }

  async function shipLog(into: Pool, storeId: string): Promise<void> {
    for (;;) {
      const from = await shippedPosition(into, storeId);
      const read = readStep(log.dir, from, 10_000);
      const outcome = await shipBatch(into, { storeId, node: NODE }, { from, next: read.next, plan: planStep(read.entries), entries: read.entries.length, policyVersion: 'v1' });
      expect(outcome.kind).toBe('shipped');
      if (read.entries.length === 0) return;
    }
  }

  test('shipped from the log (the jsonb batch) and read back through the admin API, CSV and NDJSON', async () => {
    const history = pool(freshDatabase('sniship'));
    await applyPgMigrations(history);
    const records = sniRecords();
    const writer = SegmentLog.open({ dir: log.dir, fsync: false, firstId: 1 });
    const localIds = writer.appendBatch([
      { type: 'open', open: records[0].open },
      ...records.slice(1).map((r, i) => ({ type: 'finished' as const, open: r.open, completion: completion(i + 2, { status: 403 }) })),
    ]);
    writer.appendBatch([{ type: 'complete', id: localIds[0], completion: completion(1) }]);
    writer.close();
    await shipLog(history, '3b0d6a1e-7c55-4d8e-9f0a-5e2b1c4d6f70');

    const rows = await history.query<{ id: string; sni: string | null }>('SELECT id, sni FROM requests ORDER BY local_id');
    expect(rows.rows.map((r) => r.sni)).toEqual(records.map((r) => r.sni));
    const app = adminOn(new PgAuditReader(history));
    try {
      await expectSniThroughAdmin(app, rows.rows.map((r) => Number(r.id)), records.map((r) => r.sni));
    } finally {
      await app.close();
    }
  });

  test('migration 005 on a history the previous release shipped: its rows read with sni null, then new ones ship with it', async () => {
    const oldDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-pg-004-'));
    try {
      for (const m of readMigrations(PG_MIGRATIONS_DIR).filter((m) => m.version < '005')) fs.writeFileSync(path.join(oldDir, `${m.version}.sql`), m.sql);
      const history = pool(freshDatabase('snimigrate'));
      expect(await applyPgMigrations(history, { dir: oldDir })).toEqual(['001_fleet', '002_reader', '003_rollups', '004_peer_ip']);
      const storeId = '9a4e2c71-0b3d-4f6a-8e15-2d7c9b0a1f36';
      // A row as the previous release's shipper wrote it: every column it knew, no sni.
      await history.query('INSERT INTO audit_stores (store_id, node, first_contact_ms, last_contact_ms) VALUES ($1, $2, 1740830400000, 1740830400000)', [storeId, NODE]);
      await history.query(
        `INSERT INTO requests (store_id, local_id, node, started_at_ms, ended_at_ms, client_ip, client_port, peer_ip, clients, kind,
           method, host, port, resolved_ip, decision, reason, status)
         VALUES ($1, 1, $2, 1740830400000, 1740830400500, '10.0.8.7', 50001, '10.1.0.5', '{ci}', 'connect', 'CONNECT', 'old.example',
           443, '203.0.113.9', 'allow', 'matched rule ci', 200)`,
        [storeId, NODE],
      );

      expect(await applyPgMigrations(history)).toEqual(readMigrations(PG_MIGRATIONS_DIR).map((m) => m.version).filter((v) => v >= '005'));
      const reader = new PgAuditReader(history);
      const [oldRow] = (await history.query<{ id: string }>('SELECT id FROM requests')).rows;
      expect(await reader.getRequest(Number(oldRow.id))).toMatchObject({ host: 'old.example', peer_ip: '10.1.0.5', sni: null });

      const writer = SegmentLog.open({ dir: log.dir, fsync: false, firstId: 2 });
      writer.appendBatch([{ type: 'finished', open: openFacts(2, { host: 'new.example', sni: 'new.example' }), completion: completion(2) }]);
      writer.close();
      await shipLog(history, '5c8f1d20-4a6b-4e93-b7d1-0f2e3a4b5c6d');
      const fresh = await history.query<{ id: string }>("SELECT id FROM requests WHERE host = 'new.example'");
      expect(await reader.getRequest(Number(fresh.rows[0].id))).toMatchObject({ host: 'new.example', sni: 'new.example' });
    } finally {
      fs.rmSync(oldDir, { recursive: true, force: true });
    }
  });
});
