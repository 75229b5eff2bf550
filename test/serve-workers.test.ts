import { spawnSync } from 'node:child_process';
import http from 'node:http';
import type { Server } from 'node:net';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Socket } from 'node:net';
import Database from 'better-sqlite3';
import { rawConnect, readAll, readUntil, startOrigin } from './helpers/proxy-harness';
import { metricValue, openTunnel, waitFor } from './helpers/fleet-ship';
import type { Origin } from './helpers/proxy-harness';
import { startEchoServer } from './helpers/raw-origin';
import { CLI, listeningPorts, runCli, serveArgs, serveFolder, spawnServe } from './helpers/serve-process';
import type { ServeFolder, ServeProcess } from './helpers/serve-process';
import { LOOPBACK_POLICY } from './helpers/policies';
import { readAll as readLogBack } from './helpers/audit-log-fixtures';
import { auditLogDir } from '../src/audit/log/segment-files';

/**
 * `serve --workers 2` as an operator runs it: the built CLI, real worker processes sharing the
 * proxy port, real signals. Every guarantee of one process must hold across the workers.
 */

jest.setTimeout(60_000);

interface WorkerView {
  slot: number;
  pid: number;
  state: string;
  policy_version: string | null;
  records: number;
}

interface Readiness {
  status: number;
  body: { ready?: boolean; draining?: boolean; policy_version?: string; workers?: WorkerView[]; worker_restarts?: number };
}

interface RecordJson {
  id: number;
  kind: string;
  path: string | null;
  status: number | null;
  decision: string;
  ended_at: string | null;
  error: string | null;
}

const DENY_ALL_POLICY = `version: 1
settings:
  default: deny
network:
  allow_ranges: [127.0.0.0/8]
rules: []
`;

function getJson<T>(port: number, pathname: string): Promise<{ status: number; body: T }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: pathname, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as T });
        } catch (err) {
          reject(err);
        }
      });
    }).on('error', reject);
  });
}

/** A plain-HTTP GET through the proxy on a connection of its own (so the workers take turns). */
function proxiedGet(proxyPort: number, url: string, timeoutMs = 3_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: proxyPort, method: 'GET', path: url, headers: { host: new URL(url).host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    // A connection the cluster was handing to a worker as it died is never answered (docs/operations.md).
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.end();
  });
}

async function echoes(socket: Socket, text: string): Promise<boolean> {
  socket.write(text);
  const back = await readUntil(socket, text);
  return back.includes(text);
}

function closed(socket: Socket): Promise<void> {
  return socket.closed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()));
}

/** The proxy's side ended (the tunnels are half-open sockets: our side stays open until we end it). */
/** Waits until the admin API lists at least `count` completed records for `query`. */
function completedRecords(adminPort: number, query: string, count: number): Promise<RecordJson[]> {
  return waitFor(`${count} completed records`, async () => {
    const found = (await getJson<{ items: RecordJson[] }>(adminPort, `/api/requests?${query}`)).body.items.filter((r) => r.ended_at !== null);
    return found.length >= count ? found : undefined;
  });
}

/** A CONNECT's answer head, the socket closed after it. */
async function connectHead(proxyPort: number, echoPort: number): Promise<{ head: string }> {
  const socket = await rawConnect(proxyPort);
  socket.on('error', () => undefined);
  socket.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\n\r\n`);
  // The refusal closes the connection: its head and its one-line body.
  const head = await readAll(socket);
  socket.destroy();
  return { head };
}

/** Whether a process is still there (signal 0 checks without sending anything). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function ended(socket: Socket): Promise<Socket> {
  return socket.readableEnded || socket.closed ? Promise.resolve(socket) : new Promise((resolve) => {
    socket.once('end', () => resolve(socket));
    socket.once('close', () => resolve(socket));
  });
}

describe('serve --workers 2', () => {
  let folder: ServeFolder;
  let proc: ServeProcess;
  let proxyPort: number;
  let adminPort: number;
  let origin: Origin;
  let echo: { server: Server; port: number };

  const readyz = (): Promise<Readiness> => getJson<Readiness['body']>(adminPort, '/readyz');
  const records = async (query: string): Promise<RecordJson[]> => (await getJson<{ items: RecordJson[] }>(adminPort, `/api/requests?${query}`)).body.items;

  beforeAll(async () => {
    origin = await startOrigin((req, res) => res.end(`ok ${req.url}`));
    echo = await startEchoServer();
    folder = serveFolder('tollgate-workers-');
    // The round robin, so that connections in a row alternate and each worker's part is known
    // (the kernel's choice, the default, is tested below: it may give them all to one).
    proc = spawnServe(serveArgs(folder, '--workers', '2', '--drain-timeout', '20s'), { NODE_CLUSTER_SCHED_POLICY: 'rr' });
    ({ proxyPort, adminPort } = await listeningPorts(proc));
  });

  afterAll(async () => {
    if (proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.child.kill('SIGKILL');
      await proc.exited;
    }
    await origin.close();
    await new Promise((resolve) => echo.server.close(resolve));
    folder.remove();
  });

  it('runs two workers that share the load, with one record per request and ids unique across them', async () => {
    const ready = await readyz();
    expect(ready.status).toBe(200);
    expect(ready.body.workers?.map((w) => w.state)).toEqual(['listening', 'listening']);
    expect(new Set(ready.body.workers?.map((w) => w.pid)).size).toBe(2);

    const statuses = [];
    for (let i = 0; i < 20; i += 1) statuses.push(await proxiedGet(proxyPort, `http://127.0.0.1:${origin.port}/share/${i}`));
    expect(statuses).toEqual(Array(20).fill(200));

    const items = await waitFor('20 records', async () => {
      const found = (await records('limit=100')).filter((r) => r.path?.startsWith('/share/') === true && r.ended_at !== null);
      return found.length >= 20 ? found : undefined;
    });
    expect(items).toHaveLength(20);
    expect(new Set(items.map((r) => r.id)).size).toBe(20);
    expect(new Set(items.map((r) => r.path)).size).toBe(20);

    // The cluster hands connections out in turn: each worker took about half.
    const after = await readyz();
    for (const worker of after.body.workers ?? []) expect(worker.records).toBeGreaterThanOrEqual(5);
    expect((after.body.workers ?? []).reduce((sum, w) => sum + w.records, 0)).toBe(20);

    // /metrics is the box's: the workers' counters summed.
    expect(await metricValue(adminPort, 'tollgate_requests_total{kind="http",decision="allow"}')).toBe(20);
    expect(await metricValue(adminPort, 'tollgate_worker_restarts_total')).toBe(0);
  });

  it('reloads every worker when a policy file changes, and on SIGHUP to the primary', async () => {
    const before = (await readyz()).body.policy_version;
    writeFileSync(path.join(folder.policies, 'policy.yaml'), DENY_ALL_POLICY);
    const edited = await waitFor('every worker on the edited policy', async () => {
      const { body } = await readyz();
      const versions = new Set(body.workers?.map((w) => w.policy_version));
      return body.policy_version !== before && versions.size === 1 && versions.has(body.policy_version ?? null) ? body.policy_version : undefined;
    });
    const denied = [];
    for (let i = 0; i < 8; i += 1) denied.push(await proxiedGet(proxyPort, `http://127.0.0.1:${origin.port}/edited/${i}`));
    expect(denied).toEqual(Array(8).fill(403));

    // The watch is not the only way: the same content again, and a SIGHUP, go to every worker too.
    writeFileSync(path.join(folder.policies, 'policy.yaml'), LOOPBACK_POLICY);
    proc.child.kill('SIGHUP');
    await waitFor('every worker back on the first policy', async () => {
      const { body } = await readyz();
      return body.policy_version === before && body.workers?.every((w) => w.policy_version === before) === true ? true : undefined;
    });
    expect(edited).not.toBe(before);
    const allowed = [];
    for (let i = 0; i < 8; i += 1) allowed.push(await proxiedGet(proxyPort, `http://127.0.0.1:${origin.port}/restored/${i}`));
    expect(allowed).toEqual(Array(8).fill(200));
  });

  it('replaces a SIGKILLed worker, completes the records it left open and loses none it acknowledged', async () => {
    const tunnels: Socket[] = [];
    for (let i = 0; i < 4; i += 1) tunnels.push(await openTunnel(proxyPort, echo.port));
    for (const [i, tunnel] of tunnels.entries()) expect(await echoes(tunnel, `hello ${i}\n`)).toBe(true);
    const { body } = await readyz();
    const victim = body.workers?.find((w) => w.slot === 1) as WorkerView;
    const connectsBefore = await metricValue(adminPort, 'tollgate_requests_total{kind="connect",decision="allow"}');
    expect(connectsBefore).toBe(4);
    const ends = tunnels.map(ended);
    process.kill(victim.pid, 'SIGKILL');

    // The victim's tunnels end with it; the other worker's go on working.
    const first = await Promise.race(ends);
    expect(first.readableEnded || first.closed).toBe(true);
    const replaced = await waitFor('a new worker in slot 1', async () => {
      const { body: now } = await readyz();
      const slot1 = now.workers?.find((w) => w.slot === 1);
      return slot1 !== undefined && slot1.pid !== victim.pid && slot1.state === 'listening' && now.worker_restarts === 1 ? now : undefined;
    });
    expect(replaced.workers?.map((w) => w.state)).toEqual(['listening', 'listening']);
    const alive = tunnels.filter((t) => !t.readableEnded && !t.closed);
    expect(alive).toHaveLength(2);
    for (const tunnel of alive) expect(await echoes(tunnel, 'still here\n')).toBe(true);

    const exited = await waitFor('the victim\'s tunnel records completed', async () => {
      const found = (await records('limit=200').then((all) => all.filter((r) => r.kind === 'connect'))).filter((r) => r.error === 'worker_exited');
      return found.length === 2 ? found : undefined;
    });
    for (const record of exited) expect(record.ended_at).not.toBeNull();
    expect(proc.lines.some((line) => line.msg === 'worker exited; another takes its place' && line.signal === 'SIGKILL')).toBe(true);

    // Every tunnel that was acknowledged (200 Connection Established) has its record: none lost.
    const connects = await records('limit=200').then((all) => all.filter((r) => r.kind === 'connect'));
    expect(connects).toHaveLength(4);
    expect(connects.filter((r) => r.ended_at === null)).toHaveLength(2);
    const statuses = [];
    for (let i = 0; i < 6; i += 1) statuses.push(await proxiedGet(proxyPort, `http://127.0.0.1:${origin.port}/after-kill/${i}`));
    expect(statuses).toEqual(Array(6).fill(200));
    expect(await metricValue(adminPort, 'tollgate_worker_restarts_total')).toBe(1);
    // The dead worker's counters stay in the box's totals: a counter never goes down.
    expect(await metricValue(adminPort, 'tollgate_requests_total{kind="connect",decision="allow"}')).toBe(connectsBefore);
    for (const tunnel of tunnels) tunnel.end();
    await Promise.all(tunnels.map(closed));
  });

  it('loses no acknowledged record when a worker is SIGKILLed under load', async () => {
    const served = new Set<string>();
    const answered: string[] = [];
    let n = 0;
    const { body } = await readyz();
    const victim = body.workers?.find((w) => w.slot === 2) as WorkerView;
    // Eight clients in a loop; the worker in slot 2 is killed once a quarter of the requests are in.
    const client = async (): Promise<void> => {
      while (n < 160) {
        const pathname = `/load/${(n += 1)}`;
        if (n === 40) process.kill(victim.pid, 'SIGKILL');
        const status = await proxiedGet(proxyPort, `http://127.0.0.1:${origin.port}${pathname}`).catch(() => 0);
        if (status === 200) answered.push(pathname);
      }
    };
    origin.server.on('request', (req: http.IncomingMessage) => served.add(req.url ?? ''));
    await Promise.all(Array.from({ length: 8 }, client));
    expect(answered.length).toBeGreaterThan(100);
    const recorded = await waitFor('every answered request recorded', async () => {
      const paths = new Set((await records('q=/load/&limit=500')).map((r) => r.path));
      return answered.every((p) => paths.has(p)) ? paths : undefined;
    });
    // A record is written before the first byte is forwarded: whatever reached the origin is in the log.
    for (const pathname of served) expect(recorded.has(pathname)).toBe(true);
    await waitFor('the killed worker replaced', async () => {
      const { body: now } = await readyz();
      return now.workers?.every((w) => w.state === 'listening') === true && now.worker_restarts === (body.worker_restarts ?? 0) + 1 ? true : undefined;
    });
  });

  it('fails /readyz from the moment SIGTERM arrives, lets open tunnels finish, and exits 0 with every record completed', async () => {
    const tunnels = [await openTunnel(proxyPort, echo.port), await openTunnel(proxyPort, echo.port)];
    proc.child.kill('SIGTERM');
    const draining = await waitFor('/readyz to fail', async () => {
      const ready = await readyz();
      return ready.status === 503 ? ready : undefined;
    }, 15_000);
    expect(draining.body.draining).toBe(true);
    // Both workers are draining, not gone: their tunnels still carry bytes.
    for (const tunnel of tunnels) expect(await echoes(tunnel, 'draining\n')).toBe(true);
    for (const tunnel of tunnels) tunnel.end();
    const exit = await proc.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    const db = new Database(folder.dbFile, { readonly: true });
    try {
      expect(db.prepare('SELECT count(*) FROM requests WHERE ended_at_ms IS NULL').pluck().get()).toBe(0);
      const ids = db.prepare('SELECT id FROM requests').pluck().all() as number[];
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids.length).toBeGreaterThanOrEqual(20 + 8 + 8 + 4 + 6 + 100 + 2);
    } finally {
      db.close();
    }
  });
});

describe('serve --workers: limits per box, failures, bad input', () => {
  let folder: ServeFolder;
  beforeAll(() => {
    folder = serveFolder('tollgate-workers-limits-');
  });
  afterAll(() => folder.remove());

  it('holds --max-tunnels per box, whichever worker the kernel gives each CONNECT: the next gets 429', async () => {
    const echo = await startEchoServer();
    const proc = spawnServe(serveArgs(folder, '--workers', '2', '--max-tunnels', '2', '--drain-timeout', '1s'));
    try {
      const { proxyPort } = await listeningPorts(proc);
      const tunnels = [await openTunnel(proxyPort, echo.port), await openTunnel(proxyPort, echo.port)];
      const third = await connectHead(proxyPort, echo.port);
      expect(third.head).toMatch(/^HTTP\/1\.1 429 /);
      expect(third.head).toContain('too many open tunnels (limit 2)');
      for (const tunnel of tunnels) tunnel.destroy();
    } finally {
      proc.child.kill('SIGTERM');
      await proc.exited;
      await new Promise((resolve) => echo.server.close(resolve));
    }
  });

  it('admits exactly --max-tunnels of a burst of concurrent CONNECTs, whichever workers take them', async () => {
    const echo = await startEchoServer();
    const proc = spawnServe(serveArgs(folder, '--workers', '2', '--max-tunnels', '7', '--drain-timeout', '1s'));
    try {
      const { proxyPort } = await listeningPorts(proc);
      // 16 at once: both workers borrow from each other while their own CONNECTs are counted.
      const answers = await Promise.all(Array.from({ length: 16 }, async () => {
        const socket = await rawConnect(proxyPort);
        socket.on('error', () => undefined);
        socket.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\n\r\n`);
        return { socket, head: await readUntil(socket, '\r\n\r\n') };
      }));
      const statuses = answers.map((a) => a.head.split(' ')[1]).sort();
      expect(statuses).toEqual([...Array(7).fill('200'), ...Array(9).fill('429')]);
      for (const { socket } of answers) socket.destroy();
    } finally {
      proc.child.kill('SIGTERM');
      await proc.exited;
      await new Promise((resolve) => echo.server.close(resolve));
    }
  });

  // The round robin alternates the workers, so each one in turn takes the box's only slot: the
  // second worker's even share of a limit of 1 is nothing, and it can only admit by borrowing.
  for (const [flag, refusal, limit] of [
    ['--max-tunnels', 'too many open tunnels (limit 1)', 'max_tunnels'],
    ['--max-tunnels-per-source', 'too many open tunnels from 127.0.0.1 (limit 1)', 'max_tunnels_per_source'],
  ]) {
    it(`moves the only slot of ${flag} 1 to whichever worker takes the tunnel, and still holds the box to it`, async () => {
      const echo = await startEchoServer();
      const proc = spawnServe(serveArgs(folder, '--workers', '2', flag, '1', '--drain-timeout', '1s'), { NODE_CLUSTER_SCHED_POLICY: 'rr' });
      try {
        const { proxyPort, adminPort } = await listeningPorts(proc);
        for (let round = 1; round <= 4; round += 1) {
          const tunnel = await openTunnel(proxyPort, echo.port);
          tunnel.destroy();
          // Its completion is recorded after the worker let go of it.
          await waitFor(`${round} completed tunnels`, async () => {
            const items = (await getJson<{ items: RecordJson[] }>(adminPort, '/api/requests?limit=50')).body.items;
            return items.filter((r) => r.kind === 'connect' && r.ended_at !== null && r.status === 200).length >= round ? true : undefined;
          });
        }
        const ready = (await getJson<Readiness['body'] & { scheduling?: string }>(adminPort, '/readyz')).body;
        expect(ready.scheduling).toBe('round-robin');
        const shares = ready.workers?.map((w) => w.records);
        // Both workers admitted tunnels (a CONNECT's open and its completion each count).
        expect(shares).toHaveLength(2);
        for (const records of shares ?? []) expect(records).toBeGreaterThan(0);
        // The second worker's tunnels were each a borrow (the box's /metrics sums the workers').
        expect(await metricValue(adminPort, `tollgate_limit_borrows_total{limit="${limit}",outcome="granted"}`)).toBeGreaterThanOrEqual(1);
        const held = await openTunnel(proxyPort, echo.port);
        const next = await connectHead(proxyPort, echo.port);
        expect(next.head).toMatch(/^HTTP\/1\.1 429 /);
        expect(next.head).toContain(refusal);
        held.destroy();
      } finally {
        proc.child.kill('SIGTERM');
        await proc.exited;
        await new Promise((resolve) => echo.server.close(resolve));
      }
    });
  }

  it('leaves no worker behind when the primary is SIGKILLed: they close their connections and exit', async () => {
    const echo = await startEchoServer();
    const proc = spawnServe(serveArgs(folder, '--workers', '2', '--drain-timeout', '30s'));
    try {
      const { proxyPort, adminPort } = await listeningPorts(proc);
      const tunnel = await openTunnel(proxyPort, echo.port);
      const { body } = await getJson<Readiness['body']>(adminPort, '/readyz');
      const pids = (body.workers ?? []).map((w) => w.pid);
      expect(pids).toHaveLength(2);
      proc.child.kill('SIGKILL');
      // Nothing can be recorded without the primary: the tunnel is cut at once, not after --drain-timeout.
      await ended(tunnel);
      await waitFor('both workers gone', async () => (pids.some(alive) ? undefined : true), 10_000);
      tunnel.destroy();
    } finally {
      await proc.exited;
      await new Promise((resolve) => echo.server.close(resolve));
    }
  });

  it('loses no record a worker answered when the primary is SIGKILLed under load: the next start appends what the workers spooled', async () => {
    const own = serveFolder('tollgate-workers-spool-');
    const origin = await startOrigin((req, res) => res.end(`ok ${req.url}`));
    const served = new Set<string>();
    origin.server.on('request', (req: http.IncomingMessage) => served.add(req.url ?? ''));
    const answered: string[] = [];
    const proc = spawnServe(serveArgs(own, '--workers', '2', '--drain-timeout', '1s'));
    try {
      const { proxyPort, adminPort } = await listeningPorts(proc);
      const pids = ((await getJson<Readiness['body']>(adminPort, '/readyz')).body.workers ?? []).map((w) => w.pid);
      let n = 0;
      // Eight clients in a loop; the primary is killed once 120 requests are under way.
      const client = async (): Promise<void> => {
        while (n < 400) {
          const pathname = `/spooled/${(n += 1)}`;
          if (n === 120) proc.child.kill('SIGKILL');
          const status = await proxiedGet(proxyPort, `http://127.0.0.1:${origin.port}${pathname}`).catch(() => 0);
          if (status === 200) answered.push(pathname);
          else if (n > 120) return;
        }
      };
      await Promise.all(Array.from({ length: 8 }, client));
      await proc.exited;
      // The workers go when their primary does; only then is the next start's reading of their spools whole.
      await waitFor('both workers gone', async () => (pids.some(alive) ? undefined : true), 10_000);
    } finally {
      proc.child.kill('SIGKILL');
      await proc.exited;
    }
    expect(answered.length).toBeGreaterThanOrEqual(100);
    const next = spawnServe(serveArgs(own, '--drain-timeout', '1s'));
    try {
      const { adminPort } = await listeningPorts(next);
      const items = (await getJson<{ items: RecordJson[] }>(adminPort, '/api/requests?q=/spooled/&limit=1000')).body.items;
      const paths = new Set(items.map((r) => r.path));
      expect(answered.filter((p) => !paths.has(p))).toEqual([]);
      // A record is written before the first byte is forwarded: whatever reached the origin is in the log.
      expect([...served].filter((p) => !paths.has(p))).toEqual([]);
      // The log itself, not the index (which would not show a record appended twice): each once.
      const logged = readLogBack(auditLogDir(own.dbFile)).entries.filter(({ entry }) => entry.type !== 'complete').map(({ entry }) => entry.id);
      expect(new Set(logged).size).toBe(logged.length);
      expect(logged.length).toBeGreaterThanOrEqual(answered.length);
      // Nothing is left open: what the dead run left open ended at this start.
      expect(items.filter((r) => r.ended_at === null)).toEqual([]);
    } finally {
      next.child.kill('SIGTERM');
      await next.exited;
      await origin.close();
      own.remove();
    }
  });

  it('fails closed in every worker when the audit log cannot take records (disk below --min-free-disk)', async () => {
    const origin = await startOrigin((_req, res) => res.end('never'));
    let reached = 0;
    origin.server.on('request', () => (reached += 1));
    const proc = spawnServe(serveArgs(folder, '--workers', '2', '--min-free-disk', '100%'));
    try {
      const { proxyPort } = await listeningPorts(proc);
      const statuses = [];
      for (let i = 0; i < 6; i += 1) statuses.push(await proxiedGet(proxyPort, `http://127.0.0.1:${origin.port}/full/${i}`));
      expect(statuses).toEqual(Array(6).fill(503));
      expect(reached).toBe(0);
    } finally {
      proc.child.kill('SIGTERM');
      await proc.exited;
      await origin.close();
    }
  });

  // The log store appends the workers' encoded entries as they come; these stores take records
  // as objects, so the primary decodes them first (pool.ts commitDecoded).
  it.each([
    ['--audit-fsync (the writer thread)', (f: ServeFolder) => serveArgs(f, '--audit-fsync')],
    ['an in-memory --db (the SQLite store)', (f: ServeFolder) => ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--policies', f.policies, '--db', ':memory:']],
  ])('records every worker request with %s, the refused one under the id its answer named', async (_, args) => {
    const origin = await startOrigin((req, res) => res.end(`ok ${req.url}`));
    const proc = spawnServe([...args(folder), '--workers', '2', '--drain-timeout', '1s']);
    try {
      const { proxyPort, adminPort } = await listeningPorts(proc);
      const statuses = [];
      for (let i = 0; i < 6; i += 1) statuses.push(await proxiedGet(proxyPort, `http://127.0.0.1:${origin.port}/decoded/${i}`));
      expect(statuses).toEqual(Array(6).fill(200));
      const refused = await new Promise<http.IncomingMessage>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: proxyPort, path: 'http://refused.example/decoded/no', agent: false }, (res) => resolve(res.resume())).on('error', reject);
      });
      expect(refused.statusCode).toBe(403);
      const refusedId = Number(refused.headers['x-tollgate-request-id']);
      const items = await completedRecords(adminPort, 'q=/decoded/&limit=50', 7);
      expect(items.map((r) => r.path).sort()).toEqual([...Array.from({ length: 6 }, (_, i) => `/decoded/${i}`), '/decoded/no'].sort());
      expect(new Set(items.map((r) => r.id)).size).toBe(7);
      expect(items.filter((r) => r.status === 200 && r.decision === 'allow')).toHaveLength(6);
      expect(items.find((r) => r.path === '/decoded/no')).toMatchObject({ id: refusedId, decision: 'deny', status: 403 });
      const ready = await getJson<Readiness['body']>(adminPort, '/readyz');
      expect(ready.body.workers?.map((w) => w.records).reduce((a, b) => a + b, 0)).toBe(7);
    } finally {
      proc.child.kill('SIGKILL');
      await proc.exited;
      await origin.close();
    }
  });

  it('lets the workers accept for themselves by default, with every guarantee of the records kept', async () => {
    const origin = await startOrigin((req, res) => res.end(`ok ${req.url}`));
    const proc = spawnServe(serveArgs(folder, '--workers', '2', '--drain-timeout', '1s'));
    try {
      const { proxyPort, adminPort } = await listeningPorts(proc);
      expect((await proc.waitForLogStarting('workers accept connections themselves')).scheduling).toBe('kernel');
      const ready = await getJson<Readiness['body'] & { scheduling?: string }>(adminPort, '/readyz');
      expect(ready.body.scheduling).toBe('kernel');
      // Concurrent connections, as a load balancer's would be: whichever worker takes each.
      const statuses = await Promise.all(Array.from({ length: 24 }, (_, i) => proxiedGet(proxyPort, `http://127.0.0.1:${origin.port}/kernel/${i}`)));
      expect(statuses).toEqual(Array(24).fill(200));
      const items = await completedRecords(adminPort, 'q=/kernel/&limit=50', 24);
      expect(new Set(items.map((r) => r.id)).size).toBe(24);
      expect(new Set(items.map((r) => r.path)).size).toBe(24);
      const after = await getJson<Readiness['body']>(adminPort, '/readyz');
      expect(after.body.workers?.map((w) => w.state)).toEqual(['listening', 'listening']);
      expect(after.body.workers?.map((w) => w.records).reduce((a, b) => a + b, 0)).toBe(24);
    } finally {
      proc.child.kill('SIGKILL');
      await proc.exited;
      await origin.close();
    }
  });

  it('moves the only slot of --max-client-connections 1 to whichever worker accepts, and answers a second connection 503', async () => {
    const origin = await startOrigin((req, res) => res.end(`ok ${req.url}`));
    const proc = spawnServe(serveArgs(folder, '--workers', '2', '--max-client-connections', '1', '--drain-timeout', '1s'), { NODE_CLUSTER_SCHED_POLICY: 'rr' });
    const get = async (socket: Socket, pathname: string): Promise<string> => {
      socket.write(`GET http://127.0.0.1:${origin.port}${pathname} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`);
      return readUntil(socket, '\r\n\r\n');
    };
    try {
      const { proxyPort, adminPort } = await listeningPorts(proc);
      // The round robin alternates the workers: the second's even share of 1 is nothing.
      for (let round = 1; round <= 4; round += 1) {
        const socket = await rawConnect(proxyPort);
        socket.on('error', () => undefined);
        expect(await get(socket, `/cap/${round}`)).toMatch(/^HTTP\/1\.1 200 /);
        socket.destroy();
        await waitFor('the connection let go', async () => ((await metricValue(adminPort, 'tollgate_client_connections')) === 0 ? true : undefined));
      }
      const shares = (await getJson<Readiness['body']>(adminPort, '/readyz')).body.workers?.map((w) => w.records);
      for (const records of shares ?? []) expect(records).toBeGreaterThan(0);
      expect(await metricValue(adminPort, 'tollgate_limit_borrows_total{limit="max_client_connections",outcome="granted"}')).toBeGreaterThanOrEqual(1);
      const held = await rawConnect(proxyPort);
      held.on('error', () => undefined);
      expect(await get(held, '/cap/held')).toMatch(/^HTTP\/1\.1 200 /);
      const next = await rawConnect(proxyPort);
      next.on('error', () => undefined);
      next.write(`GET http://127.0.0.1:${origin.port}/cap/next HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`);
      const answer = await readAll(next);
      expect(answer).toMatch(/^HTTP\/1\.1 503 /);
      expect(answer).toContain('too many client connections (limit 1)');
      held.destroy();
    } finally {
      proc.child.kill('SIGTERM');
      await proc.exited;
      await origin.close();
    }
  });

  it('refuses a worker count that is not a number from 1 to 256 or auto', () => {
    const run = runCli('serve', ...serveArgs(folder, '--workers', 'many'));
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('--workers: expected auto or a number from 1 to 256');
  });
});

describe('serve --workers: users file and policy edits', () => {
  let folder: ServeFolder;
  let echo: { server: Server; port: number };
  beforeAll(async () => {
    folder = serveFolder('tollgate-workers-users-', LOOPBACK_POLICY.replace('default: deny', 'default: deny\n  auth: required'));
    echo = await startEchoServer();
  });
  afterAll(async () => {
    folder.remove();
    await new Promise((resolve) => echo.server.close(resolve));
  });

  const usersLine = (name: string, password: string): string => {
    const added = spawnSync(process.execPath, [CLI, 'users', 'add', name], { input: `${password}\n`, encoding: 'utf8' });
    expect(added.status).toBe(0);
    return added.stdout;
  };

  it('a user removed from the users file is refused by every worker, and a bad policy edit never reaches a respawned worker', async () => {
    const usersFile = path.join(folder.dir, 'users');
    const ciBot = usersLine('ci-bot', 'ci-bot-password');
    const deployBot = usersLine('deploy-bot', 'deploy-password');
    writeFileSync(usersFile, ciBot + deployBot);
    // The round robin, so that the asks in a row reach both workers.
    const proc = spawnServe(serveArgs(folder, '--workers', '2', '--users', usersFile, '--drain-timeout', '1s'), { NODE_CLUSTER_SCHED_POLICY: 'rr' });
    try {
      const { proxyPort, adminPort } = await listeningPorts(proc);
      const ask = async (user: string, password: string): Promise<number> => {
        const socket = await rawConnect(proxyPort);
        socket.on('error', () => undefined);
        const credentials = Buffer.from(`${user}:${password}`).toString('base64');
        socket.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nProxy-Authorization: Basic ${credentials}\r\n\r\n`);
        const head = await readUntil(socket, '\r\n\r\n');
        socket.destroy();
        return Number(head.split(' ')[1]);
      };
      // Connections alternate between the workers: four asks reach both, twice.
      const asks = async (user: string, password: string): Promise<number[]> => {
        const statuses = [];
        for (let i = 0; i < 4; i += 1) statuses.push(await ask(user, password));
        return statuses;
      };
      expect(await asks('ci-bot', 'ci-bot-password')).toEqual([200, 200, 200, 200]);

      const before = proc.lines.length;
      writeFileSync(usersFile, deployBot);
      await waitFor('both workers on the new users file', async () => {
        const workers = new Set(proc.lines.slice(before).filter((l) => l.msg === 'users file loaded' && l.worker !== undefined).map((l) => l.worker));
        return workers.size === 2 ? true : undefined;
      });
      expect(await asks('ci-bot', 'ci-bot-password')).toEqual([407, 407, 407, 407]);
      expect(await asks('deploy-bot', 'deploy-password')).toEqual([200, 200, 200, 200]);

      // A broken edit: the primary keeps the last good policy, and so does a worker started now.
      const good = (await getJson<Readiness['body']>(adminPort, '/readyz')).body.policy_version;
      const failedAt = proc.lines.length;
      writeFileSync(path.join(folder.policies, 'policy.yaml'), 'version: 1\nrules: [this is not a rule\n');
      await proc.waitForLog('policy reload failed; keeping the last good policy', failedAt);
      const victim = (await getJson<Readiness['body']>(adminPort, '/readyz')).body.workers?.[0] as WorkerView;
      process.kill(victim.pid, 'SIGKILL');
      const after = await waitFor('a new worker on the good policy', async () => {
        const { body } = await getJson<Readiness['body']>(adminPort, '/readyz');
        const slot = body.workers?.find((w) => w.slot === victim.slot);
        return slot !== undefined && slot.pid !== victim.pid && slot.state === 'listening' ? slot : undefined;
      });
      expect(after.policy_version).toBe(good);
      expect(await asks('deploy-bot', 'deploy-password')).toEqual([200, 200, 200, 200]);
    } finally {
      proc.child.kill('SIGTERM');
      await proc.exited;
    }
  });
});

describe('serve --drain-grace', () => {
  it('keeps taking new connections while /readyz fails, then drains and exits 0', async () => {
    const folder = serveFolder('tollgate-drain-grace-');
    const origin = await startOrigin((req, res) => res.end(`ok ${req.url}`));
    // A grace of 10 s: the check and the request in it must fit, however slow the machine.
    const proc = spawnServe(serveArgs(folder, '--workers', '2', '--drain-grace', '10s', '--drain-timeout', '1s'));
    try {
      const { proxyPort, adminPort } = await listeningPorts(proc);
      expect(await proxiedGet(proxyPort, `http://127.0.0.1:${origin.port}/before`)).toBe(200);
      proc.child.kill('SIGTERM');
      await waitFor('/readyz to fail', async () => ((await getJson(adminPort, '/readyz')).status === 503 ? true : undefined), 5_000);
      // The load balancer has not noticed yet: what it still sends is served, and recorded.
      expect(await proxiedGet(proxyPort, `http://127.0.0.1:${origin.port}/in-grace`, 4_000)).toBe(200);
      expect((await proc.exited).code).toBe(0);
      expect(proc.lines.some((l) => l.msg === 'not ready (/readyz fails); still taking new connections for the drain grace')).toBe(true);
      const db = new Database(folder.dbFile, { readonly: true });
      try {
        expect(db.prepare("SELECT count(*) FROM requests WHERE path = '/in-grace' AND status = 200").pluck().get()).toBe(1);
      } finally {
        db.close();
      }
    } finally {
      if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGKILL');
      await proc.exited;
      await origin.close();
      folder.remove();
    }
  }, 60_000);
});
