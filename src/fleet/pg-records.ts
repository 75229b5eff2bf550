import type { Pool } from 'pg';
import { rowToJson } from '../audit/query';
import type { RequestRow } from '../audit/query';
import type { AuditRecordJson } from '../audit/record-types';

/**
 * Records of the shared history as the API returns them: PostgreSQL's row converted to the
 * SQLite row shape, then the one mapping (query.ts rowToJson), so both engines answer alike.
 * `clients` leaves PostgreSQL as JSON text and `would_deny` as 0/1, as SQLite stores them.
 * `tunnel_id` is the shared history's id of the tunnel's row, found by the replica's own id for
 * it (migration 006) through the (store_id, local_id) key: null while that row has not arrived,
 * and once prune has removed it.
 */
export const PG_RECORD_COLUMNS = `id, started_at_ms, ended_at_ms, client_ip, client_port, peer_ip, to_json(clients)::text AS clients,
  "user", kind, method, scheme, host, port, path, resolved_ip, sni,
  (SELECT t.id FROM requests AS t WHERE t.store_id = requests.store_id AND t.local_id = requests.tunnel_local_id) AS tunnel_id,
  decision, would_deny::int AS would_deny, rule, rule_source, reason, status, bytes_up, bytes_down, error, policy_version, node`;

/** bigint columns arrive as strings (node-postgres keeps 64 bits exact); ids stay below 2^53. */
export interface PgRecordRow extends Omit<RequestRow, 'id' | 'started_at_ms' | 'ended_at_ms' | 'bytes_up' | 'bytes_down' | 'tunnel_id'> {
  id: string;
  tunnel_id: string | null;
  started_at_ms: string;
  ended_at_ms: string | null;
  bytes_up: string;
  bytes_down: string;
  node: string;
}

export function pgRecordJson(row: PgRecordRow): AuditRecordJson {
  return rowToJson(
    {
      ...row,
      id: Number(row.id),
      started_at_ms: Number(row.started_at_ms),
      ended_at_ms: row.ended_at_ms === null ? null : Number(row.ended_at_ms),
      tunnel_id: row.tunnel_id === null ? null : Number(row.tunnel_id),
      bytes_up: Number(row.bytes_up),
      bytes_down: Number(row.bytes_down),
    },
    row.node,
  );
}

/** The records with these ids, newest first. */
export async function pgRecordsByIds(pool: Pool, ids: readonly number[]): Promise<AuditRecordJson[]> {
  if (ids.length === 0) return [];
  const result = await pool.query<PgRecordRow>(
    `SELECT ${PG_RECORD_COLUMNS} FROM requests WHERE id = ANY($1::bigint[]) ORDER BY id DESC`,
    [ids],
  );
  return result.rows.map(pgRecordJson);
}

export async function pgRecordById(pool: Pool, id: number): Promise<AuditRecordJson | null> {
  const result = await pool.query<PgRecordRow>(`SELECT ${PG_RECORD_COLUMNS} FROM requests WHERE id = $1`, [id]);
  return result.rows.length === 0 ? null : pgRecordJson(result.rows[0]);
}

export async function pgNewestId(pool: Pool): Promise<number | null> {
  const result = await pool.query<{ max: string | null }>('SELECT max(id) FROM requests');
  const max = result.rows[0]?.max ?? null;
  return max === null ? null : Number(max);
}
