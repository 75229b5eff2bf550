import type { Server, Socket } from 'node:net';
import { Client } from 'pg';
import { localLogIds, openTunnel, pgRecords, proxyGet, waitFor } from './helpers/fleet-ship';
import type { PgRecord } from './helpers/fleet-ship';
import { startEchoServer } from './helpers/raw-origin';
import { describePg, freshDatabase } from './helpers/postgres';
import { listeningPorts, serveArgs, serveFolder, spawnServe } from './helpers/serve-process';
import type { ServeFolder, ServeProcess } from './helpers/serve-process';

jest.setTimeout(120_000);

/** Exactly once, whatever happens: a replica killed mid-ship, and two replicas shipping at once. */
describePg('shipping is exactly once', () => {
  let echo: Server;
  let echoPort: number;
  const folders: ServeFolder[] = [];
  const running: ServeProcess[] = [];
  const sockets: Socket[] = [];

  beforeAll(async () => {
    ({ server: echo, port: echoPort } = await startEchoServer());
  });
  afterAll(() => echo.close());
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    for (const p of running.splice(0)) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    for (const f of folders.splice(0)) f.remove();
  });

  async function serve(folder: ServeFolder, url: string, node: string) {
    const proc = spawnServe(serveArgs(folder, '--node', node), { TOLLGATE_AUDIT_URL: url });
    running.push(proc);
    return { proc, ...(await listeningPorts(proc)) };
  }

  function newFolder(): ServeFolder {
    const folder = serveFolder('tollgate-ship-crash-');
    folders.push(folder);
    return folder;
  }

  /** `count` denied requests, `parallel` at a time. */
  async function burst(proxyPort: number, count: number, parallel = 25, tag = 'x'): Promise<void> {
    for (let i = 0; i < count; i += parallel) {
      const n = Math.min(parallel, count - i);
      await Promise.all(Array.from({ length: n }, (_, j) => proxyGet(proxyPort, `http://${tag}${i + j}.denied.example/`)));
    }
  }

  /** PostgreSQL holds each of the store's local records once, each completed. */
  function expectExactlyOnce(rows: PgRecord[], dbFile: string): void {
    const local = localLogIds(dbFile);
    const shipped = rows.map((r) => r.local_id);
    expect(new Set(shipped).size).toBe(shipped.length);
    expect([...shipped].sort((a, b) => a - b)).toEqual([...local.records].sort((a, b) => a - b));
    expect(rows.filter((r) => !r.done)).toEqual([]);
  }

  async function allShipped(url: string, folder: ServeFolder, storeId?: string): Promise<PgRecord[]> {
    return waitFor('every local record completed in PostgreSQL', async () => {
      const rows = (await pgRecords(url)).filter((r) => storeId === undefined || r.store_id === storeId);
      const local = localLogIds(folder.dbFile).records.length;
      return rows.length === local && rows.every((r) => r.done) ? rows : undefined;
    }, 60_000);
  }

  test('kill -9 mid-ship with requests in flight, then restart: every local record lands once, completed', async () => {
    const url = freshDatabase('ship_crash');
    const folder = newFolder();
    const first = await serve(folder, url, 'crashy');
    // Tunnels open at the kill: completed at the next start (proxy_restarted) and shipped then.
    for (let i = 0; i < 3; i += 1) sockets.push(await openTunnel(first.proxyPort, echoPort));
    const inFlight = burst(first.proxyPort, 600, 30).catch(() => undefined);
    await waitFor('the first shipped rows', async () => (await pgRecords(url)).length > 0);
    first.proc.child.kill('SIGKILL');
    await first.proc.exited;
    await inFlight;
    const before = (await pgRecords(url)).length;
    const localAtKill = localLogIds(folder.dbFile).records.length;
    expect(localAtKill).toBeGreaterThan(before);

    await serve(folder, url, 'crashy');
    const rows = await allShipped(url, folder);
    expectExactlyOnce(rows, folder.dbFile);
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      const restarted = await client.query("SELECT count(*)::int AS n FROM requests WHERE error = 'proxy_restarted'");
      expect(restarted.rows[0].n).toBeGreaterThanOrEqual(3);
      const minutes = await client.query('SELECT (sum(allowed) + sum(denied))::int AS n FROM request_minutes');
      expect(minutes.rows[0].n).toBe(rows.length);
    } finally {
      await client.end();
    }
  });

  test('two replicas shipping at once into one database: one history, both node names, every record once', async () => {
    const url = freshDatabase('ship_two');
    const a = newFolder();
    const b = newFolder();
    const [servedA, servedB] = await Promise.all([serve(a, url, 'zone-a'), serve(b, url, 'zone-b')]);
    await Promise.all([burst(servedA.proxyPort, 300, 25, 'a'), burst(servedB.proxyPort, 300, 25, 'b')]);
    const storeA = await waitFor('zone-a registered', async () => (await pgRecords(url)).find((r) => r.node === 'zone-a')?.store_id);
    const storeB = await waitFor('zone-b registered', async () => (await pgRecords(url)).find((r) => r.node === 'zone-b')?.store_id);
    expect(storeA).not.toBe(storeB);
    expectExactlyOnce(await allShipped(url, a, storeA), a.dbFile);
    expectExactlyOnce(await allShipped(url, b, storeB), b.dbFile);
    const all = await pgRecords(url);
    expect(all).toHaveLength(600);
    expect(new Set(all.map((r) => r.node))).toEqual(new Set(['zone-a', 'zone-b']));
    // Each store's rows carry its own node name only.
    expect(all.filter((r) => r.store_id === storeA).every((r) => r.node === 'zone-a')).toBe(true);
  });
});
