import { request as httpRequest } from 'node:http';
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream';
import { decideTarget, resolveDestination } from './authorise';
import { clientAddress } from './client-address';
import type { ProxyContext } from './context';
import { upstreamError } from './dial';
import { ProxyError } from './errors';
import { asProxyError, Exchange } from './exchange';
import { endToEndHeaders } from './headers';
import { answerFor, sendAnswer } from './respond';
import { parseAbsoluteTarget } from './target';
import type { Target } from './target-types';
import { describeStreamError, recordFailure } from './tunnel';

/** The request's own Host is replaced by the URI's host (RFC 9112 §3.2.2). */
const DROP_FROM_REQUEST = new Set(['host']);

/**
 * An absolute-URI http:// request: parse, decide, resolve and guard, record, forward.
 * Every request on a keep-alive connection comes through here and is decided on its own.
 */
export async function handleRequest(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { ip, port } = clientAddress(req.socket);
  const exchange = new Exchange('http', req.method ?? null, ip, port, req.url ?? null, ctx.clock());
  let address: string;
  try {
    rejectAmbiguousFraming(req);
    const target = parseAbsoluteTarget(req.url);
    decideTarget(ctx, exchange, target);
    [address] = await resolveDestination(ctx, exchange, target);
    exchange.resolvedIp = address;
    exchange.recordId = openRecord(ctx, exchange);
  } catch (err) {
    failEarly(ctx, exchange, req, res, asProxyError(err));
    return;
  }
  forward(ctx, exchange, req, res, address);
}

/** SPEC §3: both Content-Length and Transfer-Encoding is refused (stricter than RFC 9112 §6.3). */
function rejectAmbiguousFraming(req: IncomingMessage): void {
  if (req.headers['content-length'] !== undefined && req.headers['transfer-encoding'] !== undefined) {
    throw new ProxyError(400, 'bad_request', 'both Content-Length and Transfer-Encoding');
  }
}

function openRecord(ctx: ProxyContext, exchange: Exchange): number {
  try {
    return ctx.audit.open(exchange.toOpen());
  } catch (err) {
    ctx.log.error({ err }, 'audit write failed');
    throw new ProxyError(503, 'audit_unavailable', 'audit log cannot be written');
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

function upstreamHeaders(req: IncomingMessage, target: Target): string[] {
  const headers = ['Host', hostHeader(target), ...endToEndHeaders(req.rawHeaders, DROP_FROM_REQUEST)];
  // The body arrives de-chunked; ask Node to chunk it again rather than send it unframed.
  if (req.headers['transfer-encoding'] !== undefined) headers.push('Transfer-Encoding', 'chunked');
  return headers;
}

function forward(ctx: ProxyContext, exchange: Exchange, req: IncomingMessage, res: ServerResponse, address: string): void {
  const target = exchange.target as Target;
  const tally = { up: 0, down: 0, status: null as number | null, error: null as string | null };
  const upstream = httpRequest({
    host: address,
    port: target.port,
    method: req.method,
    path: `${target.path ?? '/'}${target.search}`,
    headers: upstreamHeaders(req, target),
    setHost: false,
    agent: ctx.upstreamAgent,
  });
  limitConnectTime(ctx, upstream, address, target.port);
  req.on('data', (chunk: Buffer) => (tally.up += chunk.length));
  // pipe(), not pipeline(): an upstream failure must not destroy the client's request (and
  // with it the connection) before the 502 is written.
  req.pipe(upstream);
  req.on('error', (err) => {
    tally.error ??= describeStreamError(err);
    upstream.destroy();
  });
  upstream.on('response', (upRes) => relayResponse(upRes, res, tally));
  upstream.on('error', (err) => {
    tally.error ??= describeStreamError(err);
    if (res.headersSent) return void res.destroy();
    const error = err instanceof ProxyError ? err : upstreamError(err, address, target.port);
    tally.status = error.status;
    sendAnswer(res, answerFor(error, exchange));
  });
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy();
    completeRecord(ctx, exchange, tally);
  });
}

function relayResponse(upRes: IncomingMessage, res: ServerResponse, tally: { down: number; status: number | null; error: string | null }): void {
  tally.status = upRes.statusCode ?? 502;
  res.writeHead(tally.status, upRes.statusMessage, endToEndHeaders(upRes.rawHeaders));
  upRes.on('data', (chunk: Buffer) => (tally.down += chunk.length));
  pipeline(upRes, res, (err) => err && (tally.error ??= describeStreamError(err)));
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

function completeRecord(ctx: ProxyContext, exchange: Exchange, tally: { up: number; down: number; status: number | null; error: string | null }): void {
  if (exchange.recordId === null) return;
  try {
    ctx.audit.complete(exchange.recordId, {
      endedAt: ctx.clock(),
      status: tally.status,
      bytesUp: tally.up,
      bytesDown: tally.down,
      error: tally.error,
    });
  } catch (err) {
    ctx.log.error({ err, id: exchange.recordId }, 'audit completion failed');
  }
}
