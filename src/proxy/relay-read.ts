import net from 'node:net';
import type { Socket } from 'node:net';

/**
 * The destination -> client direction of a direct tunnel, without a fresh buffer per read.
 *
 * A plain socket reads into a new 64 KiB buffer every time: a download of 1 GiB allocates 16,384 of
 * them outside the JavaScript heap, and V8 answers that much external memory with full garbage
 * collections (docs/performance.md, "Measurements behind the code"), whose cost grows with
 * everything else the process holds. Here every destination socket reads into one shared buffer
 * (`onread`), and the callback copies what arrived into a recycled buffer before it returns, so the
 * shared one is free again before the next read of any socket (reads and their callbacks run one at
 * a time, on this thread). A copy buffer goes back to its pool when the client's socket is done
 * writing it. Idle tunnels hold no buffer at all.
 */

/**
 * One read takes up to 256 KiB, four times Node's default: a bulk download then makes a quarter
 * of the read and write system calls, for less CPU and more throughput per tunnel
 * (docs/performance.md, "Measurements behind the code"). The price: a tunnel whose
 * client stops reading holds up to one read here (it was 64 KiB) on top of what the kernel's
 * socket buffers already hold for it, which on loopback is several times more.
 */
export const READ_SIZE = 256 * 1024;
const SHARED_READ_BUFFER = Buffer.allocUnsafe(READ_SIZE);
/** Below this a copy comes from Node's own small-buffer slab; not worth pooling. */
const SMALL = 4 * 1024;
/** What a destination may send before its tunnel is spliced (a server that speaks first). */
const MAX_HELD_BYTES = 256 * 1024;

/** Free copy buffers of one size, kept for reuse. */
class CopyPool {
  private readonly free: Buffer[] = [];

  constructor(
    readonly size: number,
    private readonly max: number,
  ) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(this.size);
  }

  give(buffer: Buffer): void {
    if (this.free.length < this.max) this.free.push(buffer);
  }
}

/**
 * Two sizes, 4 MiB of free buffers at most each: a read that fits in 64 KiB (most reads that are
 * not a bulk transfer) must not hold 256 KiB while the client's socket writes it.
 */
const MEDIUM_COPIES = new CopyPool(64 * 1024, 64);
const LARGE_COPIES = new CopyPool(READ_SIZE, 16);

interface Relay {
  sink: Socket | null;
  held: Buffer[];
  heldBytes: number;
}

const relays = new WeakMap<Socket, Relay>();

interface Copy {
  chunk: Buffer;
  /** Where the buffer goes back once written; null for a slab copy. */
  pool: CopyPool | null;
  buffer: Buffer;
}

function copyOut(source: Buffer, length: number): Copy {
  if (length < SMALL) {
    const chunk = Buffer.from(source.subarray(0, length));
    return { chunk, pool: null, buffer: chunk };
  }
  const pool = length <= MEDIUM_COPIES.size ? MEDIUM_COPIES : LARGE_COPIES;
  const buffer = pool.take();
  source.copy(buffer, 0, 0, length);
  return { chunk: buffer.subarray(0, length), pool, buffer };
}

/** onread's callback: false stops reading (backpressure), until resume(). */
function deliver(relay: Relay, length: number, source: Buffer): boolean {
  const { chunk, pool, buffer } = copyOut(source, length);
  if (relay.sink === null) {
    // Not spliced yet: kept in its own buffer (the pooled one is not returned).
    relay.held.push(chunk);
    relay.heldBytes += length;
    return relay.heldBytes < MAX_HELD_BYTES;
  }
  // The callback runs when the bytes are written or dropped (a destroyed socket calls it with
  // an error): either way nothing refers to the buffer any more.
  return relay.sink.write(chunk, () => pool?.give(buffer));
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
