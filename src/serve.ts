import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from './admin/app';
import { Authenticator } from './auth/authenticator';
import { UsersHolder } from './auth/users-holder';
import { createMetrics } from './metrics';
import type { ProxyMetrics } from './metrics';
import { isInMemory } from './audit/connection';
import { GroupCommit } from './audit/group-commit';
import { completeAtShutdown, completeLeftOpen } from './audit/left-open';
import type { AtShutdown } from './audit/left-open';
import { openAuditStore } from './audit/store';
import type { AuditStateChange, AuditStoreOptions } from './audit/store';
import { WriterThread } from './audit/writer-thread';
import type { ServingStore } from './audit/writer-thread';
import { ConfigError } from './config';
import type { ListenAddress, ServeConfig } from './config';
import type { Logger } from './log';
import { formatProblem, loadPolicy } from './policy/load';
import type { SelfAddress } from './policy/guard';
import { PolicyHolder } from './policy/watch';
import type { ProxyContext } from './proxy/context';
import { systemResolver } from './proxy/dial';
import { drainProxy } from './proxy/drain';
import { ParentAgents } from './proxy/parent-agents';
import { createUpstreamPool } from './proxy/relay-direct';
import { createProxyServer } from './proxy/server';
import { TunnelRegistry } from './proxy/tunnel-registry';

export interface RunningProxy {
  readonly proxyAddress: AddressInfo;
  readonly adminAddress: AddressInfo;
  readonly holder: PolicyHolder;
  /** SIGHUP: reload the policies and the users file. */
  reload(): void;
  /** Stop accepting, drain, complete open records, close the database. */
  shutdown(): Promise<ShutdownOutcome>;
}

export interface ShutdownOutcome {
  /**
   * False when the records still open could not be completed (the audit log could not be
   * written): the process then exits non-zero. Held completions were saved for the next start.
   */
  recordsCompleted: boolean;
}

/** Start the proxy and the admin app; throws ConfigError when they must not start. */
export async function startServing(config: ServeConfig, log: Logger): Promise<RunningProxy> {
  const loaded = loadPolicy(config.policiesDir);
  if (!loaded.ok) {
    throw new ConfigError(`invalid policies in ${config.policiesDir}:\n${loaded.problems.map(formatProblem).join('\n')}`);
  }
  if (loaded.warnings.length > 0) log.warn({ warnings: loaded.warnings.map(formatProblem) }, 'policy warnings (see tollgate policy check)');
  // Before the store: a bad users file must not leave the audit file open behind the error.
  const users = openUsers(config, log);
  const store = openStore(config.dbFile, { onStateChange: (change) => logAuditState(log, change) });
  const closedAtStart = await completeRecordsLeftOpen(store, log);
  const self: SelfAddress[] = [];
  const metrics = createMetrics();
  const holder = new PolicyHolder(config.policiesDir, loaded.policy, () => self, log, (ok) => metrics.policyReload(ok));
  const audit = new GroupCommit(store, (seconds) => metrics.auditWrite(seconds));
  const ctx = proxyContext(config, holder, audit, log, metrics, users?.authenticator ?? null);
  // Agents of parents a reload no longer names are retired; requests in flight on them finish.
  holder.onLoaded((policy) => ctx.parentAgents.retainFor(policy));
  metrics.setOpenTunnels(() => ctx.tunnels.size);
  // Known state, no probe write per scrape.
  metrics.setAuditWritable(() => store.health().writable);
  const server = createProxyServer(ctx);
  const admin = buildAdminApp({
    store,
    ready: () => readiness(holder, store),
    token: config.adminToken,
    policy: () => ({ policy: holder.active().policy, lastReload: holder.lastReload }),
    metrics,
  });
  let proxyAddress: AddressInfo;
  let adminAddress: AddressInfo;
  try {
    await admin.listen({ host: config.adminListen.host, port: config.adminListen.port });
    adminAddress = admin.server.address() as AddressInfo;
    proxyAddress = await listen(server, config.listen);
  } catch (err) {
    await admin.close();
    server.close();
    store.close();
    throw new ConfigError(`cannot listen: ${err instanceof Error ? err.message : String(err)}`);
  }
  // The guard refuses connections to our own sockets. Their ports are known only now; this runs
  // in the same turn as the proxy's listen callback, before any connection can be accepted.
  self.push({ host: proxyAddress.address, port: proxyAddress.port }, { host: adminAddress.address, port: adminAddress.port });
  holder.refreshGuard();
  holder.watch();
  users?.holder.watch();
  log.info(
    { proxy: formatAddress(proxyAddress), admin: formatAddress(adminAddress), policies: config.policiesDir, policy_version: loaded.policy.version, db: config.dbFile, records_closed_at_start: closedAtStart },
    'listening',
  );
  return {
    proxyAddress,
    adminAddress,
    holder,
    reload: () => {
      holder.reload();
      users?.holder.reload();
    },
    shutdown: () => {
      users?.holder.close();
      return shutdown(server, ctx, admin, { store, audit }, holder, config.drainTimeoutMs, log);
    },
  };
}

/** The users file and the authenticator over it, when --users is given. */
function openUsers(config: ServeConfig, log: Logger): { holder: UsersHolder; authenticator: Authenticator } | null {
  if (config.usersFile === null) return null;
  let authenticator: Authenticator | null = null;
  let holder: UsersHolder;
  try {
    holder = UsersHolder.open(config.usersFile, log, () => authenticator?.usersChanged());
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  authenticator = new Authenticator(holder.users);
  return { holder, authenticator };
}

function proxyContext(
  config: ServeConfig,
  holder: PolicyHolder,
  audit: GroupCommit,
  log: Logger,
  metrics: ProxyMetrics,
  authenticator: Authenticator | null,
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
    limits: { maxTunnels: config.maxTunnels, maxTunnelsPerSource: config.maxTunnelsPerSource },
    gauges: { clientSockets: 0, activeRequests: 0 },
    metrics,
    authenticator,
    log,
    upstreamPool: createUpstreamPool({ connectMs: config.connectTimeoutMs }),
    parentAgents: new ParentAgents(),
    tunnels: new TunnelRegistry(),
  };
}

/**
 * The audit log's writes run on a thread of their own (writer-thread.ts), so a commit never
 * holds up relaying. An in-memory database cannot be shared between threads: it stays here.
 */
function openStore(file: string, options: AuditStoreOptions): ServingStore {
  return isInMemory(file) ? openAuditStore(file, options) : new WriterThread(file, options);
}

function readiness(holder: PolicyHolder, store: ServingStore): { ok: boolean; detail: Record<string, unknown> } {
  const last = holder.lastReload;
  return {
    ok: true,
    detail: { policy_version: holder.active().policy.version, last_reload: last, audit: store.health() },
  };
}

function listen(server: Server, address: ListenAddress): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

export function formatAddress(address: AddressInfo): string {
  return address.family === 'IPv6' ? `[${address.address}]:${address.port}` : `${address.address}:${address.port}`;
}

async function shutdown(
  server: Server,
  ctx: ProxyContext,
  admin: FastifyInstance,
  { store, audit }: { store: ServingStore; audit: GroupCommit },
  holder: PolicyHolder,
  drainMs: number,
  log: Logger,
): Promise<ShutdownOutcome> {
  log.info({ open_tunnels: ctx.tunnels.size, drain_ms: drainMs }, 'draining');
  holder.close();
  await drainProxy(server, ctx, drainMs);
  await ctx.upstreamPool.destroy();
  ctx.parentAgents.destroyAll();
  await admin.close();
  // Completions of the connections the drain just ended, and opens still waiting for a commit.
  await audit.drain();
  const completed = completeAtShutdown(store, new Date());
  store.close();
  logShutdownAudit(log, completed);
  return { recordsCompleted: completed.ok };
}

/**
 * Before the proxy accepts a connection, so only earlier runs' records are still open. A store
 * that cannot be written now leaves them open (and a saved file in place) for the next start.
 */
async function completeRecordsLeftOpen(store: ServingStore, log: Logger): Promise<number | null> {
  try {
    const done = await completeLeftOpen(store, new Date());
    if (done.heldUnreadable > 0) log.warn({ lines: done.heldUnreadable }, 'skipped unreadable lines of the saved completions file');
    if (done.heldWritten + done.closed > 0) {
      log.warn(
        { held_completions_written: done.heldWritten, records_closed_at_start: done.closed, ended_at: done.endedAt.toISOString() },
        'completed records an earlier run left open (error proxy_restarted, ended at its last sign of life)',
      );
    }
    return done.closed;
  } catch (err) {
    log.error({ err }, 'could not complete records an earlier run left open: audit log unavailable; the next start tries again');
    return null;
  }
}

function logShutdownAudit(log: Logger, done: AtShutdown): void {
  if (done.ok) return log.info({ records_closed_at_shutdown: done.closed }, 'stopped');
  log.error({ err: done.error }, 'could not complete open records: audit log unavailable; exiting with status 1');
  if (done.savedTo !== null) {
    log.warn({ held_completions: done.held, file: done.savedTo }, 'saved held completions beside the audit log; the next start writes them');
  } else if (done.held > 0 || done.saveError !== null) {
    log.error({ err: done.saveError, held_completions: done.held }, 'could not save held completions: lost; their records end as proxy_restarted at the next start');
  }
  log.info({ records_closed_at_shutdown: null }, 'stopped');
}

/** One line when the audit log starts failing, recovers, or had to be reopened. */
function logAuditState(log: Logger, change: AuditStateChange): void {
  const level = change.event === 'failing' ? 'error' : change.event === 'reopened' ? 'warn' : 'info';
  log[level]({ audit: change.health }, change.message);
}
