import type { Socket } from 'node:net';
import type { ProxyContext } from './context';
import { ProxyError } from '../request/errors';

/** What a tunnel's client reads once its CONNECT is allowed. */
export const ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1');

/**
 * A `--workers` worker's part of the box's tunnel limits (cluster/tunnel-lending.ts): its shares,
 * and a way to borrow more from the other workers when a CONNECT would take it past one. One
 * process has none: its part is the whole limit.
 */
/** What a borrow asks for: a slot of the tunnel limit, of the client cap, of a source's tunnel limit. */
export interface BorrowWant {
  overall: boolean;
  clients: boolean;
  source: string | null;
}

export interface TunnelShares {
  overall(): number;
  forSource(source: string): number;
  /** Of an explicit --max-client-connections; null when it is `auto` (per process, not lent). */
  clients(): number | null;
  /**
   * For a connection past a share: one borrow at a time, each asking `need` when its turn comes
   * what it still lacks (null: admitted). Resolves true once it has the room, false when no worker
   * had a slot to spare.
   */
  admit(need: () => BorrowWant | null): Promise<boolean>;
}

/**
 * Past a limit the client is told to come back later (429 + Retry-After), after the decision. The
 * tunnel is already counted (ctx.tunnels), so "past" is more than the limit. A worker past its
 * share borrows first, and refuses only when the box has no room.
 */
export async function enforceTunnelLimits(ctx: ProxyContext, source: string): Promise<void> {
  const { maxTunnels, maxTunnelsPerSource } = ctx.limits;
  const shares = ctx.tunnelShares;
  const overall = ctx.tunnels.size > (shares?.overall() ?? maxTunnels);
  const fromSource = ctx.tunnels.countFrom(source) > (shares?.forSource(source) ?? maxTunnelsPerSource);
  if (!overall && !fromSource) return;
  if (shares !== undefined) {
    // What its turn asked for (null: the room was there by then).
    const turn: { asked: BorrowWant | null } = { asked: null };
    const granted = await shares.admit(() => {
      const pastAll = ctx.tunnels.size > shares.overall();
      const pastSource = ctx.tunnels.countFrom(source) > shares.forSource(source);
      turn.asked = pastAll || pastSource ? { overall: pastAll, clients: false, source: pastSource ? source : null } : null;
      return turn.asked;
    });
    const borrowed = turn.asked;
    if (borrowed !== null) {
      if (borrowed.overall) ctx.metrics.limitBorrowed('max_tunnels', granted);
      if (borrowed.source !== null) ctx.metrics.limitBorrowed('max_tunnels_per_source', granted);
    }
    if (granted) return;
    if (borrowed !== null && !borrowed.overall) {
      throw new ProxyError(429, 'too_many_tunnels', `too many open tunnels from ${source} (limit ${maxTunnelsPerSource})`);
    }
    throw new ProxyError(429, 'too_many_tunnels', `too many open tunnels (limit ${maxTunnels})`);
  }
  if (overall) throw new ProxyError(429, 'too_many_tunnels', `too many open tunnels (limit ${maxTunnels})`);
  throw new ProxyError(429, 'too_many_tunnels', `too many open tunnels from ${source} (limit ${maxTunnelsPerSource})`);
}

/**
 * Idle timeout: a socket's timer restarts on every read and write, so a tunnel moving bytes
 * either way stays open. The lifetime cap holds however busy it is. Request-head timeouts of
 * the HTTP server no longer apply once CONNECT took the socket over.
 */
export function limitTunnel(ctx: ProxyContext, sockets: readonly Socket[], cut: (reason: string) => void): NodeJS.Timeout | null {
  const idle = (): void => cut(idleReason(ctx));
  for (const socket of sockets) socket.setTimeout(ctx.timeouts.tunnelIdleMs, idle);
  return lifetimeTimer(ctx, cut);
}

function idleReason(ctx: ProxyContext): string {
  return `idle_timeout: no data either way for ${ctx.timeouts.tunnelIdleMs} ms`;
}

/** The lifetime cap, whatever the tunnel's traffic; null without one. */
function lifetimeTimer(ctx: ProxyContext, cut: (reason: string) => void): NodeJS.Timeout | null {
  const { tunnelLifetimeMs } = ctx.timeouts;
  if (tunnelLifetimeMs <= 0) return null;
  const timer = setTimeout(() => cut(`lifetime_exceeded: tunnel open for ${tunnelLifetimeMs} ms`), tunnelLifetimeMs);
  timer.unref();
  return timer;
}

/**
 * An inspected tunnel's limits (inspect-tunnel.ts). Its TLS socket belongs to the inner HTTP
 * server, which sets that socket's own timeout for keep-alive and clears it per request, so
 * idleness is read from the byte counters instead: cut once a whole `tunnelIdleMs` passed with
 * none moving (between one and two idle periods after the last byte). The lifetime cap as above.
 */
export function limitByActivity(ctx: ProxyContext, socket: Socket, cut: (reason: string) => void): () => void {
  let seen = -1;
  const idle = setInterval(() => {
    const moved = socket.bytesRead + socket.bytesWritten;
    if (moved === seen) cut(idleReason(ctx));
    seen = moved;
  }, ctx.timeouts.tunnelIdleMs);
  idle.unref();
  const lifetime = lifetimeTimer(ctx, cut);
  return () => {
    clearInterval(idle);
    if (lifetime !== null) clearTimeout(lifetime);
  };
}
