import net from 'node:net';
import type { Socket } from 'node:net';

/**
 * The destination -> client direction of a direct tunnel, without a fresh buffer per read.
 *
 * A plain socket reads into a new 64 KiB buffer every time: a download of 1 GiB allocates 16,384
 * of them outside the JavaScript heap, and V8 answers that much external memory with full
 * garbage collections (27 per GiB, measured), whose cost grows with everything else the
 * process holds. Here every destination socket reads into one shared buffer (`onread`), and
 * the callback copies what arrived into a recycled buffer before it returns, so the shared one
 * is free again before the next read of any socket (reads and their callbacks run one at a
 * time, on this thread). A copy buffer goes back to the pool when the client's socket is done
 * writing it. Idle tunnels hold no buffer at all.
 */

const READ_SIZE = 64 * 1024;
const SHARED_READ_BUFFER = Buffer.allocUnsafe(READ_SIZE);
/** Free copy buffers kept for reuse: enough for many busy tunnels, 4 MiB at most. */
const MAX_POOLED = 64;
const pool: Buffer[] = [];
/** Below this a copy comes from Node's own small-buffer slab; not worth pooling. */
const SMALL = 4 * 1024;
/** What a destination may send before its tunnel is spliced (a server that speaks first). */
const MAX_HELD_BYTES = 256 * 1024;

interface Relay {
  sink: Socket | null;
  held: Buffer[];
  heldBytes: number;
}

const relays = new WeakMap<Socket, Relay>();

function copyOut(source: Buffer, length: number): { chunk: Buffer; pooled: Buffer | null } {
  if (length < SMALL) return { chunk: Buffer.from(source.subarray(0, length)), pooled: null };
  const pooled = pool.pop() ?? Buffer.allocUnsafe(READ_SIZE);
  source.copy(pooled, 0, 0, length);
  return { chunk: pooled.subarray(0, length), pooled };
}

function giveBack(pooled: Buffer | null): void {
  if (pooled !== null && pool.length < MAX_POOLED) pool.push(pooled);
}

/** onread's callback: false stops reading (backpressure), until resume(). */
function deliver(relay: Relay, length: number, source: Buffer): boolean {
  const { chunk, pooled } = copyOut(source, length);
  if (relay.sink === null) {
    // Not spliced yet: kept in its own buffer (the pooled one is not returned).
    relay.held.push(chunk);
    relay.heldBytes += length;
    return relay.heldBytes < MAX_HELD_BYTES;
  }
  // The callback runs when the bytes are written or dropped (a destroyed socket calls it with
  // an error): either way nothing refers to the buffer any more.
  return relay.sink.write(chunk, () => giveBack(pooled));
}

/** Connects like net.connect, reading through the shared buffer; for tunnels() to splice. */
export function connectRelayed(address: string, port: number): Socket {
  const relay: Relay = { sink: null, held: [], heldBytes: 0 };
  const socket = net.connect({
    host: address,
    port,
    // A destination's FIN must not end the client -> destination direction of a tunnel.
    allowHalfOpen: true,
    noDelay: true,
    onread: { buffer: SHARED_READ_BUFFER, callback: (length, buffer) => deliver(relay, length, buffer as Buffer) },
  });
  relays.set(socket, relay);
  return socket;
}

/**
 * Sends what `upstream` reads to `client`, like `upstream.pipe(client)`: backpressure stops the
 * reads, the destination's end ends the client's side (half-close). False when `upstream` was
 * not made by connectRelayed (a parent proxy's socket): the caller pipes it instead.
 */
export function relayTo(upstream: Socket, client: Socket): boolean {
  const relay = relays.get(upstream);
  if (relay === undefined) return false;
  relay.sink = client;
  let open = true;
  for (const chunk of relay.held) open = client.write(chunk) && open;
  relay.held = [];
  relay.heldBytes = 0;
  client.on('drain', () => upstream.resume());
  // Flowing mode: with onread no data reaches the readable side, but its 'end' needs a reader.
  upstream.once('end', () => client.end());
  upstream.resume();
  if (!open) upstream.pause();
  return true;
}
