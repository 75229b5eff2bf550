import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { describeBlock } from '../src/policy/guard';
import { GUARD_RULE } from '../src/proxy/exchange';
import { listenOn, parseHead, rawConnect, readAll, readUntil, startProxy } from './helpers/proxy-harness';
import type { ProxyHarness } from './helpers/proxy-harness';

/**
 * A parent proxy on a blocked (here: loopback) address is reachable through
 * `network.parent_ranges`, and only for tollgate's own connection to it: a client asking for
 * the parent's address, or a neighbour in the listed range, as a destination is refused by the
 * guard, and nothing connects to it.
 */
interface FakeParent {
  server: Server;
  port: number;
  /** Connections the parent accepted. */
  connections: number;
}

/** A parent that answers every CONNECT with 200 and echoes, and every plain request itself. */
async function startFakeParent(): Promise<FakeParent> {
  const server = createServer((req, res) => res.end(`parent relayed ${req.method} ${req.url}`));
  const parent: FakeParent = { server, port: 0, connections: 0 };
  server.on('connection', () => (parent.connections += 1));
  server.on('connect', (_req, socket) => {
    socket.on('error', () => socket.destroy());
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    socket.pipe(socket);
  });
  parent.port = await listenOn(server);
  return parent;
}

const childPolicy = (parentPort: number): string => `version: 1
settings:
  default: deny
  upstream: http://127.0.0.1:${parentPort}
network:
  # The parent and its neighbours, for the parent connection only; no allow_ranges at all.
  parent_ranges: [127.0.0.0/30]
rules:
  - name: through-parent
    action: allow
    hosts: [origin.test]
    ports: any
  - name: loopback-literals
    action: allow
    hosts: [127.0.0.0/8]
    ports: any
  - name: direct-names
    action: allow
    hosts: [parent-by-name.test, neighbour.test]
    ports: any
    via: direct
`;

describe('parent_ranges exempt only the connection to the parent', () => {
  let parent: FakeParent;
  let child: ProxyHarness;

  beforeAll(async () => {
    parent = await startFakeParent();
    child = await startProxy({
      policies: { 'policy.yaml': childPolicy(parent.port) },
      hosts: { 'parent-by-name.test': ['127.0.0.1'], 'neighbour.test': ['127.0.0.2'] },
    });
  });
  afterAll(async () => {
    await child.close();
    parent.server.closeAllConnections();
    await new Promise((resolve) => parent.server.close(resolve));
  });

  test('a CONNECT still goes through the parent', async () => {
    const before = parent.connections;
    const socket = await rawConnect(child.port);
    socket.write('CONNECT origin.test:443 HTTP/1.1\r\n\r\n');
    expect(parseHead(await readUntil(socket, '\r\n\r\n')).status).toBe(200);
    socket.write('via-the-parent');
    await readUntil(socket, 'via-the-parent');
    socket.end();
    await readAll(socket);
    expect(parent.connections).toBe(before + 1);
    const record = await child.waitForRecord((r) => r.host === 'origin.test' && r.kind === 'connect' && r.ended_at !== null);
    expect(record).toMatchObject({ decision: 'allow', rule: 'through-parent', resolved_ip: '127.0.0.1', status: 200 });
  });

  test('plain HTTP still goes through the parent', async () => {
    const socket = await rawConnect(child.port);
    socket.write('GET http://origin.test/through HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const answer = parseHead(await readAll(socket));
    expect(answer.status).toBe(200);
    expect(answer.body).toBe('parent relayed GET http://origin.test/through');
  });

  const destinations: Array<[string, (port: number) => string, (port: number) => string]> = [
    ["CONNECT to the parent's own address and port", (p) => `CONNECT 127.0.0.1:${p} HTTP/1.1\r\n\r\n`, () => '127.0.0.1'],
    ["plain HTTP to the parent's own address and port", (p) => `GET http://127.0.0.1:${p}/ HTTP/1.1\r\nHost: x\r\n\r\n`, () => '127.0.0.1'],
    ["CONNECT to the parent's address by a name, via: direct", (p) => `CONNECT parent-by-name.test:${p} HTTP/1.1\r\n\r\n`, () => '127.0.0.1'],
    ['CONNECT to a neighbour in parent_ranges', (p) => `CONNECT 127.0.0.2:${p} HTTP/1.1\r\n\r\n`, () => '127.0.0.2'],
    ['CONNECT to a neighbour by a name, via: direct', (p) => `CONNECT neighbour.test:${p} HTTP/1.1\r\n\r\n`, () => '127.0.0.2'],
  ];

  test.each(destinations)('%s is refused by the guard, and nothing connects', async (_name, request, address) => {
    const before = parent.connections;
    const socket = await rawConnect(child.port);
    socket.write(request(parent.port));
    // Read the rest only after a refusal: an opened tunnel would never end by itself.
    const head = await readUntil(socket, '\r\n\r\n');
    const refused = parseHead(head).status === 403;
    if (!refused) socket.destroy();
    const answer = parseHead(head + (refused ? await readAll(socket) : ''));
    expect(answer.status).toBe(403);
    expect(answer.headers['x-tollgate-rule']).toBe(GUARD_RULE);
    const reason = describeBlock({ address: address(parent.port), range: '127.0.0.0/8', label: 'loopback' });
    expect(answer.body).toContain(reason);
    const record = await child.waitForRecord((r) => r.id === Number(answer.headers['x-tollgate-request-id']));
    expect(record).toMatchObject({ decision: 'deny', rule: GUARD_RULE, reason, status: 403, bytes_up: 0, bytes_down: 0 });
    expect(parent.connections).toBe(before);
  });
});
