import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import type { Server, Socket } from 'node:net';
import { describeWithHaproxy, HaproxyProcess } from './helpers/haproxy';
import { waitFor } from './helpers/fleet-ship';
import { describePg, freshDatabase } from './helpers/postgres';
import { startOrigin } from './helpers/proxy-harness';
import type { Origin } from './helpers/proxy-harness';
import { startEchoServer } from './helpers/raw-origin';
import { CLI, ensureBuilt, listeningPorts, REPO_ROOT, serveArgs, serveFolder, ServeProcess, spawnServe, splitHostPort } from './helpers/serve-process';
import type { ServeFolder } from './helpers/serve-process';
import type { AuditRecordJson } from '../src/audit/record-types';

jest.setTimeout(180_000);

/**
 * The fleet demo (docker-compose.fleet.yml) as real processes on loopback: HAProxy in TCP mode
 * → two `tollgate serve` replicas → one PostgreSQL database, read back through `tollgate admin`.
 *
 * HAProxy sends PROXY v2 to the replicas (health checks too) and they accept it from 127.0.0.1/32,
 * so the records carry the workloads' own address (127.0.0.2) and HAProxy's as peer_ip.
 */
const CLIENT_ADDRESS = '127.0.0.2';
const LB_ADDRESS = '127.0.0.1';
const CLIENT_LOOPS = 4;

interface Reply {
  /** 0 when the connection closed without a response. */
  status: number;
  text: string;
}

/** A workload's connection to the load balancer, from its own address. */
function connectFrom(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress: CLIENT_ADDRESS }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Everything until the peer closes; a reset counts as a close (a killed replica resets). */
function readToClose(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.once('close', () => resolve(text));
  });
}

/** Bytes until `marker`, or null when the connection closes first. */
function readMarker(socket: Socket, marker: string): Promise<string | null> {
  return new Promise((resolve) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      if (text.includes(marker)) finish(text);
    };
    const onClose = (): void => finish(null);
    const finish = (value: string | null): void => {
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve(value);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}

function statusOf(text: string): number {
  const match = /^HTTP\/1\.1 (\d{3}) /.exec(text);
  return match === null ? 0 : Number(match[1]);
}

async function httpGet(lbPort: number, url: string): Promise<Reply> {
  let socket: Socket;
  try {
    socket = await connectFrom(lbPort);
  } catch {
    return { status: 0, text: '' };
  }
  socket.on('error', () => undefined);
  const done = readToClose(socket);
  socket.write(`GET ${url} HTTP/1.1\r\nHost: ${new URL(url).host}\r\nConnection: close\r\n\r\n`);
  const text = await done;
  return { status: statusOf(text), text };
}

/** A CONNECT tunnel through the load balancer, open and checked with one round trip; null if it failed. */
async function openTunnel(lbPort: number, echoPort: number, tag: string): Promise<{ socket: Socket; answered: boolean } | { socket: null; answered: boolean }> {
  let socket: Socket;
  try {
    socket = await connectFrom(lbPort);
  } catch {
    return { socket: null, answered: false };
  }
  socket.on('error', () => undefined);
  socket.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\n\r\n`);
  const head = await readMarker(socket, '\r\n\r\n');
  if (head === null) return { socket: null, answered: false };
  if (statusOf(head) !== 200) throw new Error(`CONNECT refused: ${head.split('\r\n')[0]}`);
  socket.write(tag);
  if ((await readMarker(socket, tag)) === null) return { socket: null, answered: true };
  return { socket, answered: true };
}

function closeSocket(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    socket.once('close', () => resolve());
    socket.end();
  });
}

function spawnAdmin(url: string): ServeProcess {
  ensureBuilt();
  const child = spawn(process.execPath, [CLI, 'admin', '--admin-listen', '127.0.0.1:0', '--audit-url', url], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new ServeProcess(child);
}

const describeFleet = describeWithHaproxy(describePg);

describeFleet('the fleet demo: HAProxy → two replicas → PostgreSQL, one replica killed mid-run', () => {
  let origin: Origin;
  let echo: Server;
  let echoPort: number;
  /** Requests the origin holds until released: in flight when a replica is killed. */
  const held: Array<() => void> = [];
  const folders: ServeFolder[] = [];
  const running: ServeProcess[] = [];
  const sockets: Socket[] = [];
  let haproxy: HaproxyProcess | undefined;

  beforeAll(async () => {
    origin = await startOrigin((req, res) => {
      const reply = (): void => {
        // A length, not chunks: a reply cut short by the kill then shows as a body that does not end right.
        const body = `origin saw ${req.url ?? ''}`;
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      };
      if (req.url?.startsWith('/hold/') === true) held.push(reply);
      else reply();
    });
    ({ server: echo, port: echoPort } = await startEchoServer());
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await haproxy?.stop();
    for (const p of running) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    for (const f of folders) f.remove();
    await origin.close();
    echo.close();
  });

  async function replica(folder: ServeFolder, url: string, node: string, listen = '127.0.0.1:0', workers = '1') {
    const extra = ['--proxy-protocol-from', `${LB_ADDRESS}/32`, '--workers', workers];
    const args = serveArgs(folder, '--node', node, '--audit-url', url, ...extra);
    args[args.indexOf('--listen') + 1] = listen;
    const proc = spawnServe(args);
    running.push(proc);
    return { proc, ...(await listeningPorts(proc)) };
  }

  test('every answered request is in the shared history exactly once, from both nodes; the killed replica completes its open records', async () => {
    const url = freshDatabase('fleet_demo');
    const [folderA, folderB] = [serveFolder('tollgate-demo-a-'), serveFolder('tollgate-demo-b-')];
    folders.push(folderA, folderB);
    const [a, b] = await Promise.all([replica(folderA, url, 'replica-a'), replica(folderB, url, 'replica-b', '127.0.0.1:0', '2')]);
    // Replica b runs two proxy workers: the PROXY header and the shipping hold across them.
    expect(b.line.workers).toBe(2);
    haproxy = await HaproxyProcess.start({
      backends: [{ name: 'replica-a', port: a.proxyPort }, { name: 'replica-b', port: b.proxyPort }],
      proxyV2: true,
    });
    const lb = haproxy.port;

    // What the workloads saw: each HTTP request has its own path, so the history can be matched.
    const answered = new Set<string>();
    const failed = new Set<string>();
    let tunnelsAnswered = 0;
    let tunnelsFailed = 0;
    let seq = 0;
    const get = async (prefix: string): Promise<void> => {
      const pathName = `/${prefix}/${(seq += 1)}`;
      const reply = await httpGet(lb, `http://127.0.0.1:${origin.port}${pathName}`);
      // A reply cut short (or none) is a failure the workload saw; a complete one must be the origin's.
      if (!reply.text.endsWith(`origin saw ${pathName}`)) failed.add(pathName);
      else {
        expect(reply.status).toBe(200);
        answered.add(pathName);
      }
    };
    const tunnel = async (): Promise<void> => {
      const opened = await openTunnel(lb, echoPort, `t${(seq += 1)}`);
      if (opened.answered) tunnelsAnswered += 1;
      else tunnelsFailed += 1;
      if (opened.socket !== null) await closeSocket(opened.socket);
    };
    /** CLIENT_LOOPS workloads in parallel, each alternating a request and a tunnel, until `stop()`. */
    const traffic = (prefix: string, until: () => boolean): Promise<void[]> =>
      Promise.all(Array.from({ length: CLIENT_LOOPS }, async () => {
        for (let i = 0; !until(); i += 1) await (i % 3 === 2 ? tunnel() : get(prefix));
      }));

    // Warm-up: both replicas answer through the load balancer.
    const warm = seq + 60;
    await traffic('warm', () => seq >= warm);
    expect(failed.size + tunnelsFailed).toBe(0);

    // In flight at the kill: tunnels held open, and requests the origin has not answered yet.
    // Opened one after another, round robin puts half of each on each replica.
    const heldTunnels: Socket[] = [];
    for (let i = 0; i < 4; i += 1) {
      const opened = await openTunnel(lb, echoPort, `held${i}`);
      if (opened.socket === null) throw new Error('a held tunnel did not open');
      tunnelsAnswered += 1;
      heldTunnels.push(opened.socket);
      sockets.push(opened.socket);
    }
    const heldRequests: Array<Promise<void>> = [];
    for (let i = 0; i < 4; i += 1) {
      heldRequests.push(get('hold'));
      await waitFor('the origin holding the request', () => held.length === i + 1);
    }

    let stopAt = Number.POSITIVE_INFINITY;
    const during = traffic('during', () => seq >= stopAt);
    await waitFor('traffic under way', () => seq > warm + 20);
    a.proc.child.kill('SIGKILL');
    await a.proc.exited;
    await haproxy.waitForStatus(new Map([['replica-a', 'DOWN']]));
    // Once HAProxy has taken it out, every new connection goes to replica-b: a run of traffic
    // with no failure shows it.
    const failuresAtDown = failed.size + tunnelsFailed;
    const afterDown = seq;
    await waitFor('traffic after the replica is out', () => seq > afterDown + 60);
    stopAt = seq;
    await during;
    expect(failed.size + tunnelsFailed).toBe(failuresAtDown);

    const tunnelsCut = heldTunnels.filter((s) => s.destroyed || s.readableEnded);
    expect(tunnelsCut).toHaveLength(2);
    for (const s of heldTunnels.filter((t) => !tunnelsCut.includes(t))) {
      s.write('still-there');
      expect(await readMarker(s, 'still-there')).not.toBeNull();
      await closeSocket(s);
    }
    for (const release of held.splice(0)) release();
    await Promise.all(heldRequests);
    const holdFailed = [...failed].filter((p) => p.startsWith('/hold/'));
    expect(holdFailed).toHaveLength(2);

    // Same --db, same port (HAProxy's config names it): it ships its backlog and completes
    // what was left open as proxy_restarted.
    const again = await replica(folderA, url, 'replica-a', `127.0.0.1:${a.proxyPort}`);
    expect(again.proxyPort).toBe(a.proxyPort);
    await haproxy.waitForStatus(new Map([['replica-a', 'UP'], ['replica-b', 'UP']]));
    const failuresBeforeAfter = failed.size + tunnelsFailed;
    const after = seq + 60;
    await traffic('after', () => seq >= after);
    expect(failed.size + tunnelsFailed).toBe(failuresBeforeAfter);

    // The history, read as the security team reads it: the console process on PostgreSQL.
    const admin = spawnAdmin(url);
    running.push(admin);
    const base = `http://127.0.0.1:${splitHostPort(String((await admin.waitForLog('listening')).admin)).port}`;
    let seen = 'nothing yet';
    const rows = await waitFor('every answered request in the history, completed', async () => {
      const response = await fetch(`${base}/api/requests/export?format=ndjson`);
      const text = await response.text();
      if (response.status !== 200) throw new Error(`export: ${response.status} ${text.slice(0, 200)}`);
      const all = text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AuditRecordJson);
      const found = all.filter((r) => r.kind === 'http' && answered.has(r.path ?? '')).length;
      const open = all.filter((r) => r.ended_at === null);
      seen = `${all.length} rows, ${found}/${answered.size} answered requests, open: ${JSON.stringify(open.slice(0, 3))}`;
      return found >= answered.size && open.length === 0 ? all : undefined;
    }, 60_000).catch((err: Error) => {
      throw new Error(`${err.message}; last seen: ${seen}`);
    });

    const httpRows = rows.filter((r) => r.kind === 'http');
    const tunnelRows = rows.filter((r) => r.kind === 'connect');
    // Nothing else in the history: health checks and refused connections leave no record.
    expect(httpRows.length + tunnelRows.length).toBe(rows.length);
    // Exactly once: no path twice, every answered path there.
    const paths = httpRows.map((r) => r.path ?? '');
    expect(new Set(paths).size).toBe(paths.length);
    expect([...answered].filter((p) => !paths.includes(p))).toEqual([]);
    // The only others are requests the workloads saw fail, cut by the kill on replica-a (most
    // completed as proxy_restarted; one whose answer was recorded but not yet delivered need not be).
    const unanswered = httpRows.filter((r) => !answered.has(r.path ?? ''));
    expect(unanswered.filter((r) => !failed.has(r.path ?? '') || r.node !== 'replica-a')).toEqual([]);
    // The held requests were at the origin at the kill: open records, completed at the restart.
    for (const p of holdFailed) {
      expect(unanswered.filter((r) => r.path === p).map((r) => [r.node, r.error])).toEqual([['replica-a', 'proxy_restarted']]);
    }
    // Tunnels: every answered one recorded; at most the failed attempts more (a record opened
    // just before the kill, its 200 never delivered).
    expect(tunnelRows.length).toBeGreaterThanOrEqual(tunnelsAnswered);
    expect(tunnelRows.length).toBeLessThanOrEqual(tunnelsAnswered + tunnelsFailed);
    // The two held tunnels on the killed replica, completed at its restart.
    const restartedTunnels = tunnelRows.filter((r) => r.error === 'proxy_restarted');
    expect(restartedTunnels.length).toBeGreaterThanOrEqual(2);
    expect(restartedTunnels.every((r) => r.node === 'replica-a')).toBe(true);
    // One history from both nodes, the restarted replica answering again after its restart.
    expect(new Set(rows.map((r) => r.node))).toEqual(new Set(['replica-a', 'replica-b']));
    expect(httpRows.some((r) => r.node === 'replica-a' && r.path?.startsWith('/after/'))).toBe(true);
    expect(httpRows.some((r) => r.node === 'replica-b' && r.path?.startsWith('/after/'))).toBe(true);
    const nodes = (await (await fetch(`${base}/api/nodes`)).json()) as { nodes: Array<{ node: string }> };
    expect(nodes.nodes.map((n) => n.node).sort()).toEqual(['replica-a', 'replica-b']);
    // Whose address: with PROXY v2, the workloads' own; without it, every record names HAProxy.
    expect(new Set(rows.map((r) => r.client_ip))).toEqual(new Set([CLIENT_ADDRESS]));
    // peer_ip comes with --proxy-protocol-from: the connecting address, HAProxy's.
    expect(new Set(rows.map((r) => r.peer_ip))).toEqual(new Set([LB_ADDRESS]));

    console.log(JSON.stringify({
      fleet_demo: {
        http_answered: answered.size,
        http_failed: failed.size,
        tunnels_answered: tunnelsAnswered,
        tunnels_failed: tunnelsFailed,
        failures_before_haproxy_marked_down: failuresAtDown,
        rows: rows.length,
        per_node: { a: rows.filter((r) => r.node === 'replica-a').length, b: rows.filter((r) => r.node === 'replica-b').length },
        proxy_restarted: rows.filter((r) => r.error === 'proxy_restarted').length,
      },
    }));
  });
});
