import { destroyPostgres } from './helpers/postgres-server';
import type { PostgresServer } from './helpers/postgres-server';

/** jest globalTeardown: stops the shared PostgreSQL server and removes its folder. */
export default function teardown(): void {
  const server = (globalThis as { tollgatePostgres?: PostgresServer }).tollgatePostgres;
  if (server !== undefined) destroyPostgres(server);
}
