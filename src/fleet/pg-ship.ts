import type { Pool, PoolClient } from 'pg';
import { completionParams, openParams } from '../audit/record-params';
import type { AuditCompletion, AuditOpen } from '../audit/record-types';
import type { LogPosition } from '../audit/log/segment-reader';
import type { StepPlan } from '../audit/log/index-step';
import { inTransaction } from './pg-client';
import { pgText } from './pg-text';
import { shipChainPart } from './pg-chain';
import type { ChainPart } from './pg-chain';

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
  /** The batch's payloads as written, for the chain's copy (pg-chain.ts); absent: none. */
  chain?: ChainPart;
}

export type ShipOutcome =
  | { kind: 'shipped'; inserted: number; completed: number }
  /** The stored position differs from `from`: re-read from `position`, with the chain's copy `chainEntries` long (as shipStart says). */
  | { kind: 'stale'; position: LogPosition; chainEntries: number };

/** A nullable text for PostgreSQL (pg-text.ts). */
function pgNullableText(value: string | number | null): string | null {
  return value === null ? null : pgText(String(value));
}

/** Registers the store (or refreshes its node name, policy version and last contact). */
export async function touchStore(client: PoolClient | Pool, who: StoreIdentity, policyVersion: string | null, nowMs: number): Promise<void> {
  await client.query(
    `INSERT INTO audit_stores (store_id, node, first_contact_ms, last_contact_ms, policy_version)
     VALUES ($1, $2, $3, $3, $4)
     ON CONFLICT (store_id) DO UPDATE SET node = excluded.node, last_contact_ms = excluded.last_contact_ms,
       policy_version = excluded.policy_version`,
    [who.storeId, pgText(who.node), nowMs, pgNullableText(policyVersion)],
  );
}

/** The stored ship position of a store ({0,0}: nothing shipped yet). */
export async function shippedPosition(pool: Pool, storeId: string): Promise<LogPosition> {
  return (await shipStart(pool, storeId)).position;
}

/**
 * Where a store's shipper starts: the stored position, and how many entries of its chain
 * PostgreSQL holds (0: the next batch starts the chain's copy, pg-chain.ts).
 */
export async function shipStart(pool: Pool, storeId: string): Promise<{ position: LogPosition; chainEntries: number }> {
  const result = await pool.query<{ ship_segment: string; ship_offset: string; chain_entries: string }>(
    'SELECT ship_segment, ship_offset, chain_entries FROM audit_stores WHERE store_id = $1',
    [storeId],
  );
  const row = result.rows[0];
  if (row === undefined) return { position: { segment: 0, offset: 0 }, chainEntries: 0 };
  return { position: { segment: Number(row.ship_segment), offset: Number(row.ship_offset) }, chainEntries: Number(row.chain_entries) };
}

export const INSERT_COLUMNS = [
  'local_id', 'started_at_ms', 'ended_at_ms', 'client_ip', 'client_port', 'clients', 'user', 'kind',
  'method', 'scheme', 'host', 'port', 'path', 'resolved_ip', 'decision', 'would_deny', 'rule',
  'rule_source', 'reason', 'status', 'bytes_up', 'bytes_down', 'error', 'policy_version', 'peer_ip', 'sni',
  // The replica's id of the tunnel's record (migration 006): readers map it to the shared id.
  'tunnel_local_id',
] as const;

const COLUMN_TYPES: Record<(typeof INSERT_COLUMNS)[number], string> = {
  local_id: 'bigint', started_at_ms: 'bigint', ended_at_ms: 'bigint', client_ip: 'text', client_port: 'integer',
  clients: 'text[]', user: 'text', kind: 'text', method: 'text', scheme: 'text', host: 'text', port: 'integer',
  path: 'text', resolved_ip: 'text', decision: 'text', would_deny: 'boolean', rule: 'text', rule_source: 'text',
  reason: 'text', status: 'integer', bytes_up: 'bigint', bytes_down: 'bigint', error: 'text', policy_version: 'text',
  peer_ip: 'text', sni: 'text', tunnel_local_id: 'bigint',
};

/** A PostgreSQL array literal of texts: every element double-quoted, backslash and quote escaped. */
export function textArrayLiteral(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`).join(',')}}`;
}

/**
 * A row's values in INSERT_COLUMNS order, as the shipper writes them and `audit verify
 * --audit-url` expects to find them (pg-verify.ts): texts as PostgreSQL can hold them (pg-text.ts),
 * clients as an array. Without a completion, the completion's columns are those of an open row.
 */
export function rowValues(id: number, open: AuditOpen, completion: AuditCompletion | null): unknown[] {
  const o = openParams(open);
  const done = completion === null ? null : completionParams(completion);
  const values: unknown[] = [
    id, o.started_at_ms, done?.ended_at_ms ?? null, o.client_ip, o.client_port, open.clients, o.user,
    o.kind, o.method, o.scheme, o.host, o.port, o.path, o.resolved_ip, o.decision, open.wouldDeny, o.rule, o.rule_source,
    o.reason, done?.status ?? null, done?.bytes_up ?? 0, done?.bytes_down ?? 0, done?.error ?? null, o.policy_version,
    o.peer_ip, o.sni, o.tunnel_id,
  ];
  // PostgreSQL text cannot hold NUL (pg-text.ts).
  return values.map((value) => (typeof value === 'string' ? pgText(value) : Array.isArray(value) ? value.map((v: string) => pgText(v)) : value));
}

/** Where the clients array sits in rowValues. */
const CLIENTS_AT = INSERT_COLUMNS.indexOf('clients');

/**
 * The batch's rows as one JSON parameter, one positional array per row (INSERT_COLUMNS order): a
 * batch is one statement and one round trip. JSON.stringify is native; the server reads it with
 * jsonb_array_elements (jsonb is parsed once, where json re-parses the text for every `->>`). The
 * first version's 24 text arrays through unnest shipped well under half as many entries a second
 * (docs/performance.md, "Measurements behind the code"). Texts were made storable per string
 * (rowValues), before JSON escapes them: a replace on the JSON text would also hit a client's
 * literal backslash-u-0000.
 */
function rowsJson(rows: StepPlan['rows']): string {
  const out: unknown[] = [];
  for (const row of rows) {
    const values = rowValues(row.id, row.open, row.completion);
    values[CLIENTS_AT] = textArrayLiteral(values[CLIENTS_AT] as string[]);
    out.push(values);
  }
  return JSON.stringify(out);
}

/** `user` is a reserved word in PostgreSQL: as a column name it is quoted. */
const quoted = (c: string): string => (c === 'user' ? '"user"' : c);

/** INSERT_COLUMNS as SQL names, in order (the INSERT below, and what pg-verify.ts reads back). */
export const INSERT_COLUMN_LIST = INSERT_COLUMNS.map(quoted).join(', ');

/**
 * The rows and their side tables in one statement. The side tables read what the INSERT returned,
 * and a row already there is not returned, so nothing counts twice; they are grouped on the server
 * and upserted in key order, so two shippers touching the same minutes or hosts cannot deadlock.
 * A minute's id range only grows (LEAST/GREATEST): it must hold every record of the minute. The
 * hourly rollups (migration 003) take a row per hour and destination, client address or group
 * in the batch: a batch of 2,000 records spans an hour or two, so a few hundred small upserts.
 * Groups are read from the batch's own rows (u), not RETURNING: the shipper role may read back
 * only the columns docs/operations.md grants it.
 * Only the inserted local ids come back: a row that was already there may need this batch's
 * completion.
 */
const INSERT_SQL = `WITH u AS (
    SELECT ${INSERT_COLUMNS.map((c, i) => `(e->>${i})::${COLUMN_TYPES[c]} AS ${quoted(c)}`).join(', ')}
    FROM jsonb_array_elements($3::jsonb) AS e
  ), ins AS (
    INSERT INTO requests (store_id, node, ${INSERT_COLUMN_LIST})
    SELECT $1::uuid, $2::text, ${INSERT_COLUMNS.map((c) => `u.${quoted(c)}`).join(', ')} FROM u
    ON CONFLICT (store_id, local_id) DO NOTHING
    RETURNING id, local_id, started_at_ms, host, client_ip, decision, would_deny
  ), minutes AS (
    INSERT INTO request_minutes (minute, first_id, last_id, allowed, denied, would_deny)
    SELECT started_at_ms / 60000, min(id), max(id), count(*) FILTER (WHERE decision = 'allow'),
      count(*) FILTER (WHERE decision = 'deny'), count(*) FILTER (WHERE would_deny)
    FROM ins GROUP BY 1 ORDER BY 1
    ON CONFLICT (minute) DO UPDATE SET first_id = LEAST(request_minutes.first_id, excluded.first_id),
      last_id = GREATEST(request_minutes.last_id, excluded.last_id), allowed = request_minutes.allowed + excluded.allowed,
      denied = request_minutes.denied + excluded.denied, would_deny = request_minutes.would_deny + excluded.would_deny
  ), hour_hosts AS (
    INSERT INTO request_hour_hosts (hour, host, allowed, denied, would_deny)
    SELECT started_at_ms / 3600000, host, count(*) FILTER (WHERE decision = 'allow'), count(*) FILTER (WHERE decision = 'deny'),
      count(*) FILTER (WHERE would_deny)
    FROM ins WHERE host IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (hour, host) DO UPDATE SET allowed = request_hour_hosts.allowed + excluded.allowed,
      denied = request_hour_hosts.denied + excluded.denied, would_deny = request_hour_hosts.would_deny + excluded.would_deny
  ), hour_clients AS (
    INSERT INTO request_hour_clients (hour, client_ip, requests)
    SELECT started_at_ms / 3600000, client_ip, count(*) FROM ins GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (hour, client_ip) DO UPDATE SET requests = request_hour_clients.requests + excluded.requests
  ), hour_groups AS (
    INSERT INTO request_hour_groups (hour, client_group, requests)
    SELECT ins.started_at_ms / 3600000, g.client_group, count(*)
    FROM ins JOIN u ON u.local_id = ins.local_id CROSS JOIN LATERAL (SELECT DISTINCT unnest(u.clients) AS client_group) AS g
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (hour, client_group) DO UPDATE SET requests = request_hour_groups.requests + excluded.requests
  ), hosts AS (
    INSERT INTO first_seen_hosts (host, first_id, first_at_ms)
    SELECT DISTINCT ON (host) host, id, started_at_ms FROM ins WHERE host IS NOT NULL ORDER BY host, started_at_ms, id
    ON CONFLICT (host) DO UPDATE SET first_id = excluded.first_id, first_at_ms = excluded.first_at_ms
      WHERE excluded.first_at_ms < first_seen_hosts.first_at_ms
  ), pairs AS (
    INSERT INTO first_seen_client_hosts (client_ip, host, first_id, first_at_ms)
    SELECT DISTINCT ON (client_ip, host) client_ip, host, id, started_at_ms FROM ins WHERE host IS NOT NULL
    ORDER BY client_ip, host, started_at_ms, id
    ON CONFLICT (client_ip, host) DO UPDATE SET first_id = excluded.first_id, first_at_ms = excluded.first_at_ms
      WHERE excluded.first_at_ms < first_seen_client_hosts.first_at_ms
  )
  SELECT local_id FROM ins`;

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
    cols[5].push(pgNullableText(p.error));
  }
  const result = await client.query(COMPLETE_SQL, [storeId, ...cols]);
  return result.rowCount ?? 0;
}

/**
 * The advisory lock that keeps id order and commit order one (any constant every tollgate shares).
 * Prune takes it too before it adjusts the side tables, so no two writers of those ever wait on
 * each other's rows in a circle.
 */
export const ID_ORDER_LOCK = 0x73686970; // "ship"

/** Ships one batch; see the file comment for what makes it idempotent. */
export async function shipBatch(pool: Pool, who: StoreIdentity, batch: ShipBatch, nowMs: number = Date.now()): Promise<ShipOutcome> {
  return inTransaction<ShipOutcome>(pool, async (client, rollbackOnly) => {
    await touchStore(client, who, batch.policyVersion, nowMs);
    const stored = await client.query<{ ship_segment: string; ship_offset: string; chain_entries: string }>(
      'SELECT ship_segment, ship_offset, chain_entries FROM audit_stores WHERE store_id = $1 FOR UPDATE',
      [who.storeId],
    );
    const row = stored.rows[0];
    const position = { segment: Number(row.ship_segment), offset: Number(row.ship_offset) };
    if (position.segment !== batch.from.segment || position.offset !== batch.from.offset) {
      rollbackOnly();
      return { kind: 'stale', position, chainEntries: Number(row.chain_entries) };
    }
    // Before the rows' UPDATE below moves last_local_id: the chain's copy notes where it began.
    if (batch.chain !== undefined) await shipChainPart(client, who.storeId, Number(row.chain_entries), batch.chain);
    const { rows, completions } = batch.plan;
    let completed = await applyCompletions(client, who.storeId, completions);
    let inserted = 0;
    if (rows.length > 0) {
      // Ids are handed out by the INSERT; shippers must commit them in that order, or a live
      // view that read newest_id = 500 never sees a 450 committed a moment later. The lock is
      // held from here to COMMIT, so only this tail of the transaction is one at a time.
      await client.query('SELECT pg_advisory_xact_lock($1)', [ID_ORDER_LOCK]);
      const result = await client.query<{ local_id: string }>(INSERT_SQL, [who.storeId, pgText(who.node), rowsJson(rows)]);
      inserted = result.rows.length;
      // A row already there (shipped before, still open) takes the completion this batch carries.
      const landed = new Set(result.rows.map((r) => Number(r.local_id)));
      const late = rows.filter((r) => !landed.has(r.id) && r.completion !== null).map((r) => [r.id, r.completion as AuditCompletion] as const);
      completed += await applyCompletions(client, who.storeId, late);
    }
    const newest = rows.at(-1);
    await client.query(
      `UPDATE audit_stores SET ship_segment = $2, ship_offset = $3, shipped_entries = shipped_entries + $4,
         last_local_id = COALESCE($5, last_local_id), last_record_ms = COALESCE($6, last_record_ms)
       WHERE store_id = $1`,
      [who.storeId, batch.next.segment, batch.next.offset, batch.entries, newest?.id ?? null, newest?.open.startedAt.getTime() ?? null],
    );
    return { kind: 'shipped', inserted, completed };
  });
}
