/**
 * Distinct values of an indexed column by a loose index scan: one index seek per distinct value
 * (a recursive CTE stepping to the next larger value), where `SELECT DISTINCT` would read every
 * entry. The distinct client addresses and groups are a handful against a million records.
 */
function looseScan(table: string, column: string): string {
  return `WITH RECURSIVE v(x) AS (
      SELECT min(${column}) FROM ${table}
      UNION ALL
      SELECT (SELECT min(${column}) FROM ${table} WHERE ${column} > v.x) FROM v WHERE v.x IS NOT NULL
    )
    SELECT x FROM v WHERE x IS NOT NULL`;
}

/** Every client address ever recorded (index requests_client_ip). */
export const DISTINCT_CLIENT_IPS = looseScan('requests', 'client_ip');

/** Every client group ever recorded (the primary key of request_clients). */
export const DISTINCT_CLIENT_GROUPS = looseScan('request_clients', 'client');
