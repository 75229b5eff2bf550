import type { AuditCompletion, AuditOpen, AuditSink } from '../audit/record-types';
import type { Decision } from '../policy/types';
import { ProxyError } from '../request/errors';
import type { RequestKind, Target } from '../request/target-types';
import type { ClientAddress } from './client-address';

/** The longest raw (unparsed) target text kept for the audit of a malformed request. */
const RAW_TARGET_LIMIT = 512;

/**
 * One request's audit record while it is being decided: facts are filled in as they become
 * known, so whatever way the request ends, exactly one record says how far it got.
 */
export class Exchange {
  readonly startedAt: Date;
  target: Target | null = null;
  decision: Decision | null = null;
  resolvedIp: string | null = null;
  /** The server name of the ClientHello read inside a CONNECT tunnel, or null (not read, plain HTTP). */
  sni: string | null = null;
  /**
   * For a request read inside an inspected tunnel (kind `https`), the tunnel's record id; null
   * for every other exchange. The inspecting code sets it before the record is opened.
   */
  tunnelId: number | null = null;
  policyVersion: string | null = null;
  recordId: number | null = null;
  /**
   * Set the moment a refusal or an abandonment starts writing this exchange's only record,
   * before that commit ends: nothing else may then be answered, recorded or forwarded for it.
   */
  ended = false;
  /** Set when the guard, not the policy, refused the destination. */
  guardReason: string | null = null;
  /** The authenticated proxy user, or null. */
  user: string | null = null;
  readonly clientIp: string;
  readonly clientPort: number;
  /** The load balancer that named the client in a PROXY protocol header, or null. */
  readonly peerIp: string | null;

  constructor(
    readonly kind: RequestKind,
    readonly method: string | null,
    client: ClientAddress,
    readonly rawTarget: string | null,
    now: Date,
  ) {
    this.startedAt = now;
    this.clientIp = client.ip;
    this.clientPort = client.port;
    this.peerIp = client.peerIp;
  }

  /** The record as it is opened, before a byte is forwarded. */
  toOpen(): AuditOpen {
    const { target, decision } = this;
    const denied = this.guardReason !== null || decision === null || decision.action === 'deny';
    return {
      startedAt: this.startedAt,
      clientIp: this.clientIp,
      clientPort: this.clientPort,
      peerIp: this.peerIp,
      clients: decision?.clients ?? [],
      user: this.user,
      kind: this.kind,
      method: this.method,
      scheme: target ? target.scheme : null,
      host: target ? target.host : truncate(this.rawTarget),
      port: target ? target.port : null,
      path: target ? target.path : null,
      resolvedIp: this.resolvedIp,
      sni: this.sni,
      tunnelId: this.tunnelId,
      decision: denied ? 'deny' : 'allow',
      wouldDeny: decision?.wouldDeny ?? false,
      rule: this.guardReason !== null ? GUARD_RULE : (decision?.rule ?? null),
      ruleSource: this.guardReason !== null ? null : (decision?.ruleSource ?? null),
      reason: this.guardReason ?? decision?.reason ?? 'request not decided',
      policyVersion: this.policyVersion,
    };
  }

  /** Record a request that ends before anything is forwarded; resolves with the record id once committed. */
  async recordFailure(audit: AuditSink, error: ProxyError, endedAt: Date): Promise<number> {
    this.ended = true;
    const open = this.toOpen();
    if (this.decision === null) open.reason = error.reason;
    const completion: AuditCompletion = {
      endedAt,
      status: error.status,
      bytesUp: 0,
      bytesDown: 0,
      error: error.code === 'denied' ? null : `${error.code}: ${error.reason}`,
    };
    const id = await audit.record(open, completion);
    this.recordId = id;
    return id;
  }

  /** Record a request whose client left before it was answered: no status, nothing forwarded. */
  async recordAbandoned(audit: AuditSink, endedAt: Date): Promise<number> {
    this.ended = true;
    const id = await audit.record(this.toOpen(), { endedAt, status: null, bytesUp: 0, bytesDown: 0, error: CLIENT_GONE });
    this.recordId = id;
    return id;
  }
}

/** Recorded when a client disconnects while its request is still being decided or dialled. */
export const CLIENT_GONE = 'client_closed: the client went away before anything was forwarded';

/** The rule name recorded when the destination guard refuses an address (SPEC §3). */
export const GUARD_RULE = '(guard)';

function truncate(text: string | null): string | null {
  if (text === null) return null;
  return text.length > RAW_TARGET_LIMIT ? text.slice(0, RAW_TARGET_LIMIT) : text;
}

/** Normalise anything thrown on a request path into the one error type. */
export function asProxyError(err: unknown): ProxyError {
  if (err instanceof ProxyError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ProxyError(502, 'upstream_error', message);
}
