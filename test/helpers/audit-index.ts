import Database from 'better-sqlite3';
import { LogAuditStore } from '../../src/audit/log-store';
import { IndexConsumer } from '../../src/audit/log/index-consumer';
import { auditLogDir } from '../../src/audit/log/segment-files';

/**
 * What the next start of `serve` does first: apply to the SQLite index every log entry it does
 * not hold yet. After a SIGKILL the last records are in the log (durable) but may not be in the
 * index yet; tests that read the file directly call this, as a restart would.
 */
export function catchUpIndex(dbFile: string): void {
  const consumer = new IndexConsumer({ file: dbFile, logDir: auditLogDir(dbFile) });
  try {
    consumer.catchUp();
  } finally {
    consumer.close();
  }
}

/**
 * Records written through `serve`'s log store (closed after, as a stop would), the index caught
 * up, and the file opened read-only for the test to read and to serve.
 */
export function writeThroughLog<T>(dbFile: string, write: (store: LogAuditStore) => T): { written: T; db: Database.Database } {
  const store = new LogAuditStore(dbFile, {});
  let written: T;
  try {
    written = write(store);
  } finally {
    store.close();
  }
  catchUpIndex(dbFile);
  return { written, db: new Database(dbFile, { readonly: true }) };
}
