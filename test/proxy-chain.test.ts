import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { Authenticator } from '../src/auth/authenticator';
import { hashPassword, parseHash } from '../src/auth/password-hash';
import type { ParsedHash } from '../src/auth/password-hash';
import { listenOn, parseHead, rawConnect, readAll, readUntil, startOrigin, startProxy } from './helpers/proxy-harness';
import type { Origin, ProxyHarness } from './helpers/proxy-harness';
import { startRawOrigin } from './helpers/raw-origin';

/** The parent: a second tollgate that knows the destinations and wants credentials. */
const PARENT_POLICY = `version: 1
settings:
  default: deny
  auth: required
network:
  allow_ranges: [127.0.0.0/8]
rules:
  - name: parent-allows-origin
    action: allow
    hosts: [origin.test]
    ports: any
`;

/** The child decides and records locally, then goes through the parent (or not, per rule). */
const childPolicy = (parentPort: number): string => `version: 1
settings:
  default: deny
  upstream: http://child:child-pass@127.0.0.1:${parentPort}
network:
  # Loopback is exempt for every connection here: direct.test's origin and the parent both
  # listen on it. test/parent-guard.test.ts covers a parent exempted through parent_ranges alone.
  allow_ranges: [127.0.0.0/8]
rules:
  - name: direct-origin
    action: allow
    hosts: [direct.test]
    ports: any
    via: direct
  - name: through-parent
    action: allow
    hosts: [origin.test, refused-by-parent.test]
    ports: any
`;

describe('chaining through an upstream proxy', () => {
  let parent: ProxyHarness;
  let child: ProxyHarness;
  let origin: Origin;
  let echo: { server: Server; port: number };

  beforeAll(async () => {
    const users = new Map([['child', parseHash(await hashPassword('child-pass')) as ParsedHash]]);
    origin = await startOrigin((req, res) => res.end(`origin saw ${req.url} host ${req.headers.host}`));
    const server = createServer((s) => {
      s.on('error', () => s.destroy());
      s.on('data', (chunk) => s.write(chunk));
    });
    echo = { server, port: await listenOn(server) };
    parent = await startProxy({
      policies: { 'policy.yaml': PARENT_POLICY },
      hosts: { 'origin.test': ['127.0.0.1'] },
      authenticator: new Authenticator(() => users),
    });
    // The child cannot resolve origin.test itself: only the parent can.
    child = await startProxy({ policies: { 'policy.yaml': childPolicy(parent.port) }, hosts: { 'direct.test': ['127.0.0.1'] } });
  });
  afterAll(async () => {
    await child.close();
    await parent.close();
    await origin.close();
    echo.server.close();
  });

  test('a CONNECT goes through the parent, with the parent credentials; both record it', async () => {
    const socket = await rawConnect(child.port);
    socket.write(`CONNECT origin.test:${echo.port} HTTP/1.1\r\n\r\n`);
    expect(parseHead(await readUntil(socket, '\r\n\r\n')).status).toBe(200);
    socket.write('through-two-proxies');
    await readUntil(socket, 'through-two-proxies');
    socket.end();
    await readAll(socket);
    const mine = await child.waitForRecord((r) => r.port === echo.port && r.ended_at !== null);
    expect(mine).toMatchObject({ decision: 'allow', rule: 'through-parent', resolved_ip: '127.0.0.1', status: 200 });
    const theirs = await parent.waitForRecord((r) => r.port === echo.port && r.kind === 'connect');
    expect(theirs).toMatchObject({ decision: 'allow', user: 'child', rule: 'parent-allows-origin' });
  });

  test('a plain HTTP request goes through the parent via http-proxy-agent', async () => {
    const socket = await rawConnect(child.port);
    socket.write(`GET http://origin.test:${origin.port}/via-parent?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    const answer = parseHead(await readAll(socket));
    expect(answer.status).toBe(200);
    expect(answer.body).toBe(`origin saw /via-parent?x=1 host origin.test:${origin.port}`);
    const theirs = await parent.waitForRecord((r) => r.path === '/via-parent' && r.ended_at !== null);
    expect(theirs).toMatchObject({ kind: 'http', user: 'child', status: 200 });
  });

  test("the parent's refusal is a 502 naming the parent, recorded by the child", async () => {
    const socket = await rawConnect(child.port);
    socket.write('CONNECT refused-by-parent.test:443 HTTP/1.1\r\n\r\n');
    const answer = parseHead(await readAll(socket));
    expect(answer.status).toBe(502);
    expect(answer.body).toContain(`upstream proxy http://127.0.0.1:${parent.port}`);
    expect(answer.body).toContain('403');
    // Neither the parent's user nor its password reaches clients.
    expect(answer.body).not.toContain('child');
    const record = await child.waitForRecord((r) => r.id === Number(answer.headers['x-tollgate-request-id']));
    expect(record).toMatchObject({ decision: 'allow', status: 502 });
    expect(record.error).toMatch(/^upstream_error: upstream proxy .* refused CONNECT/);
  });

  test('a rule with "via: direct" bypasses the parent', async () => {
    const socket = await rawConnect(child.port);
    socket.write(`GET http://direct.test:${origin.port}/direct HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(parseHead(await readAll(socket)).status).toBe(200);
    expect(parent.records().some((r) => r.path === '/direct')).toBe(false);
  });

  test('a path that looks like another authority (//evil.test/...) still goes to the approved host', async () => {
    for (const path of ['//evil.test/steal', '/\\169.254.169.254/latest']) {
      const socket = await rawConnect(child.port);
      socket.write(`GET http://origin.test:${origin.port}${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      const answer = parseHead(await readAll(socket));
      expect(answer.status).toBe(200);
      expect(answer.body).toContain(`host origin.test:${origin.port}`);
    }
    expect(parent.records().some((r) => r.host !== 'origin.test' && r.host !== 'refused-by-parent.test')).toBe(false);
  });

  test('a parent that refuses our credentials on plain HTTP is a 502, not a 407 to the client', async () => {
    const wrong = await startProxy({
      policies: { 'policy.yaml': childPolicy(parent.port).replace('child:child-pass@', 'child:wrong-pass@') },
      hosts: {},
    });
    try {
      const socket = await rawConnect(wrong.port);
      socket.write(`GET http://origin.test:${origin.port}/creds HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      const answer = parseHead(await readAll(socket));
      expect(answer.status).toBe(502);
      expect(answer.headers['proxy-authenticate']).toBeUndefined();
    } finally {
      await wrong.close();
    }
  });

  test('a parent that answers with something other than HTTP is a 502, recorded as an upstream_error', async () => {
    const garbage = await startRawOrigin((s) => s.end('HELLO\r\n\r\n'));
    const misled = await startProxy({ policies: { 'policy.yaml': childPolicy(garbage.port) }, hosts: {} });
    try {
      const socket = await rawConnect(misled.port);
      socket.write(`GET http://origin.test:${origin.port}/garbage HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(parseHead(await readAll(socket)).status).toBe(502);
      const record = await misled.waitForRecord((r) => r.path === '/garbage' && r.ended_at !== null);
      expect(record).toMatchObject({ status: 502, error: expect.stringMatching(/^upstream_error: upstream proxy .* sent an invalid response/) });
    } finally {
      await misled.close();
      garbage.server.close();
    }
  });
});
