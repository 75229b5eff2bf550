import { readMigrations } from '../src/audit/migrate';
import { PG_MIGRATIONS_DIR } from '../src/fleet/pg-migrate';
import type { Server } from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { auditLogDir } from '../src/audit/log/segment-files';
import { closeTunnel, localLogIds, metricValue, openTunnel, pgRecords, proxyGet, readyz, waitFor } from './helpers/fleet-ship';
import { startEchoServer } from './helpers/raw-origin';
import { describePg, freshDatabase } from './helpers/postgres';
import { listeningPorts, serveArgs, serveFolder, spawnServe } from './helpers/serve-process';
import type { ServeFolder, ServeProcess } from './helpers/serve-process';

jest.setTimeout(90_000);

/** serve --audit-url: records and their later completions reach PostgreSQL, keyed by the store's UUID. */
describePg('serve ships its audit log to PostgreSQL', () => {
  let echo: Server;
  let echoPort: number;
  let folder: ServeFolder;
  const running: ServeProcess[] = [];

  beforeAll(async () => {
    ({ server: echo, port: echoPort } = await startEchoServer());
  });
  afterAll(() => echo.close());
  beforeEach(() => {
    folder = serveFolder('tollgate-ship-serve-');
  });
  afterEach(async () => {
    for (const p of running.splice(0)) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    folder.remove();
  });

  async function serve(args: string[], env: NodeJS.ProcessEnv = {}) {
    const proc = spawnServe(serveArgs(folder, ...args), env);
    running.push(proc);
    return { proc, ...(await listeningPorts(proc)) };
  }

  test('records arrive with the node name, their completions, and the store UUID; the URL comes from --audit-url-file', async () => {
    const url = freshDatabase('ship_serve');
    const urlFile = path.join(folder.dir, 'audit-url');
    fs.writeFileSync(urlFile, `${url}\n`);
    const { proc, proxyPort, adminPort } = await serve(['--audit-url-file', urlFile, '--node', 'replica-one']);
    const statuses = await Promise.all(Array.from({ length: 20 }, (_, i) => proxyGet(proxyPort, `http://denied${i}.example/`)));
    expect(statuses.every((s) => s === 403)).toBe(true);
    const tunnels = await Promise.all(Array.from({ length: 5 }, () => openTunnel(proxyPort, echoPort)));
    await Promise.all(tunnels.map(closeTunnel));

    const storeId = fs.readFileSync(path.join(auditLogDir(folder.dbFile), 'store-id'), 'utf8').trim();
    const local = localLogIds(folder.dbFile);
    expect(local.records).toHaveLength(25);
    const rows = await waitFor('25 completed records in PostgreSQL', async () => {
      const got = await pgRecords(url);
      return got.length === 25 && got.every((r) => r.done) ? got : undefined;
    });
    expect(rows.map((r) => r.local_id)).toEqual([...local.records].sort((a, b) => a - b));
    expect(new Set(rows.map((r) => r.node))).toEqual(new Set(['replica-one']));
    expect(new Set(rows.map((r) => r.store_id))).toEqual(new Set([storeId]));

    // One status snapshot: everything shipped and nothing behind it.
    const ready = await waitFor('an empty backlog in /readyz', async () => {
      const r = await readyz(adminPort);
      const ship = r.body.ship as Record<string, number>;
      return ship.shipped_records >= 30 && ship.backlog_records === 0 ? r : undefined;
    });
    expect(ready.status).toBe(200);
    expect(ready.body.ship).toMatchObject({ node: 'replica-one', store_id: storeId, oldest_seconds: 0, last_error: null, failures: 0 });
    expect(Date.parse(String((ready.body.ship as Record<string, unknown>).last_success_at))).toBeGreaterThan(Date.now() - 60_000);
    expect(await metricValue(adminPort, 'tollgate_audit_ship_backlog_records')).toBe(0);
    expect(await metricValue(adminPort, 'tollgate_audit_shipped_records_total')).toBeGreaterThanOrEqual(30);
    expect(await metricValue(adminPort, 'tollgate_audit_ship_failures_total')).toBe(0);
    const migrated = proc.lines.find((l) => l.msg === 'PostgreSQL audit schema migrated');
    expect(migrated?.versions).toEqual(readMigrations(PG_MIGRATIONS_DIR).map((m) => m.version));
    const started = proc.lines.find((l) => l.msg === 'shipping audit records to PostgreSQL');
    expect(started).toMatchObject({ node: 'replica-one', store_id: storeId });

    // The store keeps its identity across restarts.
    proc.child.kill('SIGTERM');
    expect((await proc.exited).code).toBe(0);
    await serve(['--audit-url-file', urlFile, '--node', 'replica-one']);
    expect(fs.readFileSync(path.join(auditLogDir(folder.dbFile), 'store-id'), 'utf8').trim()).toBe(storeId);
  });

  test('a long tunnel: its open is shipped while it runs, its completion later fills the same row', async () => {
    const url = freshDatabase('ship_tunnel');
    const { proxyPort } = await serve(['--node', 'tunnel-node'], { TOLLGATE_AUDIT_URL: url });
    const tunnel = await openTunnel(proxyPort, echoPort);
    const open = await waitFor('the open tunnel in PostgreSQL', async () => {
      const rows = await pgRecords(url);
      return rows.length === 1 ? rows[0] : undefined;
    });
    expect(open.done).toBe(false);
    tunnel.write('more bytes');
    await new Promise((resolve) => tunnel.once('data', resolve));
    await closeTunnel(tunnel);
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      const done = await waitFor('the tunnel completed in PostgreSQL', async () => {
        const result = await client.query<{ ended_at_ms: string | null; bytes_up: string; local_id: string }>('SELECT local_id, ended_at_ms, bytes_up FROM requests');
        return result.rows.length === 1 && result.rows[0].ended_at_ms !== null ? result.rows[0] : undefined;
      });
      expect(Number(done.local_id)).toBe(open.local_id);
      expect(Number(done.bytes_up)).toBe('ping'.length + 'more bytes'.length);
    } finally {
      await client.end();
    }
  });

  test('--audit-url and --audit-url-file together are refused, without echoing the URL', async () => {
    const urlFile = path.join(folder.dir, 'audit-url');
    fs.writeFileSync(urlFile, 'postgres://u:s3cret-pw@127.0.0.1:1/db\n');
    const proc = spawnServe(serveArgs(folder, '--audit-url-file', urlFile), { TOLLGATE_AUDIT_URL: 'postgres://u:s3cret-pw@127.0.0.1:1/db' });
    running.push(proc);
    expect((await proc.exited).code).toBe(1);
    expect(proc.stderr).toMatch(/give --audit-url or --audit-url-file, not both/);
    expect(proc.stderr + JSON.stringify(proc.lines)).not.toContain('s3cret-pw');
  });
});
