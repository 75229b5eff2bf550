import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'pg';
import { parseRequestFilters } from '../src/audit/filters';
import type { StatsWindow } from '../src/audit/stats';
import { applyPgMigrations, PG_MIGRATIONS_DIR } from '../src/fleet/pg-migrate';
import { readMigrations } from '../src/audit/migrate';
import { PgAuditReader } from '../src/fleet/pg-reader';
import { completion, openFacts, tempLogDir } from './helpers/audit-log-fixtures';
import { ShippingLog } from './helpers/pg-history';
import { describePg, freshDatabase } from './helpers/postgres';

/**
 * Migration 003 (minute id ranges, hourly rollups) on a shared history that was shipped before it:
 * the backfill must give what the shipper would have kept had 003 been there from the start.
 */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const NOW = new Date('2025-03-01T12:00:00.000Z');
const T = NOW.getTime();

/** Rows of a table as JSON, ordered, for comparing two databases. */
async function rows(pool: Pool, sql: string): Promise<unknown[]> {
  return (await pool.query(sql)).rows;
}

const SIDE_TABLES = [
  'SELECT minute, first_id, last_id, allowed, denied, would_deny FROM request_minutes ORDER BY minute',
  'SELECT * FROM request_hour_hosts ORDER BY hour, host',
  'SELECT * FROM request_hour_clients ORDER BY hour, client_ip',
  'SELECT * FROM request_hour_groups ORDER BY hour, client_group',
];

describePg('migration 003 on a history shipped before it', () => {
  let logs: Array<ReturnType<typeof tempLogDir>> = [];
  let pools: Pool[] = [];
  afterEach(async () => {
    for (const pool of pools) await pool.end();
    for (const log of logs) log.remove();
    pools = [];
    logs = [];
  });

  function pool(url: string): Pool {
    const made = new Pool({ connectionString: url, max: 3 });
    pools.push(made);
    return made;
  }

  /** 1,500 records over 3 days from two replicas, shipped out of start order (a late backlog). */
  async function shippedHistory(into: Pool): Promise<void> {
    for (const [r, node] of ['replica-a', 'replica-b'].entries()) {
      const log = tempLogDir();
      logs.push(log);
      const replica = new ShippingLog(log.dir, { storeId: crypto.randomUUID(), node });
      for (let i = 0; i < 750; i += 1) {
        const n = r * 1000 + i;
        // replica-b's records are its backlog: they started as early as replica-a's but ship after them.
        const at = T - 3 * DAY + Math.floor((i / 750) * 3 * DAY) + ((n * 7919) % (40 * MINUTE));
        replica.record(
          openFacts(n, {
            startedAt: new Date(at), host: n % 17 === 0 ? null : `h${n % 9}.example`, clientIp: `10.0.${n % 3}.${n % 5}`,
            clients: [['ci'], ['ci', 'build'], [], ['office']][n % 4], decision: n % 6 === 0 ? 'deny' : 'allow', wouldDeny: n % 6 === 1 && n % 5 === 0,
          }),
          completion(n, { endedAt: new Date(at + 10) }),
        );
      }
      await replica.ship(into, 97);
      replica.close();
    }
  }

  test('a history shipped with 001 and 002 only, then 003 applied, has the side tables and stats the shipper keeps', async () => {
    // `kept`: 003 from the start, the shipper keeps the rollups as it ships.
    const kept = pool(freshDatabase('rollkept'));
    await applyPgMigrations(kept);
    await shippedHistory(kept);

    // `old`: the same rows as a 001+002 shipper left them (request_minutes without id ranges).
    const oldDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-pg-0012-'));
    try {
      for (const name of ['001_fleet.sql', '002_reader.sql']) fs.copyFileSync(path.join(PG_MIGRATIONS_DIR, name), path.join(oldDir, name));
      const old = pool(freshDatabase('rollold'));
      expect(await applyPgMigrations(old, { dir: oldDir })).toEqual(['001_fleet', '002_reader']);
      for (const table of ['audit_stores', 'requests', 'request_minutes', 'first_seen_hosts', 'first_seen_client_hosts']) {
        const data = await kept.query<{ j: unknown }>(`SELECT coalesce(json_agg(t), '[]') AS j FROM ${table} AS t`);
        await old.query(
          `INSERT INTO ${table} ${table === 'requests' ? 'OVERRIDING SYSTEM VALUE' : ''} SELECT * FROM json_populate_recordset(NULL::${table}, $1)`,
          [JSON.stringify(data.rows[0].j)],
        );
      }
      await old.query("SELECT setval(pg_get_serial_sequence('requests', 'id'), (SELECT max(id) FROM requests))");
      expect(await rows(old, "SELECT column_name FROM information_schema.columns WHERE table_name = 'request_minutes' AND column_name = 'first_id'")).toEqual([]);

      expect(await applyPgMigrations(old)).toEqual(readMigrations(PG_MIGRATIONS_DIR).map((m) => m.version).filter((v) => v >= '003'));
      for (const sql of SIDE_TABLES) expect(await rows(old, sql)).toEqual(await rows(kept, sql));

      // The minute id ranges are the records' own (the backlog's minutes hold ids of both replicas).
      const ranges = await rows(old, `SELECT m.minute FROM request_minutes m JOIN (SELECT started_at_ms / 60000 AS minute, min(id) AS lo, max(id) AS hi
        FROM requests GROUP BY 1) r USING (minute) WHERE m.first_id <> r.lo OR m.last_id <> r.hi`);
      expect(ranges).toEqual([]);

      const windows: StatsWindow[] = [
        { sinceMs: T - 3 * DAY, untilMs: T },
        { sinceMs: T - 2 * DAY - 5 * HOUR - 17 * MINUTE - 250, untilMs: T - 20 * HOUR - 3 * MINUTE - 30_001 },
        { sinceMs: T - 30 * HOUR - 10 * MINUTE, untilMs: T - 30 * HOUR + 50 * MINUTE },
      ];
      const [readOld, readKept] = [new PgAuditReader(old), new PgAuditReader(kept)];
      for (const window of windows) {
        const stats = await readOld.stats(window, 50);
        expect(stats.total).toBeGreaterThan(0);
        expect(stats).toEqual(await readKept.stats(window, 50));
      }
      // A time window's pages on the migrated history: the same records.
      const filters = parseRequestFilters({ since: new Date(T - 2 * DAY + 7 * MINUTE + 30_000).toISOString(), until: new Date(T - DAY - 3 * HOUR + 1).toISOString(), decision: 'deny' }, NOW);
      const page = async (reader: PgAuditReader) => (await reader.listRequests({ limit: 1000, filters })).items.map((r) => r.id);
      const ids = await page(readOld);
      expect(ids.length).toBeGreaterThan(10);
      expect(ids).toEqual(await page(readKept));

      // And the migrated history ships on: a late record of an old minute widens its range.
      const log = tempLogDir();
      logs.push(log);
      const late = new ShippingLog(log.dir, { storeId: crypto.randomUUID(), node: 'replica-c' });
      const at = T - 3 * DAY + 11 * MINUTE;
      late.record(openFacts(1, { startedAt: new Date(at) }), completion(1));
      await late.ship(old);
      late.close();
      const minute = await old.query<{ last_id: string; newest: string }>(
        'SELECT last_id, (SELECT max(id) FROM requests) AS newest FROM request_minutes WHERE minute = $1', [Math.floor(at / MINUTE)]);
      expect(minute.rows[0].last_id).toBe(minute.rows[0].newest);
    } finally {
      fs.rmSync(oldDir, { recursive: true, force: true });
    }
  });

  test("a window's edge minutes: records shipped first into its first minute and last into its last are on its pages", async () => {
    const history = pool(freshDatabase('rolledges'));
    await applyPgMigrations(history);
    const log = tempLogDir();
    logs.push(log);
    const replica = new ShippingLog(log.dir, { storeId: crypto.randomUUID(), node: 'replica-a' });
    const since = T - 5 * HOUR + 20 * MINUTE + 30_000;
    const until = T - 2 * HOUR + 7 * MINUTE + 45_500;
    const at = (ms: number, n: number): number => replica.record(openFacts(n, { startedAt: new Date(ms) }), completion(n));
    // Shipped first: the lowest ids, in and just before the first minute.
    const first = [at(since, 1), at(since + 29_999, 2)];
    at(since - 1, 3);
    await replica.ship(history);
    const middle: number[] = [];
    for (let ms = since + MINUTE; ms < until - MINUTE; ms += 7 * MINUTE) middle.push(at(ms, 10 + middle.length));
    // The last instant of the head hour and the first of the tail hour: edge records, not rollups.
    middle.push(at(T - 4 * HOUR - 1, 8), at(T - 2 * HOUR, 9));
    await replica.ship(history);
    // Shipped last: the highest ids, in and just after the last minute.
    at(until, 4);
    const last = [at(until - 45_500, 5), at(until - 1, 6)];
    at(until + 1_000, 7);
    await replica.ship(history);
    const filters = parseRequestFilters({ since: new Date(since).toISOString(), until: new Date(until).toISOString() }, NOW);
    const page = await new PgAuditReader(history).listRequests({ limit: 1000, filters });
    const local = new Map((await history.query<{ id: string; local_id: string }>('SELECT id, local_id FROM requests')).rows.map((r) => [Number(r.id), Number(r.local_id)]));
    expect(page.items.map((r) => local.get(r.id)).sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual([...first, ...middle, ...last].sort((a, b) => a - b));
    // The same edges for the stats: the edge hours are read record by record.
    const stats = await new PgAuditReader(history).stats({ sinceMs: since, untilMs: until }, 10);
    expect(stats.total).toBe(first.length + middle.length + last.length);
    expect(stats.top_clients).toEqual([{ client: '10.0.8.7', count: stats.total }]);
    expect(stats.top_client_groups).toEqual([{ client: 'ci-runners', count: stats.total }]);
    replica.close();
  });

  test('roles that keep request_minutes get the same privileges on the rollups', async () => {
    const url = freshDatabase('rollgrants');
    const owner = pool(url);
    const oldDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-pg-0012-'));
    const role = `rollup_shipper_${crypto.randomBytes(4).toString('hex')}`;
    const reader = `rollup_reader_${crypto.randomBytes(4).toString('hex')}`;
    try {
      for (const name of ['001_fleet.sql', '002_reader.sql']) fs.copyFileSync(path.join(PG_MIGRATIONS_DIR, name), path.join(oldDir, name));
      await applyPgMigrations(owner, { dir: oldDir });
      await owner.query(`CREATE ROLE ${role} LOGIN; CREATE ROLE ${reader} LOGIN;
        GRANT SELECT, INSERT, UPDATE ON request_minutes TO ${role}; GRANT SELECT ON request_minutes TO ${reader}`);
      await applyPgMigrations(owner);
      const privileges = await owner.query<{ t: string; s: boolean; i: boolean; u: boolean; d: boolean; rs: boolean; ri: boolean }>(
        `SELECT t, has_table_privilege($1, t, 'SELECT') AS s, has_table_privilege($1, t, 'INSERT') AS i, has_table_privilege($1, t, 'UPDATE') AS u,
           has_table_privilege($1, t, 'DELETE') AS d, has_table_privilege($2, t, 'SELECT') AS rs, has_table_privilege($2, t, 'INSERT') AS ri
         FROM unnest(ARRAY['request_hour_hosts', 'request_hour_clients', 'request_hour_groups']) AS t ORDER BY t`,
        [role, reader],
      );
      expect(privileges.rows).toEqual(
        ['request_hour_clients', 'request_hour_groups', 'request_hour_hosts'].map((t) => ({ t, s: true, i: true, u: true, d: false, rs: true, ri: false })),
      );
    } finally {
      await owner.query(`DROP OWNED BY ${role}, ${reader}; DROP ROLE IF EXISTS ${role}; DROP ROLE IF EXISTS ${reader}`).catch(() => undefined);
      fs.rmSync(oldDir, { recursive: true, force: true });
    }
  });
});
