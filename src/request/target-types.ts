/** How a destination host was written, after normalisation. */
export type HostKind = 'name' | 'ipv4' | 'ipv6';

/**
 * Which forwarding mode a request uses: a CONNECT tunnel, an absolute-URI plain-HTTP request, or
 * a request read inside an inspected tunnel (`tls: inspect`, SPEC §6), decided like plain HTTP
 * with scheme `https` and recorded with its tunnel's record id.
 */
export type RequestKind = 'connect' | 'http' | 'https';

/**
 * A destination parsed and normalised exactly once. Nothing downstream re-parses strings:
 * policy, guard, dialler and audit all read this value, so they cannot disagree about which
 * host a request names.
 */
export interface Target {
  kind: RequestKind;
  /**
   * 'http' for absolute-URI requests, 'https' for a request inside an inspected tunnel; null for
   * CONNECT (the tunnel's contents are opaque).
   */
  scheme: 'http' | 'https' | null;
  /**
   * Lower-case, one trailing dot dropped, IDNs in punycode, IPv4 in canonical dotted quad
   * (legacy spellings as the WHATWG URL parser reads them), IPv6 compressed and without brackets.
   */
  host: string;
  hostKind: HostKind;
  /** 1..65535 */
  port: number;
  /** Path without query string for plain HTTP and inspected HTTPS; null for CONNECT. */
  path: string | null;
  /** The query string including its leading '?', or '' (forwarded, never matched or logged). */
  search: string;
}
