import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { parseHead, rawConnect, readAll, readUntil, listenOn, startProxy } from './helpers/proxy-harness';
import type { ProxyHarness } from './helpers/proxy-harness';
import { PROXY_TEST_HOSTS, PROXY_TEST_POLICY } from './helpers/policies';
import { startEchoServer } from './helpers/raw-origin';
import { RETRY_AFTER_SECONDS } from '../src/proxy/respond';

/** Open a tunnel from a given loopback source address; resolves with the socket and the answer head. */
function tunnelFrom(proxy: ProxyHarness, port: number, localAddress = '127.0.0.1'): Promise<{ socket: Socket; head: ReturnType<typeof parseHead> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port: proxy.port, host: '127.0.0.1', localAddress, allowHalfOpen: true }, () => {
      socket.write(`CONNECT origin.test:${port} HTTP/1.1\r\n\r\n`);
      void readUntil(socket, '\r\n\r\n').then((text) => resolve({ socket, head: parseHead(text) }), reject);
    });
    socket.once('error', reject);
  });
}

async function settled(proxy: ProxyHarness): Promise<void> {
  await proxy.ctx.tunnels.whenEmpty();
  expect(proxy.ctx.tunnels.size).toBe(0);
  expect(proxy.ctx.gauges.activeRequests).toBe(0);
}

describe('tunnel limits', () => {
  let proxy: ProxyHarness;
  let echo: { server: Server; port: number };

  beforeAll(async () => {
    echo = await startEchoServer();
    proxy = await startProxy({
      policies: { 'policy.yaml': PROXY_TEST_POLICY },
      hosts: PROXY_TEST_HOSTS,
      limits: { maxTunnels: 3, maxTunnelsPerSource: 2 },
    });
  });
  afterAll(async () => {
    await proxy.close();
    echo.server.close();
  });

  test('past the per-source limit a CONNECT gets 429 with Retry-After; a slot frees on close', async () => {
    const first = await tunnelFrom(proxy, echo.port);
    const second = await tunnelFrom(proxy, echo.port);
    expect([first.head.status, second.head.status]).toEqual([200, 200]);
    const third = await tunnelFrom(proxy, echo.port);
    expect(third.head.status).toBe(429);
    expect(third.head.headers['retry-after']).toBe(String(RETRY_AFTER_SECONDS));
    const record = await proxy.waitForRecord((r) => r.id === Number(third.head.headers['x-tollgate-request-id']));
    expect(record).toMatchObject({ status: 429, decision: 'allow' });
    expect(record.error).toMatch(/^too_many_tunnels/);
    third.socket.destroy();

    first.socket.destroy();
    await proxy.waitForRecord((r) => r.status === 200 && r.ended_at !== null);
    const again = await tunnelFrom(proxy, echo.port);
    expect(again.head.status).toBe(200);
    second.socket.destroy();
    again.socket.destroy();
    await settled(proxy);
  });

  test('a refused CONNECT stops counting against the limits at once, not once its record commits', async () => {
    // Hold the commits of the denials' records (paste.test) until the end.
    const audit = proxy.ctx.audit;
    const record = audit.record.bind(audit);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let held = 0;
    let bothHeld: () => void = () => undefined;
    const denialsPending = new Promise<void>((resolve) => (bothHeld = resolve));
    audit.record = async (open, completion) => {
      if (open.host === 'paste.test') {
        held += 1;
        if (held === 2) bothHeld();
        await gate;
      }
      return record(open, completion);
    };
    try {
      const denied = await Promise.all([rawConnect(proxy.port), rawConnect(proxy.port)]);
      const answers = denied.map((socket) => {
        socket.write('CONNECT paste.test:443 HTTP/1.1\r\n\r\n');
        return readAll(socket);
      });
      await denialsPending;
      // Both denials are still being recorded; the per-source limit (2) has both slots free.
      const open = [await tunnelFrom(proxy, echo.port), await tunnelFrom(proxy, echo.port)];
      expect(open.map((t) => t.head.status)).toEqual([200, 200]);
      release();
      expect((await Promise.all(answers)).map((text) => parseHead(text).status)).toEqual([403, 403]);
      for (const t of open) t.socket.destroy();
      await settled(proxy);
    } finally {
      audit.record = record;
      release();
    }
  });

  test('past the overall limit a CONNECT from another source gets 429 too', async () => {
    const open = [await tunnelFrom(proxy, echo.port, '127.0.0.2'), await tunnelFrom(proxy, echo.port, '127.0.0.3'), await tunnelFrom(proxy, echo.port, '127.0.0.4')];
    expect(open.map((t) => t.head.status)).toEqual([200, 200, 200]);
    const fourth = await tunnelFrom(proxy, echo.port, '127.0.0.5');
    expect(fourth.head.status).toBe(429);
    expect(fourth.head.body).toContain('limit 3');
    for (const t of [...open, fourth]) t.socket.destroy();
    await settled(proxy);
  });
});

describe('timeouts', () => {
  let proxy: ProxyHarness;
  let echo: { server: Server; port: number };
  let silent: { server: Server; port: number };

  beforeAll(async () => {
    echo = await startEchoServer();
    // Accepts, reads, never answers (its sockets end when the proxy gives up on them).
    const server = createServer((s) => s.on('error', () => s.destroy()));
    silent = { server, port: await listenOn(server) };
    proxy = await startProxy({
      policies: { 'policy.yaml': PROXY_TEST_POLICY },
      hosts: PROXY_TEST_HOSTS,
      timeouts: { tunnelIdleMs: 300, requestIdleMs: 300 },
    });
  });
  afterAll(async () => {
    await proxy.close();
    echo.server.close();
    silent.server.close();
  });

  test('an idle tunnel is closed after the idle timeout and its record says why', async () => {
    const { socket, head } = await tunnelFrom(proxy, echo.port);
    expect(head.status).toBe(200);
    await readAll(socket);
    const record = await proxy.waitForRecord((r) => r.kind === 'connect' && r.ended_at !== null);
    expect(record.error).toMatch(/^idle_timeout/);
    await settled(proxy);
  });

  test('an origin that never answers a plain HTTP request gets the client a 504', async () => {
    const socket = await rawConnect(proxy.port);
    socket.write(`GET http://origin.test:${silent.port}/never HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    const response = parseHead(await readAll(socket));
    expect(response.status).toBe(504);
    const record = await proxy.waitForRecord((r) => r.path === '/never' && r.ended_at !== null);
    expect(record.status).toBe(504);
    expect(record.error).toMatch(/upstream_timeout/);
    await settled(proxy);
  });
});

describe('a tunnel moving data', () => {
  // An idle timeout of 1 s (not the 300 ms above): a machine stalled for longer than the timeout
  // between two round trips would cut the tunnel through no fault of the proxy.
  test('is not cut by the idle timeout', async () => {
    const echo = await startEchoServer();
    const proxy = await startProxy({
      policies: { 'policy.yaml': PROXY_TEST_POLICY },
      hosts: PROXY_TEST_HOSTS,
      timeouts: { tunnelIdleMs: 1000 },
    });
    try {
      const { socket } = await tunnelFrom(proxy, echo.port);
      // Round trips back to back for 2.5 idle periods: the tunnel as a whole outlives the idle
      // timeout, but is never idle for it (bounded by the clock, not by a count).
      const until = Date.now() + 2_500;
      for (let i = 0; Date.now() < until; i += 1) {
        socket.write(`tick${i};`);
        await readUntil(socket, `tick${i};`);
      }
      expect(socket.readableEnded).toBe(false);
      socket.end();
      await readAll(socket);
      await settled(proxy);
    } finally {
      await proxy.close();
      echo.server.close();
    }
  });
});

describe('tunnel lifetime', () => {
  test('a busy tunnel is still closed at its maximum lifetime', async () => {
    const echo = await startEchoServer();
    const proxy = await startProxy({
      policies: { 'policy.yaml': PROXY_TEST_POLICY },
      hosts: PROXY_TEST_HOSTS,
      timeouts: { tunnelLifetimeMs: 400 },
    });
    const { socket } = await tunnelFrom(proxy, echo.port);
    socket.on('error', () => undefined);
    // The proxy may cut the tunnel while our last write is unread: a reset is an end here too.
    const ended = readAll(socket).catch(() => '');
    // Keep it busy until the proxy ends it (bounded: the lifetime is 400 ms, the test's 30 s).
    let busy = true;
    void ended.then(() => (busy = false));
    while (busy) {
      socket.write('x');
      await Promise.race([readUntil(socket, 'x').catch(() => ''), ended]);
    }
    const record = await proxy.waitForRecord((r) => r.kind === 'connect' && r.ended_at !== null);
    expect(record.error).toMatch(/^lifetime_exceeded/);
    await settled(proxy);
    await proxy.close();
    echo.server.close();
  });
});
