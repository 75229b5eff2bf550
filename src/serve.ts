import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from './admin/app';
import { consoleFileFor, SqliteConsoleStore } from './admin/console-sqlite';
import { AUTH_LIMITS, Authenticator } from './auth/authenticator';
import { UsersHolder } from './auth/users-holder';
import { createMetrics } from './metrics';
import type { DiskWatermark } from './audit/disk-watermark';
import { completeAtShutdown, completeLeftOpen } from './audit/left-open';
import type { AtShutdown } from './audit/left-open';
import type { ServingStore } from './audit/writer-thread';
import type { ChainHeadView } from './admin/routes/audit-head';
import { auditLogDir, readTextIfExists } from './audit/log/segment-files';
import { STORE_ID_FILE } from './fleet/store-id';
import { ConfigError } from './config';
import type { ServeConfig } from './config';
import { descriptorsNeeded } from './descriptors';
import type { Logger } from './log';
import { formatProblem, loadPolicy } from './policy/load';
import type { SelfAddress } from './policy/guard';
import { PolicyHolder } from './policy/watch';
import { startAccessLog } from './serve-access-log';
import { diskReadiness, openServingAudit } from './serve-audit';
import { startShipping } from './serve-ship';
import type { ServingShip } from './serve-ship';
import type { AuditDependencies, ServingAudit } from './serve-audit';
import { proxyPeerOverlaps } from './proxy/proxy-protocol-accept';
import { startLocalProxy, startWorkers } from './serve-front';
import { openInspection } from './serve-inspect';
import type { ProxyFront } from './serve-front';
import type { Policy } from './policy/compiled';
import { inspectingRules } from './policy/inspecting';

export interface RunningProxy {
  readonly proxyAddress: AddressInfo;
  readonly adminAddress: AddressInfo;
  readonly holder: PolicyHolder;
  /** SIGHUP: reload the policies and the users file. */
  reload(): void;
  /** SIGUSR1: the access log file is opened again at its path (logrotate). */
  reopenAccessLog(): void;
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
export async function startServing(config: ServeConfig, log: Logger, deps: AuditDependencies = {}): Promise<RunningProxy> {
  const loaded = loadPolicy(config.policiesDir);
  if (!loaded.ok) {
    throw new ConfigError(`invalid policies in ${config.policiesDir}:\n${loaded.problems.map(formatProblem).join('\n')}`);
  }
  if (loaded.warnings.length > 0) log.warn({ warnings: loaded.warnings.map(formatProblem) }, 'policy warnings (see tollgate policy check)');
  // Before the store: a bad users file must not leave the audit file open behind the error.
  // A users-file change reaches the proxy workers too (set once they exist).
  let usersChanged = (): void => undefined;
  const users = openUsers(config, log, () => usersChanged());
  const self: SelfAddress[] = [];
  const metrics = createMetrics();
  // Before the store too: a CA refused (a key others can read, an expired CA) stops the start here.
  const inspect = await openInspection(config, log, metrics, config.workers > 1 ? 'primary' : 'proxy');
  const serving = openServingAudit(config, log, metrics, deps);
  const { store, audit } = serving;
  const closedAtStart = await completeRecordsLeftOpen(store, log);
  // The index then holds those completions before the first request, and before any API read.
  await store.syncIndex?.();
  const accessLog = startAccessLog(config, store, log);
  const holder = new PolicyHolder(config.policiesDir, loaded.policy, () => self, log, (ok) => metrics.policyReload(ok), loaded.sources);
  const ship = startShipping(config, log, metrics, loaded.policy.version);
  if (ship !== null) holder.onLoaded((policy) => ship.policyChanged(policy.version));
  let draining = false;
  let front: ProxyFront | null = null;
  const admin = buildAdminApp({
    store,
    ready: (view) => readiness(holder, store, serving.watermark, ship, view.authenticated, draining, front),
    token: config.adminToken,
    policy: () => ({ policy: holder.active().policy, lastReload: holder.lastReload }),
    metrics,
    node: config.node,
    auditHeads: auditHeadsOf(store, config.dbFile),
    // Beside the audit store, never in its index: the index is rebuilt from the log when lost.
    console: new SqliteConsoleStore(consoleFileFor(config.dbFile)),
    authProxy: config.adminAuthProxy,
  });
  let proxyAddress: AddressInfo;
  let adminAddress: AddressInfo;
  try {
    await admin.listen({ host: config.adminListen.host, port: config.adminListen.port });
    adminAddress = admin.server.address() as AddressInfo;
    front = config.workers > 1
      ? await startWorkers(config, log, metrics, serving, adminAddress, holder)
      : await startLocalProxy(config, log, metrics, audit, holder, users?.authenticator ?? null, inspect);
    proxyAddress = front.address;
    const started = front;
    usersChanged = () => started.reload();
  } catch (err) {
    await admin.close();
    serving.stop();
    void accessLog?.close();
    void store.closeIndex?.();
    store.close();
    void ship?.close();
    throw new ConfigError(`cannot listen: ${err instanceof Error ? err.message : String(err)}`);
  }
  // The guard refuses connections to our own sockets. Their ports are known only now; this runs
  // in the same turn as the proxy's listen callback, before any connection can be accepted.
  self.push({ host: proxyAddress.address, port: proxyAddress.port }, { host: adminAddress.address, port: adminAddress.port });
  holder.refreshGuard();
  holder.watch();
  users?.holder.watch();
  warnOfDescriptorBudget(config, log);
  let overlapsWarned = warnOfProxyPeerOverlaps(config, loaded.policy.clients, log, '');
  warnOfInspectionWithoutCa(config, loaded.policy, log);
  // A reload can add a group inside a --proxy-protocol-from range: said again when what overlaps changes.
  holder.onLoaded((policy) => {
    overlapsWarned = warnOfProxyPeerOverlaps(config, policy.clients, log, overlapsWarned);
    warnOfInspectionWithoutCa(config, policy, log);
  });
  log.info(
    {
      proxy: formatAddress(proxyAddress), admin: formatAddress(adminAddress), policies: config.policiesDir, policy_version: loaded.policy.version, db: config.dbFile, workers: config.workers,
      max_client_connections: config.maxClientConnections, open_files_limit: config.descriptorLimit.soft, records_closed_at_start: closedAtStart,
    },
    'listening',
  );
  return {
    proxyAddress,
    adminAddress,
    holder,
    reload: () => {
      holder.reload();
      users?.holder.reload();
      front?.reload();
    },
    reopenAccessLog: () => accessLog?.reopen(),
    shutdown: async () => {
      // Not ready from the first moment: a load balancer stops sending new connections while the
      // open ones drain (SPEC §6). The admin app answers until the drain is over.
      draining = true;
      // A load balancer only sees /readyz fail at its next check: until then it still sends new
      // connections, which a closed listener would refuse. --drain-grace keeps taking them.
      if (config.drainGraceMs > 0) {
        log.info({ drain_grace_ms: config.drainGraceMs }, 'not ready (/readyz fails); still taking new connections for the drain grace');
        await new Promise((resolve) => setTimeout(resolve, config.drainGraceMs));
      }
      users?.holder.close();
      const outcome = await shutdown(front as ProxyFront, admin, serving, holder, config.drainTimeoutMs, log, ship);
      // After the shutdown's own completions are in the log: their lines are the last ones.
      await accessLog?.close();
      return outcome;
    },
  };
}

/**
 * Rules with `tls: inspect` and no --inspect-ca: their tunnels are refused (fail closed, SPEC §6),
 * so say so at start and after every reload that keeps such rules.
 */
function warnOfInspectionWithoutCa(config: ServeConfig, policy: Policy, log: Logger): void {
  const rules = inspectingRules(policy);
  if (config.inspectCa !== null || rules.length === 0) return;
  log.warn({ rules }, 'rules say tls: inspect, but there is no --inspect-ca: their tunnels are refused (403) until a CA is configured');
}

/**
 * One line when a workload inside a --proxy-protocol-from range could claim any client group: at
 * start, and after a reload whose overlaps differ from those last said (`said`, as JSON).
 */
function warnOfProxyPeerOverlaps(config: ServeConfig, groups: Policy['clients'], log: Logger, said: string): string {
  const overlaps = proxyPeerOverlaps(config.proxyProtocolFrom, groups);
  const now = JSON.stringify(overlaps);
  if (overlaps.length > 0 && now !== said) {
    log.warn({ overlaps }, '--proxy-protocol-from overlaps client group sources: a workload there can send a PROXY header and claim another group');
  }
  return now;
}

/** A cap set above what the open-files limit holds fails the way the cap exists to prevent. */
function warnOfDescriptorBudget(config: ServeConfig, log: Logger): void {
  const limit = config.descriptorLimit;
  // With workers each process holds its share of an explicit cap (cluster/limits.ts).
  const perProcess = config.workers > 1 && !config.maxClientConnectionsAuto ? Math.ceil(config.maxClientConnections / config.workers) : config.maxClientConnections;
  const needed = descriptorsNeeded(limit, perProcess);
  if (!limit.known) log.warn({ assumed_open_files_limit: limit.soft }, 'open-files limit unknown on this system; assumed');
  else if (needed > limit.soft) {
    log.warn(
      { max_client_connections: config.maxClientConnections, open_files_limit: limit.soft, descriptors_needed: needed },
      '--max-client-connections exceeds what the open-files limit holds: raise ulimit -n, or connections may be dropped unanswered',
    );
  }
}

/** The users file and the authenticator over it, when --users is given. */
export function openUsers(
  config: ServeConfig,
  log: Logger,
  onChange: () => void = () => undefined,
  failuresPerWindow: number = AUTH_LIMITS.failuresPerWindow,
): { holder: UsersHolder; authenticator: Authenticator } | null {
  if (config.usersFile === null) return null;
  let authenticator: Authenticator | null = null;
  let holder: UsersHolder;
  try {
    holder = UsersHolder.open(config.usersFile, log, () => {
      authenticator?.usersChanged();
      onChange();
    });
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  authenticator = new Authenticator(holder.users, Date.now, failuresPerWindow);
  return { holder, authenticator };
}

function readiness(
  holder: PolicyHolder,
  store: ServingStore,
  watermark: DiskWatermark,
  ship: ServingShip | null,
  authenticated: boolean,
  draining: boolean,
  front: ProxyFront | null,
): { ok: boolean; detail: Record<string, unknown> } {
  const last = holder.lastReload;
  const disk = diskReadiness(watermark);
  const proxy = front?.readiness() ?? { ok: true, detail: {} };
  return {
    ok: disk.ok && !draining && proxy.ok,
    detail: {
      draining,
      policy_version: holder.active().policy.version, last_reload: last, audit: store.health(),
      ...(store.indexStatus ? { audit_index: store.indexStatus() } : {}), ...disk.detail,
      ...(ship !== null ? { ship: ship.readiness(authenticated) } : {}),
      ...proxy.detail,
    },
  };
}

/**
 * GET /api/audit/head: the writer's chain head, named by the store's id (store-id, read at each
 * request: it is made at start, and `local` until then). None for an in-memory store.
 */
function auditHeadsOf(store: ServingStore, dbFile: string): (() => ChainHeadView[]) | undefined {
  if (store.head === undefined) return undefined;
  const logDir = auditLogDir(dbFile);
  return () => {
    const head = store.head?.() ?? null;
    if (head === null) return [];
    const id = readTextIfExists(path.join(logDir, STORE_ID_FILE))?.trim();
    return [{ chain: id === undefined || id === '' ? 'local' : id, id: head.id, hash: head.hash }];
  };
}

export function formatAddress(address: AddressInfo): string {
  return address.family === 'IPv6' ? `[${address.address}]:${address.port}` : `${address.address}:${address.port}`;
}

async function shutdown(
  front: ProxyFront,
  admin: FastifyInstance,
  { store, audit, stop }: ServingAudit,
  holder: PolicyHolder,
  drainMs: number,
  log: Logger,
  ship: ServingShip | null,
): Promise<ShutdownOutcome> {
  log.info({ ...front.drainInfo(), drain_ms: drainMs }, 'draining');
  holder.close();
  await front.drain(drainMs);
  await admin.close();
  // Completions of the connections the drain just ended, and opens still waiting for a commit.
  await audit.drain();
  stop();
  const completed = completeAtShutdown(store, new Date());
  // The index applies the last completions and closes its file before the writer stops.
  await store.closeIndex?.();
  store.close();
  // After the last completions are in the log, so a replica scaled away leaves none unshipped.
  await ship?.close();
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
