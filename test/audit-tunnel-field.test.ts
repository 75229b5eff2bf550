import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { accessLine } from '../src/audit/access-log/access-follower';
import { LogAuditStore } from '../src/audit/log-store';
import { applyMigrations, MIGRATIONS_DIR, readMigrations } from '../src/audit/migrate';
import { recordToJson } from '../src/audit/query';
import { OPEN_COLUMNS } from '../src/audit/record-params';
import type { AuditRecordJson } from '../src/audit/record-types';
import { SqliteAuditReader } from '../src/audit/sqlite-reader';
import { Exchange } from '../src/proxy/exchange';
import { writeThroughLog } from './helpers/audit-index';
import { acrossWire, completion, openFacts } from './helpers/audit-log-fixtures';
import {
  adminOn, DENIED_INNER, expectTunnelThroughAdmin, getJson, innerOpen, NODE, NOW, tunnelOpen,
} from './helpers/tunnel-records';
import type { Written } from './helpers/tunnel-records';

/**
 * The record kind `https` and its field `tunnel_id` (issue 18, SPEC §6 "TLS inspection") through
 * the whole audit pipeline, as sni went (test/audit-sni-field.test.ts): the log, the SQLite index,
 * the admin API with its `tunnel_id` filter and exports, the access line, the cluster wire, and
 * migration 006 on a file the previous release wrote (PostgreSQL: audit-tunnel-field-pg.test.ts).
 * The proxy does not write such records yet, so they are written through the store as it would.
 */

function tempDir(prefix: string): { dir: string; dbFile: string; remove: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, dbFile: path.join(dir, 'audit.db'), remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
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
    const { written, db } = writeThroughLog(t.dbFile, writeThroughStore);
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

    const { written, db } = writeThroughLog(t.dbFile, writeThroughStore);
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
  test('it crosses from a worker to the primary with kind https, in an open and a finished record; an open without one crosses without it', () => {
    const open = innerOpen(1, 77, { peerIp: '10.1.0.5', sni: null });
    const [crossed, finished, without] = acrossWire([
      { type: 'open', open },
      { type: 'finished', open: innerOpen(3, 78), completion: completion(3) },
      { type: 'open', open: openFacts(2) },
    ]);
    expect(crossed).toEqual({ type: 'open', id: 0, open: { ...open, sni: undefined } });
    expect(finished.type === 'finished' ? finished.open : null).toMatchObject({ kind: 'https', tunnelId: 78 });
    expect(without.type === 'open' ? without.open.tunnelId ?? null : 'not open').toBeNull();
  });
});
