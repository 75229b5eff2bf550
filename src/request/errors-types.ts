/** Machine-readable error kinds; recorded in the audit `error` field and used by metrics later. */
export type ProxyErrorCode =
  | 'bad_target'
  | 'bad_request'
  | 'denied'
  | 'dns_failed'
  | 'dns_timeout'
  | 'connect_refused'
  | 'connect_reset'
  | 'connect_failed'
  | 'connect_timeout'
  | 'upstream_error'
  | 'upstream_timeout'
  | 'too_many_tunnels'
  | 'too_many_client_connections'
  | 'auth_required'
  | 'auth_failed'
  | 'auth_rate_limited'
  | 'audit_unavailable'
  /** TLS inspection (SPEC §6): a request inside an inspected tunnel names another host. */
  | 'host_mismatch'
  /** A rule asks for tls: inspect but the proxy has no inspection CA (--inspect-ca). */
  | 'inspect_unavailable'
  /** The destination's certificate failed verification on tollgate's own TLS connection. */
  | 'upstream_certificate'
  /** tollgate's TLS handshake with the destination failed for another reason (version, mutual TLS). */
  | 'upstream_tls';
