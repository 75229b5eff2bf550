import { postgresTestsOff, startPostgres } from './helpers/postgres-server';
import type { PostgresServer } from './helpers/postgres-server';

/**
 * jest globalSetup: one throwaway PostgreSQL server for the whole run (each test file makes its
 * own database on it, see freshDatabase). Without the server binaries the run fails with the
 * reason; TOLLGATE_TEST_PG=off is the only way to skip, and it says so.
 */
export default async function setup(): Promise<void> {
  if (postgresTestsOff()) {
    process.stdout.write('\nTOLLGATE_TEST_PG=off: the PostgreSQL tests are SKIPPED\n');
    return;
  }
  const server = await startPostgres();
  process.env.TOLLGATE_TEST_PG_URL = server.url();
  (globalThis as { tollgatePostgres?: PostgresServer }).tollgatePostgres = server;
}
