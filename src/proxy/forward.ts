import { request as httpRequest } from 'node:http';
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import { authenticate, decideTarget, resolveDestination } from './authorise';
import { clientAddress } from './client-address';
import type { ProxyContext } from './context';
import { upstreamError } from './dial';
import { ProxyError } from './errors';
import { asProxyError, Exchange } from './exchange';
import { endToEndHeaders } from './headers';
import { answerFor, sendAnswer } from './respond';
import { parentAddresses } from './parent-proxy';
import type { ParentProxy } from './parent-url';
import { parseAbsoluteTarget } from './target';
import type { Target } from './target-types';
import { completeRecord, countUpstreamError, describeStreamError, ensureAuditWritable, openRecord, recordAbandoned, recordFailure } from './record';

/** What the record is completed with when the exchange ends. */
interface Tally {
  up: number;
  down: number;
  status: number | null;
  error: string | null;
}

/** Recorded when the client's connection closes before the response was complete. */
export const CLIENT_LEFT = 'client_closed: the connection closed before the response was complete';

/** The request's own Host is replaced by the URI's host (RFC 9112 §3.2.2). */
const DROP_FROM_REQUEST = new Set(['host']);

/**
 * An absolute-URI http:// request: parse, decide, resolve and guard, record, forward.
 * Every request on a keep-alive connection comes through here and is decided on its own.
 */
export async function handleRequest(
  ctx: ProxyContext,
  req: IncomingMessage,
  res: ServerResponse,
  options: { expectsContinue?: boolean } = {},
): Promise<void> {
  const { ip, port } = clientAddress(req.socket);
  const exchange = new Exchange('http', req.method ?? null, ip, port, req.url ?? null, ctx.clock());
  deciding.set(res, exchange);
  let route: Route;
  try {
    rejectAmbiguousFraming(req);
    const target = parseAbsoluteTarget(req.url);
    exchange.target = target;
    await authenticate(ctx, exchange, req.headers['proxy-authorization']);
    decideTarget(ctx, exchange, target);
    ensureAuditWritable(ctx);
    route = await routeFor(ctx, exchange, target);
    exchange.resolvedIp = route.address;
    // Refused meanwhile (its body failed to parse): already answered and recorded.
    if (exchange.recordId !== null) return;
    if (clientGone(req)) {
      recordAbandoned(ctx, exchange);
      return;
    }
    // From here a body that fails to parse cuts the connection (refuseMalformedBody): the
    // record is being committed, and a second one must not be written for a 400.
    deciding.delete(res);
    await openRecord(ctx, exchange);
  } catch (err) {
    failEarly(ctx, exchange, req, res, asProxyError(err));
    return;
  }
  // The client left while the record was committed; its 'close' has already been emitted.
  if (clientGone(req)) {
    completeRecord(ctx, exchange, { status: null, bytesUp: 0, bytesDown: 0, error: CLIENT_LEFT });
    return;
  }
  // Only an allowed, recorded request is told to send its body.
  if (options.expectsContinue) res.writeContinue();
  forward(ctx, exchange, req, res, route);
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
  if (!exchange || exchange.recordId !== null || res.headersSent) return false;
  deciding.delete(res);
  res.shouldKeepAlive = false;
  sendAnswer(res, answerFor(recordFailure(ctx, exchange, error), exchange));
  return true;
}

/** SPEC §3: both Content-Length and Transfer-Encoding is refused (stricter than RFC 9112 §6.3). */
function rejectAmbiguousFraming(req: IncomingMessage): void {
  if (req.headers['content-length'] !== undefined && req.headers['transfer-encoding'] !== undefined) {
    throw new ProxyError(400, 'bad_request', 'both Content-Length and Transfer-Encoding');
  }
}

function failEarly(ctx: ProxyContext, exchange: Exchange, req: IncomingMessage, res: ServerResponse, error: ProxyError): void {
  const answered = recordFailure(ctx, exchange, error);
  // An unread request body would otherwise be read and thrown away to keep the connection.
  if (hasBody(req)) res.shouldKeepAlive = false;
  sendAnswer(res, answerFor(answered, exchange));
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

function hostHeader(target: Target): string {
  const host = target.hostKind === 'ipv6' ? `[${target.host}]` : target.host;
  return target.port === 80 ? host : `${host}:${target.port}`;
}

/** A flat name/value list as an object, repeated names kept as arrays. */
function headerObject(flat: string[]): Record<string, string | string[]> {
  // No prototype: a client header named `constructor` or `__proto__` is just a header.
  const headers: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i].toLowerCase();
    const seen = headers[name];
    headers[name] = seen === undefined ? flat[i + 1] : [...(Array.isArray(seen) ? seen : [seen]), flat[i + 1]];
  }
  return headers;
}

function upstreamHeaders(req: IncomingMessage, target: Target): string[] {
  const headers = ['Host', hostHeader(target), ...endToEndHeaders(req.rawHeaders, DROP_FROM_REQUEST)];
  // The body arrives de-chunked; ask Node to chunk it again rather than send it unframed.
  if (req.headers['transfer-encoding'] !== undefined) headers.push('Transfer-Encoding', 'chunked');
  return headers;
}

function forward(ctx: ProxyContext, exchange: Exchange, req: IncomingMessage, res: ServerResponse, route: Route): void {
  const target = exchange.target as Target;
  const { address, parent } = route;
  const tally: Tally = { up: 0, down: 0, status: null, error: null };
  const headers = upstreamHeaders(req, target);
  const upstream = httpRequest({
    // Through a parent, http-proxy-agent writes the absolute URI from the Host header and
    // connects to the parent's checked address; it needs headers it can read back (an object).
    host: parent ? target.host : address,
    port: target.port,
    method: req.method,
    // Through a parent the path is the whole absolute URI: http-proxy-agent resolves a path
    // against the Host header, and a path such as `//evil.test/x` would name another host.
    path: parent ? `http://${hostHeader(target)}${target.path ?? '/'}${target.search}` : `${target.path ?? '/'}${target.search}`,
    headers: parent ? headerObject(headers) : headers,
    setHost: false,
    agent: parent ? ctx.parentAgents.agentFor(parent, address) : ctx.upstreamAgent,
  });
  if (parent) limitParentConnectTime(ctx, upstream, parent);
  else limitConnectTime(ctx, upstream, address, target.port);
  // An origin that accepts and then never answers (or stalls mid-body) must not hold the
  // exchange forever: no bytes from it for requestIdleMs -> 504, or a cut if already answering.
  upstream.setTimeout(ctx.timeouts.requestIdleMs, () => {
    upstream.destroy(new ProxyError(504, 'upstream_timeout', `no data from the destination for ${ctx.timeouts.requestIdleMs} ms`));
  });
  ctx.gauges.activeRequests += 1;
  req.on('data', (chunk: Buffer) => (tally.up += chunk.length));
  // pipe(), not pipeline(): an upstream failure must not destroy the client's request (and
  // with it the connection) before the 502 is written.
  req.pipe(upstream);
  req.on('error', (err) => {
    tally.error ??= describeStreamError(err);
    upstream.destroy();
  });
  upstream.on('response', (upRes) => relayResponse(upstream, upRes, res, exchange, tally, parent !== null));
  const fail = (err: Error): void => {
    tally.error ??= describeStreamError(err);
    if (res.headersSent) return void res.destroy();
    const error = err instanceof ProxyError ? err : upstreamError(err, address, parent ? parent.port : target.port);
    countUpstreamError(ctx, error.code);
    tally.status = error.status;
    sendAnswer(res, answerFor(error, exchange));
  };
  upstream.on('error', fail);
  // We strip Upgrade, so a 101 is the origin misbehaving. Node then emits neither 'response'
  // nor 'error', so answer here.
  upstream.on('upgrade', (_upRes, socket) => {
    socket.destroy();
    fail(new ProxyError(502, 'upstream_error', 'the destination switched protocols unasked'));
  });
  res.on('close', () => {
    ctx.gauges.activeRequests -= 1;
    if (!res.writableFinished) {
      upstream.destroy();
      tally.error ??= CLIENT_LEFT;
    }
    completeRecord(ctx, exchange, { status: tally.status, bytesUp: tally.up, bytesDown: tally.down, error: tally.error });
  });
}

/**
 * Relay the origin's answer. Its status line and headers are untrusted input: a status Node
 * will not write (e.g. 099) or a header value with control bytes must become a 502, not an
 * exception thrown out of a listener. The reason phrase is not relayed (RFC 9112 §4: clients
 * ignore it); Node writes the standard one.
 */
function relayResponse(upstream: ClientRequest, upRes: IncomingMessage, res: ServerResponse, exchange: Exchange, tally: Tally, parentRoute: boolean): void {
  const status = upRes.statusCode ?? 0;
  try {
    if (status < 200 || status > 599) throw new Error(`invalid status ${status}`);
    // A 407 here is the parent refusing our credentials, not something the client can answer.
    if (status === 407 && parentRoute) throw new Error('the upstream proxy refused its credentials (407)');
    res.writeHead(status, endToEndHeaders(upRes.rawHeaders));
  } catch (err) {
    upstream.destroy();
    tally.error ??= `upstream_error: ${err instanceof Error ? err.message : String(err)}`;
    tally.status = 502;
    if (res.headersSent) res.destroy();
    else sendAnswer(res, answerFor(new ProxyError(502, 'upstream_error', 'the destination sent an invalid response'), exchange));
    return;
  }
  tally.status = status;
  upRes.on('data', (chunk: Buffer) => (tally.down += chunk.length));
  // pipe(), not pipeline(): pipeline() costs 80-170 µs per response (its finish aborts an
  // AbortSignal, which builds a DOMException with a stack trace). Teardown is ours: the origin
  // failing mid-body cuts the client (a truncated body must not look complete), and a client
  // that leaves is seen by the 'close' listener in forward(), which destroys the upstream.
  upRes.on('error', (err) => {
    tally.error ??= describeStreamError(err);
    res.destroy();
  });
  // Ended without an error but short of its framing (Node marks it not complete).
  upRes.on('end', () => {
    if (!upRes.complete) res.destroy();
  });
  upRes.pipe(res);
}

/** http-proxy-agent hands the socket over only once connected: time from the request's start. */
function limitParentConnectTime(ctx: ProxyContext, upstream: ClientRequest, parent: ParentProxy): void {
  const timer = setTimeout(() => {
    upstream.destroy(new ProxyError(504, 'connect_timeout', `upstream proxy ${parent.label} did not accept a connection in ${ctx.timeouts.connectMs} ms`));
  }, ctx.timeouts.connectMs);
  upstream.once('socket', () => clearTimeout(timer));
  upstream.once('close', () => clearTimeout(timer));
}

/** A pooled agent has no connect timeout of its own: bound the TCP handshake here (→ 504). */
function limitConnectTime(ctx: ProxyContext, upstream: ClientRequest, address: string, port: number): void {
  upstream.once('socket', (socket) => {
    if (!socket.connecting) return;
    const timer = setTimeout(() => {
      upstream.destroy(new ProxyError(504, 'connect_timeout', `connect to ${address}:${port} timed out`));
    }, ctx.timeouts.connectMs);
    socket.once('connect', () => clearTimeout(timer));
    upstream.once('close', () => clearTimeout(timer));
  });
}
