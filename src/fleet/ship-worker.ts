import { parentPort, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import type { ShipEvent, ShipParentMessage, ShipWorkerData, ShipWorkerMessage } from './ship-protocol';
import { openAuditPool, scrubSecret } from './audit-url';
import { Shipper } from './shipper';

/**
 * The ship thread (ship-thread.ts starts it). Shipping has a thread of its own rather than a
 * place in the index thread: the index's steps are synchronous SQLite work, shipping is waiting
 * on a remote server. Together, a slow PostgreSQL would hold up the admin API's read barrier and
 * a long index catch-up (a rebuild) would stall shipping; apart, each only lags on its own.
 */

const data = workerData as ShipWorkerData;
const port = parentPort as MessagePort;
let policyVersion = data.policyVersion;

/** Failures are logged at the first of a streak and when the reason changes, not once a retry. */
let lastLogged: string | null = null;

function post(message: ShipParentMessage): void {
  port.postMessage(message);
}

function event(level: ShipEvent['level'], msg: string, fields: ShipEvent['fields'] = {}): void {
  post({ kind: 'event', event: { level, msg, fields } });
}

const pool = openAuditPool(data.url, { applicationName: `tollgate ship ${data.node}`.slice(0, 63), max: 2 });

const shipper = new Shipper({
  pool,
  logDir: data.logDir,
  who: { storeId: data.storeId, node: data.node },
  policyVersion: () => policyVersion,
  describe: (err) => scrubSecret(err instanceof Error ? err.message : String(err), data.url),
  onFailing: (message, failures) => {
    if (message === lastLogged) return;
    lastLogged = message;
    event('warn', 'shipping audit records to PostgreSQL failed; retrying (egress goes on, the backlog stays on local disk)', { err: message, failures });
  },
  onRecovered: (failures) => {
    lastLogged = null;
    event('info', 'shipping audit records to PostgreSQL again', { failures });
  },
  onMigrated: (versions) => event('info', 'PostgreSQL audit schema migrated', { versions }),
});

function status(): void {
  try {
    post({ kind: 'status', status: shipper.refreshBacklog() });
  } catch {
    post({ kind: 'status', status: shipper.status() });
  }
}

port.on('message', (message: ShipWorkerMessage) => {
  if (message.kind === 'policy') {
    policyVersion = message.version;
    return;
  }
  void shipper.drain(message.deadlineMs).then(async (ok) => {
    clearInterval(timer);
    await pool.end().catch(() => undefined);
    post({ kind: 'drained', ok, status: shipper.refreshBacklog() });
  }, () => post({ kind: 'drained', ok: false, status: shipper.status() }));
});

shipper.start();
// The backlog for /metrics and /readyz, without a round trip per scrape.
const timer = setInterval(status, 1000);
timer.unref();
status();
