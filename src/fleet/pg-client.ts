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

/** Makes a transaction end with ROLLBACK rather than COMMIT, without an error (work that found it should change nothing). */
export type RollbackOnly = () => void;

export type TransactionWork<T> = (client: PoolClient, rollbackOnly: RollbackOnly) => Promise<T>;

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown; reusable: boolean };

/** Runs `work` between `begin` and COMMIT (or ROLLBACK); never throws, says how it ended. */
async function settle<T>(client: PoolClient, work: TransactionWork<T>, begin: string): Promise<Settled<T>> {
  let commit = true;
  try {
    await client.query(begin);
    const value = await work(client, () => {
      commit = false;
    });
    await client.query(commit ? 'COMMIT' : 'ROLLBACK');
    return { ok: true, value };
  } catch (error) {
    // The work's error is the one passed on, not a failed ROLLBACK's.
    const reusable = await client.query('ROLLBACK').then(() => true, () => false);
    return { ok: false, error, reusable };
  }
}

/** `work` in a transaction on a connection already held (one that holds a session lock across several). */
export async function transaction<T>(client: PoolClient, work: TransactionWork<T>, begin = 'BEGIN'): Promise<T> {
  const settled = await settle(client, work, begin);
  if (!settled.ok) throw settled.error;
  return settled.value;
}

/**
 * `work` in a transaction on a borrowed connection (borrowClient's 'error' listener included).
 * A failure ROLLBACK ended (a cancelled count, a name already taken) leaves the connection fit to
 * reuse; one whose ROLLBACK failed too is destroyed.
 */
export async function inTransaction<T>(pool: Pool, work: TransactionWork<T>, begin = 'BEGIN'): Promise<T> {
  const { client, release } = await borrowClient(pool);
  const settled = await settle(client, work, begin);
  release(settled.ok || settled.reusable ? undefined : settled.error);
  if (!settled.ok) throw settled.error;
  return settled.value;
}
