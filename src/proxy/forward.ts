import type { IncomingMessage, ServerResponse } from 'node:http';
import { authenticate, decideTarget, resolveDestination } from './authorise';
import { clientAddress } from './client-address';
import type { ProxyContext } from './context';
import { ProxyError } from '../request/errors';
import { asProxyError, Exchange } from './exchange';
import { answerFor, sendAnswer } from './respond';
import { parentAddresses } from './parent-proxy';
import type { ParentProxy } from '../policy/parent-url';
import { hasBody } from './relay';
import type { Tally } from './relay';
import { relayDirect } from './relay-direct';
import { relayViaParent } from './relay-parent';
import { parseAbsoluteTarget } from '../request/target';
import type { Target } from '../request/target-types';
import { completeRecord, describeStreamError, ensureAuditWritable, openRecord, recordAbandoned, recordFailure } from './record';
import { tunnelOf, type InspectedTunnel } from './inspected-tunnel';
import type { Socket } from 'node:net';

/** Recorded when the client's connection closes before the response was complete. */
export const CLIENT_LEFT = 'client_closed: the connection closed before the response was complete';

/**
 * An absolute-URI http:// request: parse, decide, resolve and guard, record, forward.
 * Every request on a keep-alive connection comes through here and is decided on its own, and
 * so does every request inside an inspected tunnel (inspected-tunnel.ts says how those differ).
 */
export async function handleRequest(
  ctx: ProxyContext,
  req: IncomingMessage,
  res: ServerResponse,
  options: { expectsContinue?: boolean } = {},
): Promise<void> {
  const tunnel = tunnelOf(req.socket);
  const exchange = tunnel !== null ? tunnel.exchange(req.method ?? null, req.url ?? null) : plainExchange(ctx, req.socket, req.method ?? null, req.url ?? null);
  deciding.set(res, exchange);
  let route: Route;
  try {
    rejectAmbiguousFraming(req);
    if (tunnel === null) await decidePlain(ctx, exchange, req);
    else tunnel.decide(exchange, req);
    ensureAuditWritable(ctx);
    route = tunnel === null ? await routeFor(ctx, exchange, exchange.target as Target) : await tunnel.route(exchange);
    exchange.resolvedIp = route.address;
    // Refused meanwhile (its body failed to parse): answered and recorded there.
    if (exchange.ended) return;
    if (clientGone(req)) {
      await recordAbandoned(ctx, exchange);
      return;
    }
    // From here a body that fails to parse cuts the connection (refuseMalformedBody): the
    // record is being committed, and a second one must not be written for a 400.
    deciding.delete(res);
    await openRecord(ctx, exchange);
  } catch (err) {
    await failEarly(ctx, exchange, req, res, asProxyError(err));
    return;
  }
  // The client left while the record was committed; its 'close' has already been emitted.
  if (clientGone(req)) {
    completeRecord(ctx, exchange, { status: null, bytesUp: 0, bytesDown: 0, error: CLIENT_LEFT });
    return;
  }
  // Only an allowed, recorded request is told to send its body.
  if (options.expectsContinue) res.writeContinue();
  forward(ctx, exchange, req, res, route, tunnel);
}

/** The exchange of a request read from `socket`: plain HTTP, or a request inside an inspected tunnel. */
export function exchangeOn(ctx: ProxyContext, socket: Socket, method: string | null, rawTarget: string | null): Exchange {
  return tunnelOf(socket)?.exchange(method, rawTarget) ?? plainExchange(ctx, socket, method, rawTarget);
}

function plainExchange(ctx: ProxyContext, socket: Socket, method: string | null, rawTarget: string | null): Exchange {
  return new Exchange('http', method, clientAddress(socket), rawTarget, ctx.clock());
}

/** Plain HTTP: the absolute URI names the destination; the proxy credentials name the user. */
async function decidePlain(ctx: ProxyContext, exchange: Exchange, req: IncomingMessage): Promise<void> {
  const target = parseAbsoluteTarget(req.url);
  exchange.target = target;
  await authenticate(ctx, exchange, req.headers['proxy-authorization']);
  decideTarget(ctx, exchange, target);
}

/**
 * The client closed, or sent FIN (Node's http.Server then ends the connection: it cannot
 * answer, as with squid's `half_closed_clients off`). Nothing is forwarded for it: a request
 * with side effects must not be carried out for a client that has gone.
 */
function clientGone(req: IncomingMessage): boolean {
  return req.socket.destroyed || !req.socket.writable;
}

/** Where a request goes: an address that passed the guard, or a parent proxy's. */
interface Route {
  address: string;
  parent: ParentProxy | null;
}

async function routeFor(ctx: ProxyContext, exchange: Exchange, target: Target): Promise<Route> {
  const parent = exchange.decision?.upstream ?? null;
  if (parent === null) {
    const [address] = await resolveDestination(ctx, exchange, target);
    return { address, parent };
  }
  // The parent resolves names; IP-literal destinations are still guarded here.
  if (target.hostKind !== 'name') await resolveDestination(ctx, exchange, target);
  const [address] = await parentAddresses(ctx, parent);
  return { address, parent };
}

/** Exchanges still being decided (nothing forwarded yet), by their response. */
const deciding = new WeakMap<ServerResponse, Exchange>();

/**
 * The request's body failed to parse while the request was still being decided: answer and
 * record the refusal now (the decision in progress then stops). Returns false when forwarding
 * already began, and the caller must cut the connection instead.
 */
export function refuseMalformedBody(ctx: ProxyContext, res: ServerResponse, error: ProxyError): boolean {
  const exchange = deciding.get(res);
  if (!exchange || res.headersSent) return false;
  // A refusal of this exchange is being recorded (a denial, or an earlier bad chunk): its
  // answer is on its way and ends the connection. (An allowed exchange has left `deciding`
  // before its record is opened.)
  if (exchange.ended) return true;
  deciding.delete(res);
  res.shouldKeepAlive = false;
  void answerWhenRecorded(ctx, exchange, res, error);
  return true;
}

/** Record the refusal (exchange.ended is set at once), then answer, naming the record. Never rejects. */
export async function answerWhenRecorded(ctx: ProxyContext, exchange: Exchange, res: ServerResponse, error: ProxyError): Promise<void> {
  const answered = await recordFailure(ctx, exchange, error);
  try {
    sendAnswer(res, answerFor(answered, exchange));
  } catch (err) {
    ctx.log.error({ err }, 'answering a refused request failed');
    res.destroy();
  }
}

/** SPEC §3: both Content-Length and Transfer-Encoding is refused (stricter than RFC 9112 §6.3). */
function rejectAmbiguousFraming(req: IncomingMessage): void {
  if (req.headers['content-length'] !== undefined && req.headers['transfer-encoding'] !== undefined) {
    throw new ProxyError(400, 'bad_request', 'both Content-Length and Transfer-Encoding');
  }
}

async function failEarly(ctx: ProxyContext, exchange: Exchange, req: IncomingMessage, res: ServerResponse, error: ProxyError): Promise<void> {
  // Refused meanwhile (its body failed to parse): that refusal is the one record and answer.
  if (exchange.ended) return;
  // An unread request body would otherwise be read and thrown away to keep the connection.
  if (hasBody(req)) res.shouldKeepAlive = false;
  await answerWhenRecorded(ctx, exchange, res, error);
}

function forward(ctx: ProxyContext, exchange: Exchange, req: IncomingMessage, res: ServerResponse, route: Route, tunnel: InspectedTunnel | null): void {
  const tally: Tally = { up: 0, down: 0, status: null, error: null };
  ctx.gauges.activeRequests += 1;
  const relay = tunnel !== null
    ? tunnel.relay(exchange, req, res, tally, route)
    : route.parent
      ? relayViaParent(ctx, exchange, req, res, tally, route.parent, route.address)
      : relayDirect(ctx, exchange, req, res, tally, route.address);
  req.on('data', (chunk: Buffer) => (tally.up += chunk.length));
  req.on('error', (err) => {
    tally.error ??= describeStreamError(err);
    relay.abort();
  });
  // The exchange ends when its response closes, or when the client's connection does: a
  // response queued behind a pipelined one is never attached to the socket, and never closes.
  const socket = req.socket;
  let ended = false;
  const end = (): void => {
    if (ended) return;
    ended = true;
    socket.off('close', end);
    ctx.gauges.activeRequests -= 1;
    if (!res.writableFinished) {
      tally.error ??= CLIENT_LEFT;
      relay.abort();
    }
    completeRecord(ctx, exchange, { status: tally.status, bytesUp: tally.up, bytesDown: tally.down, error: tally.error });
  };
  res.on('close', end);
  if (socket.destroyed) end();
  else socket.on('close', end);
}
