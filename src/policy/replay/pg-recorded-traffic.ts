import type { Pool, PoolClient } from 'pg';
import { describeAuditError, openAuditPool, redactAuditUrl } from '../../fleet/audit-url';
import { borrowClient } from '../../fleet/pg-client';
import type { RecordedTraffic, RuleHitsInWindow, WindowCoverage } from './recorded-traffic';
import { HostKinds, toShape, type ShapeFields, type ShapeVerdict } from './recorded-shape';
import type { TimeWindow } from './window';

/**
 * The fleet's shared history (migrations/postgres/001_fleet.sql) as recorded traffic. Reads in
 * one REPEATABLE READ, READ ONLY transaction (the shippers go on inserting; the replay sees one
 * snapshot), through one connection. Shapes come through a server-side cursor, a batch at a
 * time, so a window of millions of records with as many distinct shapes stays within bounded
 * memory here.
 */

/** Shapes per FETCH: large enough that round trips do not dominate, small enough to hold. */
const FETCH_ROWS = 10_000;

/** `to_json` escapes as SQLite's json_quote does; NULL becomes the JSON null SQLite writes. */
const jsonField = (expr: string): string => `coalesce(to_json(${expr})::text, 'null')`;

/**
 * Grouped by the columns (a hash aggregate over the window's rows), then keyed like SQLite's
 * json_array and sorted by that key bytewise (COLLATE "C"), so the replay sees the shapes in the
 * order it sees them from SQLite (recorded-shape.ts). Only the groups are sorted, not the rows.
 */
const SHAPES_SQL = `
  SELECT shape, n, last_ms FROM (
    SELECT '[' || ${['kind', 'method', 'host', 'port', 'path', 'client_ip', '"user"', 'decision', 'would_deny::int', 'rule', 'sni'].map(jsonField).join(` || ',' || `)} || ']' AS shape,
           n, last_ms
      FROM (SELECT kind, method, host, port, path, client_ip, "user", decision, would_deny, rule, sni,
                   count(*) AS n, max(started_at_ms) AS last_ms
              FROM requests WHERE started_at_ms >= $1 AND started_at_ms <= $2
             GROUP BY kind, method, host, port, path, client_ip, "user", decision, would_deny, rule, sni) AS g
  ) AS keyed
   ORDER BY shape COLLATE "C"`;

/** Ordered as SQLite orders them: NULL first, text bytewise. */
const VERSIONS_SQL = `
  SELECT policy_version AS version, count(*) AS requests, min(started_at_ms) AS first_ms, max(started_at_ms) AS last_ms
    FROM requests WHERE started_at_ms >= $1 AND started_at_ms <= $2
   GROUP BY policy_version ORDER BY requests DESC, policy_version COLLATE "C" NULLS FIRST`;

/** Two ranges of the (rule, started_at_ms) index per rule: the table is not read. */
const RULE_HITS_SQL = `
  SELECT n.rule,
         (SELECT count(*) FROM requests r WHERE r.rule = n.rule AND r.started_at_ms >= $2 AND r.started_at_ms <= $3) AS hits,
         (SELECT max(started_at_ms) FROM requests r WHERE r.rule = n.rule AND r.started_at_ms <= $3) AS last_ms
    FROM unnest($1::text[]) AS n(rule)`;

const OLDEST_SQL = 'SELECT min(started_at_ms) AS ms FROM requests';
const IN_WINDOW_SQL = 'SELECT count(*) AS n FROM requests WHERE started_at_ms >= $1 AND started_at_ms <= $2';

/** bigint columns arrive as strings (pg keeps 64-bit values exact); ours fit a double. */
const num = (v: string | number | null): number | null => (v === null ? null : Number(v));

class PgTraffic implements RecordedTraffic {
  private cursors = 0;

  constructor(
    private readonly pool: Pool,
    private readonly client: PoolClient,
    private readonly release: () => void,
    private readonly url: string,
  ) {}

  get label(): string {
    return redactAuditUrl(this.url);
  }

  describeError(err: unknown): string {
    return describeAuditError(err, this.url);
  }

  async snapshot<T>(read: () => Promise<T>): Promise<T> {
    await this.client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      const result = await read();
      await this.client.query('COMMIT');
      return result;
    } catch (err) {
      await this.client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  private async oldestMs(): Promise<number | null> {
    return num((await this.client.query<{ ms: string | null }>(OLDEST_SQL)).rows[0].ms);
  }

  async coverage(window: TimeWindow): Promise<WindowCoverage> {
    const oldestMs = await this.oldestMs();
    const result = await this.client.query<{ version: string | null; requests: string; first_ms: string; last_ms: string }>(VERSIONS_SQL, [window.sinceMs, window.untilMs]);
    const versions = result.rows;
    if (versions.length === 0) return { total: 0, firstMs: null, lastMs: null, oldestMs, versions: [] };
    return {
      total: versions.reduce((sum, v) => sum + Number(v.requests), 0),
      firstMs: Math.min(...versions.map((v) => Number(v.first_ms))),
      lastMs: Math.max(...versions.map((v) => Number(v.last_ms))),
      oldestMs,
      versions: versions.map((v) => ({ version: v.version, requests: Number(v.requests) })),
    };
  }

  /** A cursor lives in the snapshot's transaction: call inside snapshot(). */
  async *shapes(window: TimeWindow): AsyncGenerator<ShapeVerdict> {
    const cursor = `tollgate_shapes_${(this.cursors += 1)}`;
    await this.client.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR ${SHAPES_SQL}`, [window.sinceMs, window.untilMs]);
    const hosts = new HostKinds();
    try {
      for (;;) {
        const batch = await this.client.query<{ shape: string; n: string; last_ms: string }>(`FETCH ${FETCH_ROWS} FROM ${cursor}`);
        for (const row of batch.rows) yield toShape(JSON.parse(row.shape) as ShapeFields, Number(row.n), Number(row.last_ms), hosts);
        if (batch.rows.length < FETCH_ROWS) break;
      }
    } finally {
      await this.client.query(`CLOSE ${cursor}`).catch(() => undefined);
    }
  }

  async ruleHits(names: readonly string[], window: TimeWindow): Promise<RuleHitsInWindow> {
    const rows = await this.client.query<{ rule: string; hits: string; last_ms: string | null }>(RULE_HITS_SQL, [[...new Set(names)], window.sinceMs, window.untilMs]);
    const byRule = new Map(rows.rows.map((r) => [r.rule, { hits: Number(r.hits), lastMs: num(r.last_ms) }]));
    const inWindow = Number((await this.client.query<{ n: string }>(IN_WINDOW_SQL, [window.sinceMs, window.untilMs])).rows[0].n);
    return { byRule, inWindow, oldestMs: await this.oldestMs() };
  }

  async close(): Promise<void> {
    this.release();
    await this.pool.end();
  }
}

/**
 * The shared history at `url` as recorded traffic. Connects at once, so an unreachable server is
 * reported before any work; the caller shows errors through describeAuditError (no password).
 */
export async function openPgTraffic(url: string): Promise<RecordedTraffic> {
  // A replay of millions of records may run for a while: no 60 s statement limit here.
  const pool = openAuditPool(url, { max: 1, applicationName: 'tollgate policy replay', statementTimeoutMs: 0 });
  try {
    const { client, release } = await borrowClient(pool);
    return new PgTraffic(pool, client, release, url);
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
}
