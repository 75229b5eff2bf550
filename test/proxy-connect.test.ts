import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import Database from 'better-sqlite3';
import path from 'node:path';
import { TargetReason } from '../src/request/target';
import { listenOn, parseHead, rawConnect, readAll, readUntil, startProxy } from './helpers/proxy-harness';
import type { ProxyHarness } from './helpers/proxy-harness';
import { PROXY_TEST_HOSTS, PROXY_TEST_POLICY } from './helpers/policies';

/** A TCP origin that echoes "echo:<bytes>" and, on the client's FIN, sends "bye" and ends. */
function startEchoOrigin(onFirstData?: (socket: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    let first = true;
    socket.on('data', (chunk) => {
      if (first) onFirstData?.(socket);
      first = false;
      socket.write(`echo:${chunk.toString()}`);
    });
    socket.on('end', () => socket.end('bye'));
  });
  return listenOn(server).then((port) => ({ server, port }));
}

async function connectThrough(proxy: ProxyHarness, authority: string, extra = ''): Promise<{ socket: Socket; head: string }> {
  const socket = await rawConnect(proxy.port);
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n${extra}`);
  const head = await readUntil(socket, '\r\n\r\n');
  return { socket, head };
}

/** Send a CONNECT and read the whole answer until the proxy closes (refusals). */
async function refusedConnect(proxy: ProxyHarness, authority: string): Promise<ReturnType<typeof parseHead>> {
  const socket = await rawConnect(proxy.port);
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  return parseHead(await readAll(socket));
}

describe('CONNECT tunnels', () => {
  let proxy: ProxyHarness;
  let origin: { server: Server; port: number };
  let openRecordSeenByOrigin: boolean | null = null;

  beforeAll(async () => {
    proxy = await startProxy({ policies: { 'policy.yaml': PROXY_TEST_POLICY }, hosts: PROXY_TEST_HOSTS });
    origin = await startEchoOrigin(() => {
      // SPEC §4: the record is on disk before the first byte is forwarded. Read it through a
      // separate connection to the file, as an auditor would.
      const db = new Database(path.join(proxy.dir, 'audit.db'), { readonly: true });
      const row = db.prepare('SELECT COUNT(*) AS n FROM requests WHERE ended_at_ms IS NULL AND kind = ?').get('connect') as { n: number };
      db.close();
      openRecordSeenByOrigin = row.n > 0;
    });
  });
  afterAll(async () => {
    await proxy.close();
    origin.server.close();
  });

  test('an allowed CONNECT gets 200 only after the upstream connected, then bytes flow both ways', async () => {
    const { socket, head } = await connectThrough(proxy, `origin.test:${origin.port}`);
    expect(head).toBe('HTTP/1.1 200 Connection Established\r\n\r\n');
    socket.write('hello');
    expect(await readUntil(socket, 'echo:hello')).toContain('echo:hello');
    expect(openRecordSeenByOrigin).toBe(true);
    socket.end();
    expect(await readAll(socket)).toBe('bye');
    const record = await proxy.waitForRecord((r) => r.kind === 'connect' && r.ended_at !== null && r.bytes_up === 5);
    expect(record).toMatchObject({
      decision: 'allow', rule: 'origin', host: 'origin.test', port: origin.port, status: 200,
      resolved_ip: '127.0.0.1', bytes_up: 5, bytes_down: 'echo:hello'.length + 3, error: null, would_deny: false,
    });
    expect(record.rule_source).toMatch(/^policy\.yaml:\d+$/);
  });

  test('bytes pipelined right after the CONNECT head are forwarded', async () => {
    const { socket, head } = await connectThrough(proxy, `origin.test:${origin.port}`, 'early-bytes');
    expect(parseHead(head).status).toBe(200);
    const rest = head.slice(head.indexOf('\r\n\r\n') + 4);
    const echoed = rest.includes('echo:early-bytes') ? rest : rest + (await readUntil(socket, 'early-bytes'));
    expect(echoed).toContain('echo:early-bytes');
    socket.destroy();
  });

  test('half-close: the client ends its side and still receives the origin reply', async () => {
    const { socket } = await connectThrough(proxy, `origin.test:${origin.port}`);
    socket.end('last');
    const received = await readAll(socket);
    expect(received).toBe('echo:lastbye');
  });

  test('half-close: the origin ends first and still receives what the client sends after', async () => {
    let received = '';
    const origin2 = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => s.destroy());
      s.end('first');
      s.on('data', (chunk) => (received += chunk.toString()));
    });
    const clientFinished = new Promise<void>((resolve) => origin2.on('connection', (s) => s.on('end', () => resolve())));
    const port = await listenOn(origin2);
    const { socket } = await connectThrough(proxy, `origin.test:${port}`);
    await readUntil(socket, 'first');
    socket.end('after-origin-fin');
    await clientFinished;
    expect(received).toBe('after-origin-fin');
    origin2.close();
  });

  test('a denied CONNECT gets 403 with the X-Tollgate headers, a one-line reason, then close', async () => {
    const response = await refusedConnect(proxy, 'paste.test:443');
    expect(response.status).toBe(403);
    expect(response.headers['x-tollgate-decision']).toBe('deny');
    expect(response.headers['x-tollgate-rule']).toBe('deny-paste');
    const id = Number(response.headers['x-tollgate-request-id']);
    expect(response.body.trim().split('\n')).toHaveLength(1);
    expect(response.body).toContain('paste.test:443');
    expect(response.body).toContain('deny-paste');
    const record = await proxy.waitForRecord((r) => r.id === id);
    expect(record).toMatchObject({ decision: 'deny', rule: 'deny-paste', status: 403, host: 'paste.test', port: 443, bytes_up: 0 });
  });

  test('a host no rule allows is denied by the default', async () => {
    const response = await refusedConnect(proxy, 'unknown.test:443');
    expect(response.status).toBe(403);
    expect(response.headers['x-tollgate-rule']).toBe('(default)');
  });

  const malformed: Array<[string, string, string]> = [
    ['empty host', ':443', TargetReason.empty],
    ['no port', 'origin.test', TargetReason.noPort],
    ['port 0', 'origin.test:0', TargetReason.badPort],
    ['port above 65535', 'origin.test:65536', TargetReason.badPort],
    ['unbracketed IPv6', '::1:443', TargetReason.unbracketedIpv6],
    ['userinfo', 'user@origin.test:443', TargetReason.userinfoInAuthority],
  ];
  test.each(malformed)('malformed target (%s) gets 400 and a record', async (_name, authority, reason) => {
    const response = await refusedConnect(proxy, authority);
    expect(response.status).toBe(400);
    expect(response.body).toContain(reason);
    const id = Number(response.headers['x-tollgate-request-id']);
    const record = await proxy.waitForRecord((r) => r.id === id);
    expect(record).toMatchObject({ decision: 'deny', status: 400, kind: 'connect', reason });
  });

  const guarded: Array<[string, string, string]> = [
    ['a name resolving to a private address', 'private.test:443', '10.0.0.5'],
    ['a name resolving to the metadata address', 'metadata.test:80', '169.254.169.254'],
    ['an IPv4-mapped IPv6 answer', 'mapped.test:443', '::ffff:10.0.0.1'],
    ['a private IP literal', '10.1.2.3:443', '10.1.2.3'],
  ];
  test.each(guarded)('the guard refuses %s without connecting', async (_name, authority, address) => {
    const response = await refusedConnect(proxy, authority);
    expect(response.status).toBe(403);
    expect(response.headers['x-tollgate-rule']).toBe('(guard)');
    expect(response.body).toContain(address);
    const record = await proxy.waitForRecord((r) => r.id === Number(response.headers['x-tollgate-request-id']));
    expect(record).toMatchObject({ decision: 'deny', rule: '(guard)', status: 403, resolved_ip: null });
  });

  test("the guard refuses the proxy's own listener even though loopback is allowed", async () => {
    const response = await refusedConnect(proxy, `127.0.0.1:${proxy.port}`);
    expect(response.status).toBe(403);
    expect(response.headers['x-tollgate-rule']).toBe('(guard)');
  });

  test('of mixed answers only the address that passed the guard is connected to', async () => {
    const { socket, head } = await connectThrough(proxy, `mixed.test:${origin.port}`);
    expect(parseHead(head).status).toBe(200);
    socket.destroy();
    const record = await proxy.waitForRecord((r) => r.host === 'mixed.test' && r.ended_at !== null);
    expect(record.resolved_ip).toBe('127.0.0.1');
  });

  test('DNS failure gets 502', async () => {
    const response = await refusedConnect(proxy, 'gone.test:443');
    expect(response.status).toBe(502);
    const record = await proxy.waitForRecord((r) => r.id === Number(response.headers['x-tollgate-request-id']));
    expect(record).toMatchObject({ decision: 'allow', status: 502 });
    expect(record.error).toMatch(/^dns_failed/);
  });

  test('connection refused gets 502', async () => {
    const closed = createServer();
    const port = await listenOn(closed);
    await new Promise((resolve) => closed.close(resolve));
    const response = await refusedConnect(proxy, `origin.test:${port}`);
    expect(response.status).toBe(502);
    const record = await proxy.waitForRecord((r) => r.id === Number(response.headers['x-tollgate-request-id']));
    expect(record.error).toMatch(/^connect_refused/);
  });

  test('an upstream that closes tears down the client side and completes the record', async () => {
    const abrupt = createServer((s) => {
      s.on('error', () => undefined);
      s.destroy();
    });
    const port = await listenOn(abrupt);
    const { socket, head } = await connectThrough(proxy, `origin.test:${port}`);
    expect(parseHead(head).status).toBe(200);
    await readAll(socket);
    const record = await proxy.waitForRecord((r) => r.port === port && r.ended_at !== null);
    expect(record.status).toBe(200);
    abrupt.close();
  });
});
