import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { listenOn, rawConnect, startProxy } from './helpers/proxy-harness';
import type { ProxyHarness } from './helpers/proxy-harness';
import { PROXY_TEST_HOSTS, PROXY_TEST_POLICY } from './helpers/policies';
import { READ_SIZE } from '../src/proxy/relay-read';

/**
 * The destination -> client direction of a direct tunnel reads through one shared buffer and
 * recycles its copies (src/proxy/relay-read.ts). A buffer handed back too early would show up
 * as wrong bytes, so every byte here is checked: byte i of a stream is i mod 251 (a prime, so
 * no read or write size lines up with it).
 */

const PERIOD = 251;
/** 261 periods: a write-sized block that keeps the pattern continuous from one block to the next. */
const BLOCK = Buffer.from(Array.from({ length: PERIOD * 261 }, (_, i) => i % PERIOD));

/** Writes `total` pattern bytes honouring backpressure, then ends. */
function sendPattern(socket: Socket, total: number): void {
  let sent = 0;
  const more = (): void => {
    while (sent < total) {
      const size = Math.min(BLOCK.length, total - sent);
      sent += size;
      if (!socket.write(size === BLOCK.length ? BLOCK : BLOCK.subarray(0, size))) {
        socket.once('drain', more);
        return;
      }
    }
    socket.end();
  };
  more();
}

/** Reads a CONNECT answer and then the tunnelled stream, checking each byte against the pattern. */
class PatternReader {
  head = '';
  received = 0;
  wrong = -1;
  private headDone = false;

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.take(chunk));
  }

  ended(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.readableEnded) return resolve();
      this.socket.once('end', () => resolve());
      this.socket.once('error', reject);
    });
  }

  private take(chunk: Buffer): void {
    let body = chunk;
    if (!this.headDone) {
      const text = chunk.toString('latin1');
      const end = (this.head + text).indexOf('\r\n\r\n');
      if (end === -1) {
        this.head += text;
        return;
      }
      const fromThisChunk = end + 4 - this.head.length;
      this.head = (this.head + text).slice(0, end + 4);
      this.headDone = true;
      body = chunk.subarray(fromThisChunk);
    }
    for (let j = 0; j < body.length && this.wrong === -1; j += 1) {
      if (body[j] !== (this.received + j) % PERIOD) this.wrong = this.received + j;
    }
    this.received += body.length;
  }
}

async function connectThrough(proxy: ProxyHarness, port: number): Promise<PatternReader> {
  const socket = await rawConnect(proxy.port);
  socket.on('error', () => undefined);
  const reader = new PatternReader(socket);
  socket.write(`CONNECT origin.test:${port} HTTP/1.1\r\nHost: origin.test:${port}\r\n\r\n`);
  return reader;
}

describe('tunnel relay through the shared read buffer', () => {
  let proxy: ProxyHarness;
  const servers: Server[] = [];

  beforeAll(async () => {
    proxy = await startProxy({ policies: { 'policy.yaml': PROXY_TEST_POLICY }, hosts: PROXY_TEST_HOSTS });
  });
  afterAll(async () => {
    await proxy.close();
    for (const server of servers) server.close();
  });

  async function origin(onConnection: (socket: Socket) => void): Promise<{ port: number; sockets: Socket[] }> {
    const sockets: Socket[] = [];
    const server = createServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => undefined);
      sockets.push(socket);
      onConnection(socket);
    });
    servers.push(server);
    return { port: await listenOn(server), sockets };
  }

  test('a destination that speaks first: all it sent before the splice follows the 200, in order', async () => {
    // More than the 256 KiB held before the splice: reading stops, then resumes after it.
    const total = 700 * 1024 + 13;
    const { port } = await origin((socket) => sendPattern(socket, total));
    const reader = await connectThrough(proxy, port);
    await reader.ended();
    expect(reader.head).toMatch(/^HTTP\/1\.1 200 /);
    expect(reader.wrong).toBe(-1);
    expect(reader.received).toBe(total);
    reader.socket.end();
    const record = await proxy.waitForRecord((r) => r.port === port && r.ended_at !== null);
    expect(record.bytes_down).toBe(total);
  });

  test('three downloads into clients that stop reading: the proxy stops reading too, then every byte arrives intact', async () => {
    const total = 48 * 1024 * 1024;
    const { port, sockets } = await origin((socket) => sendPattern(socket, total));
    // The proxy's side of each client connection, to see what it queues.
    const proxySide: Socket[] = [];
    const collect = (_req: unknown, socket: Socket): void => void proxySide.push(socket);
    proxy.server.on('connect', collect);
    const readers = await Promise.all([0, 1, 2].map(() => connectThrough(proxy, port)));
    for (const reader of readers) reader.socket.pause();
    // Bounded wait for the origins to stall: no progress over three checks 50 ms apart.
    let last = -1;
    let still = 0;
    for (let i = 0; i < 200 && still < 3; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const written = sockets.reduce((sum, s) => sum + s.bytesWritten, 0);
      still = sockets.length === 3 && written === last ? still + 1 : 0;
      last = written;
    }
    expect(still).toBe(3);
    // Backpressure held: the origins could not write everything, and the proxy queues little.
    expect(sockets.every((s) => s.bytesWritten < total)).toBe(true);
    proxy.server.off('connect', collect);
    expect(proxySide).toHaveLength(3);
    // At most the one read that found the client's socket full, per tunnel.
    const queued = proxySide.reduce((sum, s) => sum + s.writableLength, 0);
    expect(queued).toBeLessThanOrEqual(3 * READ_SIZE);
    for (const reader of readers) reader.socket.resume();
    await Promise.all(readers.map((reader) => reader.ended()));
    for (const reader of readers) {
      expect(reader.wrong).toBe(-1);
      expect(reader.received).toBe(total);
      reader.socket.end();
    }
  }, 60_000);
});
