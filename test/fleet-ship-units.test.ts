import fs from 'node:fs';
import path from 'node:path';
import { Pool } from 'pg';
import { ensurePgSchema } from '../src/fleet/pg-migrate';
import { PgAuditReader } from '../src/fleet/pg-reader';
import { SegmentLog } from '../src/audit/log/segment-log';
import { resolveServeConfig } from '../src/config';
import { readDescriptorLimit } from '../src/descriptors';
import { shippedPosition } from '../src/fleet/pg-ship';
import { readShippedCopy, writeShippedCopy } from '../src/fleet/ship-position-file';
import { scrubSecret } from '../src/fleet/audit-url';
import { Shipper } from '../src/fleet/shipper';
import { readOrCreateStoreId } from '../src/fleet/store-id';
import { completion, openFacts, tempLogDir } from './helpers/audit-log-fixtures';
import { describePg, freshDatabase } from './helpers/postgres';

describe('the store identity and the local copy of the ship position', () => {
  let log: ReturnType<typeof tempLogDir>;
  beforeEach(() => {
    log = tempLogDir();
    fs.mkdirSync(log.dir);
  });
  afterEach(() => log.remove());

  test('store-id is made once and read afterwards; a damaged one is refused, not replaced', () => {
    const id = readOrCreateStoreId(log.dir);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(readOrCreateStoreId(log.dir)).toBe(id);
    expect(fs.readdirSync(log.dir).filter((n) => n.includes('tmp'))).toEqual([]);
    fs.writeFileSync(path.join(log.dir, 'store-id'), 'not a uuid\n');
    expect(() => readOrCreateStoreId(log.dir)).toThrow(/does not hold a UUID/);
  });

  test('the ship position copy round-trips; a missing or torn copy reads as none', () => {
    expect(readShippedCopy(log.dir)).toBeNull();
    writeShippedCopy(log.dir, { segment: 3, offset: 4096 });
    expect(readShippedCopy(log.dir)).toEqual({ segment: 3, offset: 4096 });
    fs.writeFileSync(path.join(log.dir, 'ship-position'), '{"segment":3,');
    expect(readShippedCopy(log.dir)).toBeNull();
  });

  test('an error text loses the password, raw or percent-encoded', () => {
    const url = 'postgres://u:p%40ss%2Fw@db.example/x';
    expect(scrubSecret('auth for p@ss/w failed; url had p%40ss%2Fw', url)).toBe('auth for *** failed; url had ***');
    expect(scrubSecret('no secret here', 'postgres://u@db/x')).toBe('no secret here');
    expect(scrubSecret('bad %zz and hunter2', 'postgres://u:%zz@db/x?password=hunter2')).toBe('bad *** and ***');
  });
});

describe('serve options for shipping', () => {
  const limit = readDescriptorLimit();
  test('--audit-url, TOLLGATE_AUDIT_URL, --audit-url-file, --node and their refusals', () => {
    expect(resolveServeConfig({}, {}, limit).auditUrl).toBeNull();
    expect(resolveServeConfig({}, { TOLLGATE_AUDIT_URL: 'postgres://u@h/db', TOLLGATE_NODE: 'zone-a' }, limit)).toMatchObject({ auditUrl: 'postgres://u@h/db', node: 'zone-a' });
    expect(resolveServeConfig({}, {}, limit).node).not.toBe('');
    const folder = tempLogDir();
    fs.mkdirSync(folder.dir);
    const file = path.join(folder.dir, 'url');
    fs.writeFileSync(file, '\npostgres://u:pw@h/db\n');
    expect(resolveServeConfig({ auditUrlFile: file }, {}, limit).auditUrl).toBe('postgres://u:pw@h/db');
    expect(() => resolveServeConfig({ auditUrlFile: file, auditUrl: 'postgres://u:pw@h/db' }, {}, limit)).toThrow(/not both/);
    expect(() => resolveServeConfig({ auditUrl: 'mysql://u:hunter2@h/db' }, {}, limit)).toThrow(/must start with postgres:\/\//);
    expect(() => resolveServeConfig({ auditUrl: 'mysql://u:hunter2@h/db' }, {}, limit)).not.toThrow(/hunter2/);
    expect(() => resolveServeConfig({ auditUrl: 'postgres://u@h/db', db: ':memory:' }, {}, limit)).toThrow(/needs an audit file/);
    expect(() => resolveServeConfig({ node: 'bad\nname' }, {}, limit)).toThrow(/--node/);
    folder.remove();
  });
});

describePg('the shipper in process', () => {
  test('ships a 20,000-entry log in batches, resumes from PostgreSQL after a restart, and reports the backlog', async () => {
    const log = tempLogDir();
    const pool = new Pool({ connectionString: freshDatabase('shipper_unit') });
    const who = { storeId: readOrCreateStoreId(log.dir), node: 'unit' };
    const writer = SegmentLog.open({ dir: log.dir, fsync: false, firstId: 1 });
    try {
      for (let b = 0; b < 20; b += 1) {
        writer.appendBatch(Array.from({ length: 1000 }, (_, i) => ({ type: 'finished' as const, open: openFacts(b * 1000 + i), completion: completion(b * 1000 + i) })));
      }
      const make = () => new Shipper({ pool, logDir: log.dir, who, policyVersion: () => 'v1', describe: String, maxBatchEntries: 2000 });
      const first = make();
      expect(first.refreshBacklog().backlogEntries).toBe(20_000);
      const started = performance.now();
      expect(await first.drain(Date.now() + 60_000)).toBe(true);
      const seconds = (performance.now() - started) / 1000;
      process.stdout.write(`shipper: 20000 finished records in ${seconds.toFixed(2)} s (${Math.round(20_000 / seconds)} records/s)\n`);
      expect(first.status().shippedEntries).toBe(20_000);
      expect(first.refreshBacklog()).toMatchObject({ backlogEntries: 0, oldestSeconds: 0 });
      expect(readShippedCopy(log.dir)).toEqual(await shippedPosition(pool, who.storeId));

      const ids = writer.appendBatch([{ type: 'open', open: openFacts(1) }]);
      writer.appendBatch([{ type: 'complete', id: ids[0], completion: completion(1) }]);
      const second = make();
      expect(second.refreshBacklog().backlogEntries).toBe(2);
      expect(await second.drain(Date.now() + 60_000)).toBe(true);
      expect(second.status().shippedEntries).toBe(2);
      const count = await pool.query('SELECT count(*)::int AS n, count(ended_at_ms)::int AS done FROM requests');
      expect(count.rows[0]).toEqual({ n: 20_001, done: 20_001 });
    } finally {
      writer.close();
      await pool.end();
      log.remove();
    }
  });
});

/**
 * The role SQL of docs/operations.md, as written there (the owner's lines are the test's own
 * superuser), with its roles renamed ROLE_units: roles belong to the whole server the test files
 * share, and test/console-views.test.ts creates the same ones.
 */
const SHIPPER_ROLE = 'tollgate_shipper_units';
const CONSOLE_ROLE = 'tollgate_console_units';
function docsRoleSql(): string {
  const page = fs.readFileSync(path.join(__dirname, '..', 'docs', 'operations.md'), 'utf8');
  const at = page.indexOf('**Least-privilege roles.**');
  if (at < 0) throw new Error('docs/operations.md has no "**Least-privilege roles.**" section');
  const section = page.slice(at);
  const block = section.slice(section.indexOf('```sql') + 6, section.indexOf('```', section.indexOf('```sql') + 6));
  return block
    .split('\n')
    .filter((line) => !/tollgate_owner|^--/.test(line.trim()))
    .join('\n')
    .replace(/'…'/g, "'x'")
    .replace(/\btollgate_(shipper|console)\b/g, '$&_units');
}

describePg('the least-privilege roles of docs/operations.md', () => {
  test('the shipper role ships (schema migrated by the owner) and may not delete; the console role may only read', async () => {
    const url = freshDatabase('roles');
    const owner = new Pool({ connectionString: url });
    const log = tempLogDir();
    const roleUrl = (role: string): string => {
      const u = new URL(url);
      u.username = role;
      return u.toString();
    };
    const shipperPool = new Pool({ connectionString: roleUrl(SHIPPER_ROLE) });
    const consolePool = new Pool({ connectionString: roleUrl(CONSOLE_ROLE) });
    const writer = SegmentLog.open({ dir: log.dir, fsync: false, firstId: 1 });
    try {
      await new Shipper({ pool: owner, logDir: log.dir, who: { storeId: readOrCreateStoreId(log.dir), node: 'owner' }, policyVersion: () => null, describe: String }).drain(Date.now() + 10_000);
      await owner.query(docsRoleSql());
      const ids = writer.appendBatch([{ type: 'open', open: openFacts(1) }, { type: 'finished', open: openFacts(2), completion: completion(2) }]);
      const who = { storeId: readOrCreateStoreId(log.dir), node: 'least' };
      const ship = (): Shipper => new Shipper({ pool: shipperPool, logDir: log.dir, who, policyVersion: () => 'v1', describe: (e) => String((e as Error).message) });
      const first = ship();
      expect(await first.drain(Date.now() + 10_000)).toBe(true);
      writer.appendBatch([{ type: 'complete', id: ids[0], completion: completion(1) }]);
      const second = ship();
      expect(await second.drain(Date.now() + 10_000)).toBe(true);
      expect(second.status().lastError).toBeNull();
      const rows = await consolePool.query('SELECT local_id, node, ended_at_ms IS NOT NULL AS done FROM requests ORDER BY local_id');
      expect(rows.rows).toEqual([
        { local_id: String(ids[0]), node: 'least', done: true },
        { local_id: String(ids[1]), node: 'least', done: true },
      ]);
      await expect(shipperPool.query('DELETE FROM requests')).rejects.toThrow(/permission denied/);
      await expect(shipperPool.query("UPDATE requests SET host = 'x'")).rejects.toThrow(/permission denied/);
      await expect(consolePool.query("UPDATE audit_stores SET node = 'x'")).rejects.toThrow(/permission denied/);
      await expect(consolePool.query('DELETE FROM request_minutes')).rejects.toThrow(/permission denied/);
      // tollgate admin with the console role: the schema check passes without migrating, and it reads.
      await expect(ensurePgSchema(consolePool)).resolves.toEqual([]);
      const page = await new PgAuditReader(consolePool).listRequests({ limit: 10 });
      expect(page.items.map((r) => r.node)).toEqual(['least', 'least']);
    } finally {
      writer.close();
      await Promise.all([owner.end(), shipperPool.end(), consolePool.end()]);
      log.remove();
    }
  });
});
