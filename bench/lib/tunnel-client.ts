import { connect } from 'node:net';
import type { Socket } from 'node:net';

/** The bench's client side: raw CONNECT tunnels held open by this process. */

const ROUND_TRIP = Buffer.from('ping\n');

export interface TunnelFailures {
  count: number;
  first: string[];
}

export function noteFailure(failures: TunnelFailures, message: string): void {
  failures.count += 1;
  if (failures.first.length < 5) failures.first.push(message);
}

/** Resolves with everything read once it contains `marker`; rejects on error or close first. */
function readUntil(socket: Socket, marker: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      if (!text.includes(marker)) return;
      cleanup();
      resolve(text);
    };
    const onError = (err: Error): void => (cleanup(), reject(err));
    const onClose = (): void => (cleanup(), reject(new Error(`closed before "${marker.trim()}" arrived; got ${JSON.stringify(text.slice(0, 60))}`)));
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
  });
}

/** What is left until the proxy closes (it closes after every refusal). */
function readRest(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.once('close', () => resolve(text));
  });
}

/** The status line and the one-line reason tollgate puts in the body of a refusal. */
function describeRefusal(answer: string): string {
  const bodyAt = answer.indexOf('\r\n\r\n');
  const body = bodyAt === -1 ? '' : answer.slice(bodyAt + 4).trim();
  return JSON.stringify(`${answer.split('\r\n')[0]}: ${body.slice(0, 200)}`);
}

function connectTo(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' }, () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/**
 * Open a tunnel to `authority`, check the 200, do one small echo round trip (so both directions
 * have carried bytes, as in a real TLS handshake) and leave it idle and open.
 */
export async function openIdleTunnel(proxyPort: number, authority: string): Promise<Socket> {
  const socket = await connectTo(proxyPort);
  try {
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    const head = await readUntil(socket, '\r\n\r\n');
    if (!head.startsWith('HTTP/1.1 200 ')) throw new Error(`CONNECT answered ${describeRefusal(head + (await readRest(socket)))}`);
    socket.write(ROUND_TRIP);
    await readUntil(socket, ROUND_TRIP.toString('latin1'));
  } catch (err) {
    socket.destroy();
    throw err;
  }
  // Held idle from here: a later reset must not become an uncaught 'error'.
  socket.on('error', () => socket.destroy());
  return socket;
}

/**
 * Opens `count` tunnels, `batch` at a time: the proxy's listen backlog is 511 by default and a
 * larger burst of SYNs on loopback can overflow it (drops, then retransmits a second later).
 */
export async function openTunnels(count: number, batch: number, open: () => Promise<Socket>, failures: TunnelFailures): Promise<Socket[]> {
  const sockets: Socket[] = [];
  for (let start = 0; start < count; start += batch) {
    const size = Math.min(batch, count - start);
    const settled = await Promise.allSettled(Array.from({ length: size }, open));
    for (const result of settled) {
      if (result.status === 'fulfilled') sockets.push(result.value);
      else noteFailure(failures, result.reason instanceof Error ? result.reason.message : String(result.reason));
    }
  }
  return sockets;
}

/** End every tunnel and wait for each socket to close (the proxy relays the FIN both ways). */
export function closeTunnels(sockets: Socket[]): Promise<void> {
  return Promise.all(
    sockets.map(
      (socket) =>
        new Promise<void>((resolve) => {
          if (socket.closed) return resolve();
          socket.once('close', () => resolve());
          socket.end();
        }),
    ),
  ).then(() => undefined);
}
