import type { IncomingMessage, ServerResponse } from 'node:http';
import { errors } from 'undici';
import type { ProxyContext } from './context';
import { ProxyError } from '../request/errors';
import type { Exchange } from './exchange';
import { endToEndHeaders } from './headers';
import { countUpstreamError, describeStreamError } from './record';
import { answerFor, sendAnswer } from './respond';
import type { Target } from '../request/target-types';

/**
 * What both ways of forwarding a plain HTTP request share (relay-direct.ts for a destination,
 * relay-parent.ts through a parent proxy): the tally the record is completed with, the checks
 * on the destination's answer, and how a failure becomes the client's answer.
 */

/** What the record is completed with when the exchange ends. */
export interface Tally {
  up: number;
  down: number;
  status: number | null;
  error: string | null;
}

/** A request on its way: forward.ts stops it when the client leaves first. */
export interface Relay {
  abort(): void;
}

/** How a relay maps an error from its upstream client to the client's answer. */
export type UpstreamFailure = (err: Error) => ProxyError;

/** The request's own Host is replaced by the URI's host (RFC 9112 §3.2.2). */
export const DROP_FROM_REQUEST: ReadonlySet<string> = new Set(['host']);

/** The scheme's default port is left out (RFC 9110 §7.2), as clients write it. */
export function hostHeader(target: Target): string {
  const host = target.hostKind === 'ipv6' ? `[${target.host}]` : target.host;
  return target.port === (target.scheme === 'https' ? 443 : 80) ? host : `${host}:${target.port}`;
}

/** Nothing moved for the request idle timeout: 504 before the answer began, a cut after. */
export function idleTimeout(ctx: ProxyContext): ProxyError {
  return new ProxyError(504, 'upstream_timeout', `no data from the destination for ${ctx.timeouts.requestIdleMs} ms`);
}

/**
 * llhttp's verdict on bytes that are not an HTTP answer: node:http's `HPE_*` errors, and
 * undici's HTTPParserError, whose `code` is often unset (undici looks llhttp's numeric error up
 * in a table keyed by name).
 */
export function isParseError(err: Error): boolean {
  return err instanceof errors.HTTPParserError || ((err as NodeJS.ErrnoException).code ?? '').startsWith('HPE_');
}

/** Recorded as `upstream_error: ...`, like every other failure of the destination's answer. */
export function invalidResponse(from: string, err: Error): ProxyError {
  const detail = isParseError(err) ? ` (${err.message})` : '';
  return new ProxyError(502, 'upstream_error', `${from} sent an invalid response${detail}`);
}

/** RFC 9112 §6.3: a request has a body only when it says so with one of these two headers. */
export function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/**
 * Write the destination's status and headers to the client, or answer 502 and return false.
 * They are untrusted input: a status Node will not write (e.g. 099) or a header value with
 * control bytes must become a 502, not an exception thrown out of a listener. The reason
 * phrase is not relayed (RFC 9112 §4: clients ignore it); Node writes the standard one.
 */
export function relayHead(res: ServerResponse, exchange: Exchange, tally: Tally, status: number, rawHeaders: string[], parentRoute: boolean): boolean {
  try {
    if (status < 200 || status > 599) throw new Error(`invalid status ${status}`);
    // A 407 here is the parent refusing our credentials, not something the client can answer.
    if (status === 407 && parentRoute) throw new Error('the upstream proxy refused its credentials (407)');
    res.writeHead(status, endToEndHeaders(rawHeaders));
  } catch (err) {
    tally.error ??= `upstream_error: ${err instanceof Error ? err.message : String(err)}`;
    tally.status = 502;
    if (res.headersSent) res.destroy();
    else sendAnswer(res, answerFor(new ProxyError(502, 'upstream_error', 'the destination sent an invalid response'), exchange));
    return false;
  }
  tally.status = status;
  return true;
}

/**
 * The upstream side failed. Before the answer began the client gets the error's status; after,
 * its connection is cut, so that a truncated body cannot look complete.
 */
export function failUpstream(ctx: ProxyContext, exchange: Exchange, res: ServerResponse, tally: Tally, err: Error, describe: UpstreamFailure): void {
  if (res.headersSent || res.destroyed) {
    tally.error ??= describeStreamError(err);
    return void res.destroy();
  }
  // The rest of an unfinished upload would be read as the next request: close after the answer.
  if (!res.req.complete) res.shouldKeepAlive = false;
  const error = describe(err);
  // Recorded by the kind the answer was chosen by (`connect_refused: ...`), as a CONNECT's is.
  tally.error ??= `${error.code}: ${error.reason}`;
  countUpstreamError(ctx, error.code);
  tally.status = error.status;
  sendAnswer(res, answerFor(error, exchange));
}
