import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A TCP echo origin, run as its own process so the bench's own sockets and the proxy's are not
 * counted against it (each process has its own open-files limit). It prints `{"port":N}` once
 * listening and exits when its parent closes stdin, so it never outlives a crashed bench.
 */
const server = createServer({ allowHalfOpen: true }, (socket) => {
  socket.on('error', () => socket.destroy());
  // pipe() ends our side when the proxy ends its side: a tunnel's close reaches both ends.
  socket.pipe(socket);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
