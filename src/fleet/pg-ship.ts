import type { Pool, PoolClient } from 'pg';
import { completionParams, openParams } from '../audit/record-params';
import type { AuditCompletion } from '../audit/record-types';
import type { LogPosition } from '../audit/log/segment-reader';
import type { StepPlan } from '../audit/log/index-step';

/**
 * One ship to the shared history: a batch of the local log's entries (paired by planStep, so a
 * record opened and completed within the batch is one row) and the log position after them, in
 * one PostgreSQL transaction. Idempotent whatever crashes or retries happen:
 * - rows are keyed by (store_id, local_id) and inserted with ON CONFLICT DO NOTHING, so a re-sent
 *   open lands once and never undoes a completion;
 * - a completion only fills a row that is still open (`ended_at_ms IS NULL`): the first one wins,
 *   as in the local store;
 * - the position is checked (FOR UPDATE) and moved in the same transaction: a batch that starts
 *   before the stored position (a second shipper of the same store, a retry whose commit did
 *   arrive) is refused as stale and the caller re-reads from the stored position.
 */

export interface StoreIdentity {
  /** The local store's UUID (its `store-id` file): the key of its rows. */
  storeId: string;
  /** The replica's name for people (--node). */
  node: string;
}

export interface ShipBatch {
  /** Where this batch starts in the local log: must be the stored position. */
  from: LogPosition;
  /** Where the next batch starts. */
  next: LogPosition;
  plan: StepPlan;
  /** Entries the batch covers (opens, completions, finished records). */
  entries: number;
  /** The policy version the replica runs now (the console's per-node column). */
  policyVersion: string | null;
}

export type ShipOutcome =
  | { kind: 'shipped'; inserted: number; completed: number }
  /** The stored position differs from `from`: re-read from `position`. */
  | { kind: 'stale'; position: LogPosition };

/** PostgreSQL text cannot hold NUL; hostile clients can send it. It becomes U+FFFD there. */
function pgText(value: string | number | null): string | null {
  if (value === null) return null;
  const text = String(value);
  return text.includes('\u0000') ? text.replace(/\u0000/g, '\uFFFD') : text;
}

/** Registers the store (or refreshes its node name, policy version and last contact). */
export async function touchStore(client: PoolClient | Pool, who: StoreIdentity, policyVersion: string | null, nowMs: number): Promise<void> {
  await client.query(
    `INSERT INTO audit_stores (store_id, node, first_contact_ms, last_contact_ms, policy_version)
     VALUES ($1, $2, $3, $3, $4)
     ON CONFLICT (store_id) DO UPDATE SET node = excluded.node, last_contact_ms = excluded.last_contact_ms,
       policy_version = excluded.policy_version`,
    [who.storeId, pgText(who.node), nowMs, pgText(policyVersion)],
  );
}

/** The stored ship position of a store ({0,0}: nothing shipped yet). */
export async function shippedPosition(pool: Pool, storeId: string): Promise<LogPosition> {
  const result = await pool.query<{ ship_segment: string; ship_offset: string }>(
    'SELECT ship_segment, ship_offset FROM audit_stores WHERE store_id = $1',
    [storeId],
  );
  const row = result.rows[0];
  return row === undefined ? { segment: 0, offset: 0 } : { segment: Number(row.ship_segment), offset: Number(row.ship_offset) };
}

const INSERT_COLUMNS = [
  'local_id', 'started_at_ms', 'ended_at_ms', 'client_ip', 'client_port', 'clients', 'user', 'kind',
  'method', 'scheme', 'host', 'port', 'path', 'resolved_ip', 'decision', 'would_deny', 'rule',
  'rule_source', 'reason', 'status', 'bytes_up', 'bytes_down', 'error', 'policy_version',
] as const;

const COLUMN_TYPES: Record<(typeof INSERT_COLUMNS)[number], string> = {
  local_id: 'bigint', started_at_ms: 'bigint', ended_at_ms: 'bigint', client_ip: 'text', client_port: 'integer',
  clients: 'text', user: 'text', kind: 'text', method: 'text', scheme: 'text', host: 'text', port: 'integer',
  path: 'text', resolved_ip: 'text', decision: 'text', would_deny: 'boolean', rule: 'text', rule_source: 'text',
  reason: 'text', status: 'integer', bytes_up: 'bigint', bytes_down: 'bigint', error: 'text', policy_version: 'text',
};

/** One array per column (unnest makes rows of them: one statement, one round trip per batch). */
function columnArrays(rows: StepPlan['rows']): unknown[][] {
  const arrays: unknown[][] = INSERT_COLUMNS.map(() => []);
  for (const row of rows) {
    const open = openParams(row.open);
    const done = row.completion === null ? null : completionParams(row.completion);
    const values: Record<string, string | number | boolean | null> = {
      ...open,
      local_id: row.id,
      would_deny: row.open.wouldDeny,
      ended_at_ms: done?.ended_at_ms ?? null,
      status: done?.status ?? null,
      bytes_up: done?.bytes_up ?? 0,
      bytes_down: done?.bytes_down ?? 0,
      error: done?.error ?? null,
    };
    INSERT_COLUMNS.forEach((column, i) => {
      const value = values[column];
      arrays[i].push(typeof value === 'string' ? pgText(value) : value);
    });
  }
  return arrays;
}

const INSERT_SQL = `INSERT INTO requests (store_id, node, ${INSERT_COLUMNS.map((c) => (c === 'user' ? '"user"' : c)).join(', ')})
  SELECT $1::uuid, $2::text, u.local_id, u.started_at_ms, u.ended_at_ms, u.client_ip, u.client_port,
    ARRAY(SELECT jsonb_array_elements_text(u.clients::jsonb)), u."user", u.kind, u.method, u.scheme, u.host,
    u.port, u.path, u.resolved_ip, u.decision, u.would_deny, u.rule, u.rule_source, u.reason, u.status,
    u.bytes_up, u.bytes_down, u.error, u.policy_version
  FROM unnest(${INSERT_COLUMNS.map((c, i) => `$${i + 3}::${COLUMN_TYPES[c]}[]`).join(', ')})
    AS u(${INSERT_COLUMNS.map((c) => (c === 'user' ? '"user"' : c)).join(', ')})
  ON CONFLICT (store_id, local_id) DO NOTHING
  RETURNING id, local_id, started_at_ms, host, client_ip, decision, would_deny`;

interface InsertedRow {
  id: string;
  local_id: string;
  started_at_ms: string;
  host: string | null;
  client_ip: string;
  decision: 'allow' | 'deny';
  would_deny: boolean;
}

const COMPLETE_SQL = `UPDATE requests AS r
  SET ended_at_ms = c.ended_at_ms, status = c.status, bytes_up = c.bytes_up, bytes_down = c.bytes_down, error = c.error
  FROM unnest($2::bigint[], $3::bigint[], $4::integer[], $5::bigint[], $6::bigint[], $7::text[])
    AS c(local_id, ended_at_ms, status, bytes_up, bytes_down, error)
  WHERE r.store_id = $1 AND r.local_id = c.local_id AND r.ended_at_ms IS NULL`;

async function applyCompletions(client: PoolClient, storeId: string, completions: ReadonlyArray<readonly [number, AuditCompletion]>): Promise<number> {
  if (completions.length === 0) return 0;
  // One completion per id: the first wins (planStep keeps log order).
  const seen = new Set<number>();
  const cols: unknown[][] = [[], [], [], [], [], []];
  for (const [id, completion] of completions) {
    if (seen.has(id)) continue;
    seen.add(id);
    const p = completionParams(completion);
    cols[0].push(id);
    cols[1].push(p.ended_at_ms);
    cols[2].push(p.status);
    cols[3].push(p.bytes_up);
    cols[4].push(p.bytes_down);
    cols[5].push(pgText(p.error));
  }
  const result = await client.query(COMPLETE_SQL, [storeId, ...cols]);
  return result.rowCount ?? 0;
}

/** Side tables for the rows this batch inserted: one upsert per key, keys sorted (no deadlock between shippers). */
async function updateSideTables(client: PoolClient, inserted: readonly InsertedRow[]): Promise<void> {
  if (inserted.length === 0) return;
  const minutes = new Map<number, [number, number, number]>();
  const hosts = new Map<string, [number, number]>();
  const pairs = new Map<string, [string, string, number, number]>();
  for (const row of inserted) {
    const at = Number(row.started_at_ms);
    const id = Number(row.id);
    const minute = Math.floor(at / 60_000);
    const counts = minutes.get(minute) ?? [0, 0, 0];
    if (row.decision === 'allow') counts[0] += 1;
    else counts[1] += 1;
    if (row.would_deny) counts[2] += 1;
    minutes.set(minute, counts);
    if (row.host === null) continue;
    const firstHost = hosts.get(row.host);
    if (firstHost === undefined || at < firstHost[1]) hosts.set(row.host, [id, at]);
    const key = `${row.client_ip}\u0000${row.host}`;
    const firstPair = pairs.get(key);
    if (firstPair === undefined || at < firstPair[3]) pairs.set(key, [row.client_ip, row.host, id, at]);
  }
  const minuteKeys = [...minutes.keys()].sort((a, b) => a - b);
  await client.query(
    `INSERT INTO request_minutes (minute, allowed, denied, would_deny)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[])
     ON CONFLICT (minute) DO UPDATE SET allowed = request_minutes.allowed + excluded.allowed,
       denied = request_minutes.denied + excluded.denied, would_deny = request_minutes.would_deny + excluded.would_deny`,
    [minuteKeys, minuteKeys.map((m) => minutes.get(m)?.[0]), minuteKeys.map((m) => minutes.get(m)?.[1]), minuteKeys.map((m) => minutes.get(m)?.[2])],
  );
  if (hosts.size > 0) {
    const names = [...hosts.keys()].sort();
    await client.query(
      `INSERT INTO first_seen_hosts (host, first_id, first_at_ms)
       SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
       ON CONFLICT (host) DO UPDATE SET first_id = excluded.first_id, first_at_ms = excluded.first_at_ms
         WHERE excluded.first_at_ms < first_seen_hosts.first_at_ms`,
      [names, names.map((h) => hosts.get(h)?.[0]), names.map((h) => hosts.get(h)?.[1])],
    );
  }
  if (pairs.size > 0) {
    const keys = [...pairs.keys()].sort();
    const rows = keys.map((k) => pairs.get(k) as [string, string, number, number]);
    await client.query(
      `INSERT INTO first_seen_client_hosts (client_ip, host, first_id, first_at_ms)
       SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
       ON CONFLICT (client_ip, host) DO UPDATE SET first_id = excluded.first_id, first_at_ms = excluded.first_at_ms
         WHERE excluded.first_at_ms < first_seen_client_hosts.first_at_ms`,
      [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2]), rows.map((r) => r[3])],
    );
  }
}

/** Ships one batch; see the file comment for what makes it idempotent. */
export async function shipBatch(pool: Pool, who: StoreIdentity, batch: ShipBatch, nowMs: number = Date.now()): Promise<ShipOutcome> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    try {
      await touchStore(client, who, batch.policyVersion, nowMs);
      const stored = await client.query<{ ship_segment: string; ship_offset: string }>(
        'SELECT ship_segment, ship_offset FROM audit_stores WHERE store_id = $1 FOR UPDATE',
        [who.storeId],
      );
      const row = stored.rows[0];
      const position = { segment: Number(row.ship_segment), offset: Number(row.ship_offset) };
      if (position.segment !== batch.from.segment || position.offset !== batch.from.offset) {
        await client.query('ROLLBACK');
        return { kind: 'stale', position };
      }
      let inserted: InsertedRow[] = [];
      let completedInPlace = 0;
      const { rows, completions } = batch.plan;
      if (rows.length > 0) {
        const result = await client.query<InsertedRow>(INSERT_SQL, [who.storeId, pgText(who.node), ...columnArrays(rows)]);
        inserted = result.rows;
        // A row already there (shipped before, still open) takes the completion this batch carries.
        const landed = new Set(inserted.map((r) => Number(r.local_id)));
        const late = rows.filter((r) => !landed.has(r.id) && r.completion !== null).map((r) => [r.id, r.completion as AuditCompletion] as const);
        completedInPlace = await applyCompletions(client, who.storeId, late);
      }
      const completed = completedInPlace + (await applyCompletions(client, who.storeId, completions));
      await updateSideTables(client, inserted);
      const newest = rows.at(-1);
      await client.query(
        `UPDATE audit_stores SET ship_segment = $2, ship_offset = $3, shipped_entries = shipped_entries + $4,
           last_local_id = COALESCE($5, last_local_id), last_record_ms = COALESCE($6, last_record_ms)
         WHERE store_id = $1`,
        [who.storeId, batch.next.segment, batch.next.offset, batch.entries, newest?.id ?? null, newest?.open.startedAt.getTime() ?? null],
      );
      await client.query('COMMIT');
      return { kind: 'shipped', inserted: inserted.length, completed };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  } finally {
    client.release();
  }
}


