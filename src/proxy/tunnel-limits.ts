import type { Socket } from 'node:net';
import type { ProxyContext } from './context';
import { ProxyError } from '../request/errors';

/** What a tunnel's client reads once its CONNECT is allowed. */
export const ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1');

/** Past a limit the client is told to come back later (429 + Retry-After), after the decision. */
export function enforceTunnelLimits(ctx: ProxyContext, source: string): void {
  const { maxTunnels, maxTunnelsPerSource } = ctx.limits;
  if (ctx.tunnels.size > maxTunnels) {
    throw new ProxyError(429, 'too_many_tunnels', `too many open tunnels (limit ${maxTunnels})`);
  }
  if (ctx.tunnels.countFrom(source) > maxTunnelsPerSource) {
    throw new ProxyError(429, 'too_many_tunnels', `too many open tunnels from ${source} (limit ${maxTunnelsPerSource})`);
  }
}

/**
 * Idle timeout: a socket's timer restarts on every read and write, so a tunnel moving bytes
 * either way stays open. The lifetime cap holds however busy it is. Request-head timeouts of
 * the HTTP server no longer apply once CONNECT took the socket over.
 */
export function limitTunnel(ctx: ProxyContext, sockets: readonly Socket[], cut: (reason: string) => void): NodeJS.Timeout | null {
  const { tunnelIdleMs, tunnelLifetimeMs } = ctx.timeouts;
  const idle = (): void => cut(`idle_timeout: no data either way for ${tunnelIdleMs} ms`);
  for (const socket of sockets) socket.setTimeout(tunnelIdleMs, idle);
  if (tunnelLifetimeMs <= 0) return null;
  const timer = setTimeout(() => cut(`lifetime_exceeded: tunnel open for ${tunnelLifetimeMs} ms`), tunnelLifetimeMs);
  timer.unref();
  return timer;
}
