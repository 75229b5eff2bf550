import type { Pool } from 'pg';
import { detail } from '../audit/first-seen';
import type { DetailRow, FirstRow, FirstSeenBy, FirstSeenPage } from '../audit/first-seen';
import { flagNodes } from '../audit/reader';
import type { NodesPage } from '../audit/reader';
import type { RuleHits } from '../audit/rule-hits';
import { assembleStats, bucketSecondsFor, ranked } from '../audit/stats';
import type { SeriesPoint, Stats, StatsWindow } from '../audit/stats';
import { pgText } from './pg-text';

/**
 * The aggregates of the admin API on the shared history: the same answers as stats.ts,
 * first-seen.ts and rule-hits.ts give on one replica's SQLite store, by PostgreSQL's own means.
 * Ordering of equal counts and names happens in JavaScript (stats.ts ranked) or with
 * COLLATE "C" (byte order, as SQLite's BINARY), never with the database's locale.
 */

const MINUTE_MS = 60_000;

interface MinuteCounts {
  minute: string;
  allowed: string;
  denied: string;
  would_deny: string;
}

/** Totals and series: whole minutes from request_minutes, the partly covered edges record by record. */
async function series(pool: Pool, window: StatsWindow, bucketMs: number): Promise<SeriesPoint[]> {
  const first = Math.floor(window.sinceMs / bucketMs);
  const points: SeriesPoint[] = [];
  for (let b = first; b * bucketMs < window.untilMs; b += 1) {
    points.push({ t: new Date(b * bucketMs).toISOString(), allowed: 0, denied: 0, would_deny: 0 });
  }
  const add = (atMs: number, allowed: number, denied: number, wouldDeny: number): void => {
    const point = points[Math.floor(atMs / bucketMs) - first];
    point.allowed += allowed;
    point.denied += denied;
    point.would_deny += wouldDeny;
  };
  const wholeFrom = Math.ceil(window.sinceMs / MINUTE_MS);
  const wholeTo = Math.floor(window.untilMs / MINUTE_MS); // exclusive
  const minutes = await pool.query<MinuteCounts>(
    'SELECT minute, allowed, denied, would_deny FROM request_minutes WHERE minute >= $1 AND minute < $2',
    [wholeFrom, wholeTo],
  );
  for (const row of minutes.rows) add(Number(row.minute) * MINUTE_MS, Number(row.allowed), Number(row.denied), Number(row.would_deny));
  const headEnd = Math.min(window.untilMs, wholeFrom * MINUTE_MS);
  const tailStart = Math.max(headEnd, wholeTo * MINUTE_MS);
  const edges = await pool.query<{ started_at_ms: string; decision: string; would_deny: boolean }>(
    `SELECT started_at_ms, decision, would_deny FROM requests
      WHERE (started_at_ms >= $1 AND started_at_ms < $2) OR (started_at_ms >= $3 AND started_at_ms < $4)`,
    [window.sinceMs, headEnd, tailStart, window.untilMs],
  );
  for (const row of edges.rows) {
    add(Number(row.started_at_ms), row.decision === 'allow' ? 1 : 0, row.decision === 'deny' ? 1 : 0, row.would_deny ? 1 : 0);
  }
  return points;
}

const HOUR_MS = 3_600_000;

/**
 * Every count of the top lists: the window's whole hours from the hourly rollups (migration 003,
 * kept by the shipper and by prune), the records of the partly covered edge hours one by one (the
 * (started_at_ms, id) index ranges), as the series does with minutes. A day's window reads 24
 * hours of rollups plus at most two hours of records, not a day of records. A record in several
 * groups counts once in each, as request_clients makes it.
 */
const TOP_COUNTS = `WITH w AS MATERIALIZED (
    SELECT host, client_ip, clients, decision FROM requests
     WHERE (started_at_ms >= $1 AND started_at_ms < $2) OR (started_at_ms >= $3 AND started_at_ms < $4)
  )
  SELECT 'host' AS list, host AS key, count(*) AS n FROM w WHERE host IS NOT NULL GROUP BY host
  UNION ALL SELECT 'denied', host, count(*) FROM w WHERE host IS NOT NULL AND decision = 'deny' GROUP BY host
  UNION ALL SELECT 'client', client_ip, count(*) FROM w GROUP BY client_ip
  UNION ALL SELECT 'group', g, count(*) FROM w CROSS JOIN LATERAL (SELECT DISTINCT unnest(w.clients) AS g) AS u GROUP BY g
  UNION ALL SELECT 'host', host, sum(allowed + denied) FROM request_hour_hosts WHERE hour >= $5 AND hour < $6 GROUP BY host
  UNION ALL SELECT 'denied', host, sum(denied) FROM request_hour_hosts WHERE hour >= $5 AND hour < $6 AND denied > 0 GROUP BY host
  UNION ALL SELECT 'client', client_ip, sum(requests) FROM request_hour_clients WHERE hour >= $5 AND hour < $6 GROUP BY client_ip
  UNION ALL SELECT 'group', client_group, sum(requests) FROM request_hour_groups WHERE hour >= $5 AND hour < $6 GROUP BY client_group`;

type Tops = Pick<Stats, 'top_hosts' | 'top_denied_hosts' | 'top_clients' | 'top_client_groups'>;

async function tops(pool: Pool, window: StatsWindow, top: number): Promise<Tops> {
  const lists = { host: new Map<string, number>(), denied: new Map<string, number>(), client: new Map<string, number>(), group: new Map<string, number>() };
  // Whole hours [wholeFrom, wholeTo); the records of [since, headEnd) and [tailStart, until). A
  // window within one hour, or across one boundary only, is all edges.
  const wholeFrom = Math.ceil(window.sinceMs / HOUR_MS);
  const wholeTo = Math.floor(window.untilMs / HOUR_MS);
  const headEnd = Math.min(window.untilMs, wholeFrom * HOUR_MS);
  const tailStart = Math.max(headEnd, wholeTo * HOUR_MS);
  const result = await pool.query<{ list: keyof typeof lists; key: string; n: string }>(TOP_COUNTS, [
    window.sinceMs, headEnd, tailStart, window.untilMs, wholeFrom, wholeTo,
  ]);
  for (const row of result.rows) lists[row.list].set(row.key, (lists[row.list].get(row.key) ?? 0) + Number(row.n));
  const hosts = (counts: Map<string, number>) => ranked(counts, top).map(({ key, count }) => ({ host: key, count }));
  const clients = (counts: Map<string, number>) => ranked(counts, top).map(({ key, count }) => ({ client: key, count }));
  return {
    top_hosts: hosts(lists.host),
    top_denied_hosts: hosts(lists.denied),
    top_clients: clients(lists.client),
    top_client_groups: clients(lists.group),
  };
}

export async function pgStats(pool: Pool, window: StatsWindow, top: number): Promise<Stats> {
  const bucketSeconds = bucketSecondsFor(window);
  const [points, lists] = await Promise.all([series(pool, window, bucketSeconds * 1000), tops(pool, window, top)]);
  return assembleStats(window, bucketSeconds, points, lists);
}

const FIRST_SQL: Record<FirstSeenBy, string> = {
  host: `SELECT host, NULL::text AS client_ip, first_id, first_at_ms FROM first_seen_hosts
    WHERE first_at_ms >= $1 AND first_at_ms < $2 ORDER BY first_at_ms DESC, host COLLATE "C" LIMIT $3`,
  client_host: `SELECT host, client_ip, first_id, first_at_ms FROM first_seen_client_hosts
    WHERE first_at_ms >= $1 AND first_at_ms < $2 ORDER BY first_at_ms DESC, host COLLATE "C", client_ip COLLATE "C" LIMIT $3`,
};

const DETAIL_SQL = `SELECT client_ip, to_json(clients)::text AS clients, count(*) AS count,
    count(*) FILTER (WHERE decision = 'deny') AS denied, count(*) FILTER (WHERE would_deny) AS would_deny
  FROM requests WHERE host = $1 AND started_at_ms >= $2 AND started_at_ms < $3`;

type Counted<T> = { [K in keyof T]: T[K] extends number ? string : T[K] };

export async function pgFirstSeen(pool: Pool, window: StatsWindow, by: FirstSeenBy, limit: number): Promise<FirstSeenPage> {
  const firsts = await pool.query<Counted<FirstRow>>(FIRST_SQL[by], [window.sinceMs, window.untilMs, limit + 1]);
  const items = await Promise.all(
    firsts.rows.slice(0, limit).map(async (raw) => {
      const first: FirstRow = { ...raw, first_id: Number(raw.first_id), first_at_ms: Number(raw.first_at_ms) };
      const pair = by === 'client_host' ? ' AND client_ip = $4' : '';
      const params: unknown[] = [first.host, window.sinceMs, window.untilMs, ...(by === 'client_host' ? [first.client_ip] : [])];
      const rows = await pool.query<Counted<DetailRow>>(`${DETAIL_SQL}${pair} GROUP BY client_ip, clients`, params);
      return detail(first, rows.rows.map((r) => ({ ...r, count: Number(r.count), denied: Number(r.denied), would_deny: Number(r.would_deny) })));
    }),
  );
  return {
    since: new Date(window.sinceMs).toISOString(),
    until: new Date(window.untilMs).toISOString(),
    by,
    items,
    truncated: firsts.rows.length > limit,
  };
}

/** Hits per rule name since `sinceMs`, from the (rule, started_at_ms) index. */
export async function pgRuleHits(pool: Pool, names: readonly string[], sinceMs: number): Promise<Map<string, RuleHits>> {
  const unique = [...new Set(names)];
  const result = await pool.query<{ rule: string; hits: string; last: string | null }>(
    `SELECT rule, count(*) AS hits, max(started_at_ms) AS last FROM requests
      WHERE rule = ANY($1::text[]) AND started_at_ms >= $2 GROUP BY rule`,
    [unique.map(pgText), sinceMs],
  );
  const found = new Map(result.rows.map((row) => [row.rule, row]));
  const hits = new Map<string, RuleHits>();
  for (const name of unique) {
    const row = found.get(pgText(name));
    hits.set(name, { hits: row === undefined ? 0 : Number(row.hits), last_hit: row?.last == null ? null : new Date(Number(row.last)).toISOString() });
  }
  return hits;
}

interface StoreRow {
  store_id: string;
  node: string;
  policy_version: string | null;
  last_contact_ms: string;
  last_record_ms: string | null;
  shipped_entries: string;
}

/** GET /api/nodes on the shared history: one entry per local store that ever shipped. */
export async function pgNodes(pool: Pool, now: Date): Promise<NodesPage> {
  const result = await pool.query<StoreRow>(
    `SELECT store_id, node, policy_version, last_contact_ms, last_record_ms, shipped_entries FROM audit_stores
      ORDER BY node COLLATE "C", store_id`,
  );
  return flagNodes(
    'postgres',
    result.rows.map((row) => ({
      node: row.node,
      store_id: row.store_id,
      policy_version: row.policy_version,
      last_contact: new Date(Number(row.last_contact_ms)).toISOString(),
      last_record: row.last_record_ms === null ? null : new Date(Number(row.last_record_ms)).toISOString(),
      shipped_entries: Number(row.shipped_entries),
    })),
    now,
  );
}
