import type { AuditCompletion } from '../audit/record-types';
import { UPSTREAM_ERROR_KINDS } from '../metrics';
import type { UpstreamErrorKind } from '../metrics';
import type { ProxyContext } from './context';
import { ProxyError } from '../request/errors';
import type { Exchange } from './exchange';

/**
 * Every audit write of the proxy goes through here, so each request's record is written the
 * same way whatever path it took, and a failing write has one answer: 503, fail closed.
 */

const AUDIT_UNAVAILABLE = 'audit log cannot be written';

/** Each request is counted once, by the one record that says how it was decided. */
function countDecision(ctx: ProxyContext, exchange: Exchange): void {
  if (exchange.decision === null && exchange.guardReason === null) return;
  const { decision, wouldDeny } = exchange.toOpen();
  ctx.metrics.requestDecided(exchange.kind, decision, wouldDeny);
}

/**
 * Fail closed early: while the audit log is known to be failing, refuse before resolving or
 * dialling, so a destination never sees a connection that cannot be recorded.
 */
export function ensureAuditWritable(ctx: ProxyContext): void {
  if (!ctx.audit.writable()) throw new ProxyError(503, 'audit_unavailable', AUDIT_UNAVAILABLE);
}

/** Per request the store's own state-change line says why; one warning each is enough. */
function auditFailed(ctx: ProxyContext, err: unknown): void {
  const code = (err as { code?: unknown }).code;
  if (code === 'audit_unavailable') ctx.log.warn('request refused: audit log unavailable');
  else ctx.log.error({ err }, 'audit write failed');
}

/**
 * Open the record of an allowed exchange: committed before its first byte is forwarded. The
 * commit is shared with the other records of this event-loop turn (group-commit.ts), and timed
 * there.
 */
export async function openRecord(ctx: ProxyContext, exchange: Exchange): Promise<number> {
  try {
    exchange.recordId = await ctx.audit.open(exchange.toOpen());
  } catch (err) {
    auditFailed(ctx, err);
    throw new ProxyError(503, 'audit_unavailable', AUDIT_UNAVAILABLE);
  }
  countDecision(ctx, exchange);
  return exchange.recordId;
}

/**
 * Record a request that ends before forwarding; resolves with the error to answer with (503 if
 * the write failed) once the record is committed, with the other records of this turn
 * (group-commit.ts, which also times the commit). Never rejects.
 */
export async function recordFailure(ctx: ProxyContext, exchange: Exchange, error: ProxyError): Promise<ProxyError> {
  if (isUpstreamErrorKind(error.code)) ctx.metrics.upstreamError(error.code);
  if (error.code === 'audit_unavailable') {
    exchange.ended = true;
    return error;
  }
  try {
    await exchange.recordFailure(ctx.audit, error, ctx.clock());
  } catch (err) {
    auditFailed(ctx, err);
    return new ProxyError(503, 'audit_unavailable', AUDIT_UNAVAILABLE);
  }
  countDecision(ctx, exchange);
  return error;
}

/** The client left while its request was being decided or dialled. Never rejects. */
export async function recordAbandoned(ctx: ProxyContext, exchange: Exchange): Promise<void> {
  try {
    await exchange.recordAbandoned(ctx.audit, ctx.clock());
    countDecision(ctx, exchange);
  } catch (err) {
    auditFailed(ctx, err);
  }
}

/**
 * Complete an opened record when the exchange ends. `countBytes` false for an inspected
 * tunnel's own record: its requests' records count the bytes relayed, its own are TLS.
 */
export function completeRecord(ctx: ProxyContext, exchange: Exchange, end: Omit<AuditCompletion, 'endedAt'>, countBytes = true): void {
  if (countBytes) ctx.metrics.bytes(end.bytesUp, end.bytesDown);
  if (exchange.recordId === null) return;
  const id = exchange.recordId;
  // Never throws: written with the next commit, or held by the store while it cannot write.
  ctx.audit.complete(id, { endedAt: ctx.clock(), ...end });
}

/** An upstream failure after the record was opened (the exchange had already been counted). */
export function countUpstreamError(ctx: ProxyContext, code: string): void {
  if (isUpstreamErrorKind(code)) ctx.metrics.upstreamError(code);
}

function isUpstreamErrorKind(code: string): code is UpstreamErrorKind {
  return (UPSTREAM_ERROR_KINDS as readonly string[]).includes(code);
}

/** An error as the audit `error` field shows it: `CODE: message` when there is a code. */
export function describeStreamError(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  return code ? `${code}: ${error.message}` : error.message;
}
