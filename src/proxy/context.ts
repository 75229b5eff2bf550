import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import type { AuditSink } from '../audit/record-types';
import type { Authenticator } from '../auth/authenticator';
import type { ProxyMetrics } from '../metrics';
import type { ActivePolicy } from '../policy/active-policy';
import type { Resolver } from './dial';
import type { ParentAgents } from './parent-agents';
import type { TunnelRegistry } from './tunnel-registry';
import type { TunnelShares } from './tunnel-limits';
import type { IpRange } from '../policy/ip-range';
import type { Inspection } from '../inspect/types';

export type { ActivePolicy } from '../policy/active-policy';

export interface ProxyTimeouts {
  /** DNS lookup of a destination; past it the client gets 504. */
  readonly dnsMs: number;
  /** TCP connect to the destination; past it the client gets 504. */
  readonly connectMs: number;
  /** A tunnel with no bytes in either direction for this long is closed. */
  readonly tunnelIdleMs: number;
  /** A tunnel open this long is closed however busy it is; 0 = no limit. */
  readonly tunnelLifetimeMs: number;
  /** A forwarded request whose destination sends nothing for this long: 504, or cut mid-body. */
  readonly requestIdleMs: number;
  /** A checked tunnel (tls: sni-must-match | require) waits this long for a ClientHello (default HELLO_WAIT_MS). */
  readonly helloMs?: number;
}

export interface ProxyLimits {
  /** Open tunnels overall; past it a CONNECT gets 429. */
  readonly maxTunnels: number;
  /** Open tunnels from one client source address; past it a CONNECT gets 429. */
  readonly maxTunnelsPerSource: number;
  /** Open client connections (tunnels included); past it a new connection gets 503. */
  readonly maxClientConnections: number;
}

/** Live counts for tests, drain and (later) metrics. */
export interface ProxyGauges {
  /** Client connections admitted and not yet closed (tunnels included): what the cap bounds. */
  clientSockets: number;
  /** Connections past the cap being answered 503, not yet closed. */
  refusingSockets: number;
  /** Plain HTTP exchanges being forwarded. */
  activeRequests: number;
}

/**
 * Everything a request handler needs from outside: the proxy never imports a clock, resolver,
 * database or policy of its own, so tests pass theirs in (no network, no real DNS).
 */
export interface ProxyContext {
  readonly active: () => ActivePolicy;
  readonly audit: AuditSink;
  readonly resolver: Resolver;
  readonly clock: () => Date;
  readonly timeouts: ProxyTimeouts;
  readonly limits: ProxyLimits;
  readonly gauges: ProxyGauges;
  readonly metrics: ProxyMetrics;
  /** Checks proxy credentials when the policy's settings.auth asks for them; null: no users file. */
  readonly authenticator: Authenticator | null;
  readonly log: Logger;
  /** Pooled keep-alive connections to destinations of plain HTTP requests (relay-direct.ts). */
  readonly upstreamPool: Dispatcher;
  /** Pooled keep-alive connections to parent proxies, for plain HTTP through them. */
  readonly parentAgents: ParentAgents;
  /** Client sockets of open tunnels: http.Server does not track them once upgraded. */
  readonly tunnels: TunnelRegistry;
  /** A `--workers` worker's shares of the tunnel limits (cluster/tunnel-lending.ts); absent in one process. */
  readonly tunnelShares?: TunnelShares;
  /**
   * --proxy-protocol-from: load balancers that must send a PROXY protocol header (and nobody
   * else may); absent or empty: off, and connections are read as HTTP from the first byte.
   */
  readonly proxyProtocolFrom?: readonly IpRange[];
  /** --inspect-ca: leaf certificates and upstream trust for rules with `tls: inspect`; absent: none is inspected. */
  readonly inspect?: Inspection;
}
