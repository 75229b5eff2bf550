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
  | 'audit_unavailable';
