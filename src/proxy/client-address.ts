import type { Socket } from 'node:net';

/**
 * The client's address as policies see it: a dual-stack listener reports IPv4 clients as
 * ::ffff:a.b.c.d, which must match IPv4 `sources` ranges.
 */
export function clientAddress(socket: Socket): { ip: string; port: number } {
  const raw = socket.remoteAddress ?? '';
  const ip = raw.startsWith('::ffff:') && raw.includes('.') ? raw.slice(7) : raw;
  return { ip, port: socket.remotePort ?? 0 };
}
