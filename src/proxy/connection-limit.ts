import type { Socket } from 'node:net';
import { clientAddress } from './client-address';
import type { ProxyContext } from './context';
import { ProxyError } from '../request/errors';
import { Exchange } from './exchange';
import { recordFailure } from './record';
import { answerFor, writeRawAnswer } from './respond';

/**
 * `--max-client-connections`: past the cap a connection is answered 503 and recorded instead
 * of served. Without it, once descriptors ran out libuv's accept() fell back to accepting and
 * closing every waiting connection at once (its EMFILE trick): no answer and no record.
 */

/**
 * Refused connections answered once their record is committed (the answer names its id), at
 * most this many at once; the descriptor reserve (descriptors.ts) keeps room for them.
 */
export const REFUSALS_IN_FLIGHT = 32;

/** How long between two warnings that connections are being refused. */
const WARNING_INTERVAL_MS = 60_000;

/** Connections past the cap: their answer is on its way, and no request on them is handled. */
const refused = new WeakSet<Socket>();

export function isRefusedConnection(socket: Socket): boolean {
  return refused.has(socket);
}

/**
 * Count a new client connection against the cap; false when it is being refused instead. A
 * `--workers` worker past its share of an explicit cap borrows first (cluster/tunnel-lending.ts):
 * the connection is counted while it waits, and nothing of it is read until it is admitted.
 */
export function admitConnection(ctx: ProxyContext, socket: Socket): boolean | Promise<boolean> {
  const closed = (): void => {
    ctx.gauges.clientSockets -= 1;
  };
  ctx.gauges.clientSockets += 1;
  socket.once('close', closed);
  const shares = ctx.tunnelShares;
  const share = shares?.clients() ?? null;
  if (ctx.gauges.clientSockets <= (share ?? ctx.limits.maxClientConnections)) return true;
  // Past the cap: a refused connection does not count against it while its 503 is answered.
  const refuse = (): false => {
    socket.off('close', closed);
    closed();
    refuseConnection(ctx, socket);
    return false;
  };
  if (shares === undefined || share === null) return refuse();
  const turn = { asked: false };
  return shares.admit(() => {
    turn.asked = ctx.gauges.clientSockets > (shares.clients() ?? 0);
    return turn.asked ? { overall: false, clients: true, source: null } : null;
  }).then((granted) => {
    if (turn.asked) ctx.metrics.limitBorrowed('max_client_connections', granted);
    return granted || refuse();
  });
}

function refuseConnection(ctx: ProxyContext, socket: Socket): void {
  refused.add(socket);
  ctx.metrics.clientConnectionRefused();
  warnOfRefusals(ctx);
  const client = clientAddress(socket);
  // Nothing of the request has been read: the record names the client and why, no target.
  const exchange = new Exchange('http', null, client, null, ctx.clock());
  const error = new ProxyError(503, 'too_many_client_connections', `too many client connections (limit ${ctx.limits.maxClientConnections})`);
  if (ctx.gauges.refusingSockets >= REFUSALS_IN_FLIGHT) {
    // A burst: libuv accepts every waiting connection in one go, so each must give its
    // descriptor back before the next accept. Answered now, without the id; recorded anyway.
    void recordFailure(ctx, exchange, error);
    writeRawAnswer(socket, answerFor(error, exchange), { linger: false });
    return;
  }
  ctx.gauges.refusingSockets += 1;
  socket.once('close', () => (ctx.gauges.refusingSockets -= 1));
  // recordFailure never rejects; it resolves with 503 audit_unavailable if the write failed.
  void recordFailure(ctx, exchange, error).then((answer) => writeRawAnswer(socket, answerFor(answer, exchange)));
}

/** The last warning per proxy, and how many were refused since. */
const warnings = new WeakMap<ProxyContext, { atMs: number; refused: number }>();

/** One log line when refusals start, then at most one a minute with the count. */
function warnOfRefusals(ctx: ProxyContext): void {
  const now = ctx.clock().getTime();
  const last = warnings.get(ctx);
  if (last && now - last.atMs < WARNING_INTERVAL_MS) {
    last.refused += 1;
    return;
  }
  const refusedSince = (last?.refused ?? 0) + 1;
  warnings.set(ctx, { atMs: now, refused: 0 });
  ctx.log.warn(
    { max_client_connections: ctx.limits.maxClientConnections, refused: refusedSince },
    'client connections refused: --max-client-connections reached',
  );
}
