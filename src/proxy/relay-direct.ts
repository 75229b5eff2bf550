import type { IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import type { Readable } from 'node:stream';
import { Agent } from 'undici';
import type { Dispatcher } from 'undici';
import type { ProxyContext, ProxyTimeouts } from './context';
import { DialReason, formatHostPort, upstreamError } from './dial';
import { ProxyError } from '../request/errors';
import type { Exchange } from './exchange';
import { endToEndHeaders } from './headers';
import { failUpstream, hasBody, hostHeader, idleTimeout, invalidResponse, isParseError, relayHead } from './relay';
import type { Relay, Tally } from './relay';
import type { Target } from '../request/target-types';

/**
 * A plain HTTP request straight to its destination, through undici's connection pool. Its
 * dispatch API hands us the response as callbacks on raw header buffers, with no
 * IncomingMessage, ClientRequest or stream pipe in between: half the CPU per proxied request
 * of http.request with a keep-alive Agent (bench/client-ceiling.ts; docs/performance.md).
 * Parent-proxy routes keep node:http (relay-parent.ts).
 */

/**
 * Keep-alive connections to destinations, one pool per checked address and port. Idle ones
 * close after 30 s, or sooner when the destination's `Keep-Alive: timeout=` says so (undici
 * subtracts a margin, so it does not reuse a connection the destination is about to close).
 */
export function createUpstreamPool(timeouts: Pick<ProxyTimeouts, 'connectMs'>): Agent {
  return new Agent({ connect: { timeout: timeouts.connectMs }, keepAliveTimeout: 30_000, keepAliveMaxTimeout: 30_000 });
}

/**
 * Not forwarded to a destination: the client's Host (replaced by the URI's, RFC 9112 §3.2.2) and
 * Expect. The proxy answered `100-continue` itself once the request was allowed (server.ts), and
 * undici refuses the header: it does not wait for a 100 and treats one as a broken answer.
 */
const DROP_DIRECT: ReadonlySet<string> = new Set(['host', 'expect']);

/** What undici is told when the client leaves first (forward.ts records CLIENT_LEFT). */
const CLIENT_LEFT_ERROR = new Error('the client closed the connection');

/** undici's errors, by code, as the client's answer; anything else is mapped by upstreamError. */
function undiciFailure(err: Error, ctx: ProxyContext, hostPort: string): ProxyError | null {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return new ProxyError(504, 'connect_timeout', DialReason.connectTimeout(hostPort, ctx.timeouts.connectMs));
  if (code === 'UND_ERR_SOCKET') {
    // What node:http called "socket hang up": the destination closed instead of answering.
    if (err.message === 'other side closed') return new ProxyError(502, 'connect_reset', DialReason.connectReset(hostPort));
    // A 101 nobody asked for (Upgrade is stripped).
    if (err.message === 'bad upgrade') return new ProxyError(502, 'upstream_error', 'the destination switched protocols unasked');
    // A 100 nobody asked for (Expect is stripped): RFC 9110 §15.2 allows it, undici does not.
    if (err.message === 'bad response') return new ProxyError(502, 'upstream_error', 'the destination sent an unexpected 100 Continue');
    return new ProxyError(502, 'upstream_error', `connection to ${hostPort} failed: ${err.message}`);
  }
  if (isInvalidResponse(err, code)) return invalidResponse(`the destination ${hostPort}`, err);
  // The request itself: undici validates method, path and headers again.
  if (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED') return new ProxyError(502, 'upstream_error', `cannot forward the request: ${err.message}`);
  return null;
}

/**
 * Bytes from the destination that are not an HTTP answer: a parse error (isParseError), one
 * undici reports as a length mismatch once it saw a Content-Length, and the assertion undici's
 * parser makes on a status below 100 (`HTTP/1.1 099` fails `assert(statusCode >= 100)` in
 * client-h1.js).
 */
function isInvalidResponse(err: Error, code: string): boolean {
  return isParseError(err) || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' || code === 'ERR_ASSERTION';
}

/** One exchange's undici handler: the destination's answer, written to the client as it comes. */
class DirectHandler implements Dispatcher.DispatchHandler {
  private abortUpstream: ((err?: Error) => void) | null = null;
  /** The client left, or the answer was already settled here (a 502 for an invalid head). */
  private done = false;
  /**
   * No bytes either way for requestIdleMs ends the exchange: a destination that does not answer
   * or stalls, a client that stalls its upload or stops reading. undici's own head and body
   * timeouts are off: they pause while the body is still being sent and while the client is
   * slow to read, so they would miss the last two.
   */
  private readonly idle: NodeJS.Timeout;

  constructor(
    private readonly ctx: ProxyContext,
    private readonly exchange: Exchange,
    private readonly res: ServerResponse,
    private readonly tally: Tally,
    private readonly address: string,
    private readonly port: number,
    private readonly mapError: UpstreamErrorMap | null = null,
  ) {
    this.idle = setTimeout(() => this.stalled(), ctx.timeouts.requestIdleMs).unref();
  }

  /** Bytes moved: the idle timer starts over. */
  touch(): void {
    this.idle.refresh();
  }

  private stalled(): void {
    if (this.done) return;
    const error = idleTimeout(this.ctx);
    if (this.abortUpstream !== null) return this.abortUpstream(error);
    // Not connected yet (the connect timeout is shorter): answer now, drop the connection later.
    this.onError(error);
    this.done = true;
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abortUpstream = abort;
    if (this.done) abort(CLIENT_LEFT_ERROR);
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void): boolean {
    // 1xx (other than 100 and 101, which undici fails) are informational: not relayed.
    if (status < 200) return true;
    const headers: string[] = new Array<string>(rawHeaders.length);
    // Header bytes as Node's own parser gives them: latin1, one char per byte.
    for (let i = 0; i < rawHeaders.length; i += 1) headers[i] = rawHeaders[i].toString('latin1');
    if (!relayHead(this.res, this.exchange, this.tally, status, headers, false)) {
      this.done = true;
      clearTimeout(this.idle);
      this.abortUpstream?.();
      return false;
    }
    this.touch();
    this.res.on('drain', () => {
      this.touch();
      resume();
    });
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.tally.down += chunk.length;
    this.touch();
    return this.res.write(chunk);
  }

  onComplete(): void {
    clearTimeout(this.idle);
    // Trailers are not relayed (RFC 9110 §6.5: a proxy may drop them), as before with node:http.
    this.res.end();
  }

  onError(err: Error): void {
    clearTimeout(this.idle);
    if (this.done) return;
    if (bodylessAnswerWithLength(err, this.tally)) return void this.res.end();
    const { address, port } = this;
    const mapped = this.mapError?.(err) ?? undiciFailure(err, this.ctx, formatHostPort(address, port)) ?? err;
    failUpstream(this.ctx, this.exchange, this.res, this.tally, mapped, (e) => (e instanceof ProxyError ? e : upstreamError(e, address, port)));
  }

  /** The client left before the answer was complete. */
  abort(): void {
    this.done = true;
    clearTimeout(this.idle);
    this.abortUpstream?.(CLIENT_LEFT_ERROR);
  }
}

/**
 * A 204 or 304 carries no body, but may say Content-Length (RFC 9110 §8.6: for a 304, the length
 * the full answer would have). undici then expects a body and fails the exchange; the head has
 * been relayed and the answer is complete as it is.
 */
function bodylessAnswerWithLength(err: Error, tally: Tally): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' && (tally.status === 204 || tally.status === 304) && tally.down === 0;
}

/**
 * undici destroys the body stream it is given when the exchange fails. Handing it the client's
 * request would cut the client's connection before its 502 is written, so it gets a copy.
 */
function requestBody(req: IncomingMessage): Readable | null {
  if (!hasBody(req)) return null;
  const body = new PassThrough();
  req.pipe(body);
  return body;
}

/** Maps an upstream error the relay would not name well itself (a TLS alert, say); null: the default. */
export type UpstreamErrorMap = (err: Error) => ProxyError | null;

/** Where a direct relay sends its request: the shared pool, unless an inspected tunnel gives its own. */
export interface DirectUpstream {
  dispatcher: Dispatcher;
  mapError?: UpstreamErrorMap;
}

/**
 * `upstream`: the shared pool for plain HTTP; an inspected tunnel passes its own upstream client,
 * whose connections are TLS to the tunnel's destination (inspected-tunnel.ts).
 */
export function relayDirect(
  ctx: ProxyContext,
  exchange: Exchange,
  req: IncomingMessage,
  res: ServerResponse,
  tally: Tally,
  address: string,
  upstream: DirectUpstream = { dispatcher: ctx.upstreamPool },
): Relay {
  const target = exchange.target as Target;
  const handler = new DirectHandler(ctx, exchange, res, tally, address, target.port, upstream.mapError ?? null);
  req.on('data', () => handler.touch());
  upstream.dispatcher.dispatch(
    {
      // The checked address, never the name: undici connects to an IP literal without a lookup.
      origin: `${target.scheme ?? 'http'}://${formatHostPort(address, target.port)}`,
      path: `${target.path ?? '/'}${target.search}`,
      method: req.method as Dispatcher.HttpMethod,
      // undici frames the body itself (Content-Length as given, or chunked when there is none).
      headers: ['host', hostHeader(target), ...endToEndHeaders(req.rawHeaders, DROP_DIRECT)],
      body: requestBody(req),
      // The handler's idle timer bounds the exchange instead (0: off).
      headersTimeout: 0,
      bodyTimeout: 0,
    },
    handler,
  );
  return handler;
}
