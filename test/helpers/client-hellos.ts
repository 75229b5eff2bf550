import { execFile } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';

/**
 * ClientHellos for the SNI reader's tests: real ones, captured from Node's TLS client and curl
 * by a loopback server that only records what it receives, and hand-made ones (RFC 8446 §4.1.2
 * layout) that can break any rule on purpose. The record framing here is written separately
 * from src/proxy/client-hello.ts so the two can disagree.
 */

export function u8(n: number): Buffer {
  return Buffer.from([n & 0xff]);
}

export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}

export function u24(n: number): Buffer {
  const b = Buffer.alloc(3);
  b.writeUIntBE(n & 0xffffff, 0, 3);
  return b;
}

/** Record bodies of the leading handshake records, once they hold a whole handshake message. */
export function handshakeFromRecords(bytes: Buffer): { message: Buffer; recordBytes: number } | null {
  const bodies: Buffer[] = [];
  let at = 0;
  while (at + 5 <= bytes.length && bytes[at] === 22) {
    const end = at + 5 + bytes.readUInt16BE(at + 3);
    if (end > bytes.length) return null;
    bodies.push(bytes.subarray(at + 5, end));
    at = end;
    const joined = Buffer.concat(bodies);
    if (joined.length >= 4 && joined.length >= 4 + joined.readUIntBE(1, 3)) {
      return { message: joined.subarray(0, 4 + joined.readUIntBE(1, 3)), recordBytes: at };
    }
  }
  return null;
}

/** Starts a loopback server that resolves with the first ClientHello sent to it, then closes. */
async function captureWith(connect: (port: number) => () => void): Promise<Buffer> {
  const server = net.createServer();
  let stopClient: (() => void) | null = null;
  try {
    const captured = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no ClientHello within 10 s')), 10_000);
      server.on('connection', (socket) => {
        socket.on('error', () => undefined);
        const chunks: Buffer[] = [];
        socket.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          const all = Buffer.concat(chunks);
          const found = handshakeFromRecords(all);
          if (found === null) return;
          clearTimeout(timer);
          resolve(all.subarray(0, found.recordBytes));
          socket.destroy();
        });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    stopClient = connect((server.address() as net.AddressInfo).port);
    return await captured;
  } finally {
    stopClient?.();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** The records Node's TLS client sends first, as given these options. */
export function captureNodeHello(options: tls.ConnectionOptions): Promise<Buffer> {
  return captureWith((port) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options });
    socket.on('error', () => undefined);
    return () => socket.destroy();
  });
}

/** Whether a curl binary runs here. */
export function curlAvailable(): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('curl', ['--version'], (error) => resolve(error === null));
  });
}

/** The records curl sends first for https://HOST/, pointed at the capture server. */
export function captureCurlHello(host: string): Promise<Buffer> {
  return captureWith((port) => {
    const child = execFile('curl', ['-s', '-k', '-m', '5', '-o', '/dev/null', '--connect-to', `${host}:443:127.0.0.1:${port}`, `https://${host}/`], () => undefined);
    return () => child.kill();
  });
}

export interface Extension {
  type: number;
  data: Buffer;
}

export function extension(type: number, data: Buffer): Extension {
  return { type, data };
}

/** RFC 6066 §3 extension data: a server_name_list of host_name entries. */
export function serverNameData(names: readonly string[]): Buffer {
  const list = Buffer.concat(names.map((name) => {
    const bytes = Buffer.from(name, 'latin1');
    return Buffer.concat([u8(0), u16(bytes.length), bytes]);
  }));
  return Buffer.concat([u16(list.length), list]);
}

export interface HelloParts {
  version?: number;
  sessionId?: Buffer;
  suites?: Buffer;
  compression?: Buffer;
  /** null: no extensions field at all (a pre-1.3 hello may omit it). */
  extensions?: Extension[] | null;
  /** Added to the extensions length field, to make it lie. */
  extensionsLengthDelta?: number;
}

/** A ClientHello body (no handshake header) built from its parts. */
export function helloBody(parts: HelloParts = {}): Buffer {
  const sessionId = parts.sessionId ?? Buffer.alloc(32, 7);
  const suites = parts.suites ?? Buffer.from([0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f]);
  const compression = parts.compression ?? Buffer.from([0]);
  const fixed = Buffer.concat([
    u16(parts.version ?? 0x0303), Buffer.alloc(32, 0xab),
    u8(sessionId.length), sessionId, u16(suites.length), suites, u8(compression.length), compression,
  ]);
  if (parts.extensions === null) return fixed;
  const extensions = Buffer.concat((parts.extensions ?? [extension(0, serverNameData(['example.test']))])
    .map((e) => Buffer.concat([u16(e.type), u16(e.data.length), e.data])));
  return Buffer.concat([fixed, u16(extensions.length + (parts.extensionsLengthDelta ?? 0)), extensions]);
}

/** A handshake message: type (1 = client_hello) and 24-bit length before the body. */
export function handshake(body: Buffer, type = 1, length = body.length): Buffer {
  return Buffer.concat([u8(type), u24(length), body]);
}

/**
 * The message cut into records of the given body sizes (the last size repeats), each with a
 * TLS record header (content type 22, version 0x0301 as a first flight sends).
 */
export function records(message: Buffer, sizes: readonly number[] = [16384], version = 0x0301): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (let i = 0; at < message.length; i += 1) {
    const size = Math.max(1, sizes[Math.min(i, sizes.length - 1)]);
    const body = message.subarray(at, at + size);
    out.push(Buffer.concat([u8(22), u16(version), u16(body.length), body]));
    at += body.length;
  }
  return Buffer.concat(out);
}

/** A whole first flight from hello parts: one handshake message in one or more records. */
export function clientHello(parts: HelloParts = {}, sizes?: readonly number[]): Buffer {
  return records(handshake(helloBody(parts)), sizes);
}

/** Real captures re-framed: the handshake message they carry, cut into other records. */
export function reframe(captured: Buffer, sizes: readonly number[]): Buffer {
  const found = handshakeFromRecords(captured);
  if (found === null) throw new Error('not a complete ClientHello');
  return records(found.message, sizes);
}
