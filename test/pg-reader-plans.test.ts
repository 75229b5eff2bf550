import { Pool, QueryResult, QueryResultRow } from 'pg';
import { parseRequestFilters } from '../src/audit/filters';
import { applyPgMigrations } from '../src/fleet/pg-migrate';
import { preparePgWalk, PG_FIRST_SLICE_IDS } from '../src/fleet/pg-request-walk';
import { describePg, freshDatabase } from './helpers/postgres';

const ROWS = 200_000;
const NOW = new Date('2025-03-01T12:00:00Z');

/**
 * Direct SQL, not the shipper: this is about plans on a large table, not about shipping. 200k
 * records of 3 nodes over 10 days, 500 hosts, 50 client addresses, a tenth denied.
 */
const FILL = `INSERT INTO audit_stores (store_id, node, first_contact_ms, last_contact_ms)
    SELECT ('00000000-0000-0000-0000-00000000000' || n)::uuid, 'node-' || n, 0, 0 FROM generate_series(1, 3) AS n;
  INSERT INTO requests (store_id, local_id, node, started_at_ms, ended_at_ms, client_ip, client_port, clients, kind, host, port,
      decision, would_deny, rule, reason, status)
    SELECT ('00000000-0000-0000-0000-00000000000' || (1 + i % 3))::uuid, i, 'node-' || (1 + i % 3),
      ${NOW.getTime()} - (${ROWS} - i) * 4320, ${NOW.getTime()} - (${ROWS} - i) * 4320 + 10, '10.0.' || (i % 50) || '.1', 40000,
      CASE WHEN i % 7 = 0 THEN ARRAY['ci'] WHEN i % 11 = 0 THEN ARRAY['office'] ELSE '{}'::text[] END, 'connect',
      'h' || (i % 500) || '.example', 443, CASE WHEN i % 10 = 0 THEN 'deny' ELSE 'allow' END, i % 97 = 0, 'r' || (i % 20),
      'fixture', CASE WHEN i % 10 = 0 THEN 403 ELSE 200 END
    FROM generate_series(1, ${ROWS}) AS i;
  INSERT INTO first_seen_hosts (host, first_id, first_at_ms) SELECT host, min(id), min(started_at_ms) FROM requests GROUP BY host;
  INSERT INTO request_minutes (minute, first_id, last_id, allowed, denied, would_deny)
    SELECT started_at_ms / 60000, min(id), max(id), count(*) FILTER (WHERE decision = 'allow'), count(*) FILTER (WHERE decision = 'deny'),
      count(*) FILTER (WHERE would_deny) FROM requests GROUP BY 1;
  ANALYZE requests;`;

describePg('first pages on the shared history walk an index, never sort the table', () => {
  let pool: Pool;
  let tablePages: number;
  beforeAll(async () => {
    pool = new Pool({ connectionString: freshDatabase('plans') });
    await applyPgMigrations(pool);
    await pool.query(FILL);
    const size = await pool.query<{ pages: string }>("SELECT pg_relation_size('requests') / current_setting('block_size')::int AS pages");
    tablePages = Number(size.rows[0].pages);
  }, 120_000);

  /** A query's plan as text, and the pages it touched (shared buffers hit or read, all nodes). */
  async function explain(sql: string, params: unknown[]): Promise<{ text: string; pages: number }> {
    const plan = (await pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, params)).rows.map((r) => r['QUERY PLAN']);
    // The top node's Buffers line counts its children's too; planning's (after "Planning:") is not the query's.
    const planning = plan.findIndex((line) => /^Planning/.test(line));
    const top = plan.slice(0, planning < 0 ? plan.length : planning).find((line) => /^\s*Buffers: /.test(line)) ?? '';
    const count = (kind: string) => Number(new RegExp(`${kind}=(\\d+)`).exec(top)?.[1] ?? 0);
    return { text: plan.join('\n'), pages: count('hit') + count('read') };
  }
  afterAll(async () => {
    await pool.end();
  });

  test.each([
    ['host=h7.example', 'requests_host'],
    ['client=10.0.3.1', 'requests_client_ip|requests_pkey'],
    ['since=7d', 'requests_pkey'],
    ['decision=deny', 'requests_decision|requests_pkey'],
    ['node=node-2', 'requests_node|requests_pkey'],
    ['client=ci', 'requests_clients|requests_pkey'],
    ['would_deny=true', 'requests_would_deny|requests_pkey'],
    ['host=h1%3F.example', 'requests_host|requests_pkey'],
    ['q=h42', 'requests_pkey'],
    ['since=1d&status=4xx', 'requests_pkey'],
    ['since=1d&decision=deny', 'requests_decision|requests_pkey'],
    ['until=5d&host=h7.example', 'requests_host'],
    // Negated filters (issue 19) are row tests on the walk the positive ones chose.
    ['host=h7.example&not.decision=deny', 'requests_host'],
    ['not.host=h7.example&since=1d', 'requests_pkey'],
    ['decision=deny&not.client=ci', 'requests_decision|requests_pkey'],
    ['not.q=h42&since=1d', 'requests_pkey'],
    ['host=h%2A.example&not.host=h7.example&not.status=4xx', 'requests_host|requests_pkey'],
    ['rule=r3&not.user=alice', 'requests_pkey|requests_rule_started'],
  ])('?%s', async (query, indexes) => {
    const filters = parseRequestFilters(Object.fromEntries(new URLSearchParams(decodeURIComponent(query))), NOW);
    const { pool: recording, asked } = recordingPool(pool);
    const walk = await preparePgWalk(recording, filters, 0);
    if (walk === null) throw new Error('nothing to walk');
    const hi = walk.top;
    const params = [Math.max(walk.lo, hi - PG_FIRST_SLICE_IDS), hi, 51, ...walk.params.slice(3)];
    const slice = await explain(walk.sql, params);
    expect(slice.text).toMatch(new RegExp(`(Index|Bitmap Index) (Only )?Scan( Backward)? (using|on) (${indexes})`));
    expect(slice.text).not.toMatch(/Seq Scan/);
    // A sort, if any, is of one slice's matches: never more rows than the slice holds.
    for (const match of slice.text.matchAll(/Sort .*actual time=[\d.]+\.\.[\d.]+ rows=(\d+)/g)) expect(Number(match[1])).toBeLessThanOrEqual(PG_FIRST_SLICE_IDS);
    // Counted in pages, not timed: a busy machine slows a query but does not make it read more.
    // The first slice reads a slice's worth of the table or its index, never the whole table.
    expect(slice.pages).toBeLessThan(tablePages / 4);
    // Resolving globs and a time window's id bounds read the known hosts, the distinct client
    // addresses, or the window's minutes: each a small fraction of the table, none a scan of it.
    const resolving = await Promise.all(asked.map((q) => explain(q.sql, q.params)));
    for (const plan of resolving) {
      expect(plan.text).not.toMatch(/Seq Scan on requests/);
      expect(plan.pages).toBeLessThan(tablePages / 10);
    }
    process.stdout.write(`${query}: resolve + bounds ${resolving.map((p) => p.pages).join('+')} pages, first slice ${slice.pages} of ${tablePages}\n`);
  });
});

/** `pool`, with every query the code under test sends kept (to be explained after). */
function recordingPool(pool: Pool): { pool: Pool; asked: { sql: string; params: unknown[] }[] } {
  const asked: { sql: string; params: unknown[] }[] = [];
  const query = <R extends QueryResultRow>(sql: string, params: unknown[] = []): Promise<QueryResult<R>> => {
    asked.push({ sql, params });
    return pool.query<R>(sql, params);
  };
  return { pool: new Proxy(pool, { get: (target, key, receiver) => (key === 'query' ? query : Reflect.get(target, key, receiver)) }), asked };
}
