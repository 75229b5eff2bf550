import type { HostKind, RequestKind } from '../request/target-types';

export type Action = 'allow' | 'deny';
export type Mode = 'enforce' | 'report';
/**
 * What a CONNECT tunnel's first bytes must be (SPEC §6 `tls:`): `any` relays whatever comes;
 * `sni-must-match` reads the client's ClientHello and refuses one whose SNI names another host
 * than the CONNECT; `require` also refuses anything that is not a TLS ClientHello; `inspect`
 * checks the ClientHello as `require` does, then terminates the client's TLS and decides every
 * request inside the tunnel on its own (src/proxy/inspect-tunnel.ts).
 */
export type TlsMode = 'any' | 'sni-must-match' | 'require' | 'inspect';
/** `settings.auth`: whether proxy credentials are ignored, checked when sent, or required. */
export type AuthMode = 'off' | 'optional' | 'required';

/** A parent proxy (`settings.upstream` or a rule's `via`), parsed once at load. */
export interface ParentProxy {
  /** As written, with the password replaced: safe for logs and the audit record. */
  readonly label: string;
  readonly host: string;
  readonly hostKind: HostKind;
  readonly port: number;
  /** From the URL's userinfo; sent to the parent only, never logged. */
  readonly credentials: { readonly user: string; readonly password: string } | null;
}

/** Everything decide() needs to know about one request; built by the proxy from a Target. */
export interface RequestFacts {
  kind: RequestKind;
  host: string;
  hostKind: HostKind;
  port: number;
  /** Upper-case; 'CONNECT' for tunnels. */
  method: string;
  /** Plain HTTP only, without query; null for CONNECT. */
  path: string | null;
  /** The client's source address as the socket reports it (IPv4-mapped IPv6 already unmapped). */
  sourceIp: string;
  /** Proxy username, or null. */
  user: string | null;
  /** The clock, passed in so decide() stays pure. */
  now: Date;
}

/**
 * The outcome of the policy, a plain value. The proxy acts on `action` and the audit records
 * every field verbatim, so what a record says decided a request is exactly what did.
 */
export interface Decision {
  /** What the proxy does: 'allow' also when report mode lets a policy denial through. */
  action: Action;
  /** The deciding rule's name, '(default)' when none matched, '(guard)' for the destination guard. */
  rule: string;
  /** 'FILE:LINE' of the deciding rule (or of settings.default); null for the guard's built-ins. */
  ruleSource: string | null;
  reason: string;
  /** True when the policy denied but report mode (global or per rule) let it through. */
  wouldDeny: boolean;
  /** Names of the client groups the request belongs to, in policy order. */
  clients: string[];
  /** The parent proxy to reach the destination through, or null to connect directly. */
  upstream: ParentProxy | null;
  /** The deciding rule's `tls:`, else settings.tls (CONNECT only). */
  tls: TlsMode;
  /**
   * The mode the decision was made in: the deciding rule's own `mode`, else settings.mode. A
   * refusal made after the policy decided (the SNI check) is reported or enforced by it.
   */
  mode: Mode;
}

/** A CIDR range as written in a policy, with where it was written. */
export interface RangeEntry {
  /** As written, e.g. '10.0.0.0/8'. */
  cidr: string;
  /** 'FILE:LINE' */
  source: string;
}

/** The destination-guard part of a policy, merged from all files. */
export interface NetworkPolicy {
  /** Exempt from the built-in blocked ranges, for destinations and parent proxies alike. */
  allowRanges: RangeEntry[];
  /** Always blocked; wins over both exemptions. */
  denyRanges: RangeEntry[];
  /**
   * Exempt only for tollgate's own connection to a parent proxy (settings.upstream, a rule's
   * `via`), never for a destination a client asks for.
   */
  parentRanges: RangeEntry[];
}
