import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { startOrigin, startProxy } from './helpers/proxy-harness';
import type { Origin, ProxyHarness } from './helpers/proxy-harness';
import { sendRaw } from './fuzz/raw-client';
import { PROXY_TEST_HOSTS, workloadsPolicy } from './helpers/policies';
import { PROXY_HEADER_TIMEOUT_MS } from '../src/proxy/proxy-protocol-accept';
import type { AuditRecordJson } from '../src/audit/record-types';
import { SIGNATURE, v1, v2 } from './helpers/proxy-protocol-headers';

/** How long an answer may take: only a failure waits it out, so generous for a slow machine. */
const ANSWER_LIMIT_MS = 10_000;

/**
 * --proxy-protocol-from on the proxy listener, with raw sockets: v1 and v2 headers before a
 * request, split across writes, garbage, LOCAL health checks, a header from an address that may
 * not send one, and a listed address that sends none.
 */

const POLICY = workloadsPolicy(['192.0.2.0/24', '2001:db8::/32'], 'origin.test');

const get = (origin: Origin, path: string): Buffer =>
  Buffer.from(`GET http://origin.test:${origin.port}${path} HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n`, 'latin1');

/** Write each piece as its own TCP segment (Nagle off, a turn of the loop between writes). */
function sendInPieces(port: number, pieces: Buffer[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect({ port, host: '127.0.0.1' });
    socket.setNoDelay(true);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', reject);
    socket.on('connect', async () => {
      for (const piece of pieces) {
        await new Promise<void>((done) => socket.write(piece, () => done()));
        await new Promise((done) => setTimeout(done, 5));
      }
    });
  });
}

/** Connect and close without a byte, resolving once the proxy closed its side too. */
function connectAndLeave(port: number, first?: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' }, () => (first ? socket.end(first) : socket.end()));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve());
    socket.resume();
  });
}

async function metric(proxy: ProxyHarness, reason: string): Promise<number> {
  const text = await proxy.ctx.metrics.registry.metrics();
  const match = new RegExp(`^tollgate_proxy_protocol_refused_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(text);
  return match ? Number(match[1]) : NaN;
}

describe('--proxy-protocol-from, from a listed load balancer (127.0.0.1)', () => {
  let proxy: ProxyHarness;
  let origin: Origin;
  beforeAll(async () => {
    origin = await startOrigin((req, res) => res.end(`origin saw ${req.url}`));
    proxy = await startProxy({ policies: { 'p.yaml': POLICY }, hosts: PROXY_TEST_HOSTS, proxyProtocolFrom: ['127.0.0.1/32', '10.20.0.0/16'] });
  });
  afterAll(async () => {
    await proxy.close();
    await origin.close();
  });

  const recordFor = (path: string): Promise<AuditRecordJson> => proxy.waitForRecord((r) => r.path === path);

  const headers: Array<[string, () => Buffer, string, number]> = [
    ['v1 TCP4', () => v1('TCP4', '192.0.2.10', 40001), '192.0.2.10', 40001],
    ['v1 TCP6', () => v1('TCP6', '2001:DB8:0::7', 40002), '2001:db8::7', 40002],
    ['v2 TCP4', () => v2('PROXY', { ip: '192.0.2.11', port: 40003 }), '192.0.2.11', 40003],
    ['v2 TCP6', () => v2('PROXY', { ip: '2001:db8::8', port: 40004 }), '2001:db8::8', 40004],
    // AWS NLB sends a TLV (0xEA, the VPC endpoint id) after the addresses.
    ['v2 TCP4 with a TLV', () => v2('PROXY', { ip: '192.0.2.12', port: 40005 }, Buffer.from([0xea, 0, 4, 1, 0x76, 0x70, 0x63])), '192.0.2.12', 40005],
    ['v2 IPv4-mapped TCP6', () => v2('PROXY', { ip: '::ffff:c000:20d', port: 40006 }), '192.0.2.13', 40006],
  ];

  it.each(headers)('%s: the header names the client the policy and the record see', async (name, header, ip, port) => {
    const path = `/${name.replace(/\W+/g, '-')}`;
    const outcome = await sendRaw(proxy.port, Buffer.concat([header(), get(origin, path)]), ANSWER_LIMIT_MS);
    expect(outcome.status).toBe(200);
    expect(outcome.text).toContain(`origin saw ${path}`);
    const record = await recordFor(path);
    expect(record).toMatchObject({ client_ip: ip, client_port: port, peer_ip: '127.0.0.1', clients: ['workloads'], decision: 'allow' });
  });

  it('reads a header split across TCP segments, byte by byte', async () => {
    const header = v2('PROXY', { ip: '192.0.2.20', port: 40010 });
    const pieces = [...header].map((b) => Buffer.from([b]));
    const text = await sendInPieces(proxy.port, [...pieces, get(origin, '/split-v2')]);
    expect(text).toContain('origin saw /split-v2');
    const v1Pieces = [v1('TCP4', '192.0.2.21', 40011).subarray(0, 9), v1('TCP4', '192.0.2.21', 40011).subarray(9, 30), v1('TCP4', '192.0.2.21', 40011).subarray(30)];
    expect(await sendInPieces(proxy.port, [...v1Pieces, get(origin, '/split-v1')])).toContain('origin saw /split-v1');
    expect(await recordFor('/split-v2')).toMatchObject({ client_ip: '192.0.2.20', peer_ip: '127.0.0.1' });
    expect(await recordFor('/split-v1')).toMatchObject({ client_ip: '192.0.2.21', peer_ip: '127.0.0.1' });
  });

  it('a v2 LOCAL health check, and a connection that closes before a byte, leave no record', async () => {
    const before = proxy.records().length;
    await connectAndLeave(proxy.port, v2('LOCAL'));
    await connectAndLeave(proxy.port);
    // A request after them is recorded; nothing else was.
    await sendRaw(proxy.port, Buffer.concat([v1('TCP4', '192.0.2.30', 40020), get(origin, '/after-checks')]), ANSWER_LIMIT_MS);
    await recordFor('/after-checks');
    expect(proxy.records().length).toBe(before + 1);
  });

  it('after LOCAL, what follows is the load balancer\'s own request: its own address, and peer_ip says it came through the PROXY protocol', async () => {
    const outcome = await sendRaw(proxy.port, Buffer.concat([v2('LOCAL'), get(origin, '/local-then-request')]), ANSWER_LIMIT_MS);
    expect(outcome.status).toBe(403);
    expect(await recordFor('/local-then-request')).toMatchObject({ client_ip: '127.0.0.1', peer_ip: '127.0.0.1', clients: [] });
  });

  it('a listed address without a header is refused 400 and recorded as malformed', async () => {
    const missing = await metric(proxy, 'missing');
    const outcome = await sendRaw(proxy.port, get(origin, '/no-header'), ANSWER_LIMIT_MS);
    expect(outcome.status).toBe(400);
    expect(outcome.text).not.toContain('origin saw');
    const record = await proxy.waitForRecord((r) => r.error?.includes('PROXY protocol header required') === true);
    expect(record).toMatchObject({ client_ip: '127.0.0.1', peer_ip: null, status: 400, host: null, decision: 'deny' });
    expect(await metric(proxy, 'missing')).toBe(missing + 1);
  });

  const garbage: Array<[string, Buffer]> = [
    ['v1 with a bad address', Buffer.from('PROXY TCP4 192.0.2.999 127.0.0.1 1 2\r\n', 'latin1')],
    ['v1 TCP4 with IPv6 addresses', Buffer.from('PROXY TCP4 ::1 ::1 1 2\r\n', 'latin1')],
    ['v1 with a port past 65535', Buffer.from('PROXY TCP4 192.0.2.1 127.0.0.1 65536 2\r\n', 'latin1')],
    ['v1 with no CRLF in 107 bytes', Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`, 'latin1')],
    ['v2 version 3', Buffer.concat([SIGNATURE, Buffer.from([0x31, 0x11, 0, 12]), Buffer.alloc(12)])],
    ['v2 INET too short', Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x11, 0, 4]), Buffer.alloc(4)])],
    ['v2 longer than the cap', Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])])],
    ['v2 UNSPEC with an unknown transport', Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x0f, 0, 0])])],
  ];

  it.each(garbage)('garbage (%s) is refused 400, recorded as malformed, and never reaches the origin', async (_name, bytes) => {
    const malformed = await metric(proxy, 'malformed');
    const before = Math.max(0, ...proxy.records().map((r) => r.id));
    const outcome = await sendRaw(proxy.port, Buffer.concat([bytes, get(origin, '/garbage')]), ANSWER_LIMIT_MS);
    expect(outcome.status).toBe(400);
    expect(outcome.text).not.toContain('origin saw');
    expect(await metric(proxy, 'malformed')).toBe(malformed + 1);
    const record = await proxy.waitForRecord((r) => r.error?.includes('malformed PROXY protocol header') === true && r.id > before);
    expect(record).toMatchObject({ client_ip: '127.0.0.1', peer_ip: null, status: 400, path: null });
  });

  it('a header cut short by the close is recorded as malformed', async () => {
    const before = proxy.records().length;
    await connectAndLeave(proxy.port, v2('PROXY', { ip: '192.0.2.40', port: 1 }).subarray(0, 20));
    const record = await proxy.waitForRecord((r) => r.error?.includes('closed inside the PROXY protocol header') === true);
    expect(record.client_ip).toBe('127.0.0.1');
    expect(proxy.records().length).toBe(before + 1);
  });

  it('a header not finished in time is refused 408', async () => {
    const timeouts = await metric(proxy, 'timeout');
    const started = Date.now();
    const outcome = await sendRaw(proxy.port, Buffer.from('PROXY TCP4 192.0.2.1', 'latin1'), PROXY_HEADER_TIMEOUT_MS + 3000);
    expect(outcome.status).toBe(408);
    expect(Date.now() - started).toBeGreaterThanOrEqual(PROXY_HEADER_TIMEOUT_MS - 50);
    expect(await metric(proxy, 'timeout')).toBe(timeouts + 1);
  }, PROXY_HEADER_TIMEOUT_MS + 10_000);

  it('--max-tunnels-per-source counts the header\'s client, not the load balancer', async () => {
    await proxy.close();
    proxy = await startProxy({ policies: { 'p.yaml': POLICY }, hosts: PROXY_TEST_HOSTS, proxyProtocolFrom: ['127.0.0.0/8'], limits: { maxTunnelsPerSource: 1 } });
    const open = (ip: string): Promise<{ socket: Socket; head: string }> => new Promise((resolve, reject) => {
      const socket = connect({ port: proxy.port, host: '127.0.0.1' }, () => {
        socket.write(Buffer.concat([v1('TCP4', ip, 1000), Buffer.from(`CONNECT origin.test:${origin.port} HTTP/1.1\r\nHost: x\r\n\r\n`, 'latin1')]));
      });
      socket.once('data', (chunk: Buffer) => resolve({ socket, head: chunk.toString('latin1') }));
      socket.on('error', reject);
    });
    const first = await open('192.0.2.50');
    const other = await open('192.0.2.51');
    const again = await open('192.0.2.50');
    expect(first.head).toMatch(/^HTTP\/1\.1 200/);
    expect(other.head).toMatch(/^HTTP\/1\.1 200/);
    expect(again.head).toMatch(/^HTTP\/1\.1 429/);
    for (const s of [first, other, again]) s.socket.destroy();
  });
});

describe('--proxy-protocol-from, from an address not listed', () => {
  let proxy: ProxyHarness;
  let origin: Origin;
  beforeAll(async () => {
    origin = await startOrigin((req, res) => res.end(`origin saw ${req.url}`));
    // 127.0.0.1 (every test client) is outside the listed range.
    proxy = await startProxy({ policies: { 'p.yaml': POLICY }, hosts: PROXY_TEST_HOSTS, proxyProtocolFrom: ['127.0.0.2/32'] });
  });
  afterAll(async () => {
    await proxy.close();
    await origin.close();
  });

  it.each([
    ['v1', () => v1('TCP4', '192.0.2.60', 1)],
    ['v2', () => v2('PROXY', { ip: '192.0.2.61', port: 1 })],
    ['v2 LOCAL', () => v2('LOCAL')],
  ])('a %s header is refused 400 and recorded: a workload cannot claim another address', async (_name, header) => {
    const unexpected = await metric(proxy, 'unexpected');
    const newest = Math.max(0, ...proxy.records().map((r) => r.id));
    const outcome = await sendRaw(proxy.port, Buffer.concat([header(), get(origin, '/claimed')]), ANSWER_LIMIT_MS);
    expect(outcome.status).toBe(400);
    expect(outcome.text).not.toContain('origin saw');
    const record = await proxy.waitForRecord((r) => r.error?.includes('not in --proxy-protocol-from') === true && r.id > newest);
    expect(record).toMatchObject({ client_ip: '127.0.0.1', peer_ip: null });
    expect(await metric(proxy, 'unexpected')).toBe(unexpected + 1);
  });

  it('a client that sends the first byte of a header and resets leaves no record and no connection behind', async () => {
    const before = proxy.records().length;
    await new Promise<void>((resolve) => {
      const socket = connect({ port: proxy.port, host: '127.0.0.1' }, () => {
        socket.write('P', () => socket.resetAndDestroy());
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve());
    });
    for (let i = 0; i < 500 && proxy.ctx.gauges.clientSockets > 0; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(proxy.ctx.gauges.clientSockets).toBe(0);
    expect(await new Promise<number>((resolve) => proxy.server.getConnections((_err, n) => resolve(n)))).toBe(0);
    // A record wrongly written would still sit in group commit (up to 20 ms): committed first.
    proxy.flushAudit();
    expect(proxy.records().length).toBe(before);
  });

  it('plain HTTP is served as before, even split right where a header would be told apart', async () => {
    const request = get(origin, '/plain');
    const text = await sendInPieces(proxy.port, [request.subarray(0, 1), request.subarray(1, 3), request.subarray(3)]);
    expect(text).toMatch(/^HTTP\/1\.1 403/);
    expect(await proxy.waitForRecord((r) => r.path === '/plain')).toMatchObject({ client_ip: '127.0.0.1', peer_ip: null });
  });

  it('from a client bound to 127.0.0.2 (listed), the header is required and used', async () => {
    const outcome = await new Promise<string>((resolve, reject) => {
      const socket = connect({ port: proxy.port, host: '127.0.0.1', localAddress: '127.0.0.2' }, () => {
        socket.write(Buffer.concat([v1('TCP4', '192.0.2.70', 2), get(origin, '/via-127-0-0-2')]));
      });
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
      socket.on('error', reject);
    });
    expect(outcome).toContain('origin saw /via-127-0-0-2');
    expect(await proxy.waitForRecord((r) => r.path === '/via-127-0-0-2')).toMatchObject({ client_ip: '192.0.2.70', peer_ip: '127.0.0.2', clients: ['workloads'] });
  });
});

describe('--proxy-protocol-from and --max-client-connections', () => {
  it('a connection still waiting for its header counts against the cap', async () => {
    const proxy = await startProxy({ policies: { 'p.yaml': POLICY }, hosts: PROXY_TEST_HOSTS, proxyProtocolFrom: ['127.0.0.1/32'], limits: { maxClientConnections: 1 } });
    try {
      const idle = connect({ port: proxy.port, host: '127.0.0.1' });
      idle.on('error', () => undefined);
      await new Promise((resolve) => idle.once('connect', resolve));
      for (let i = 0; i < 1000 && proxy.ctx.gauges.clientSockets < 1; i += 1) await new Promise((resolve) => setTimeout(resolve, 5));
      expect(proxy.ctx.gauges.clientSockets).toBe(1);
      const outcome = await sendRaw(proxy.port, v1('TCP4', '192.0.2.90', 1), ANSWER_LIMIT_MS);
      expect(outcome.status).toBe(503);
      expect(await proxy.waitForRecord((r) => r.status === 503)).toMatchObject({ client_ip: '127.0.0.1', peer_ip: null });
      idle.destroy();
    } finally {
      await proxy.close();
    }
  });
});
