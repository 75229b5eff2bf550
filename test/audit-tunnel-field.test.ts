import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import { Pool } from 'pg';
import { buildAdminApp } from '../src/admin/app';
import { accessLine } from '../src/audit/access-log/access-follower';
import { LogAuditStore } from '../src/audit/log-store';
import { planStep, readStep } from '../src/audit/log/index-step';
import { SegmentLog } from '../src/audit/log/segment-log';
import { applyMigrations, MIGRATIONS_DIR, readMigrations } from '../src/audit/migrate';
import { AUDIT_RECORD_FIELDS, recordToJson } from '../src/audit/query';
import type { AuditReader } from '../src/audit/reader';
import { OPEN_COLUMNS } from '../src/audit/record-params';
import type { AuditCompletion, AuditOpen, AuditRecordJson } from '../src/audit/record-types';
import { SqliteAuditReader } from '../src/audit/sqlite-reader';
import { packBatch, packOpen, unpackBatch, unpackOpen } from '../src/cluster/wire';
import { applyPgMigrations, PG_MIGRATIONS_DIR } from '../src/fleet/pg-migrate';
import { PgAuditReader } from '../src/fleet/pg-reader';
import { shipBatch, shippedPosition } from '../src/fleet/pg-ship';
import { Exchange } from '../src/proxy/exchange';
import { catchUpIndex } from './helpers/audit-index';
import { completion, openFacts, tempLogDir } from './helpers/audit-log-fixtures';
import { describePg, freshDatabase } from './helpers/postgres';

/**
 * The record kind `https` and its field `tunnel_id` (issue 18, SPEC §6 "TLS inspection") through
 * the whole audit pipeline, as sni went (test/audit-sni-field.test.ts): the log, the SQLite index,
 * the admin API with its `tunnel_id` filter and exports, the access line, the cluster wire,
 * PostgreSQL; and the migrations on files and databases the previous release wrote. The proxy
 * does not write such records yet, so they are written through the stores as the proxy would.
 */

const NOW = new Date('2025-03-01T12:05:00.000Z');
const NODE = 'node-tunnel';

function tempDir(prefix: string): { dir: string; dbFile: string; remove: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, dbFile: path.join(dir, 'audit.db'), remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

function adminOn(reader: AuditReader): FastifyInstance {
  return buildAdminApp({ reader, ready: () => ({ ok: true, detail: {} }), clock: () => NOW });
}

async function getJson<T>(app: FastifyInstance, url: string): Promise<T> {
  const res = await app.inject({ method: 'GET', url });
  expect(res.statusCode).toBe(200);
  return res.json<T>();
}

async function pageIds(app: FastifyInstance, query: string): Promise<number[]> {
  return (await getJson<{ items: AuditRecordJson[] }>(app, `/api/requests?${query}`)).items.map((r) => r.id);
}

/** The tunnel's record, as the proxy opens it for a CONNECT to github.com with `tls: inspect`. */
function tunnelOpen(n: number, overrides: Partial<AuditOpen> = {}): AuditOpen {
  return openFacts(n, { host: 'github.com', sni: 'github.com', rule: 'github-org', ...overrides });
}

/** A request read inside that tunnel: decided on its own, scheme https, its path recorded. */
function innerOpen(n: number, tunnelId: number, overrides: Partial<AuditOpen> = {}): AuditOpen {
  return openFacts(n, {
    kind: 'https', method: 'GET', scheme: 'https', host: 'github.com', path: '/our-org/app', rule: 'github-org', tunnelId, ...overrides,
  });
}

const DENIED_INNER: Partial<AuditOpen> = {
  method: 'POST', path: '/gists', decision: 'deny', rule: '(default)', reason: 'no rule matched; default deny',
};

/** What a store holds once a tunnel and its requests are written: ids the API must show. */
interface Written {
  tunnel: number;
  /** Inside the tunnel, oldest first: an allowed GET, then a refused POST. */
  inner: number[];
  plain: number;
}

/**
 * Everything the API hands out, on either engine: the field in its place, the kind, the filter
 * (alone, with another filter, across pages, for a record with nothing inside), the exports.
 */
async function expectTunnelThroughAdmin(app: FastifyInstance, w: Written): Promise<void> {
  const [get, post] = w.inner;
  const record = await getJson<AuditRecordJson>(app, `/api/requests/${get}`);
  expect(Object.keys(record)).toEqual([...AUDIT_RECORD_FIELDS]);
  expect(record).toMatchObject({ kind: 'https', scheme: 'https', method: 'GET', path: '/our-org/app', tunnel_id: w.tunnel });
  expect(await getJson<AuditRecordJson>(app, `/api/requests/${post}`)).toMatchObject({ kind: 'https', tunnel_id: w.tunnel, decision: 'deny' });
  expect(await getJson<AuditRecordJson>(app, `/api/requests/${w.tunnel}`)).toMatchObject({ kind: 'connect', tunnel_id: null });
  expect(await getJson<AuditRecordJson>(app, `/api/requests/${w.plain}`)).toMatchObject({ kind: 'http', tunnel_id: null });

  const page = await getJson<{ items: AuditRecordJson[] }>(app, '/api/requests');
  const keys = Object.keys(page.items[0]);
  expect(keys.indexOf('tunnel_id')).toBe(keys.indexOf('sni') + 1);

  // The tunnel's page: the requests inside it, newest first; nothing else.
  expect(await pageIds(app, `tunnel_id=${w.tunnel}`)).toEqual([post, get]);
  expect(await pageIds(app, `tunnel_id=${w.tunnel}&decision=deny`)).toEqual([post]);
  expect(await pageIds(app, `tunnel_id=${w.tunnel}&host=other.example`)).toEqual([]);
  const first = await getJson<{ items: AuditRecordJson[]; next_cursor: string }>(app, `/api/requests?tunnel_id=${w.tunnel}&limit=1`);
  expect(first.items.map((r) => r.id)).toEqual([post]);
  expect(await pageIds(app, `tunnel_id=${w.tunnel}&limit=1&cursor=${first.next_cursor}`)).toEqual([get]);
  expect(await pageIds(app, `tunnel_id=${w.plain}`)).toEqual([]);
  expect(await pageIds(app, `tunnel_id=${get}`)).toEqual([]);
  expect(await pageIds(app, 'tunnel_id=9007199254740991')).toEqual([]);

  const csv = await app.inject({ method: 'GET', url: '/api/requests/export?format=csv' });
  expect(csv.statusCode).toBe(200);
  const lines = csv.body.split('\r\n').filter((line) => line !== '');
  expect(lines[0].split(',')).toEqual([...AUDIT_RECORD_FIELDS]);
  expect(lines[0]).toContain(',sni,tunnel_id,decision,');
  const row = (id: number): string => lines.find((line) => line.startsWith(`${id},`)) ?? '';
  expect(row(get)).toContain(`,https,GET,https,github.com,443,/our-org/app,203.0.113.9,,${w.tunnel},allow,`);
  expect(row(w.tunnel)).toContain(',connect,CONNECT,,github.com,443,,203.0.113.9,github.com,,allow,');
  expect(row(w.plain)).toContain(',203.0.113.9,,,allow,');

  const ndjson = await app.inject({ method: 'GET', url: `/api/requests/export?format=ndjson&tunnel_id=${w.tunnel}` });
  const exported = ndjson.body.trimEnd().split('\n').map((line) => JSON.parse(line) as AuditRecordJson);
  expect(exported.map((r) => [r.id, r.kind, r.tunnel_id])).toEqual([[post, 'https', w.tunnel], [get, 'https', w.tunnel]]);
  const csvInside = await app.inject({ method: 'GET', url: `/api/requests/export?format=csv&tunnel_id=${w.tunnel}` });
  expect(csvInside.body.split('\r\n').filter((line) => line !== '').slice(1).map((line) => Number(line.split(',')[0]))).toEqual([post, get]);
}

describe('the tunnel_id filter refuses what is not a record id', () => {
  test.each([['0'], ['-1'], ['abc'], ['1e3'], ['01'], ['12345678901234567'], ['9007199254740993'], ['']])('tunnel_id=%s is a 400', async (text) => {
    const t = tempDir('tollgate-tunnel-bad-');
    const db = new Database(t.dbFile);
    applyMigrations(db);
    const app = adminOn(new SqliteAuditReader(() => db, NODE));
    try {
      for (const url of [`/api/requests?tunnel_id=${text}`, `/api/requests/export?format=csv&tunnel_id=${text}`]) {
        const res = await app.inject({ method: 'GET', url });
        expect(res.statusCode).toBe(400);
        expect(res.json<{ error: string }>().error).toMatch(/tunnel_id/);
      }
    } finally {
      await app.close();
      db.close();
      t.remove();
    }
  });
});

describe('the tunnel_id record field through the local audit log', () => {
  let t: ReturnType<typeof tempDir>;
  beforeEach(() => {
    t = tempDir('tollgate-tunnel-');
  });
  afterEach(() => t.remove());

  /** As the proxy writes them: the tunnel opened, its requests recorded, then the tunnel ended. */
  function writeThroughStore(store: LogAuditStore): Written {
    const [tunnel] = store.commitBatch([tunnelOpen(1)], []).ids as number[];
    const inner = store.commitBatch([], [], [
      [innerOpen(2, tunnel), completion(2)],
      [innerOpen(3, tunnel, DENIED_INNER), completion(3, { status: 403 })],
    ]).ids as number[];
    const [plain] = store.commitBatch([], [[tunnel, completion(1)]], [
      [openFacts(4, { kind: 'http', method: 'GET', scheme: 'http', port: 80, path: '/x', host: 'plain.example', sni: null }), completion(4)],
    ]).ids as number[];
    return { tunnel, inner, plain };
  }

  test('written through the log (serve\'s store) and its SQLite index, read back through the admin API, its filter, CSV and NDJSON', async () => {
    const store = new LogAuditStore(t.dbFile, {});
    let written: Written;
    try {
      written = writeThroughStore(store);
    } finally {
      store.close();
    }
    catchUpIndex(t.dbFile);
    const db = new Database(t.dbFile, { readonly: true });
    const app = adminOn(new SqliteAuditReader(() => db, NODE));
    try {
      expect(db.prepare('SELECT id, kind, tunnel_id FROM requests ORDER BY id').all()).toEqual([
        { id: written.tunnel, kind: 'connect', tunnel_id: null },
        ...written.inner.map((id) => ({ id, kind: 'https', tunnel_id: written.tunnel })),
        { id: written.plain, kind: 'http', tunnel_id: null },
      ]);
      await expectTunnelThroughAdmin(app, written);
      // The filter's walk reads the partial index it was made for.
      const plan = db.prepare(`EXPLAIN QUERY PLAN SELECT r.id FROM requests AS r INDEXED BY requests_tunnel_id
        WHERE r.tunnel_id = ? AND r.id < ? AND r.id >= ? ORDER BY id DESC LIMIT 10`).all(written.tunnel, 100, 2) as Array<{ detail: string }>;
      expect(plan.map((p) => p.detail).join('\n')).toMatch(/USING (COVERING )?INDEX requests_tunnel_id/);
    } finally {
      await app.close();
      db.close();
    }
  });

  test('the proxy\'s Exchange carries tunnelId into the record it opens (null unless set)', () => {
    const exchange = new Exchange('https', 'GET', { ip: '10.0.8.7', port: 50001, peerIp: null }, null, NOW);
    expect(exchange.tunnelId).toBeNull();
    expect(exchange.toOpen()).toMatchObject({ kind: 'https', tunnelId: null });
    exchange.tunnelId = 41;
    expect(exchange.toOpen()).toMatchObject({ kind: 'https', tunnelId: 41 });
    expect(new Exchange('connect', 'CONNECT', { ip: '10.0.8.7', port: 50002, peerIp: null }, 'github.com:443', NOW).toOpen().tunnelId).toBeNull();
  });

  test('the access line (a completed record from the log) carries kind https and tunnel_id under their own names', () => {
    const line = JSON.parse(accessLine(recordToJson(8, innerOpen(8, 7), completion(8), NODE), NODE)) as Record<string, unknown>;
    expect(line).toMatchObject({ msg: 'access', id: 8, kind: 'https', scheme: 'https', path: '/our-org/app', tunnel_id: 7 });
    expect(JSON.parse(accessLine(recordToJson(7, tunnelOpen(7), completion(7), NODE), NODE))).toMatchObject({ id: 7, kind: 'connect', tunnel_id: null });
  });

  test('migration 006 on a file the previous release wrote: rows, ids, the id sequence, indexes and the delete trigger are kept; kind https is accepted, others still refused', () => {
    // The previous release: migrations 001-005, three records, then four newer ones that
    // retention deleted (their ids must never come back).
    const oldDir = path.join(t.dir, 'migrations-005');
    fs.mkdirSync(oldDir);
    for (const m of readMigrations(MIGRATIONS_DIR).filter((m) => m.version < '006')) fs.writeFileSync(path.join(oldDir, `${m.version}.sql`), m.sql);
    const old = new Database(t.dbFile);
    expect(applyMigrations(old, { dir: oldDir })).toEqual(['001_audit', '002_admin_queries', '003_index_consumer', '004_peer_ip', '005_sni']);
    const oldColumns = ['id', ...OPEN_COLUMNS.filter((c) => c !== 'tunnel_id'), 'ended_at_ms', 'status', 'bytes_up', 'bytes_down', 'error'];
    const insert = old.prepare(`INSERT INTO requests (${oldColumns.join(', ')}) VALUES (${oldColumns.map(() => '?').join(', ')})`);
    for (let id = 1; id <= 7; id += 1) {
      insert.run(
        id, 1_740_830_400_000 + id, '10.0.8.7', 50000 + id, id === 2 ? '10.1.0.5' : null, '["ci"]', null, id === 3 ? 'http' : 'connect',
        'CONNECT', null, `old${id}.example`, 443, null, '203.0.113.9', id === 1 ? 'old1.example' : null, id === 2 ? 'deny' : 'allow',
        0, 'ci', 'p.yaml:1', 'matched rule ci', 'sha256:old', 1_740_830_400_500 + id, 200, id, 2 * id, null,
      );
    }
    old.prepare('INSERT INTO request_minutes (minute, first_id, last_id, allowed, denied, would_deny) VALUES (?, 1, 7, 6, 1, 0)').run(Math.floor(1_740_830_400_000 / 60000));
    old.prepare('DELETE FROM requests WHERE id > 3').run();
    const before = old.prepare('SELECT * FROM requests ORDER BY id').all();
    const indexesBefore = old.prepare("SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND tbl_name = 'requests' ORDER BY name").all();
    expect(old.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'requests'").pluck().get()).toBe(7);
    old.close();

    const db = new Database(t.dbFile);
    try {
      expect(applyMigrations(db)).toEqual(['006_tunnel_id']);
      // Every row as it was, with tunnel_id null; the id sequence where it was.
      expect(db.prepare(`SELECT ${Object.keys(before[0] as object).join(', ')} FROM requests ORDER BY id`).all()).toEqual(before);
      expect(db.prepare('SELECT count(*) FROM requests WHERE tunnel_id IS NOT NULL').pluck().get()).toBe(0);
      expect(db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'requests'").pluck().get()).toBe(7);
      expect(db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'requests_006'").pluck().get()).toBe(0);
      expect(db.prepare("SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND tbl_name = 'requests' AND name <> 'requests_tunnel_id' ORDER BY name").all()).toEqual(indexesBefore);
      expect(db.prepare('PRAGMA integrity_check').pluck().get()).toBe('ok');
      expect(db.prepare('PRAGMA foreign_key_check').all()).toEqual([]);

      // The next id is above the deleted ones; kind https and its tunnel are accepted.
      const next = db.prepare(`INSERT INTO requests (started_at_ms, client_ip, client_port, kind, method, scheme, host, port, path, decision, reason, tunnel_id)
        VALUES (1740830401000, '10.0.8.7', 50010, 'https', 'GET', 'https', 'old1.example', 443, '/a', 'allow', 'matched rule ci', 1)`).run();
      expect(Number(next.lastInsertRowid)).toBe(8);
      expect(() => db.prepare(`INSERT INTO requests (started_at_ms, client_ip, client_port, kind, decision, reason)
        VALUES (1740830401000, '10.0.8.7', 50011, 'ftp', 'allow', 'x')`).run()).toThrow(/CHECK constraint failed/);
      // 002's delete trigger still keeps the minute counts (retention relies on it): 6 allowed and
      // 1 denied, less the 4 allowed the previous release deleted, less the denied id 2 now.
      expect(db.prepare('SELECT allowed, denied FROM request_minutes').get()).toEqual({ allowed: 2, denied: 1 });
      db.prepare('DELETE FROM requests WHERE id = 2').run();
      expect(db.prepare('SELECT allowed, denied FROM request_minutes').get()).toEqual({ allowed: 2, denied: 0 });
    } finally {
      db.close();
    }
  });

  test('migration 006 through serve\'s store: the previous release\'s records read with tunnel_id null, new ones carry it', async () => {
    const oldDir = path.join(t.dir, 'migrations-005');
    fs.mkdirSync(oldDir);
    for (const m of readMigrations(MIGRATIONS_DIR).filter((m) => m.version < '006')) fs.writeFileSync(path.join(oldDir, `${m.version}.sql`), m.sql);
    const old = new Database(t.dbFile);
    applyMigrations(old, { dir: oldDir });
    const oldColumns = ['id', ...OPEN_COLUMNS.filter((c) => c !== 'tunnel_id'), 'ended_at_ms', 'status', 'bytes_up', 'bytes_down', 'error'];
    old.prepare(`INSERT INTO requests (${oldColumns.join(', ')}) VALUES (${oldColumns.map(() => '?').join(', ')})`).run(
      1, 1_740_830_400_000, '10.0.8.7', 50001, null, '["ci"]', null, 'connect', 'CONNECT', null, 'old.example', 443, null,
      '203.0.113.9', 'old.example', 'allow', 0, 'ci', 'p.yaml:1', 'matched rule ci', 'sha256:old', 1_740_830_400_500, 200, 1, 2, null,
    );
    old.close();

    const store = new LogAuditStore(t.dbFile, {});
    let written: Written;
    try {
      written = writeThroughStore(store);
    } finally {
      store.close();
    }
    catchUpIndex(t.dbFile);
    const db = new Database(t.dbFile, { readonly: true });
    const app = adminOn(new SqliteAuditReader(() => db, NODE));
    try {
      expect(db.prepare("SELECT version FROM schema_migrations WHERE version = '006_tunnel_id'").pluck().get()).toBe('006_tunnel_id');
      expect(written.tunnel).toBe(2);
      expect(await getJson<AuditRecordJson>(app, '/api/requests/1')).toMatchObject({ host: 'old.example', kind: 'connect', sni: 'old.example', tunnel_id: null });
      await expectTunnelThroughAdmin(app, written);
    } finally {
      await app.close();
      db.close();
    }
  });
});

describe('the tunnel_id record field on the cluster wire (serve --workers)', () => {
  test('it is the last element of a packed open and crosses both ways, with kind https; an open without one crosses as null', () => {
    const open = innerOpen(1, 77, { peerIp: '10.1.0.5', sni: null });
    const packed = packOpen(open);
    // Appended: every earlier index keeps the meaning it had before the field.
    expect(packed).toHaveLength(21);
    expect(packed[20]).toBe(77);
    expect(packed[19]).toBeNull();
    expect(packed[6]).toBe('https');
    const crossed = JSON.parse(JSON.stringify(packed)) as typeof packed;
    expect(unpackOpen(crossed)).toEqual(open);
    expect(packOpen(openFacts(2))[20]).toBeNull();
    expect(unpackOpen(packOpen(openFacts(2))).tunnelId).toBeNull();
    const batch = unpackBatch(JSON.parse(JSON.stringify(packBatch([open], [], [[innerOpen(3, 78), completion(3)]]))));
    expect(batch.opens[0]).toMatchObject({ kind: 'https', tunnelId: 77 });
    expect(batch.finished[0][0]).toMatchObject({ kind: 'https', tunnelId: 78 });
  });
});

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

      expect(await applyPgMigrations(history)).toEqual(['006_tunnel_id']);
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
