import type { Pool, PoolClient } from 'pg';
import type { ChainHeadView } from '../admin/routes/audit-head';
import { encodeHeadEntry } from '../audit/log/entry-codec';
import { decodeHeadEntry, readEntryHead, storedHash } from '../audit/log/entry-decode';
import type { ChainHead } from '../audit/log/entry-codec';
import { FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES } from '../audit/log/frame';
import { listSegments } from '../audit/log/segment-files';
import type { LogPosition } from '../audit/log/segment-reader';
import { scanSegment } from '../audit/log/segment-scan';

/**
 * The shared history's copy of each replica's chain (migration 007, issue 17): the log's payloads
 * as written, checkpoints included, numbered per store. The shipper adds a batch's payloads in the
 * transaction that adds its rows, so the copy and the rows never disagree about what was shipped.
 */

/** A batch's payloads, and the chain's head after them (null: none of them carries a hash). */
export interface ChainPart {
  payloads: Buffer[];
  ids: number[];
  head: ChainHead | null;
}

export function chainPart(payloads: Buffer[]): ChainPart {
  const ids: number[] = [];
  let head: ChainHead | null = null;
  for (const payload of payloads) {
    const entryHead = readEntryHead(payload);
    ids.push(entryHead.id);
    const hash = storedHash(payload);
    if (hash !== null) head = { id: entryHead.id, hash: Buffer.from(hash) };
  }
  return { payloads, ids, head };
}

/**
 * A checkpoint payload holding the chain's head just before `position`, for a store whose chain
 * is first copied after some of its rows were shipped (a replica upgraded to this release): the
 * copy starts from it, as a log cut by retention starts from its oldest segment's checkpoint.
 * Read from the segment's own first frame (a checkpoint) and the entries up to `position`. Null
 * when `position` opens a segment (its first payload read is the checkpoint) or nothing is chained.
 */
export function checkpointBefore(dir: string, position: LogPosition): Buffer | null {
  if (position.offset <= SEGMENT_HEADER_BYTES) return null;
  const segment = listSegments(dir).find((s) => s.sequence === position.segment);
  if (segment === undefined) return null;
  let head: ChainHead | null = null;
  let timeMs = 0;
  for (const item of scanSegment(segment.file)) {
    if (item.kind !== 'frame') continue;
    if (item.offset >= position.offset) break;
    let entryHead: ReturnType<typeof readEntryHead>;
    try {
      entryHead = readEntryHead(item.payload);
    } catch {
      continue;
    }
    timeMs = entryHead.timeMs;
    if (entryHead.type === 'head') head = decodeHeadEntry(item.payload);
    else {
      const hash = storedHash(item.payload);
      if (hash !== null) head = { id: entryHead.id, hash: Buffer.from(hash) };
    }
  }
  return head === null ? null : headPayload(head, new Date(timeMs));
}

/** A checkpoint's payload (its frame without the frame header). */
export function headPayload(head: ChainHead, time: Date): Buffer {
  return encodeHeadEntry(head, time).subarray(FRAME_HEADER_BYTES);
}

/**
 * Adds a batch's payloads after the store's last, in the shipper's transaction (the store's row
 * is locked FOR UPDATE there, so `firstSeq` cannot move under it), and moves the store's chain
 * columns. A store whose earlier rows were shipped before the chain was (`shipped_entries` > 0 at
 * its first chained batch) records where verifiable rows begin.
 */
export async function shipChainPart(client: PoolClient, storeId: string, firstSeq: number, part: ChainPart): Promise<void> {
  if (part.payloads.length === 0) return;
  // The payloads as one binary parameter (node-postgres sends a Buffer as binary) cut on the server
  // by their lengths: a bytea[] goes as hex text, twice the bytes and 22% of the ship rate.
  await client.query(
    `INSERT INTO audit_chain (store_id, seq, local_id, entry)
     SELECT $1::uuid, $2::bigint + t.o - 1, t.l, substring($5::bytea FROM (t.e - t.n + 1)::int FOR t.n)
       FROM (SELECT u.l, u.n, u.o, sum(u.n) OVER (ORDER BY u.o) AS e
               FROM unnest($3::bigint[], $4::int[]) WITH ORDINALITY AS u(l, n, o)) AS t`,
    [storeId, firstSeq, part.ids, part.payloads.map((p) => p.length), Buffer.concat(part.payloads)],
  );
  await client.query(
    `UPDATE audit_stores SET
       chain_after_local_id = CASE WHEN chain_entries = 0 AND shipped_entries > 0 THEN last_local_id ELSE chain_after_local_id END,
       chain_entries = chain_entries + $2,
       chain_head_id = COALESCE($3, chain_head_id), chain_hash = COALESCE($4, chain_hash)
     WHERE store_id = $1`,
    [storeId, part.payloads.length, part.head?.id ?? null, part.head?.hash ?? null],
  );
}

/**
 * GET /api/audit/head on `tollgate admin`: each replica's chain head as its copy in the shared
 * history stands (what `audit verify --audit-url` ends at), named by store id, with its node.
 */
export async function shippedHeads(pool: Pool): Promise<ChainHeadView[]> {
  const result = await pool.query<{ store_id: string; node: string; chain_head_id: string; chain_hash: Buffer }>(
    'SELECT store_id, node, chain_head_id, chain_hash FROM audit_stores WHERE chain_hash IS NOT NULL ORDER BY node, store_id',
  );
  return result.rows.map((row) => ({ chain: row.store_id, id: Number(row.chain_head_id), hash: row.chain_hash.toString('hex'), node: row.node }));
}
