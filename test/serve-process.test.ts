import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { catchUpIndex } from './helpers/audit-index';
import { withReader } from './helpers/audit-index-fixtures';
import { RecordEnd } from '../src/audit/record-types';
import { LOOPBACK_POLICY } from './helpers/policies';
import { listenOn, parseHead, rawConnect, readAll, readUntil } from './helpers/proxy-harness';
import { startEchoServer } from './helpers/raw-origin';
import { spawnSync } from 'node:child_process';
import { CLI, serveArgs, serveFolder, spawnServe, splitHostPort } from './helpers/serve-process';
import type { ServeFolder, ServeProcess } from './helpers/serve-process';

interface OpenRow {
  id: number;
  ended_at_ms: number | null;
  decision: string;
  host: string;
  error: string | null;
}

function readRecords(dbFile: string): OpenRow[] {
  return withReader(dbFile, (db) => db.prepare('SELECT id, ended_at_ms, decision, host, error FROM requests ORDER BY id').all() as OpenRow[]);
}

/** The id of the newest record, from the admin API (an allowed CONNECT's 200 names none). */
async function newestId(adminPort: number): Promise<number> {
  const page = (await (await fetch(`http://127.0.0.1:${adminPort}/api/requests?limit=1`)).json()) as { items: Array<{ id: number }> };
  return page.items[0].id;
}

describe('tollgate serve as a process', () => {
  let folder: ServeFolder;
  let policies: string;
  let echo: Server;
  let echoPort: number;
  const running: ServeProcess[] = [];

  beforeAll(async () => {
    ({ server: echo, port: echoPort } = await startEchoServer());
  });
  beforeEach(() => {
    folder = serveFolder('tollgate-serve-');
    policies = folder.policies;
  });
  afterEach(() => {
    for (const p of running.splice(0)) p.child.kill('SIGKILL');
    folder.remove();
  });
  afterAll(() => echo.close());

  function start(args: string[] = [], env: NodeJS.ProcessEnv = {}): ServeProcess {
    const proc = spawnServe(serveArgs(folder, ...args), env);
    running.push(proc);
    return proc;
  }

  async function openTunnel(proxyPort: number): Promise<Socket> {
    const socket = await rawConnect(proxyPort);
    socket.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\n\r\n`);
    expect(parseHead(await readUntil(socket, '\r\n\r\n')).status).toBe(200);
    socket.write('ping');
    await readUntil(socket, 'ping');
    return socket;
  }

  test('the defaults of npm start: example policies, one "listening" line, health endpoints, a denial recorded', async () => {
    const proc = spawnServe(['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--db', path.join(folder.dir, 'audit.db')]);
    running.push(proc);
    const listening = await proc.waitForLog('listening');
    expect(listening.policies).toBe('./policies');
    const admin = splitHostPort(String(listening.admin));
    const proxy = splitHostPort(String(listening.proxy));
    expect((await fetch(`http://127.0.0.1:${admin.port}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${admin.port}/readyz`)).status).toBe(200);
    const socket = await rawConnect(proxy.port);
    socket.write('CONNECT pastebin.com:443 HTTP/1.1\r\nHost: pastebin.com:443\r\n\r\n');
    const answer = parseHead(await readAll(socket));
    expect(answer.status).toBe(403);
    const page = (await (await fetch(`http://127.0.0.1:${admin.port}/api/requests?limit=5`)).json()) as { items: Array<{ host: string; decision: string }> };
    expect(page.items[0]).toMatchObject({ host: 'pastebin.com', decision: 'deny' });
  });

  test('refuses a non-loopback admin address without TOLLGATE_ADMIN_TOKEN', async () => {
    const proc = start(['--admin-listen', '0.0.0.0:0']);
    const { code } = await proc.exited;
    expect(code).toBe(1);
    expect(proc.stderr).toContain('TOLLGATE_ADMIN_TOKEN');
  });

  test('exits 1 (and does not linger) when the admin port is taken', async () => {
    const taken = createServer();
    const port = await listenOn(taken);
    const proc = start(['--admin-listen', `127.0.0.1:${port}`]);
    const { code } = await proc.exited;
    taken.close();
    expect(code).toBe(1);
    expect(proc.stderr).toContain('EADDRINUSE');
  });

  test('refuses to start on invalid policies, naming FILE:LINE', async () => {
    writeFileSync(path.join(policies, 'policy.yaml'), LOOPBACK_POLICY.replace('action: allow', 'action: alow'));
    const proc = start();
    const { code } = await proc.exited;
    expect(code).toBe(1);
    expect(proc.stderr).toMatch(/policy\.yaml:\d+: /);
  });

  test('SIGKILL loses no record of a connection the proxy had allowed', async () => {
    const proc = start();
    const proxy = splitHostPort(String((await proc.waitForLog('listening')).proxy));
    const socket = await openTunnel(proxy.port);
    socket.on('error', () => undefined);
    proc.child.kill('SIGKILL');
    await proc.exited;
    // The record is in the log (the write SPEC §4 asks for); the index may not have it yet.
    catchUpIndex(folder.dbFile);
    const rows = readRecords(folder.dbFile);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ decision: 'allow', host: '127.0.0.1', ended_at_ms: null });
    socket.destroy();
  });

  // The allowed CONNECT's record is an open; the denied one's is a finished record (a refusal).
  // Both are appended to the log by the writer thread; the SQLite index follows on its own
  // thread, so a lock on the index file (a backup, an operator's sqlite3 shell) holds up no
  // request: before the log, the same lock made every request wait and then get 503.
  test.each([
    ['an allowed', () => `127.0.0.1:${echoPort}`, 200],
    ['a denied', () => 'denied.example:443', 403],
  ])('a lock on the SQLite index holds up no request: %s CONNECT is answered and recorded, open tunnels keep relaying', async (_kind, target, status) => {
    const proc = start();
    const listening = await proc.waitForLog('listening');
    const proxy = splitHostPort(String(listening.proxy));
    const admin = splitHostPort(String(listening.admin));
    const tunnel = await openTunnel(proxy.port);
    const locker = new Database(folder.dbFile);
    let answer: { status: number; headers: Record<string, string> };
    try {
      locker.prepare('BEGIN IMMEDIATE').run();
      const waiting = await rawConnect(proxy.port);
      waiting.write(`CONNECT ${target()} HTTP/1.1\r\n\r\n`);
      answer = parseHead(await readUntil(waiting, '\r\n\r\n'));
      waiting.destroy();
      for (let i = 0; i < 5; i += 1) {
        tunnel.write(`ping${i}.`);
        await readUntil(tunnel, `ping${i}.`);
      }
    } finally {
      locker.close();
      tunnel.destroy();
    }
    expect(answer.status).toBe(status);
    // Released, the index catches up: the API's read barrier waits for it.
    const id = Number(answer.headers['x-tollgate-request-id'] ?? (await newestId(admin.port)));
    const record = (await (await fetch(`http://127.0.0.1:${admin.port}/api/requests/${id}`)).json()) as { host: string; status: number | null };
    expect(record.host).toBe(target().split(':')[0]);
  });

  test('SIGTERM stops accepting, lets an open tunnel finish, completes its record and exits 0', async () => {
    const proc = start();
    const listening = await proc.waitForLog('listening');
    const proxy = splitHostPort(String(listening.proxy));
    const adminPort = splitHostPort(String(listening.admin)).port;
    const socket = await openTunnel(proxy.port);
    expect((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(200);
    proc.child.kill('SIGTERM');
    await proc.waitForLog('draining');
    await expect(rawConnect(proxy.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    // Not ready from the moment SIGTERM arrives (a load balancer stops sending), while the tunnel drains.
    const draining = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
    expect(draining.status).toBe(503);
    expect(await draining.json()).toMatchObject({ draining: true });
    socket.write('still-open');
    await readUntil(socket, 'still-open');
    socket.end();
    const { code } = await proc.exited;
    expect(code).toBe(0);
    const rows = readRecords(folder.dbFile);
    expect(rows).toHaveLength(1);
    expect(rows[0].ended_at_ms).not.toBeNull();
    expect(rows[0].error).toBeNull();
  });

  test('SIGTERM closes tunnels still open after the drain timeout and records them as cut at the deadline', async () => {
    const proc = start(['--drain-timeout', '300ms']);
    const proxy = splitHostPort(String((await proc.waitForLog('listening')).proxy));
    const socket = await openTunnel(proxy.port);
    socket.on('error', () => undefined);
    // The test socket is half-open capable: the proxy closing the tunnel shows as 'end'.
    const ended = new Promise((resolve) => socket.once('end', resolve));
    proc.child.kill('SIGTERM');
    await ended;
    expect((await proc.exited).code).toBe(0);
    const rows = readRecords(folder.dbFile);
    expect(rows[0].ended_at_ms).not.toBeNull();
    // Not ERR_STREAM_PREMATURE_CLOSE: the proxy cut it, the network did not fail.
    expect(rows[0].error).toBe(RecordEnd.drainDeadline);
  });

  test('a policy edit is picked up; an invalid edit keeps the last good policy', async () => {
    const proc = start();
    const listening = await proc.waitForLog('listening');
    const proxy = splitHostPort(String(listening.proxy));
    const admin = splitHostPort(String(listening.admin));
    const denied = await rawConnect(proxy.port);
    denied.write('CONNECT localhost.test:443 HTTP/1.1\r\n\r\n');
    expect(parseHead(await readAll(denied)).status).toBe(403);

    const before = proc.lines.length;
    writeFileSync(path.join(policies, 'policy.yaml'), LOOPBACK_POLICY.replace('hosts: [127.0.0.1]', 'hosts: [127.0.0.1, other.test]'));
    const loaded = await proc.waitForLog('policy loaded', before);
    expect(loaded.policy_version).not.toBe(listening.policy_version);

    const beforeBad = proc.lines.length;
    writeFileSync(path.join(policies, 'policy.yaml'), 'version: 1\nrules:\n  - name: x\n    acton: allow\n');
    await proc.waitForLog('policy reload failed; keeping the last good policy', beforeBad);
    const ready = (await (await fetch(`http://127.0.0.1:${admin.port}/readyz`)).json()) as { policy_version: string; last_reload: { ok: boolean; problems: string[] } };
    expect(ready.policy_version).toBe(loaded.policy_version);
    expect(ready.last_reload.ok).toBe(false);
    expect(ready.last_reload.problems[0]).toMatch(/^policy\.yaml:4: /);
    const tunnel = await openTunnel(proxy.port);
    tunnel.destroy();

    const beforeHup = proc.lines.length;
    writeFileSync(path.join(policies, 'policy.yaml'), LOOPBACK_POLICY);
    proc.child.kill('SIGHUP');
    await proc.waitForLog('policy loaded', beforeHup);
  });

  test('users add prints a hashed line; a users file edit is picked up by the running proxy', async () => {
    const added = spawnSync(process.execPath, [CLI, 'users', 'add', 'ci-bot'], { input: 'ci-bot-password\n', encoding: 'utf8' });
    expect(added.status).toBe(0);
    expect(added.stdout).toMatch(/^ci-bot:\$scrypt\$ln=14,r=8,p=1\$\S+\$\S+\n$/);
    expect(added.stdout).not.toContain('ci-bot-password');
    const usersFile = path.join(folder.dir, 'users');
    writeFileSync(usersFile, added.stdout);
    writeFileSync(path.join(policies, 'policy.yaml'), LOOPBACK_POLICY.replace('default: deny', 'default: deny\n  auth: required'));
    const proc = start(['--users', usersFile]);
    const proxy = splitHostPort(String((await proc.waitForLog('listening')).proxy));
    const ask = async (user: string, password: string): Promise<number> => {
      const socket = await rawConnect(proxy.port);
      const credentials = Buffer.from(`${user}:${password}`).toString('base64');
      socket.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nProxy-Authorization: Basic ${credentials}\r\n\r\n`);
      const status = parseHead(await readUntil(socket, '\r\n\r\n')).status;
      socket.destroy();
      return status;
    };
    expect(await ask('ci-bot', 'ci-bot-password')).toBe(200);
    expect(await ask('deploy-bot', 'deploy-password')).toBe(407);
    const second = spawnSync(process.execPath, [CLI, 'users', 'add', 'deploy-bot'], { input: 'deploy-password\n', encoding: 'utf8' });
    const before = proc.lines.length;
    writeFileSync(usersFile, added.stdout + second.stdout);
    await proc.waitForLog('users file loaded', before);
    expect(await ask('deploy-bot', 'deploy-password')).toBe(200);
  });
});
