import fs from 'node:fs';
import type { Server, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { AccessLine } from '../src/audit/access-log/access-follower';
import type { AuditRecordJson } from '../src/audit/record-types';
import { RecordEnd } from '../src/audit/record-types';
import { ConfigError, resolveServeConfig } from '../src/config';
import { parseHead, rawConnect, readAll, readUntil } from './helpers/proxy-harness';
import { startEchoServer, startRawOrigin } from './helpers/raw-origin';
import type { RawOrigin } from './helpers/raw-origin';
import { listeningPorts, serveArgs, serveFolder, spawnServe } from './helpers/serve-process';
import type { ServeFolder, ServeProcess } from './helpers/serve-process';

/**
 * SPEC §6 `serve --access-log`: one JSON line per completed record, the record's own fields (as
 * /api/requests/:id returns them) with `msg: "access"` and `node`; a FILE is reopened on SIGUSR1
 * and never loses or repeats a line across a restart, kill -9 included.
 */

let folder: ServeFolder;
let accessFile: string;
let origin: RawOrigin;
let echo: Server;
let echoPort: number;
const running: ServeProcess[] = [];
const sockets: Socket[] = [];

beforeAll(async () => {
  origin = await startRawOrigin((socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'));
  ({ server: echo, port: echoPort } = await startEchoServer());
});
afterAll(() => {
  origin.server.close();
  echo.close();
});
beforeEach(() => {
  folder = serveFolder('tollgate-access-');
  accessFile = path.join(folder.dir, 'access.log');
});
afterEach(() => {
  for (const p of running.splice(0)) p.child.kill('SIGKILL');
  for (const s of sockets.splice(0)) s.destroy();
  folder.remove();
});

const HOSTILE = [
  'CONNECT a"b\0c:443 HTTP/1.1\r\n\r\n',
  'CONNECT a\nb:443 HTTP/1.1\r\n\r\n',
  'GET http://a\\b\xff"/p\0 HTTP/1.1\r\nHost: x\r\n\r\n',
  'CONNECT a%22b%00%0A:0 HTTP/1.1\r\n\r\n',
];

/** A bound on a traffic loop, should the test fail before it stops the loop. */
const MAX_TRAFFIC = 2000;

async function start(...extra: string[]): Promise<{ proc: ServeProcess; proxyPort: number; adminPort: number }> {
  const proc = spawnServe(serveArgs(folder, ...extra));
  running.push(proc);
  return { proc, ...(await listeningPorts(proc)) };
}

/** A plain HTTP GET through the proxy, answered by the raw origin; resolves with the status. */
async function get(proxyPort: number, urlPath: string): Promise<number> {
  const socket = await rawConnect(proxyPort);
  sockets.push(socket);
  socket.on('error', () => undefined);
  socket.write(`GET http://127.0.0.1:${origin.port}${urlPath} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  return parseHead(await readAll(socket)).status;
}

/** A tunnel to the echo server, left open. */
async function openTunnel(proxyPort: number): Promise<Socket> {
  const socket = await rawConnect(proxyPort);
  sockets.push(socket);
  socket.on('error', () => undefined);
  socket.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\n\r\n`);
  expect(parseHead(await readUntil(socket, '\r\n\r\n')).status).toBe(200);
  return socket;
}

function closeTunnel(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    socket.once('close', () => resolve());
    socket.end();
  });
}

/** Every line of an access file, parsed: a line that is not JSON fails the test. */
function lines(file: string = accessFile): AccessLine[] {
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  if (text !== '') expect(text.endsWith('\n')).toBe(true);
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AccessLine);
}

async function until<T>(what: string, probe: () => T | Promise<T>, done: (value: T) => boolean, limitMs = 15_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value).slice(0, 500)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Every record, once all are complete (a closed connection's completion commits just after). */
async function apiRecords(adminPort: number): Promise<AuditRecordJson[]> {
  const read = async (): Promise<AuditRecordJson[]> => {
    const response = await fetch(`http://127.0.0.1:${adminPort}/api/requests?limit=1000`);
    return ((await response.json()) as { items: AuditRecordJson[] }).items;
  };
  return until('every record complete', read, (records) => records.every((r) => r.ended_at !== null));
}

/** The lines (of every file given) are exactly the API's records, each once, field for field. */
function expectExactlyTheRecords(written: AccessLine[], records: AuditRecordJson[]): void {
  expect(records.every((r) => r.ended_at !== null)).toBe(true);
  const ids = written.map((l) => l.id);
  expect(new Set(ids).size).toBe(ids.length);
  const byId = new Map(records.map((r) => [r.id, r]));
  expect([...ids].sort((a, b) => a - b)).toEqual([...byId.keys()].sort((a, b) => a - b));
  for (const { msg, ...record } of written) {
    expect({ msg, node: record.node }).toEqual({ msg: 'access', node: os.hostname() });
    expect(record).toEqual(byId.get(record.id));
  }
}

describe('serve --access-log FILE', () => {
  test('one line per completed record, equal to /api/requests/:id; hostile input gives valid JSON lines', async () => {
    const { proxyPort, adminPort } = await start('--access-log', accessFile);
    const tunnel = await openTunnel(proxyPort);
    for (let i = 0; i < 4; i += 1) expect(await get(proxyPort, `/r${i}`)).toBe(200);
    // Malformed request lines: quotes, a NUL, a bare LF, a backslash, bytes past ASCII, and the
    // same percent-encoded (Node's parser refuses the raw ones; the encoded host is recorded as sent).
    for (const raw of HOSTILE) {
      const hostile = await rawConnect(proxyPort);
      sockets.push(hostile);
      hostile.on('error', () => undefined);
      hostile.write(Buffer.from(raw, 'latin1'));
      expect(parseHead(await readAll(hostile)).status).toBeGreaterThanOrEqual(400);
    }
    // The open tunnel is no line yet.
    const before = await until('a line per request', () => lines(), (ls) => ls.length === 4 + HOSTILE.length);
    expect(before.map((l) => l.port)).not.toContain(echoPort);
    await closeTunnel(tunnel);
    const written = await until('the tunnel\'s line', () => lines(), (ls) => ls.length === 5 + HOSTILE.length);
    for (const line of written) {
      const response = await fetch(`http://127.0.0.1:${adminPort}/api/requests/${line.id}`);
      const { msg, ...record } = line;
      expect({ msg, node: record.node }).toEqual({ msg: 'access', node: os.hostname() });
      expect(record).toEqual(await response.json());
    }
    expect(written.filter((l) => l.decision === 'deny')).toHaveLength(HOSTILE.length);
    expect(written.map((l) => l.host)).toContain('a%22b%00%0A:0');
  });

  test('rename then SIGUSR1: earlier lines in the renamed file, later ones in a new file, none lost or repeated', async () => {
    const { proc, proxyPort, adminPort } = await start('--access-log', accessFile);
    const tunnel = await openTunnel(proxyPort);
    // Traffic runs on while the file is rotated.
    let stopTraffic = false;
    const traffic = (async () => {
      for (let i = 0; !stopTraffic && i < MAX_TRAFFIC; i += 1) await get(proxyPort, `/t${i}`);
    })();
    try {
      await until('lines before the rotation', () => lines().length, (n) => n >= 10);
      fs.renameSync(accessFile, `${accessFile}.1`);
      proc.child.kill('SIGUSR1');
      await until('lines in the new file', () => lines().length, (n) => n >= 10);
      await closeTunnel(tunnel);
    } finally {
      stopTraffic = true;
      await traffic;
    }
    const records = await apiRecords(adminPort);
    const both = await until('every record in one of the files', () => [...lines(`${accessFile}.1`), ...lines()], (ls) => ls.length >= records.length);
    expectExactlyTheRecords(both, records);
    // The tunnel opened before the rotation and completed after it: its line, whole, is in the new file.
    expect(lines().find((l) => l.kind === 'connect')).toMatchObject({ host: '127.0.0.1', port: echoPort });
    // Signals sent to serve do not start Node's inspector (SIGUSR1's default).
    expect(proc.stderr).not.toMatch(/Debugger listening/);
  });

  test('kill -9 mid-traffic, then a restart: every completed record has exactly one line', async () => {
    const first = await start('--access-log', accessFile);
    await openTunnel(first.proxyPort);
    let stopTraffic = false;
    const traffic = Array.from({ length: 4 }, async (_, worker) => {
      // Requests cut by the kill fail: the loop goes on until told to stop.
      for (let i = 0; !stopTraffic && i < MAX_TRAFFIC; i += 1) await get(first.proxyPort, `/k${worker}-${i}`).catch(() => 0);
    });
    try {
      await until('traffic under way', () => lines().length, (n) => n >= 40);
      first.proc.child.kill('SIGKILL');
      await first.proc.exited;
    } finally {
      stopTraffic = true;
      await Promise.all(traffic);
    }
    for (const s of sockets.splice(0)) s.destroy();

    const second = await start('--access-log', accessFile);
    for (let i = 0; i < 3; i += 1) expect(await get(second.proxyPort, `/after${i}`)).toBe(200);
    const records = await apiRecords(second.adminPort);
    const written = await until('a line for every record', () => lines(), (ls) => ls.length >= records.length);
    expectExactlyTheRecords(written, records);
    expect(written.find((l) => l.kind === 'connect')?.error).toBe(RecordEnd.proxyRestarted);
    // A clean stop writes nothing more (every record already has its line).
    second.proc.child.kill('SIGTERM');
    expect((await second.proc.exited).code).toBe(0);
    expect(lines()).toHaveLength(written.length);
  });
});

describe('serve --access-log stdout', () => {
  test('access lines share stdout with serve log lines, told apart by msg "access"', async () => {
    const { proc, proxyPort, adminPort } = await start('--access-log', 'stdout');
    for (let i = 0; i < 3; i += 1) expect(await get(proxyPort, `/s${i}`)).toBe(200);
    await until('3 access lines', () => proc.lines.filter((l) => l.msg === 'access').length, (n) => n === 3);
    const access = proc.lines.filter((l) => l.msg === 'access') as unknown as AccessLine[];
    expectExactlyTheRecords(access, await apiRecords(adminPort));
    // serve's own lines carry a level; access lines do not.
    for (const line of proc.lines) expect(line.msg === 'access').toBe(line.level === undefined);
  });
});

describe('--access-log option', () => {
  test('off by default; the flag wins over TOLLGATE_ACCESS_LOG; refused with an in-memory --db', () => {
    expect(resolveServeConfig({}, {}).accessLog).toBeNull();
    expect(resolveServeConfig({}, { TOLLGATE_ACCESS_LOG: 'stdout' }).accessLog).toBe('stdout');
    expect(resolveServeConfig({ accessLog: '/var/log/a.log' }, { TOLLGATE_ACCESS_LOG: 'stdout' }).accessLog).toBe('/var/log/a.log');
    expect(() => resolveServeConfig({ accessLog: 'stdout', db: ':memory:' }, {})).toThrow(ConfigError);
  });
});
