import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { pipeline } from 'node:stream';
import { decideTarget, resolveDestination } from './authorise';
import type { ProxyContext } from './context';
import { connectChecked } from './dial';
import { ProxyError } from './errors';
import { asProxyError, Exchange } from './exchange';
import { answerFor, writeRawAnswer } from './respond';
import { clientAddress } from './client-address';
import { parseConnectTarget } from './target';

const ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1');

/**
 * CONNECT: parse, decide, resolve and guard, dial, record, then answer 200 and splice.
 * Never rejects: every failure is answered and recorded here (STYLE habit 7).
 */
export async function handleConnect(ctx: ProxyContext, req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
  // Hold the client's bytes (including any it pipelined after the CONNECT head) until the
  // upstream exists; with no 'data' listener a flowing socket would drop them.
  client.pause();
  const { ip, port } = clientAddress(client);
  // Tracked from the start, so limits and a drain see it while it is decided or dialled.
  ctx.tunnels.add(client, ip);
  const exchange = new Exchange('connect', 'CONNECT', ip, port, req.url ?? null, ctx.clock());
  let upstream: Socket | null = null;
  try {
    const target = parseConnectTarget(req.url);
    decideTarget(ctx, exchange, target);
    enforceTunnelLimits(ctx, ip);
    const addresses = await resolveDestination(ctx, exchange, target);
    const connected = await connectChecked(addresses, target.port, ctx.timeouts.connectMs);
    upstream = connected.socket;
    upstream.on('error', () => upstream?.destroy());
    exchange.resolvedIp = connected.address;
    if (client.destroyed) {
      upstream.destroy();
      recordAbandoned(ctx, exchange);
      ctx.tunnels.delete(client);
      return;
    }
    exchange.recordId = openRecord(ctx, exchange);
  } catch (err) {
    upstream?.destroy();
    failConnect(ctx, exchange, client, asProxyError(err));
    ctx.tunnels.delete(client);
    return;
  }
  splice(ctx, exchange, client, upstream, head);
}

/** Past a limit the client is told to come back later (429 + Retry-After), after the decision. */
function enforceTunnelLimits(ctx: ProxyContext, source: string): void {
  const { maxTunnels, maxTunnelsPerSource } = ctx.limits;
  if (ctx.tunnels.size > maxTunnels) {
    throw new ProxyError(429, 'too_many_tunnels', `too many open tunnels (limit ${maxTunnels})`);
  }
  if (ctx.tunnels.countFrom(source) > maxTunnelsPerSource) {
    throw new ProxyError(429, 'too_many_tunnels', `too many open tunnels from ${source} (limit ${maxTunnelsPerSource})`);
  }
}

/** The record is committed before the 200 and before any client byte goes upstream (SPEC §4). */
function openRecord(ctx: ProxyContext, exchange: Exchange): number {
  try {
    return ctx.audit.open(exchange.toOpen());
  } catch (err) {
    ctx.log.error({ err }, 'audit write failed');
    throw new ProxyError(503, 'audit_unavailable', 'audit log cannot be written');
  }
}

function failConnect(ctx: ProxyContext, exchange: Exchange, client: Socket, error: ProxyError): void {
  recordFailure(ctx, exchange, error);
  writeRawAnswer(client, answerFor(error, exchange));
}

/** Record a request that ends before forwarding; a failing audit write turns the answer into 503. */
export function recordFailure(ctx: ProxyContext, exchange: Exchange, error: ProxyError): ProxyError {
  if (error.code === 'audit_unavailable') return error;
  try {
    exchange.recordFailure(ctx.audit, error, ctx.clock());
    return error;
  } catch (err) {
    ctx.log.error({ err }, 'audit write failed');
    return new ProxyError(503, 'audit_unavailable', 'audit log cannot be written');
  }
}

/** The client left while its request was being decided or dialled. */
export function recordAbandoned(ctx: ProxyContext, exchange: Exchange): void {
  try {
    exchange.recordAbandoned(ctx.audit, ctx.clock());
  } catch (err) {
    ctx.log.error({ err }, 'audit write failed');
  }
}

function splice(ctx: ProxyContext, exchange: Exchange, client: Socket, upstream: Socket, head: Buffer): void {
  let firstError: Error | null = null;
  const noteError = (err: Error | null | undefined): void => {
    if (err && !firstError) firstError = err;
  };
  client.write(ESTABLISHED);
  if (head.length > 0) upstream.write(head);
  // pipeline() ends the destination when the source ends (half-close is kept: both sockets
  // allow half-open) and destroys both sides when either fails.
  pipeline(client, upstream, noteError);
  pipeline(upstream, client, noteError);
  const cut = (reason: string): void => {
    noteError(new Error(reason));
    client.destroy();
    upstream.destroy();
  };
  const lifetime = limitTunnel(ctx, client, upstream, cut);
  let closed = 0;
  const onClose = (): void => {
    closed += 1;
    if (closed < 2) return;
    if (lifetime) clearTimeout(lifetime);
    ctx.tunnels.delete(client);
    completeRecord(ctx, exchange, upstream, firstError);
  };
  for (const socket of [client, upstream]) {
    // A side that closed before we got here has already emitted 'close'.
    if (socket.closed) onClose();
    else socket.once('close', onClose);
  }
}

/**
 * Idle timeout: a socket's timer restarts on every read and write, so a tunnel moving bytes
 * either way stays open. The lifetime cap holds however busy it is. Request-head timeouts of
 * the HTTP server no longer apply once CONNECT took the socket over.
 */
function limitTunnel(ctx: ProxyContext, client: Socket, upstream: Socket, cut: (reason: string) => void): NodeJS.Timeout | null {
  const { tunnelIdleMs, tunnelLifetimeMs } = ctx.timeouts;
  const idle = (): void => cut(`idle_timeout: no data either way for ${tunnelIdleMs} ms`);
  client.setTimeout(tunnelIdleMs, idle);
  upstream.setTimeout(tunnelIdleMs, idle);
  if (tunnelLifetimeMs <= 0) return null;
  const timer = setTimeout(() => cut(`lifetime_exceeded: tunnel open for ${tunnelLifetimeMs} ms`), tunnelLifetimeMs);
  timer.unref();
  return timer;
}

function completeRecord(ctx: ProxyContext, exchange: Exchange, upstream: Socket, error: Error | null): void {
  if (exchange.recordId === null) return;
  try {
    ctx.audit.complete(exchange.recordId, {
      endedAt: ctx.clock(),
      status: 200,
      bytesUp: upstream.bytesWritten,
      bytesDown: upstream.bytesRead,
      error: error ? describeStreamError(error) : null,
    });
  } catch (err) {
    ctx.log.error({ err, id: exchange.recordId }, 'audit completion failed');
  }
}

export function describeStreamError(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  return code ? `${code}: ${error.message}` : error.message;
}
