import type { Pool, PoolClient } from 'pg';
import { withClient } from './pg-client';

/**
 * `tollgate audit prune`: deletes the shared history's records that started before a cutoff, in
 * small transactions, so the shippers' inserts never wait long behind it.
 *
 * Why batched DELETEs rather than partitions dropped by day: they work on the tables every
 * deployment already has (001_fleet.sql), need no partition maintenance job, and keep the
 * global `id` order and the (store_id, local_id) uniqueness the shippers rely on (a unique
 * constraint on a partitioned table must include the partition key, so idempotent shipping
 * would need started_at_ms in its key). Each batch costs a few milliseconds of row locks on old
 * rows no shipper touches. Partitions pay once deletes dominate: tens of millions of records a
 * day, where DELETE's dead tuples and the vacuum they need cost more than the pruning itself.
 *
 * request_minutes stays equal to the records present: each batch subtracts exactly what it
 * deleted from the minutes those records started in, in the same transaction, and removes a
 * minute whose counts reach zero. So the minute the cutoff falls in is adjusted, not dropped,
 * and a late record shipped into an old minute while prune runs is counted right either way.
 * first_seen_* are kept: they are first-ever facts, true after the record that made them is gone.
 */

export interface PruneOptions {
  /** Records with started_at_ms below this are deleted. */
  cutoffMs: number;
  /** Records per transaction (default 5,000). */
  batchSize?: number;
  /** Called after each committed batch (tests and progress). */
  onBatch?: (batch: { deleted: number; total: number }) => void | Promise<void>;
}

export interface PruneResult {
  deleted: number;
  batches: number;
  /** request_minutes rows removed (every record of the minute is gone). */
  minutesRemoved: number;
  elapsedMs: number;
}

export const DEFAULT_PRUNE_BATCH = 5000;

/**
 * One batch: the oldest ids below the cutoff (a range of the started_at index, starting where the
 * previous batch ended so dead index entries are not walked again), deleted, counted per minute.
 */
const DELETE_BATCH_SQL = `
  WITH doomed AS (
    SELECT id FROM requests
     WHERE started_at_ms >= $1 AND started_at_ms < $2
     ORDER BY started_at_ms LIMIT $3
  ), gone AS (
    DELETE FROM requests r USING doomed d WHERE r.id = d.id
    RETURNING r.started_at_ms, r.decision, r.would_deny
  )
  SELECT started_at_ms / 60000 AS minute,
         count(*) FILTER (WHERE decision = 'allow') AS allowed,
         count(*) FILTER (WHERE decision = 'deny') AS denied,
         count(*) FILTER (WHERE would_deny) AS would_deny,
         max(started_at_ms) AS newest
    FROM gone GROUP BY 1 ORDER BY 1`;

/** Sorted by minute, as the shippers lock them: two transactions never wait on each other in a circle. */
const ADJUST_MINUTES_SQL = `
  UPDATE request_minutes m
     SET allowed = m.allowed - c.allowed, denied = m.denied - c.denied, would_deny = m.would_deny - c.would_deny
    FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS c(minute, allowed, denied, would_deny)
   WHERE m.minute = c.minute
  RETURNING m.minute, m.allowed + m.denied AS remaining`;

interface MinuteCounts {
  minute: string;
  allowed: string;
  denied: string;
  would_deny: string;
  newest: string;
}

interface BatchOutcome {
  deleted: number;
  /** The newest started_at_ms deleted: where the next batch's index range starts. */
  newestMs: number;
  removed: number;
}

async function pruneBatch(client: PoolClient, fromMs: number, cutoffMs: number, size: number): Promise<BatchOutcome> {
  await client.query('BEGIN');
  try {
    const counted = await client.query<MinuteCounts>(DELETE_BATCH_SQL, [fromMs, cutoffMs, size]);
    const minutes = counted.rows;
    const deleted = minutes.reduce((sum, m) => sum + Number(m.allowed) + Number(m.denied), 0);
    let removed = 0;
    if (minutes.length > 0) {
      const after = await client.query<{ minute: string; remaining: string }>(ADJUST_MINUTES_SQL, [
        minutes.map((m) => m.minute), minutes.map((m) => m.allowed), minutes.map((m) => m.denied), minutes.map((m) => m.would_deny),
      ]);
      const empty = after.rows.filter((r) => Number(r.remaining) <= 0).map((r) => r.minute);
      if (empty.length > 0) {
        const gone = await client.query('DELETE FROM request_minutes WHERE minute = ANY($1::bigint[]) AND allowed + denied <= 0', [empty]);
        removed = gone.rowCount ?? 0;
      }
    }
    await client.query('COMMIT');
    const newestMs = minutes.reduce((max, m) => Math.max(max, Number(m.newest)), fromMs);
    return { deleted, newestMs, removed };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Deletes every record that started before `cutoffMs`, batch by batch, until none is left. */
export async function pruneHistory(pool: Pool, opts: PruneOptions): Promise<PruneResult> {
  const started = performance.now();
  const size = opts.batchSize ?? DEFAULT_PRUNE_BATCH;
  const result: PruneResult = { deleted: 0, batches: 0, minutesRemoved: 0, elapsedMs: 0 };
  await withClient(pool, async (client) => {
    // Rows at the newest deleted instant may remain (the LIMIT can cut through them): the next
    // range starts at that instant, not after it. A record shipped during the prune that started
    // before the point reached stays until the next prune.
    let fromMs = Number.MIN_SAFE_INTEGER;
    for (;;) {
      const batch = await pruneBatch(client, fromMs, opts.cutoffMs, size);
      if (batch.deleted === 0) break;
      result.deleted += batch.deleted;
      result.batches += 1;
      result.minutesRemoved += batch.removed;
      fromMs = batch.newestMs;
      await opts.onBatch?.({ deleted: batch.deleted, total: result.deleted });
    }
  });
  result.elapsedMs = Math.round(performance.now() - started);
  return result;
}
