import { isInMemory } from './audit/connection';
import { auditLogDir } from './audit/log/segment-files';
import { ConfigError } from './config-error';
import type { ServeConfig } from './config';
import { redactAuditUrl } from './fleet/audit-url';
import { ShipThread } from './fleet/ship-thread';
import { readOrCreateStoreId, StoreIdError } from './fleet/store-id';
import type { Logger } from './log';
import type { ProxyMetrics } from './metrics';

/** How long a stopping serve keeps shipping what its last moments appended. */
export const SHIP_DRAIN_MS = 5000;

/** Shipping as `serve` runs it (--audit-url): the thread, its metrics, its /readyz detail. */
export interface ServingShip {
  /**
   * /readyz detail `ship`: never affects readiness (egress does not depend on PostgreSQL). The
   * probe is open: the error text (a driver message naming the database host, user and database)
   * and the store id go only to authenticated requests; everyone sees `failing`.
   */
  readiness(authenticated: boolean): Record<string, unknown>;
  policyChanged(version: string | null): void;
  /** Ships what is left (bounded), then stops the thread; true when all of it went. */
  close(): Promise<boolean>;
}

/**
 * Gives a file store its identity (`store-id`, made once) and, with --audit-url, starts the ship
 * thread. Serve starts whether or not PostgreSQL answers: the thread migrates and ships when it
 * can. Call after the store is opened (its log folder exists).
 */
export function startShipping(config: ServeConfig, log: Logger, metrics: ProxyMetrics, policyVersion: string | null): ServingShip | null {
  // config.ts refuses --audit-url with an in-memory store, which has no log.
  if (isInMemory(config.dbFile)) return null;
  const logDir = auditLogDir(config.dbFile);
  let storeId: string;
  try {
    storeId = readOrCreateStoreId(logDir);
  } catch (err) {
    if (err instanceof StoreIdError) throw new ConfigError(err.message);
    throw err;
  }
  if (config.auditUrl === null) return null;
  log.info({ audit_url: redactAuditUrl(config.auditUrl), node: config.node, store_id: storeId }, 'shipping audit records to PostgreSQL');
  const thread = new ShipThread({
    url: config.auditUrl,
    logDir,
    storeId,
    node: config.node,
    policyVersion,
    onEvent: (event) => log[event.level](event.fields, event.msg),
  });
  metrics.setAuditShip(() => thread.status());
  return {
    readiness: (authenticated) => {
      const s = thread.status();
      return {
        node: config.node, ...(authenticated ? { store_id: storeId } : {}), backlog_records: s.backlogEntries, backlog_capped: s.backlogCapped,
        oldest_seconds: s.oldestSeconds, shipped_records: s.shippedEntries, failures: s.failures, failing: s.lastError !== null,
        ...(authenticated ? { last_error: s.lastError } : {}), last_success_at: s.lastSuccessAt,
      };
    },
    policyChanged: (version) => thread.policyChanged(version),
    close: async () => {
      const ok = await thread.close(SHIP_DRAIN_MS);
      const s = thread.status();
      if (ok) log.info({ shipped_records: s.shippedEntries }, 'audit records shipped to PostgreSQL up to the end of the log');
      else log.warn({ backlog_records: s.backlogEntries, err: s.lastError }, 'stopping with audit records not yet shipped to PostgreSQL; the next start ships them');
      return ok;
    },
  };
}
