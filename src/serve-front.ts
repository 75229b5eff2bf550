import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GroupCommit } from './audit/group-commit';
import type { Authenticator } from './auth/authenticator';
import { WorkerPool } from './cluster/pool';
import type { ListenAddress, ServeConfig } from './config';
import type { Logger } from './log';
import type { ProxyMetrics } from './metrics';
import type { PolicyHolder } from './policy/watch';
import type { ProxyContext } from './proxy/context';
import { systemResolver } from './proxy/dial';
import { drainProxy } from './proxy/drain';
import { ParentAgents } from './proxy/parent-agents';
import { createUpstreamPool } from './proxy/relay-direct';
import { createProxyServer } from './proxy/server';
import { TunnelRegistry } from './proxy/tunnel-registry';
import type { ServingAudit } from './serve-audit';
import type { Inspection } from './inspect/types';

/** The proxy port as `serve` runs it: in this process (--workers 1), or in worker processes. */
export interface ProxyFront {
  readonly address: AddressInfo;
  /** Stop accepting, let open requests and tunnels finish for up to drainMs; resolves when all are done. */
  drain(drainMs: number): Promise<void>;
  /** The policies (and users file) were reloaded in this process. */
  reload(): void;
  /** /readyz: whether the proxy can take connections, and what to show about it. */
  readiness(): { ok: boolean; detail: Record<string, unknown> };
  /** What the "draining" log line says. */
  drainInfo(): Record<string, unknown>;
}

/** --workers 1: the proxy runs here, as it always has. */
export async function startLocalProxy(
  config: ServeConfig,
  log: Logger,
  metrics: ProxyMetrics,
  audit: GroupCommit,
  holder: PolicyHolder,
  authenticator: Authenticator | null,
  inspect: Inspection | null = null,
): Promise<ProxyFront> {
  const ctx = proxyContext(config, holder, audit, log, metrics, authenticator, inspect);
  // Agents of parents a reload no longer names are retired; requests in flight on them finish.
  holder.onLoaded((policy) => ctx.parentAgents.retainFor(policy));
  metrics.setOpenTunnels(() => ctx.tunnels.size);
  metrics.setClientConnections(() => ctx.gauges.clientSockets, config.maxClientConnections);
  const server = createProxyServer(ctx);
  const address = await listen(server, config.listen);
  return {
    address,
    drain: async (drainMs) => {
      await drainProxy(server, ctx, drainMs);
      await ctx.upstreamPool.destroy();
      ctx.parentAgents.destroyAll();
    },
    reload: () => undefined,
    readiness: () => ({ ok: true, detail: {} }),
    drainInfo: () => ({ open_tunnels: ctx.tunnels.size }),
  };
}

/**
 * --workers N: node:cluster processes share the proxy port (cluster/pool.ts); this process keeps
 * the audit log, which their records are committed to, and tells them of every reload.
 */
export async function startWorkers(
  config: ServeConfig,
  log: Logger,
  metrics: ProxyMetrics,
  serving: ServingAudit,
  admin: AddressInfo,
  holder: PolicyHolder,
): Promise<ProxyFront> {
  const pool = new WorkerPool({ config, log, target: serving.target, admin: { host: admin.address, port: admin.port }, policy: () => { const { sources, provenance } = holder.sources(); return { sources: [...sources], provenance }; }, onRestart: () => metrics.workerRestarted() });
  holder.onLoaded(() => pool.reload());
  // An admin read sees every record a worker answered, spooled ones included.
  serving.store.setSyncBarrier?.(() => pool.flush());
  metrics.setPeers(() => pool.workerMetrics());
  const address = await pool.start();
  return {
    address,
    drain: (drainMs) => pool.drain(drainMs),
    reload: () => pool.reload(),
    readiness: () => pool.readiness(),
    drainInfo: () => ({ workers: config.workers }),
  };
}

export function proxyContext(
  config: ServeConfig,
  holder: PolicyHolder,
  audit: GroupCommit,
  log: Logger,
  metrics: ProxyMetrics,
  authenticator: Authenticator | null,
  inspect: Inspection | null = null,
): ProxyContext {
  return {
    active: holder.active,
    audit,
    resolver: systemResolver,
    clock: () => new Date(),
    timeouts: {
      dnsMs: config.dnsTimeoutMs,
      connectMs: config.connectTimeoutMs,
      tunnelIdleMs: config.tunnelIdleTimeoutMs,
      tunnelLifetimeMs: config.tunnelMaxLifetimeMs,
      requestIdleMs: config.requestIdleTimeoutMs,
    },
    limits: { maxTunnels: config.maxTunnels, maxTunnelsPerSource: config.maxTunnelsPerSource, maxClientConnections: config.maxClientConnections },
    gauges: { clientSockets: 0, refusingSockets: 0, activeRequests: 0 },
    metrics,
    authenticator,
    log,
    upstreamPool: createUpstreamPool({ connectMs: config.connectTimeoutMs }),
    parentAgents: new ParentAgents(),
    tunnels: new TunnelRegistry(),
    proxyProtocolFrom: config.proxyProtocolFrom,
    ...(inspect !== null ? { inspect } : {}),
  };
}


export function listen(server: Server, address: ListenAddress): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

