import type { Socket } from 'node:net';
import type { ProxyContext } from './context';
import { ProxyError } from '../request/errors';

/** What a tunnel's client reads once its CONNECT is allowed. */
export const ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1');

/** What a borrow asks for: a slot of the tunnel limit, of the client cap, of a source's tunnel limit. */
export interface BorrowWant {
  overall: boolean;
  clients: boolean;
  source: string | null;
}

/**
 * A `--workers` worker's part of the box's limits (cluster/tunnel-lending.ts): its shares, and a
 * way to borrow more from the other workers when a connection would take it past one. One process
 * has none: its part is the whole limit.
 */
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
  let past = pastTunnelLimits(ctx, source);
  if (past === null) return;
  const shares = ctx.tunnelShares;
  if (shares !== undefined) {
    // What its turn asked for (null: the room was there by then).
    const turn: { asked: BorrowWant | null } = { asked: null };
    const granted = await shares.admit(() => (turn.asked = pastTunnelLimits(ctx, source)));
    if (turn.asked !== null) {
      if (turn.asked.overall) ctx.metrics.limitBorrowed('max_tunnels', granted);
      if (turn.asked.source !== null) ctx.metrics.limitBorrowed('max_tunnels_per_source', granted);
    }
    if (granted) return;
    past = turn.asked ?? past;
  }
  const { maxTunnels, maxTunnelsPerSource } = ctx.limits;
  if (past.overall) throw new ProxyError(429, 'too_many_tunnels', `too many open tunnels (limit ${maxTunnels})`);
  throw new ProxyError(429, 'too_many_tunnels', `too many open tunnels from ${source} (limit ${maxTunnelsPerSource})`);
}

/** Which tunnel limits this process is past (its shares, with workers), or null. */
function pastTunnelLimits(ctx: ProxyContext, source: string): BorrowWant | null {
  const shares = ctx.tunnelShares;
  const overall = ctx.tunnels.size > (shares?.overall() ?? ctx.limits.maxTunnels);
  const fromSource = ctx.tunnels.countFrom(source) > (shares?.forSource(source) ?? ctx.limits.maxTunnelsPerSource);
  return overall || fromSource ? { overall, clients: false, source: fromSource ? source : null } : null;
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
