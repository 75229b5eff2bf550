import { request as httpRequest } from 'node:http';
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { ProxyContext } from './context';
import { upstreamError } from './dial';
import { ProxyError } from '../request/errors';
import type { Exchange } from './exchange';
import { endToEndHeaders } from './headers';
import type { ParentProxy } from '../policy/parent-url';
import { describeStreamError } from './record';
import { DROP_FROM_REQUEST, failUpstream, hostHeader, idleTimeout, invalidResponse, isParseError, relayHead } from './relay';
import type { Relay, Tally } from './relay';
import type { Target } from '../request/target-types';

/**
 * A plain HTTP request through a parent proxy: node:http with http-proxy-agent, which writes
 * the absolute URI and the parent's credentials. (Direct requests take relay-direct.ts.)
 */

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

function parentHeaders(req: IncomingMessage, target: Target): Record<string, string | string[]> {
  const headers = ['Host', hostHeader(target), ...endToEndHeaders(req.rawHeaders, DROP_FROM_REQUEST)];
  // The body arrives de-chunked; ask Node to chunk it again rather than send it unframed.
  if (req.headers['transfer-encoding'] !== undefined) headers.push('Transfer-Encoding', 'chunked');
  return headerObject(headers);
}

export function relayViaParent(ctx: ProxyContext, exchange: Exchange, req: IncomingMessage, res: ServerResponse, tally: Tally, parent: ParentProxy, address: string): Relay {
  const target = exchange.target as Target;
  const upstream = httpRequest({
    // http-proxy-agent writes the absolute URI from the Host header and connects to the
    // parent's checked address; it needs headers it can read back (an object).
    host: target.host,
    port: target.port,
    method: req.method,
    // The path is the whole absolute URI: http-proxy-agent resolves a path against the Host
    // header, and a path such as `//evil.test/x` would name another host.
    path: `http://${hostHeader(target)}${target.path ?? '/'}${target.search}`,
    headers: parentHeaders(req, target),
    setHost: false,
    agent: ctx.parentAgents.agentFor(parent, address),
  });
  limitParentConnectTime(ctx, upstream, parent);
  // A parent that accepts and then never answers (or stalls mid-body) must not hold the
  // exchange forever: no bytes from it for requestIdleMs -> 504, or a cut if already answering.
  upstream.setTimeout(ctx.timeouts.requestIdleMs, () => {
    upstream.destroy(idleTimeout(ctx));
  });
  // pipe(), not pipeline(): an upstream failure must not destroy the client's request (and
  // with it the connection) before the 502 is written.
  req.pipe(upstream);
  const describe = (err: Error): ProxyError => (err instanceof ProxyError ? err : upstreamError(err, address, parent.port));
  // A parent answering with something that is not HTTP: node:http's parse error, as a 502.
  const fail = (err: Error): void =>
    failUpstream(ctx, exchange, res, tally, isParseError(err) ? invalidResponse(`upstream proxy ${parent.label}`, err) : err, describe);
  upstream.on('response', (upRes) => relayResponse(upstream, upRes, res, exchange, tally));
  upstream.on('error', fail);
  // We strip Upgrade, so a 101 is the parent misbehaving. Node then emits neither 'response'
  // nor 'error', so answer here.
  upstream.on('upgrade', (_upRes, socket) => {
    socket.destroy();
    fail(new ProxyError(502, 'upstream_error', 'the destination switched protocols unasked'));
  });
  return { abort: () => upstream.destroy() };
}

function relayResponse(upstream: ClientRequest, upRes: IncomingMessage, res: ServerResponse, exchange: Exchange, tally: Tally): void {
  if (!relayHead(res, exchange, tally, upRes.statusCode ?? 0, upRes.rawHeaders, true)) return void upstream.destroy();
  upRes.on('data', (chunk: Buffer) => (tally.down += chunk.length));
  // pipe(), not pipeline(): pipeline() costs 80-170 µs per response (its finish aborts an
  // AbortSignal, which builds a DOMException with a stack trace). Teardown is ours: the parent
  // failing mid-body cuts the client (a truncated body must not look complete), and a client
  // that leaves is seen by forward(), which aborts this relay.
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
