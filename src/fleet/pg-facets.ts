import { performance } from 'node:perf_hooks';
import type { Pool } from 'pg';
import { FACET_SAMPLE_CAP, FacetTally, facetsAnswer, NOTHING_LEFT, registrableDomain } from '../audit/facets';
import type { FacetField, FacetRow, FacetsAnswer } from '../audit/facets';
import type { RequestFilters } from '../audit/filters';
import { TOP } from '../audit/query';
import type { FacetsQuery } from '../audit/reader';
import { nextSliceSize } from '../audit/slice-size';
import type { SliceSizing } from '../audit/slice-size';
import type { Stats, StatsWindow } from '../audit/stats';
import { StatsTally } from '../audit/stats-filtered';
import { inTransaction } from './pg-client';
import { PG_FIRST_SLICE_IDS, PgIdWalk, preparePgWalk } from './pg-request-walk';
import type { PreparedWalk } from './pg-request-walk';

/**
 * Facets and filtered stats on the shared history: the filtered walk of pg-request-walk.ts
 * returning the facet columns, tallied here as on SQLite (facets.ts), and the rest of the set
 * counted by one query under a statement timeout.
 */

const FACET_SELECT = 'r.id, r.host, r.client_ip, r.clients, r.rule, r.decision, r.status, r."user", r.node, r.started_at_ms, r.would_deny';

interface PgFacetRow {
  id: string;
  host: string | null;
  client_ip: string;
  clients: string[];
  rule: string | null;
  decision: string;
  status: number | null;
  user: string | null;
  node: string;
  started_at_ms: string;
  would_deny: boolean;
}

/** Rows per walk query of a facet tally. */
const PG_FACET_BATCH = 5000;

function toFacetRow(row: PgFacetRow): FacetRow {
  return { ...row, started_at_ms: Number(row.started_at_ms) };
}

/** Every matching record's facet columns, newest first, a batch per pull. */
async function* walkRows(pool: Pool, walk: PreparedWalk, batch = PG_FACET_BATCH): AsyncGenerator<{ rows: FacetRow[]; resumeBelow: number | null }, void, undefined> {
  const ids = new PgIdWalk<PgFacetRow>(pool, walk, TOP, PG_FIRST_SLICE_IDS);
  for (;;) {
    const slice = await ids.slice(batch);
    yield { rows: slice.rows.map(toFacetRow), resumeBelow: slice.resumeBelow };
    if (slice.resumeBelow === null) return;
  }
}

/** PostgreSQL's code for a statement cancelled by statement_timeout. */
const QUERY_CANCELED = '57014';

/** The matching records below `before`, in one count bounded by a statement timeout; null past it. */
async function countBelow(pool: Pool, walk: PreparedWalk, before: number, budgetMs: number): Promise<number | null> {
  try {
    return await inTransaction(pool, async (client) => {
      await client.query("SELECT set_config('statement_timeout', $1, true)", [String(Math.max(1, Math.round(budgetMs)))]);
      // LIMIT $3 only gives $3 a type: the count is bounded by the ids already.
      const result = await client.query<{ n: string }>(
        `SELECT count(*) AS n FROM (SELECT 1 FROM requests AS r WHERE r.id >= $1 AND r.id < $2${walk.where} LIMIT $3) AS m`,
        [walk.lo, before, Number.MAX_SAFE_INTEGER, ...walk.params.slice(3)],
      );
      return Number(result.rows[0].n);
    });
  } catch (err) {
    if ((err as { code?: string }).code === QUERY_CANCELED) return null;
    throw err;
  }
}

/** Each facet's values in a slice's rows `m`, as (field, value, n) rows; `domain` comes from `host`. */
const GROUPED: Record<Exclude<FacetField, 'domain'>, string> = {
  client_ip: "SELECT 'client_ip' AS f, client_ip AS v, count(*) AS n FROM m GROUP BY client_ip",
  clients: "SELECT 'clients', g, count(*) FROM m CROSS JOIN LATERAL (SELECT DISTINCT unnest(m.clients) AS g) AS u GROUP BY g",
  host: "SELECT 'host', host, count(*) FROM m WHERE host IS NOT NULL GROUP BY host",
  rule: "SELECT 'rule', rule, count(*) FROM m WHERE rule IS NOT NULL GROUP BY rule",
  decision: "SELECT 'decision', decision, count(*) FROM m GROUP BY decision",
  status: "SELECT 'status', status::text, count(*) FROM m WHERE status IS NOT NULL GROUP BY status",
  user: 'SELECT \'user\', "user", count(*) FROM m WHERE "user" IS NOT NULL GROUP BY "user"',
  node: "SELECT 'node', node, count(*) FROM m GROUP BY node",
};

/**
 * One query per id slice that counts every facet value of the slice's matching records in
 * PostgreSQL and returns a few hundred grouped rows, not the records: the first `#` row is the
 * slice's record count and earliest start time.
 */
function sliceSql(walk: PreparedWalk, fields: readonly FacetField[]): string {
  const grouped = new Set(fields.map((f) => (f === 'domain' ? 'host' : f)) as Array<Exclude<FacetField, 'domain'>>);
  return `WITH m AS MATERIALIZED (
      SELECT r.host, r.client_ip, r.clients, r.rule, r.decision, r.status, r."user", r.node, r.started_at_ms
        FROM requests AS r WHERE r.id >= $1 AND r.id < $2${walk.where} LIMIT $3
    )
    SELECT '#' AS f, min(started_at_ms)::text AS v, count(*) AS n FROM m
    ${[...grouped].map((f) => `UNION ALL ${GROUPED[f]}`).join('\n    ')}`;
}

/** What one slice should cost in PostgreSQL, and its bounds in ids. */
const SLICE_SIZING: SliceSizing = { targetMs: 60, min: 4096, max: 4_194_304 };
const FIRST_SLICE = 65_536;

export async function pgFacets(pool: Pool, query: FacetsQuery): Promise<FacetsAnswer> {
  const { filters, fields, limit, budget } = query;
  // Both budgets count from here, set-up included: the answer's time is bounded by their sum.
  const began = performance.now();
  const tally = new FacetTally(fields);
  const walk = await preparePgWalk(pool, filters, 0);
  if (walk === null) return facetsAnswer(tally, limit, NOTHING_LEFT);
  const cap = budget.sampleCap ?? FACET_SAMPLE_CAP;
  const deadline = began + budget.tallyMs;
  const sql = sliceSql(walk, fields);
  const wantsHost = fields.includes('host');
  let hi = walk.top;
  let size = budget.firstSliceIds ?? FIRST_SLICE;
  while (hi > walk.lo) {
    const lo = Math.max(walk.lo, hi - size);
    const started = performance.now();
    const rows = (await pool.query<{ f: string; v: string | null; n: string }>(sql, [lo, hi, Number.MAX_SAFE_INTEGER, ...walk.params.slice(3)])).rows;
    for (const row of rows) {
      const n = Number(row.n);
      if (row.f === '#') tally.addRecords(n, row.v === null ? null : Number(row.v));
      else if (row.v === null) continue;
      else if (row.f === 'host') {
        if (wantsHost) tally.addCount('host', row.v, n);
        tally.addCount('domain', registrableDomain(row.v), n);
      } else tally.addCount(row.f as FacetField, row.v, n);
    }
    const ms = performance.now() - started;
    size = nextSliceSize(size, ms, SLICE_SIZING);
    hi = lo;
    if (hi > walk.lo && (tally.rows >= cap || performance.now() >= deadline)) break;
  }
  if (hi <= walk.lo) return facetsAnswer(tally, limit, NOTHING_LEFT);
  const counted = await countBelow(pool, walk, hi, Math.max(10, began + budget.tallyMs + budget.countMs - performance.now()));
  return facetsAnswer(tally, limit, { exhausted: false, counted: counted ?? 0, countComplete: counted !== null });
}

/** /api/stats with filters on the shared history: every match in the window read and counted. */
export async function pgFilteredStats(pool: Pool, window: StatsWindow, top: number, filters: RequestFilters): Promise<Stats> {
  const tally = new StatsTally(window);
  const walk = await preparePgWalk(pool, { ...filters, window: { sinceMs: window.sinceMs, untilMs: window.untilMs } }, 0, FACET_SELECT);
  if (walk === null) return tally.stats(top);
  for await (const batch of walkRows(pool, walk)) tally.add(batch.rows);
  return tally.stats(top);
}
