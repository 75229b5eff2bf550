import { AccessLogThread, indexPosition } from './audit/access-log/access-log-thread';
import type { ServingStore } from './audit/writer-thread';
import type { ServeConfig } from './config';
import type { Logger } from './log';

/**
 * `--access-log`: started once the index is in sync with the log and before the proxy accepts a
 * connection, so a first start begins at the log's end with no record open.
 */
export function startAccessLog(config: ServeConfig, store: ServingStore, log: Logger): AccessLogThread | null {
  if (config.accessLog === null) return null;
  return new AccessLogThread({
    target: config.accessLog,
    dbFile: config.dbFile,
    start: indexPosition(store.db),
    fsync: config.auditFsync,
    node: config.node,
    onNotice: (message) => log.warn({ access_log: config.accessLog }, message),
    onError: (message) => log.error({ access_log: config.accessLog }, message),
  });
}
