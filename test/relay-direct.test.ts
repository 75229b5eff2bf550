import type { Socket } from 'node:net';
import { parseHead, rawConnect, readAll, startProxy } from './helpers/proxy-harness';
import type { ProxyHarness } from './helpers/proxy-harness';
import { PROXY_TEST_HOSTS, PROXY_TEST_POLICY } from './helpers/policies';
import { startRawOrigin as rawOrigin } from './helpers/raw-origin';

/**
 * Plain HTTP straight to a destination (undici, src/proxy/relay-direct.ts): exchanges that a
 * client stalls or abandons end and are recorded, and answers undici finds odd still arrive.
 */

const IDLE_MS = 400;

/** An endless 200: written as fast as the proxy reads it, and again whenever it drains. */
function endlessAnswer(s: Socket): void {
  const chunk = Buffer.alloc(64 * 1024, 120);
  s.write('HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n');
  const pump = (): void => { while (s.write(chunk)); };
  s.on('drain', pump);
  pump();
}

describe('direct plain HTTP: stalls, abandonment and bodiless answers', () => {
  let proxy: ProxyHarness;
  beforeAll(async () => {
    proxy = await startProxy({
      policies: { 'policy.yaml': PROXY_TEST_POLICY }, hosts: PROXY_TEST_HOSTS, timeouts: { requestIdleMs: IDLE_MS },
    });
  });
  afterAll(() => proxy.close());

  test('a client that stalls its upload gets a 504 and frees the destination connection', async () => {
    const origin = await rawOrigin(() => undefined);
    const socket = await rawConnect(proxy.port);
    socket.write(`POST http://origin.test:${origin.port}/stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789`);
    const answer = parseHead(await readAll(socket));
    expect(answer.status).toBe(504);
    const record = await proxy.waitForRecord((r) => r.path === '/stalled' && r.ended_at !== null);
    expect(record).toMatchObject({ status: 504, bytes_up: 10 });
    expect(record.error).toMatch(/^upstream_timeout/);
    await origin.closed(1);
    origin.server.close();
  });

  test('a client that stops reading is cut after the idle timeout, and the record ends', async () => {
    const origin = await rawOrigin(endlessAnswer);
    const socket = await rawConnect(proxy.port);
    socket.on('error', () => undefined);
    socket.pause();
    socket.write(`GET http://origin.test:${origin.port}/unread HTTP/1.1\r\nHost: x\r\n\r\n`);
    const record = await proxy.waitForRecord((r) => r.path === '/unread' && r.ended_at !== null, 10_000);
    expect(record.status).toBe(200);
    expect(record.error).toMatch(/upstream_timeout|no data/);
    expect(record.bytes_down).toBeGreaterThan(0);
    await origin.closed(1);
    socket.destroy();
    origin.server.close();
  });

  test('a client that leaves with pipelined requests in flight: every record ends, every destination connection closes', async () => {
    const origin = await rawOrigin((s, head) => {
      if (!head.includes('/hold')) endlessAnswer(s);
    });
    const socket = await rawConnect(proxy.port);
    socket.on('error', () => undefined);
    socket.write(
      `GET http://origin.test:${origin.port}/hold HTTP/1.1\r\nHost: x\r\n\r\n` +
        `GET http://origin.test:${origin.port}/queued HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    await origin.requests(2);
    socket.destroy();
    const held = await proxy.waitForRecord((r) => r.path === '/hold' && r.ended_at !== null);
    const queued = await proxy.waitForRecord((r) => r.path === '/queued' && r.ended_at !== null);
    expect([held.error, queued.error]).toEqual([expect.stringMatching(/client/), expect.stringMatching(/client/)]);
    await origin.closed(2);
    origin.server.close();
  });

  test.each([
    ['a 304 that states the length of the full answer', 304, 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 99\r\n\r\n'],
    ['a 204 with a Content-Length', 204, 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n'],
  ])('%s reaches the client whole, and the connection carries the next request', async (_name, status, answer) => {
    const origin = await rawOrigin((s, head) => {
      s.write(head.includes('/second') ? 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok' : answer);
    });
    const socket = await rawConnect(proxy.port);
    socket.write(`GET http://origin.test:${origin.port}/first HTTP/1.1\r\nHost: x\r\n\r\n`);
    const first = await new Promise<string>((resolve) => socket.once('data', (b: Buffer) => resolve(b.toString('latin1'))));
    expect(parseHead(first).status).toBe(status);
    socket.write(`GET http://origin.test:${origin.port}/second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    const second = parseHead(await readAll(socket));
    expect(second).toMatchObject({ status: 200, body: 'ok' });
    const record = await proxy.waitForRecord((r) => r.path === '/first' && r.ended_at !== null);
    expect(record).toMatchObject({ status, error: null });
    origin.server.close();
  });

  test('an answer with both Content-Length and Transfer-Encoding is a 502 that says the answer was invalid', async () => {
    const origin = await rawOrigin((s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'));
    const socket = await rawConnect(proxy.port);
    socket.write(`GET http://origin.test:${origin.port}/both HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(parseHead(await readAll(socket)).status).toBe(502);
    const record = await proxy.waitForRecord((r) => r.path === '/both' && r.ended_at !== null);
    expect(record.error).toMatch(/invalid response/);
    origin.server.close();
  });
});
