import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ProxyContext } from './context';
import { ProxyError } from '../request/errors';
import { Exchange } from './exchange';
import { answerWhenRecorded, exchangeOn, handleRequest, refuseMalformedBody } from './forward';
import { answerFor, writeRawAnswer } from './respond';
import { clientAddress } from './client-address';
import { admitConnection, isRefusedConnection } from './connection-limit';
import { recordFailure } from './record';
import { handleConnect } from './tunnel';
import { tunnelOf } from './inspected-tunnel';
import { acceptProxyHeader } from './proxy-protocol-accept';

/** Request-head limits; documented in docs/operations.md "Limits". */
export const HEAD_LIMITS = {
  /** Node's default is 16 KiB; a proxied request line plus headers rarely needs more. */
  maxHeaderSize: 16 * 1024,
  /**
   * Headers per request head. Past its `maxHeadersCount` Node drops headers silently (framing
   * ones included, while its parser still frames the body by them), so more is refused instead.
   */
  maxHeaders: 100,
  /** A client must finish sending a request head within this (slowloris). */
  headersTimeoutMs: 30_000,
  /** Idle time allowed between requests on a client keep-alive connection. */
  keepAliveTimeoutMs: 5_000,
} as const;

/**
 * The proxy's HTTP server. It only dispatches, so it stays short enough to read whole: each
 * mode lives in its own file and every listener is wrapped so that nothing it does can reject
 * unhandled.
 */
export function createProxyServer(ctx: ProxyContext): Server {
  const server = createHttpServer();
  const inspected = createInspectedServer(ctx);
  server.on('close', () => inspected.close());
  // Node's own listener starts the HTTP parser on a socket; with --proxy-protocol-from it must
  // wait until the header is off the socket, so it is called from here instead.
  const startHttp = server.listeners('connection') as Array<(this: Server, socket: Socket) => void>;
  server.removeAllListeners('connection');
  const parseHttp = (socket: Socket): void => {
    for (const listener of startHttp) listener.call(server, socket);
  };
  const from = ctx.proxyProtocolFrom ?? [];
  const start = (socket: Socket, admitted: boolean): void => {
    if (from.length === 0 || !admitted) parseHttp(socket);
    // A header that arrives after SIGTERM closed the listener: the drain has already passed
    // this connection by (it was not an HTTP connection yet), so it is closed, not served.
    else acceptProxyHeader(ctx, from, socket, () => (server.listening ? parseHttp(socket) : socket.destroy()));
    if (admitted) socket.setNoDelay(true);
  };
  server.on('connection', (socket: Socket) => {
    // An error listener at once, before anything can fail: an `error` with no listener kills the
    // process. Errors are handled where the socket is used; this one only keeps a reset from
    // becoming an uncaught error.
    socket.on('error', () => socket.destroy());
    // Counted from the accept, header or not: a connection waiting for its header holds a
    // descriptor too. Past the cap the 503 names the connecting address (no header is read), and
    // the HTTP parser still reads what arrives, so the answer is not cut by a reset.
    const admitted = admitConnection(ctx, socket);
    if (typeof admitted === 'boolean') return start(socket, admitted);
    // A worker past its share of the cap borrowed (never rejects); a drain that began meanwhile
    // has passed this connection by, so it is closed, not served.
    void admitted.then((ok) => (server.listening || !ok ? start(socket, ok) : socket.destroy()));
  });
  const readInspected = (secure: Socket): void => void inspected.emit('connection', secure);
  server.on('connect', (req, socket: Duplex, head: Buffer) => {
    if (isRefusedConnection(socket as Socket)) return;
    const refusal = refusedHead(req);
    if (refusal) return refuseConnect(ctx, req, socket as Socket, refusal);
    handleConnect(ctx, req, socket as Socket, head, readInspected).catch((err: unknown) => unexpected(ctx, err, socket));
  });
  serveRequests(ctx, server);
  return server;
}

function createHttpServer(): Server {
  const server = createServer({
    maxHeaderSize: HEAD_LIMITS.maxHeaderSize,
    headersTimeout: HEAD_LIMITS.headersTimeoutMs,
    keepAliveTimeout: HEAD_LIMITS.keepAliveTimeoutMs,
    // Node 20's 300 s default would cut long uploads and downloads through the proxy.
    requestTimeout: 0,
    // A CONNECT's Host header is meaningless to us; the request-target decides. Inside an
    // inspected tunnel a missing Host is answered and recorded (inspect-target.ts), not by Node.
    requireHostHeader: false,
  });
  // Node keeps one header more than the limit (and drops the rest), so a head past it shows.
  server.maxHeadersCount = HEAD_LIMITS.maxHeaders + 1;
  return server;
}

/**
 * Reads the requests inside inspected tunnels (SPEC §6): one per proxy, never listening;
 * inspect-tunnel.ts hands it each tunnel's TLS socket once the handshake is done. Its requests
 * go through the same handlers as plain HTTP, with the same limits. A CONNECT inside TLS has no
 * listener here, so Node closes that tunnel.
 */
function createInspectedServer(ctx: ProxyContext): Server {
  const server = createHttpServer();
  // Before the shared listener answers it: garbage before any request makes the tunnel `not_http`.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => tunnelOf(socket as Socket)?.parseFailed(err.code ?? 'parse error'));
  serveRequests(ctx, server);
  // Node starts tracking a server's connections, and with it the request-head timeout
  // (headersTimeout, the slowloris guard), on 'listening'; this server never listens.
  server.emit('listening');
  return server;
}

/** The request-level listeners, shared by the proxy's server and the inspected-tunnel server. */
function serveRequests(ctx: ProxyContext, server: Server): void {
  server.on('request', (req, res) => dispatchRequest(ctx, req, res));
  // Without this Node answers `Expect: 100-continue` before we decide, and a client uploads
  // its whole body only to be refused.
  server.on('checkContinue', (req, res) => dispatchRequest(ctx, req, res, { expectsContinue: true }));
  // Node would answer any other expectation with 417 itself, leaving no audit record.
  server.on('checkExpectation', (req, res) => {
    if (!isRefusedConnection(req.socket)) refuseRequest(ctx, req, res, refusedHead(req) ?? UNMET_EXPECTATION);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(ctx, err, socket as Socket));
}

function dispatchRequest(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse, options: { expectsContinue?: boolean } = {}): void {
  // A connection past the cap is being answered 503 on its socket: what it sent is not served.
  if (isRefusedConnection(req.socket)) return;
  const refusal = refusedHead(req);
  if (refusal) return refuseRequest(ctx, req, res, refusal);
  handleRequest(ctx, req, res, options).catch((err: unknown) => unexpected(ctx, err, req.socket));
}

/**
 * A head Node accepted that still must not reach a handler. Past `maxHeadersCount` Node has
 * silently dropped headers, possibly the Content-Length or Transfer-Encoding its parser framed
 * the body by: forwarded without them, the body would reach the origin as a second request.
 */
function refusedHead(req: IncomingMessage): ProxyError | null {
  if (!SUPPORTED_VERSIONS.has(req.httpVersion) && !isVersionless(req)) return unsupportedVersion(`HTTP/${req.httpVersion}`);
  if (req.rawHeaders.length / 2 > HEAD_LIMITS.maxHeaders) {
    return new ProxyError(431, 'bad_request', `more than ${HEAD_LIMITS.maxHeaders} header fields`);
  }
  const codings = req.headers['transfer-encoding'];
  // RFC 9112 §6.1: the proxy re-chunks the body it relays, so any other coding (which Node
  // accepts before a final `chunked`, e.g. `gzip, chunked`) would be silently dropped.
  if (req.method !== 'CONNECT' && codings !== undefined && codings.trim().toLowerCase() !== 'chunked') {
    return new ProxyError(400, 'bad_request', 'only Transfer-Encoding: chunked is supported');
  }
  return null;
}

/**
 * llhttp also accepts HTTP/0.9 and HTTP/2.0 request lines and Node would answer them as 1.1;
 * a proxy relaying them as 1.1 would be guessing at framing the client never promised
 * (RFC 9110 §15.6.6: 505 refuses the major version the client used).
 */
const SUPPORTED_VERSIONS: ReadonlySet<string> = new Set(['1.0', '1.1']);

/**
 * `CONNECT  HTTP/1.1` (no target): Node collapses the spaces, reads the version as the target
 * and the line as a version-less HTTP/0.9 one. The target is what is missing: the target
 * parser answers 400 for it.
 */
function isVersionless(req: IncomingMessage): boolean {
  return req.httpVersion === '0.9' && /^HTTP\/[0-9]\.[0-9]$/.test(req.url ?? '');
}

function unsupportedVersion(version: string): ProxyError {
  return new ProxyError(505, 'bad_request', `${version} is not supported; use HTTP/1.1`);
}

/** RFC 9110 §10.1.1: the only expectation defined, and the only one the proxy can meet. */
const UNMET_EXPECTATION = new ProxyError(417, 'bad_request', 'only Expect: 100-continue is supported');

/** Sockets whose refused head is being answered: the answer is on its way and ends the connection. */
const answeredHeads = new WeakSet<Socket>();

/**
 * Refusals are answered once their record is committed (the answer names its id), in the same
 * group commit as other records: the thread that relays bytes never waits for the audit file.
 */
function refuseRequest(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse, refusal: ProxyError): void {
  const exchange = exchangeOn(ctx, req.socket, req.method ?? null, req.url ?? null);
  // The body's framing is not trusted: read no further request from this connection.
  res.shouldKeepAlive = false;
  answeredHeads.add(req.socket);
  void answerWhenRecorded(ctx, exchange, res, refusal);
}

function refuseConnect(ctx: ProxyContext, req: IncomingMessage, socket: Socket, refusal: ProxyError): void {
  const exchange = connectExchange(ctx, req);
  answerRaw(ctx, socket, exchange, refusal);
}

/** Record, then answer on a socket no ServerResponse owns (a CONNECT, a head Node refused). */
function answerRaw(ctx: ProxyContext, socket: Socket, exchange: Exchange, refusal: ProxyError): void {
  recordFailure(ctx, exchange, refusal).then(
    (error) => writeRawAnswer(socket, answerFor(error, exchange)),
    (err: unknown) => unexpected(ctx, err, socket),
  );
}

function connectExchange(ctx: ProxyContext, req: IncomingMessage): Exchange {
  const client = clientAddress(req.socket);
  return new Exchange('connect', req.method ?? null, client, req.url ?? null, ctx.clock());
}

/** A bug, not a client's doing: log it and drop the connection rather than crash. */
function unexpected(ctx: ProxyContext, err: unknown, socket: Duplex): void {
  ctx.log.error({ err }, 'unexpected error in request handler');
  socket.destroy();
}

/** What Node's HTTP parser rejected becomes a 4xx answer and an audit record. */
function answerClientError(ctx: ProxyContext, err: NodeJS.ErrnoException, socket: Socket): void {
  // Node's parser can still fail on a head refused above (an invalid Transfer-Encoding is
  // reported after the 'request' event): that request is answered and recorded, and destroying
  // the socket now would drop the answer Node has not flushed yet.
  if (answeredHeads.has(socket) || isRefusedConnection(socket)) return;
  const current = inFlight(socket);
  // A request pipelined behind one still being answered failed to parse. That one is complete
  // and has its record: let its answer finish, then answer and record the failed one.
  if (current?.req.complete && err.code !== 'ECONNRESET') {
    current.once('close', () => answerClientError(ctx, err, socket));
    return;
  }
  // A body that failed to parse before anything was forwarded: that exchange answers 400 (or
  // the refusal already under way answers), once its record is committed. Node's parser
  // reports every later chunk as another error meanwhile: they must not cut that answer.
  if (current && err.code !== 'ECONNRESET' && refuseMalformedBody(ctx, current, parserError(err))) {
    answeredHeads.add(socket);
    return;
  }
  // A reset or a socket that already went away carries no request to answer or record.
  if (err.code === 'ECONNRESET' || !socket.writable || current) {
    // Mid-request (e.g. a bad chunk in a body being forwarded) the exchange already has its
    // record: end the connection and let the forwarder complete that record with the error.
    socket.destroy();
    return;
  }
  const exchange = exchangeOn(ctx, socket, null, null);
  // Node's parser reports every later chunk on this socket as another error: one answer.
  answeredHeads.add(socket);
  answerRaw(ctx, socket, exchange, parserError(err));
}

/** Node sets `_httpMessage` on a socket while a response on it is in progress. */
function inFlight(socket: Socket): ServerResponse | undefined {
  return (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined;
}

function parserError(err: NodeJS.ErrnoException): ProxyError {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return new ProxyError(431, 'bad_request', 'request head too large');
    // llhttp refuses any version but 0.9, 1.0, 1.1 and 2.0 before Node sees a request, and
    // reports a request line that does not end in CRLF the same way: only a well-formed
    // HTTP/d.d is an unsupported version, anything else is malformed.
    case 'HPE_INVALID_VERSION': {
      const version = requestLineVersion(err);
      return version === null ? malformed(err) : unsupportedVersion(version);
    }
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new ProxyError(408, 'bad_request', 'request head not received in time');
    default:
      return malformed(err);
  }
}

function malformed(err: NodeJS.ErrnoException): ProxyError {
  return new ProxyError(400, 'bad_request', `malformed request (${err.code ?? 'parse error'})`);
}

/**
 * The `HTTP/d.d` (RFC 9112 §2.3) ending a refused request line, or null when the line does not
 * end that way. Node attaches the bytes its parser read to the error as `rawPacket`.
 */
function requestLineVersion(err: NodeJS.ErrnoException): string | null {
  const { rawPacket } = err as NodeJS.ErrnoException & { rawPacket?: unknown };
  if (!Buffer.isBuffer(rawPacket)) return null;
  const head = rawPacket.subarray(0, HEAD_LIMITS.maxHeaderSize).toString('latin1');
  return /^[^\r\n]* (HTTP\/[0-9]\.[0-9])\r\n/.exec(head)?.[1] ?? null;
}
