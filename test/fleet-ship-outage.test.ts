import { Client } from 'pg';
import { auditLogDir, listSegments } from '../src/audit/log/segment-files';
import { localLogIds, metricValue, pgRecords, proxyGet, readyz, waitFor } from './helpers/fleet-ship';
import { parseHead, rawConnect, readAll } from './helpers/proxy-harness';
import { describePg, destroyPostgres, startPostgres } from './helpers/postgres';
import type { PostgresServer } from './helpers/postgres';
import { listeningPorts, serveArgs, serveFolder, spawnServe } from './helpers/serve-process';
import type { ServeFolder, ServeProcess } from './helpers/serve-process';

jest.setTimeout(150_000);

/**
 * PostgreSQL down: egress goes on, the backlog grows on local disk (and retention keeps it), and
 * it all arrives once when PostgreSQL is back. Also below --min-free-disk: requests fail closed
 * while the backlog still ships.
 */
describePg('shipping while PostgreSQL is down', () => {
  let server: PostgresServer;
  let folder: ServeFolder;
  const running: ServeProcess[] = [];

  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(() => destroyPostgres(server));
  beforeEach(() => {
    folder = serveFolder('tollgate-ship-outage-');
    // A test that failed during its outage left the server stopped.
    if (down) up();
  });
  afterEach(async () => {
    for (const p of running.splice(0)) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    folder.remove();
  });

  let down = false;
  function stopPg(): void {
    server.stop();
    down = true;
  }
  function up(): void {
    server.start();
    down = false;
  }

  let dbCounter = 0;
  function freshUrl(): string {
    const name = `outage_${dbCounter++}`;
    server.sql(`CREATE DATABASE ${name}`);
    return server.url(name);
  }

  async function serve(url: string, ...extra: string[]) {
    const proc = spawnServe(serveArgs(folder, '--node', 'outage-node', ...extra), { TOLLGATE_AUDIT_URL: url });
    running.push(proc);
    return { proc, ...(await listeningPorts(proc)) };
  }

  /** A denied request; its record id from X-Tollgate-Request-Id. */
  async function deniedRequest(proxyPort: number, n: number): Promise<number> {
    const socket = await rawConnect(proxyPort);
    socket.write(`GET http://h${n}.denied.example/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    const head = parseHead(await readAll(socket));
    expect(head.status).toBe(403);
    return Number(head.headers['x-tollgate-request-id']);
  }

  async function shippedIds(url: string): Promise<number[]> {
    return (await pgRecords(url)).map((r) => r.local_id).sort((a, b) => a - b);
  }

  test('egress goes on, the backlog grows and retention keeps it; back up, it all arrives once and the backlog is 0', async () => {
    const url = freshUrl();
    const { proc, proxyPort, adminPort } = await serve(url, '--retain', '2s');
    const ids: number[] = [];
    for (let i = 0; i < 5; i += 1) ids.push(await deniedRequest(proxyPort, i));
    await waitFor('the first records shipped', async () => (await shippedIds(url)).length === 5);

    stopPg();
    // Requests go on until the log has rotated a few segments (by age: --retain 2s makes them 1 s).
    const outage: number[] = [];
    const segmentsBefore = listSegments(auditLogDir(folder.dbFile)).length;
    await waitFor('three more segments', async () => {
      outage.push(await deniedRequest(proxyPort, 100 + outage.length));
      return listSegments(auditLogDir(folder.dbFile)).length >= segmentsBefore + 3;
    }, 20_000);
    const ship = await waitFor('a backlog in /metrics', async () => {
      const backlog = await metricValue(adminPort, 'tollgate_audit_ship_backlog_records');
      return backlog !== null && backlog >= outage.length ? backlog : undefined;
    });
    expect(ship).toBeGreaterThanOrEqual(outage.length);
    expect(await metricValue(adminPort, 'tollgate_audit_ship_backlog_oldest_seconds')).toBeGreaterThan(0);
    const ready = await waitFor('a ship failure in /readyz', async () => {
      const r = await readyz(adminPort);
      return (r.body.ship as { last_error: string | null }).last_error !== null ? r : undefined;
    });
    // Egress does not depend on PostgreSQL: still ready.
    expect(ready.status).toBe(200);
    expect(ready.body.ready).toBe(true);
    expect(await metricValue(adminPort, 'tollgate_audit_ship_failures_total')).toBeGreaterThan(0);

    // Retention has pruned the index past the outage records; the log segments holding them stay.
    const last = outage[outage.length - 1];
    await waitFor('the outage records pruned from the index', async () => (await fetch(`http://127.0.0.1:${adminPort}/api/requests/${last}`)).status === 404, 20_000);
    // The segment pass runs every second on its own timer: give it two.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const kept = new Set(localLogIds(folder.dbFile).records);
    expect(outage.filter((id) => !kept.has(id))).toEqual([]);

    const linesBefore = proc.lines.length;
    up();
    const all = [...ids, ...outage].sort((a, b) => a - b);
    await waitFor('every record in PostgreSQL', async () => (await shippedIds(url)).length === all.length, 60_000);
    expect(await shippedIds(url)).toEqual(all);
    await proc.waitForLog('shipping audit records to PostgreSQL again', linesBefore, 30_000);
    await waitFor('an empty backlog', async () => {
      const s = (await readyz(adminPort)).body.ship as { backlog_records: number; shipped_records: number; last_error: string | null };
      return s.shipped_records >= all.length && s.backlog_records === 0 && s.last_error === null;
    });
    expect(await metricValue(adminPort, 'tollgate_audit_ship_backlog_records')).toBe(0);
    // Once shipped, retention drops those segments.
    await proc.waitForLog('audit log segments dropped (--retain)', linesBefore, 20_000);
  });

  test('below --min-free-disk requests fail closed (503) while the backlog still ships', async () => {
    const url = freshUrl();
    stopPg();
    const first = await serve(url);
    const ids: number[] = [];
    for (let i = 0; i < 10; i += 1) ids.push(await deniedRequest(first.proxyPort, i));
    first.proc.child.kill('SIGKILL');
    await first.proc.exited;

    // 99%: no real volume has that much free, so the watermark is crossed from the start.
    const second = await serve(url, '--min-free-disk', '99%');
    expect(await proxyGet(second.proxyPort, 'http://127.0.0.1:9/allowed-by-policy')).toBe(503);
    up();
    await waitFor('the backlog in PostgreSQL', async () => (await shippedIds(url)).length === ids.length, 60_000);
    expect(await shippedIds(url)).toEqual([...ids].sort((a, b) => a - b));
    expect(await proxyGet(second.proxyPort, 'http://127.0.0.1:9/allowed-by-policy')).toBe(503);
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      const nodes = await client.query('SELECT node, shipped_entries::int AS n FROM audit_stores');
      expect(nodes.rows).toEqual([{ node: 'outage-node', n: ids.length }]);
    } finally {
      await client.end();
    }
  });
});
