import type { Pool, PoolClient } from 'pg';
import { inTransaction, transaction, withClient } from './pg-client';
import { ID_ORDER_LOCK } from './pg-ship';
import { headPayload } from './pg-chain';
import { ZERO_HASH } from '../audit/log/entry-codec';
import { readEntryHead, storedHash } from '../audit/log/entry-decode';

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
 * request_minutes and the hourly rollups (request_hour_*, migration 003) stay equal to the records
 * present: each batch subtracts exactly what it deleted from the minutes and hours those records
 * started in, in the same transaction, and removes a row whose counts reach zero. A minute's id
 * range is left as it was (wider than what remains only widens a walk). So the minute and hour
 * the cutoff falls in are adjusted, not dropped, and a late record shipped into an old minute
 * while prune runs is counted right either way.
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
  /** Entries of the chains' copy cut with the records (cutChains). */
  chainEntriesRemoved: number;
  elapsedMs: number;
}

export const DEFAULT_PRUNE_BATCH = 5000;

/**
 * One batch: the oldest ids below the cutoff (a range of the started_at index, starting where the
 * previous batch ended so dead index entries are not walked again), deleted, and counted as the
 * side tables count them: per minute, and per hour and destination, client address and group.
 * `gone` is read by every branch but computed once (a CTE with side effects always is).
 */
const DELETE_BATCH_SQL = `
  WITH doomed AS (
    SELECT id FROM requests
     WHERE started_at_ms >= $1 AND started_at_ms < $2
     ORDER BY started_at_ms LIMIT $3
  ), gone AS (
    DELETE FROM requests r USING doomed d WHERE r.id = d.id
    RETURNING r.started_at_ms, r.decision, r.would_deny, r.host, r.client_ip, r.clients
  ), keyed AS (
    SELECT 'minute' AS side, started_at_ms / 60000 AS bucket, '' AS key, decision, would_deny, started_at_ms FROM gone
    UNION ALL SELECT 'host', started_at_ms / 3600000, host, decision, would_deny, started_at_ms FROM gone WHERE host IS NOT NULL
    UNION ALL SELECT 'client', started_at_ms / 3600000, client_ip, decision, would_deny, started_at_ms FROM gone
    UNION ALL SELECT 'group', gone.started_at_ms / 3600000, g.client_group, decision, would_deny, started_at_ms
      FROM gone CROSS JOIN LATERAL (SELECT DISTINCT unnest(gone.clients) AS client_group) AS g
  )
  SELECT side, bucket, key,
         count(*) FILTER (WHERE decision = 'allow') AS allowed,
         count(*) FILTER (WHERE decision = 'deny') AS denied,
         count(*) FILTER (WHERE would_deny) AS would_deny,
         max(started_at_ms) AS newest
    FROM keyed GROUP BY side, bucket, key`;

/**
 * Subtracts a batch's counts. Taken under the shippers' advisory lock (pg-ship.ts ID_ORDER_LOCK):
 * a shipper upserts these rows only while holding it, so prune and shippers never hold some of
 * these rows each and wait for the other's.
 */
const ADJUST_SQL = `
  WITH minutes AS (
    UPDATE request_minutes m
       SET allowed = m.allowed - c.allowed, denied = m.denied - c.denied, would_deny = m.would_deny - c.would_deny
      FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS c(minute, allowed, denied, would_deny)
     WHERE m.minute = c.minute
    RETURNING 1
  ), hosts AS (
    UPDATE request_hour_hosts h
       SET allowed = h.allowed - c.allowed, denied = h.denied - c.denied, would_deny = h.would_deny - c.would_deny
      FROM unnest($5::bigint[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[]) AS c(hour, host, allowed, denied, would_deny)
     WHERE h.hour = c.hour AND h.host = c.host
    RETURNING 1
  ), clients AS (
    UPDATE request_hour_clients h SET requests = h.requests - c.requests
      FROM unnest($10::bigint[], $11::text[], $12::bigint[]) AS c(hour, client_ip, requests)
     WHERE h.hour = c.hour AND h.client_ip = c.client_ip
    RETURNING 1
  ), groups AS (
    UPDATE request_hour_groups h SET requests = h.requests - c.requests
      FROM unnest($13::bigint[], $14::text[], $15::bigint[]) AS c(hour, client_group, requests)
     WHERE h.hour = c.hour AND h.client_group = c.client_group
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM minutes) + (SELECT count(*) FROM hosts) + (SELECT count(*) FROM clients) + (SELECT count(*) FROM groups) AS n`;

/** Rows whose counts reached zero: no record of theirs is left. A later statement sees the updates. */
const DROP_EMPTY_SQL = `
  WITH minutes AS (
    DELETE FROM request_minutes WHERE minute = ANY($1::bigint[]) AND allowed + denied <= 0 RETURNING 1
  ), hosts AS (
    DELETE FROM request_hour_hosts WHERE hour = ANY($2::bigint[]) AND allowed + denied <= 0
  ), clients AS (
    DELETE FROM request_hour_clients WHERE hour = ANY($2::bigint[]) AND requests <= 0
  ), groups AS (
    DELETE FROM request_hour_groups WHERE hour = ANY($2::bigint[]) AND requests <= 0
  )
  SELECT count(*) AS removed FROM minutes`;

interface SideCounts {
  side: 'minute' | 'host' | 'client' | 'group';
  bucket: string;
  key: string;
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

/** The ADJUST_SQL parameters: one array per column, per side table. */
function adjustParams(rows: readonly SideCounts[]): unknown[] {
  const of = (side: SideCounts['side']): SideCounts[] => rows.filter((r) => r.side === side);
  const total = (r: SideCounts): string => String(Number(r.allowed) + Number(r.denied));
  const [minutes, hosts, clients, groups] = [of('minute'), of('host'), of('client'), of('group')];
  return [
    minutes.map((r) => r.bucket), minutes.map((r) => r.allowed), minutes.map((r) => r.denied), minutes.map((r) => r.would_deny),
    hosts.map((r) => r.bucket), hosts.map((r) => r.key), hosts.map((r) => r.allowed), hosts.map((r) => r.denied), hosts.map((r) => r.would_deny),
    clients.map((r) => r.bucket), clients.map((r) => r.key), clients.map(total),
    groups.map((r) => r.bucket), groups.map((r) => r.key), groups.map(total),
  ];
}

async function pruneBatch(client: PoolClient, fromMs: number, cutoffMs: number, size: number): Promise<BatchOutcome> {
  return transaction(client, async () => {
    const counted = await client.query<SideCounts>(DELETE_BATCH_SQL, [fromMs, cutoffMs, size]);
    const minutes = counted.rows.filter((r) => r.side === 'minute');
    const deleted = minutes.reduce((sum, m) => sum + Number(m.allowed) + Number(m.denied), 0);
    let removed = 0;
    if (minutes.length > 0) {
      await client.query('SELECT pg_advisory_xact_lock($1)', [ID_ORDER_LOCK]);
      await client.query(ADJUST_SQL, adjustParams(counted.rows));
      const hours = [...new Set(counted.rows.filter((r) => r.side !== 'minute').map((r) => r.bucket))];
      const gone = await client.query<{ removed: string }>(DROP_EMPTY_SQL, [minutes.map((m) => m.bucket), hours]);
      removed = Number(gone.rows[0].removed);
    }
    const newestMs = minutes.reduce((max, m) => Math.max(max, Number(m.newest)), fromMs);
    return { deleted, newestMs, removed };
  });
}

/** Deletes every record that started before `cutoffMs`, batch by batch, until none is left. */
export async function pruneHistory(pool: Pool, opts: PruneOptions): Promise<PruneResult> {
  const started = performance.now();
  const size = opts.batchSize ?? DEFAULT_PRUNE_BATCH;
  const result: PruneResult = { deleted: 0, batches: 0, minutesRemoved: 0, chainEntriesRemoved: 0, elapsedMs: 0 };
  // Before any row goes: a verify running meanwhile takes a record missing from before the cut as
  // pruned, not deleted (pg-verify.ts); cutChains moves chain_cut_seq on to the copy's end after.
  await markCut(pool, opts.cutoffMs);
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
  result.chainEntriesRemoved = await cutChains(pool, opts.cutoffMs, size);
  result.elapsedMs = Math.round(performance.now() - started);
  return result;
}

/** Every store's prune cut, as it stands before this prune deletes (see cutChains). */
async function markCut(pool: Pool, cutoffMs: number): Promise<void> {
  await pool.query(
    `UPDATE audit_stores SET chain_cut_ms = GREATEST(COALESCE(chain_cut_ms, $1), $1), chain_cut_seq = chain_entries
      WHERE chain_entries > 0`,
    [cutoffMs],
  );
}

/**
 * After the records are gone, each store's copy of its chain (audit_chain, migration 007) is cut
 * where its oldest kept record begins, so the history stays verifiable from there, as a local log
 * cut by retention does: the entry just before the cut becomes a checkpoint of the chain's head
 * at that point (of zeros when the chain had not begun there), and every entry before it is
 * deleted, `batchSize` at a time. Each step holds the store's row (FOR UPDATE, as its shipper
 * does), so it never interleaves with a batch being added. The store's chain_cut_ms and
 * chain_cut_seq (the copy's length when it was cut) tell `audit verify` which missing records are
 * gone by design: those whose entry is before chain_cut_seq and that started before chain_cut_ms.
 */
async function cutChains(pool: Pool, cutoffMs: number, batchSize: number): Promise<number> {
  const stores = await pool.query<{ store_id: string }>('SELECT store_id FROM audit_stores WHERE chain_entries > 0 ORDER BY store_id');
  let removed = 0;
  for (const { store_id: storeId } of stores.rows) {
    let at: CutPosition | null = null;
    for (;;) {
      const step: CutStep = await inTransaction(pool, (client) => cutStep(client, storeId, cutoffMs, batchSize, at));
      removed += step.deleted;
      at = step.at;
      if (step.deleted === 0) break;
    }
  }
  return removed;
}

/** Where a store's cut stands, found in its first step and carried to the next. */
interface CutPosition {
  /** The oldest kept record's first entry (with no record kept, the copy's last entry): the cut ends before it. */
  keepFrom: number;
  /** The copy's first seq (carried so the deleted index entries are not walked again); null: the copy is empty. */
  firstSeq: number | null;
}

interface CutStep {
  deleted: number;
  /** Null when nothing is to be cut. */
  at: CutPosition | null;
}

/**
 * A store's cut, found once at its first step, the store row held: its cut marks (chain_cut_seq:
 * the copy's length now), and where the oldest kept record's entries begin. Entries a shipper adds
 * after this are newer than the cut, so later steps need not look again. Null: a kept record has
 * no entry (a row the chain never made); verify reports it, and prune cuts nothing.
 */
async function findCut(client: PoolClient, storeId: string, cutoffMs: number, store: { chain_entries: string; after: string }): Promise<CutPosition | null> {
  await client.query(
    'UPDATE audit_stores SET chain_cut_ms = GREATEST(COALESCE(chain_cut_ms, $2), $2), chain_cut_seq = chain_entries WHERE store_id = $1',
    [storeId, cutoffMs],
  );
  const oldest = await client.query<{ local_id: string | null }>(
    'SELECT min(local_id) AS local_id FROM requests WHERE store_id = $1 AND local_id > $2',
    [storeId, store.after],
  );
  const oldestKept = oldest.rows[0].local_id;
  const first = await client.query<{ seq: string | null }>('SELECT min(seq) AS seq FROM audit_chain WHERE store_id = $1', [storeId]);
  const firstSeq = first.rows[0].seq === null ? null : Number(first.rows[0].seq);
  if (oldestKept === null) return { keepFrom: Number(store.chain_entries), firstSeq };
  // Walked along the primary key from the copy's start (audit_chain has no local_id index): once per store.
  const kept = await client.query<{ seq: string }>(
    'SELECT seq FROM audit_chain WHERE store_id = $1 AND seq >= $3 AND local_id = $2 ORDER BY seq LIMIT 1',
    [storeId, oldestKept, firstSeq ?? 0],
  );
  return kept.rows[0] === undefined ? null : { keepFrom: Number(kept.rows[0].seq), firstSeq };
}

/** One step of a store's cut: at most `batchSize` entries before the kept record go. */
async function cutStep(client: PoolClient, storeId: string, cutoffMs: number, batchSize: number, carried: CutPosition | null): Promise<CutStep> {
  // Held as its shipper holds it, so a step never interleaves with a batch being added.
  const store = await client.query<{ chain_entries: string; after: string }>(
    'SELECT chain_entries, COALESCE(chain_after_local_id, -1) AS after FROM audit_stores WHERE store_id = $1 FOR UPDATE',
    [storeId],
  );
  const at = carried ?? await findCut(client, storeId, cutoffMs, store.rows[0]);
  if (at === null || at.firstSeq === null) return { deleted: 0, at };
  const { keepFrom, firstSeq } = at;
  // The new first entry: the one right before the kept record, at most a batch further on.
  const to = Math.min(keepFrom - 1, firstSeq + batchSize);
  if (to <= firstSeq) return { deleted: 0, at };
  const entry = await client.query<{ entry: Buffer }>('SELECT entry FROM audit_chain WHERE store_id = $1 AND seq = $2', [storeId, to]);
  const payload = entry.rows[0]?.entry;
  if (payload !== undefined) {
    const head = readEntryHead(payload);
    if (head.type !== 'head') {
      // An entry written before the chain began: the chain starts after it, from zeros.
      const hash = storedHash(payload) ?? ZERO_HASH;
      await client.query('UPDATE audit_chain SET entry = $3 WHERE store_id = $1 AND seq = $2', [storeId, to, headPayload({ id: head.id, hash }, new Date(head.timeMs))]);
    }
  }
  const gone = await client.query('DELETE FROM audit_chain WHERE store_id = $1 AND seq >= $2 AND seq < $3', [storeId, firstSeq, to]);
  return { deleted: gone.rowCount ?? 0, at: { keepFrom, firstSeq: to } };
}
