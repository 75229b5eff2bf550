import type { Pool, PoolClient } from 'pg';

/**
 * A connection borrowed from a pool, with an 'error' listener for as long as it is out: pg-pool
 * listens only while a connection is idle, and a server restart or failover makes a busy one
 * emit 'error', which without a listener ends the process. The query in flight fails on its own;
 * the connection is then destroyed on release (release(err)), not put back.
 */
export async function borrowClient(pool: Pool): Promise<{ client: PoolClient; release: (err?: unknown) => void }> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error): void => {
    broken = err;
  };
  client.on('error', onError);
  return {
    client,
    release: (err?: unknown) => {
      client.off('error', onError);
      const failure = broken ?? (err === undefined ? undefined : err instanceof Error ? err : new Error(String(err)));
      client.release(failure);
    },
  };
}

/** `work` on a borrowed connection; a connection whose work failed is not reused. */
export async function withClient<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const { client, release } = await borrowClient(pool);
  let failure: unknown;
  try {
    return await work(client);
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    release(failure);
  }
}
