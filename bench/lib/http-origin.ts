import { createServer } from 'node:http';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The origin of bench/compare.ts, in its own process so that its CPU is not the bench's and its
 * sockets are not counted against the proxy's. Plain HTTP only: proxied requests, and the
 * requests sent inside CONNECT tunnels, both land here.
 *   GET /            -> 200 "hello" (keep-alive unless the client says Connection: close)
 *   GET /bytes/N     -> 200 with N bytes of body, written with backpressure (bulk throughput)
 * Prints `{"port":N}` once listening and exits when its parent closes stdin.
 */

const HELLO = Buffer.from('hello');
const BULK_CHUNK = Buffer.alloc(1024 * 1024, 0x61);
const BYTES_PATH = /^\/bytes\/(\d{1,13})$/;

function sendBytes(res: ServerResponse, total: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
  let left = total;
  const more = (): void => {
    while (left > 0) {
      const size = Math.min(left, BULK_CHUNK.length);
      left -= size;
      const chunk = size === BULK_CHUNK.length ? BULK_CHUNK : BULK_CHUNK.subarray(0, size);
      if (!res.write(chunk)) return void res.once('drain', more);
    }
    res.end();
  };
  more();
}

const server = createServer(
  // The proxies pool their connections to the origin: do not close them under a long load.
  { keepAliveTimeout: 120_000, requestTimeout: 0 },
  (req, res) => {
    const bytes = BYTES_PATH.exec(req.url ?? '');
    if (bytes) return sendBytes(res, Number(bytes[1]));
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(HELLO.length) });
    res.end(HELLO);
  },
);
server.on('connection', (socket) => socket.setNoDelay(true));
server.on('clientError', (_err, socket) => socket.destroy());
server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
