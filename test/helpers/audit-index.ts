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
