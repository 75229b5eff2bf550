import fs from 'node:fs';
import type { Pool } from 'pg';
import { PG_MIGRATIONS } from './repo';

/**
 * A synthetic shared history generated inside PostgreSQL (generate_series: no row crosses the
 * wire, 10,000,000 records take minutes, not an hour): `nodes` replicas over `days` days, each
 * record's fields drawn from a hash of its number, so a run is repeatable. The skew follows
 * bench/audit/generate.ts: 400 destinations with Zipf-like popularity (one a million times rarer
 * than the top one), 200 client addresses in 4 groups, 5% denied, 1% would_deny.
 *
 * Secondary indexes are dropped for the load and built after it (what a restore would do); the
 * side tables are filled by aggregates, as the shipper would have kept them.
 */

export interface GeneratedHistory {
  records: number;
  firstMs: number;
  lastMs: number;
  nodes: string[];
  topHost: string;
  rareHost: string;
}

const STORE_IDS = ['11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222', '33333333-3333-4333-8333-333333333333', '44444444-4444-4444-8444-444444444444'];

/** u in [0,1) from a record number and a salt: PostgreSQL's own integer hash. */
const u = (salt: number): string => `((hashint8(g * 7919 + ${salt}) & 2147483647)::float8 / 2147483648.0)`;

function indexStatements(): string[] {
  const sql = fs.readFileSync(`${PG_MIGRATIONS}/001_fleet.sql`, 'utf8');
  return sql.split(';').map((s) => s.replace(/--[^\n]*\n/g, '').trim()).filter((s) => /^CREATE INDEX requests_/.test(s));
}

export async function generateHistory(pool: Pool, opts: { records: number; nodes: number; days: number; endMs: number; log?: (line: string) => void }): Promise<GeneratedHistory> {
  const log = opts.log ?? (() => undefined);
  const nodes = Array.from({ length: opts.nodes }, (_, i) => `replica-${String.fromCharCode(97 + i)}`);
  const spanMs = opts.days * 86_400_000;
  const firstMs = opts.endMs - spanMs;
  const stepMs = spanMs / opts.records;
  for (let i = 0; i < nodes.length; i++) {
    await pool.query(
      `INSERT INTO audit_stores (store_id, node, first_contact_ms, last_contact_ms, policy_version) VALUES ($1, $2, $3, $4, 'sha256:bench')
       ON CONFLICT (store_id) DO NOTHING`,
      [STORE_IDS[i], nodes[i], firstMs, opts.endMs],
    );
  }
  await pool.query('CREATE TABLE IF NOT EXISTS bench_hosts (idx int PRIMARY KEY, name text NOT NULL)');
  await pool.query('TRUNCATE bench_hosts');
  await pool.query(`INSERT INTO bench_hosts SELECT r, CASE WHEN r % 20 = 19 THEN '203.0.113.' || (r % 250)
      ELSE (ARRAY['api','cdn','objects','uploads','registry','auth','static','hooks','events','edge'])[r % 10 + 1] || r || '.' ||
        (ARRAY['github.com','npmjs.org','pypi.org','amazonaws.com','googleapis.com','docker.io','slack.com','datadoghq.com','sentry.io','pastebin.com'])[r % 10 + 1] END
    FROM generate_series(0, 399) AS r`);
  const drops = indexStatements().map((s) => /CREATE INDEX (\w+)/.exec(s)?.[1]).filter((n): n is string => n !== undefined);
  for (const name of drops) await pool.query(`DROP INDEX IF EXISTS ${name}`);
  const chunk = 1_000_000;
  for (let from = 0; from < opts.records; from += chunk) {
    const to = Math.min(opts.records, from + chunk) - 1;
    const started = Date.now();
    await pool.query(
      `INSERT INTO requests (store_id, local_id, node, started_at_ms, ended_at_ms, client_ip, client_port, clients, "user", kind,
         method, scheme, host, port, path, resolved_ip, decision, would_deny, rule, rule_source, reason, status, bytes_up,
         bytes_down, error, policy_version)
       SELECT ($5::uuid[])[g % $4 + 1], g / $4 + 1, ($6::text[])[g % $4 + 1],
         $2::bigint + (g * $3::float8)::bigint, $2::bigint + (g * $3::float8)::bigint + 20 + (${u(1)} * 2000)::int,
         '10.0.' || ((${u(2)} * 200)::int / 250) || '.' || ((${u(2)} * 200)::int % 250 + 1), 40000 + (g % 20000),
         ARRAY[(ARRAY['ci-runners','build','batch','web'])[((${u(2)} * 200)::int % 4) + 1]], NULL,
         CASE WHEN g % 5 = 0 THEN 'http' ELSE 'connect' END,
         CASE WHEN g % 5 = 0 THEN 'GET' ELSE 'CONNECT' END, CASE WHEN g % 5 = 0 THEN 'http' ELSE NULL END,
         h.name, CASE WHEN g % 5 = 0 THEN 80 ELSE 443 END, CASE WHEN g % 5 = 0 THEN '/v1/items/' || (g % 1000) ELSE NULL END,
         '198.51.100.' || (h.idx % 250), CASE WHEN ${u(3)} < 0.05 THEN 'deny' ELSE 'allow' END, ${u(4)} < 0.01,
         'rule-' || (h.idx % 30), 'policies/10-fleet.yaml:' || (h.idx % 30 + 1),
         CASE WHEN ${u(3)} < 0.05 THEN 'no rule allows this destination' ELSE 'matched rule rule-' || (h.idx % 30) END,
         CASE WHEN ${u(3)} < 0.05 THEN 403 WHEN g % 5 = 0 THEN 200 ELSE NULL END,
         (${u(5)} * 5000)::int, (${u(6)} * 50000)::int, NULL, 'sha256:bench'
       FROM generate_series($1::bigint, $7::bigint) AS g
       JOIN bench_hosts AS h ON h.idx = least(399, floor(400 * power(${u(7)}, 3))::int)`,
      [from, firstMs, stepMs, nodes.length, STORE_IDS.slice(0, nodes.length), nodes, to],
    );
    log(`generated ${to + 1} records (${Date.now() - started} ms for this million)`);
  }
  for (const statement of indexStatements()) {
    const started = Date.now();
    await pool.query(statement);
    log(`${/CREATE INDEX (\w+)/.exec(statement)?.[1]}: ${Date.now() - started} ms`);
  }
  await pool.query(`INSERT INTO request_minutes (minute, first_id, last_id, allowed, denied, would_deny)
    SELECT started_at_ms / 60000, min(id), max(id), count(*) FILTER (WHERE decision = 'allow'), count(*) FILTER (WHERE decision = 'deny'),
      count(*) FILTER (WHERE would_deny)
    FROM requests GROUP BY 1 ON CONFLICT (minute) DO NOTHING`);
  await pool.query(`INSERT INTO request_hour_hosts (hour, host, allowed, denied, would_deny)
    SELECT started_at_ms / 3600000, host, count(*) FILTER (WHERE decision = 'allow'), count(*) FILTER (WHERE decision = 'deny'),
      count(*) FILTER (WHERE would_deny)
    FROM requests WHERE host IS NOT NULL GROUP BY 1, 2 ON CONFLICT DO NOTHING`);
  await pool.query(`INSERT INTO request_hour_clients (hour, client_ip, requests)
    SELECT started_at_ms / 3600000, client_ip, count(*) FROM requests GROUP BY 1, 2 ON CONFLICT DO NOTHING`);
  await pool.query(`INSERT INTO request_hour_groups (hour, client_group, requests)
    SELECT r.started_at_ms / 3600000, g.client_group, count(*)
    FROM requests AS r CROSS JOIN LATERAL (SELECT DISTINCT unnest(r.clients) AS client_group) AS g GROUP BY 1, 2 ON CONFLICT DO NOTHING`);
  await pool.query(`INSERT INTO first_seen_hosts (host, first_id, first_at_ms)
    SELECT DISTINCT ON (host) host, id, started_at_ms FROM requests WHERE host IS NOT NULL ORDER BY host, started_at_ms
    ON CONFLICT (host) DO NOTHING`);
  await pool.query(`INSERT INTO first_seen_client_hosts (client_ip, host, first_id, first_at_ms)
    SELECT DISTINCT ON (client_ip, host) client_ip, host, id, started_at_ms FROM requests WHERE host IS NOT NULL ORDER BY client_ip, host, started_at_ms
    ON CONFLICT (client_ip, host) DO NOTHING`);
  await pool.query('VACUUM ANALYZE requests');
  for (const table of ['request_minutes', 'request_hour_hosts', 'request_hour_clients', 'request_hour_groups']) await pool.query(`VACUUM ANALYZE ${table}`);
  const hosts = await pool.query<{ top: string; rare: string }>(
    `SELECT (SELECT name FROM bench_hosts WHERE idx = 0) AS top, (SELECT name FROM bench_hosts WHERE idx = 398) AS rare`,
  );
  return { records: opts.records, firstMs, lastMs: opts.endMs, nodes, topHost: hosts.rows[0].top, rareHost: hosts.rows[0].rare };
}
