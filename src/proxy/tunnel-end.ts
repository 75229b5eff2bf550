import type { Socket } from 'node:net';
import type { ProxyContext } from './context';
import type { Exchange } from './exchange';
import { recordAbandoned, recordFailure } from './record';
import type { ProxyError } from '../request/errors';

/**
 * How a CONNECT that never became a tunnel ends, for the plain tunnel (tunnel.ts) and the
 * inspected one (inspect-tunnel.ts) alike: it stops counting against the tunnel limits at once,
 * what was dialled is closed, and its one record says why.
 */

/** The client left before anything was forwarded. */
export async function abandonTunnel(ctx: ProxyContext, exchange: Exchange, client: Socket, upstream: Socket | null = null): Promise<void> {
  upstream?.destroy();
  ctx.tunnels.delete(client);
  client.destroy();
  await recordAbandoned(ctx, exchange);
}

/** The client has its 200: an HTTP answer now would be read as the server's bytes, so it is recorded and cut. */
export async function refuseAfterAnswer(ctx: ProxyContext, exchange: Exchange, client: Socket, error: ProxyError, upstream: Socket | null = null): Promise<void> {
  upstream?.destroy();
  ctx.tunnels.delete(client);
  await recordFailure(ctx, exchange, error);
  client.destroy();
}

/** The decision becomes the refusal its record shows (never let through in report mode). */
export function refuseDecision(exchange: Exchange, reason: string, rule?: string): void {
  const decision = exchange.decision;
  if (decision === null) return;
  exchange.decision = rule === undefined
    ? { ...decision, action: 'deny', reason, wouldDeny: false }
    : { ...decision, action: 'deny', rule, ruleSource: null, reason, wouldDeny: false };
}
