import type { Agent } from 'node:http';
import type { Logger } from 'pino';
import type { AuditSink } from '../audit/record-types';
import type { Guard } from '../policy/guard';
import type { Policy } from '../policy/load';
import type { Resolver } from './dial';
import type { TunnelRegistry } from './tunnel-registry';

/** The policy and the guard compiled from it, swapped together on reload. */
export interface ActivePolicy {
  readonly policy: Policy;
  readonly guard: Guard;
}

export interface ProxyTimeouts {
  /** DNS lookup of a destination; past it the client gets 504. */
  readonly dnsMs: number;
  /** TCP connect to the destination; past it the client gets 504. */
  readonly connectMs: number;
}

/**
 * Everything a request handler needs from outside (STYLE habit 5): the proxy never imports
 * a clock, resolver, database or policy of its own, so tests pass theirs in.
 */
export interface ProxyContext {
  readonly active: () => ActivePolicy;
  readonly audit: AuditSink;
  readonly resolver: Resolver;
  readonly clock: () => Date;
  readonly timeouts: ProxyTimeouts;
  readonly log: Logger;
  /** Pooled keep-alive connections to destinations of plain HTTP requests. */
  readonly upstreamAgent: Agent;
  /** Client sockets of open tunnels: http.Server does not track them once upgraded. */
  readonly tunnels: TunnelRegistry;
}
