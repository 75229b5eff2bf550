import type { AuditCompletion } from '../audit/record-types';
import type { ProxyContext } from './context';
import { ProxyError } from './errors';
import type { Exchange } from './exchange';

/**
 * Every audit write of the proxy goes through here, so each request's record is written the
 * same way whatever path it took, and a failing write has one answer: 503, fail closed.
 */

const AUDIT_UNAVAILABLE = 'audit log cannot be written';

/** Open the record of an allowed exchange: committed before its first byte is forwarded. */
export function openRecord(ctx: ProxyContext, exchange: Exchange): number {
  try {
    exchange.recordId = ctx.audit.open(exchange.toOpen());
    return exchange.recordId;
  } catch (err) {
    ctx.log.error({ err }, 'audit write failed');
    throw new ProxyError(503, 'audit_unavailable', AUDIT_UNAVAILABLE);
  }
}

/** Record a request that ends before forwarding; returns the error to answer with (503 if the write failed). */
export function recordFailure(ctx: ProxyContext, exchange: Exchange, error: ProxyError): ProxyError {
  if (error.code === 'audit_unavailable') return error;
  try {
    exchange.recordFailure(ctx.audit, error, ctx.clock());
    return error;
  } catch (err) {
    ctx.log.error({ err }, 'audit write failed');
    return new ProxyError(503, 'audit_unavailable', AUDIT_UNAVAILABLE);
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

/** Complete an opened record when the exchange ends. */
export function completeRecord(ctx: ProxyContext, exchange: Exchange, end: Omit<AuditCompletion, 'endedAt'>): void {
  if (exchange.recordId === null) return;
  try {
    ctx.audit.complete(exchange.recordId, { endedAt: ctx.clock(), ...end });
  } catch (err) {
    ctx.log.error({ err, id: exchange.recordId }, 'audit completion failed');
  }
}

/** An error as the audit `error` field shows it: `CODE: message` when there is a code. */
export function describeStreamError(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  return code ? `${code}: ${error.message}` : error.message;
}
