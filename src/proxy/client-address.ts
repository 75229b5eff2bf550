import type { Socket } from 'node:net';

/** Who a connection is from, as policies, limits and the audit record see it. */
export interface ClientAddress {
  readonly ip: string;
  readonly port: number;
  /**
   * The load balancer that connected, when it named the client in a PROXY protocol header
   * (--proxy-protocol-from; the record's `peer_ip`); null for a direct connection.
   */
  readonly peerIp: string | null;
}

/** Clients named by a trusted PROXY protocol header, by the load balancer's socket. */
const proxied = new WeakMap<Socket, ClientAddress>();

/** From now on the connection is the header's client's (proxy-protocol-accept.ts). */
export function setProxiedClient(socket: Socket, client: ClientAddress): void {
  proxied.set(socket, client);
}

/**
 * The client's address: the one a trusted PROXY protocol header named, else the socket's own
 * peer. Every per-source mechanism (client groups, tunnel limits, the login limiter, the
 * record) reads it here, so none of them can key on the load balancer by mistake.
 */
export function clientAddress(socket: Socket): ClientAddress {
  return proxied.get(socket) ?? peerAddress(socket);
}

/**
 * The socket's own peer. A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d, which
 * must match IPv4 `sources` ranges.
 */
export function peerAddress(socket: Socket): ClientAddress {
  const raw = socket.remoteAddress ?? '';
  const ip = raw.startsWith('::ffff:') && raw.includes('.') ? raw.slice(7) : raw;
  return { ip, port: socket.remotePort ?? 0, peerIp: null };
}
