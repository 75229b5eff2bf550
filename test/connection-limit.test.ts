import type { Socket } from 'node:net';
import { parseHead, rawConnect, readAll, startOrigin, startProxy } from './helpers/proxy-harness';
import type { Origin, ProxyHarness } from './helpers/proxy-harness';
import { PROXY_TEST_HOSTS, PROXY_TEST_POLICY } from './helpers/policies';
import { REFUSALS_IN_FLIGHT } from '../src/proxy/connection-limit';
import { ConfigError, resolveServeConfig } from '../src/config';
import { derivedClientConnections, RESERVED_DESCRIPTORS } from '../src/descriptors';

const CAP = 5;

/** The proxy's side of the next `count` connections it accepts, admitted or not. */
function nextAccepted(proxy: ProxyHarness, count: number): Promise<Socket[]> {
  return new Promise((resolve) => {
    const sockets: Socket[] = [];
    const onConnection = (socket: Socket): void => {
      sockets.push(socket);
      if (sockets.length < count) return;
      proxy.server.off('connection', onConnection);
      resolve(sockets);
    };
    proxy.server.on('connection', onConnection);
  });
}

/** Open `count` idle client connections and wait until the proxy has accepted each of them. */
async function openIdle(proxy: ProxyHarness, count: number): Promise<{ clients: Socket[]; accepted: Socket[] }> {
  const accepted = nextAccepted(proxy, count);
  const clients = await Promise.all(Array.from({ length: count }, () => rawConnect(proxy.port)));
  return { clients, accepted: await accepted };
}

function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));
}

/** Holds every audit record the proxy writes until `release()`; `restore()` puts the real writer back. */
function holdAuditRecords(proxy: ProxyHarness): { release: () => void; restore: () => void } {
  const audit = proxy.ctx.audit;
  const record = audit.record.bind(audit);
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  audit.record = async (open, completion) => {
    await gate;
    return record(open, completion);
  };
  return {
    release: () => release(),
    restore: () => {
      audit.record = record;
      release();
    },
  };
}

describe('--max-client-connections', () => {
  let proxy: ProxyHarness;
  let origin: Origin;

  beforeEach(async () => {
    origin = await startOrigin((req, res) => res.end('served'));
    proxy = await startProxy({ policies: { 'policy.yaml': PROXY_TEST_POLICY }, hosts: PROXY_TEST_HOSTS, limits: { maxClientConnections: CAP } });
  });
  afterEach(async () => {
    await proxy.close();
    await origin.close();
  });

  test('past the cap a connection gets 503 and a record; once one closes, a new one is served', async () => {
    const idle = await openIdle(proxy, CAP);
    expect(proxy.ctx.gauges.clientSockets).toBe(CAP);

    const sixth = await rawConnect(proxy.port);
    sixth.write(`GET http://origin.test:${origin.port}/ HTTP/1.1\r\nHost: origin.test\r\n\r\n`);
    const answer = parseHead(await readAll(sixth));
    expect(answer.status).toBe(503);
    expect(answer.headers.connection).toBe('close');
    expect(answer.body).toContain(`too many client connections (limit ${CAP})`);
    const record = await proxy.waitForRecord((r) => r.id === Number(answer.headers['x-tollgate-request-id']));
    expect(record).toMatchObject({ status: 503, kind: 'http', method: null, host: null, client_ip: '127.0.0.1', client_port: sixth.localPort });
    expect(record.error).toMatch(/^too_many_client_connections: /);
    expect(await proxy.ctx.metrics.registry.getSingleMetricAsString('tollgate_client_connections_refused_total')).toMatch(/ 1$/m);

    idle.clients[0].destroy();
    await closed(idle.accepted[0]);
    const next = await rawConnect(proxy.port);
    next.write(`GET http://origin.test:${origin.port}/ HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n`);
    const served = parseHead(await readAll(next));
    expect(served.status).toBe(200);
    expect(served.body).toBe('served');
    for (const socket of idle.clients) socket.destroy();
  });

  test('a CONNECT sent on a refused connection before its answer is not handled', async () => {
    const idle = await openIdle(proxy, CAP);
    // Hold the refusal's record until the proxy has parsed the CONNECT behind it.
    const held = holdAuditRecords(proxy);
    const tunnelsWhenParsed: number[] = [];
    // Registered after the proxy's own listener, so it runs once the proxy has handled the event.
    proxy.server.on('connect', () => {
      tunnelsWhenParsed.push(proxy.ctx.tunnels.size);
      held.release();
    });
    try {
      const refused = await rawConnect(proxy.port);
      refused.write(`CONNECT origin.test:${origin.port} HTTP/1.1\r\n\r\n`);
      const answer = parseHead(await readAll(refused));
      expect(answer.status).toBe(503);
      expect(tunnelsWhenParsed).toEqual([0]);
    } finally {
      held.restore();
    }
    for (const socket of idle.clients) socket.destroy();
  });

  test('a burst past the cap is answered at once, without waiting on the audit log, and still recorded', async () => {
    const idle = await openIdle(proxy, CAP);
    const held = holdAuditRecords(proxy);
    const burst = REFUSALS_IN_FLIGHT + 10;
    try {
      const clients = await Promise.all(Array.from({ length: burst }, () => rawConnect(proxy.port)));
      const early: string[] = [];
      let tenAnswered: () => void = () => undefined;
      const firstTen = new Promise<void>((resolve) => (tenAnswered = resolve));
      const answers = clients.map((socket) =>
        readAll(socket).then((text) => {
          early.push(text);
          if (early.length === 10) tenAnswered();
          return text;
        }),
      );
      // While the first refusals wait for their records, the rest must not hold descriptors.
      await firstTen;
      expect(early.map((text) => parseHead(text).status)).toEqual(Array(10).fill(503));
      expect(early.every((text) => parseHead(text).headers['x-tollgate-request-id'] === undefined)).toBe(true);
      expect(proxy.ctx.gauges.refusingSockets).toBe(REFUSALS_IN_FLIGHT);
      held.release();
      const all = await Promise.all(answers);
      expect(all.map((text) => parseHead(text).status)).toEqual(Array(burst).fill(503));
      const withId = all.filter((text) => parseHead(text).headers['x-tollgate-request-id'] !== undefined);
      expect(withId).toHaveLength(REFUSALS_IN_FLIGHT);
    } finally {
      held.restore();
    }
    // Every refusal has its record, the burst's too.
    const refusals = (): number => proxy.records().filter((r) => r.error?.startsWith('too_many_client_connections')).length;
    await proxy.waitForRecord(() => refusals() === burst);
    for (const socket of idle.clients) socket.destroy();
  });
});

describe('the default cap', () => {
  test('is derived from the open-files limit read at start, with descriptors kept in reserve', () => {
    const limit = { soft: 1024, inUse: 20, known: true };
    const config = resolveServeConfig({}, {}, limit);
    expect(config.maxClientConnections).toBe(Math.floor((1024 - 20 - RESERVED_DESCRIPTORS) / 2));
    expect(config.maxClientConnections).toBe(derivedClientConnections(limit));
    expect(resolveServeConfig({ maxClientConnections: 'auto' }, {}, { soft: 64, inUse: 20, known: true }).maxClientConnections).toBe(16);
    expect(resolveServeConfig({}, { TOLLGATE_MAX_CLIENT_CONNECTIONS: '7' }, limit).maxClientConnections).toBe(7);
    expect(() => resolveServeConfig({ maxClientConnections: 'many' }, {}, limit)).toThrow(ConfigError);
  });
});
