import type Database from 'better-sqlite3';
import type { StatsWindow } from './stats';
import { statement } from './statement-cache';
import { idRangeFor } from './time-window';

export type FirstSeenBy = 'host' | 'client_host';

export interface FirstSeenItem {
  host: string;
  /** Only with by=client_host: the client address of the pair. */
  client_ip?: string;
  /** Start of the earliest record ever for this destination (or pair), ISO-8601 UTC. */
  first_seen: string;
  /** That record's id (for /api/requests/:id). */
  first_id: number;
  /** Records in the window: all of them, since none is older than first_seen. */
  count: number;
  denied: number;
  would_deny: number;
  /** Client group names seen in those records. */
  clients: string[];
  client_ips: string[];
}

export interface FirstSeenPage {
  since: string;
  until: string;
  by: FirstSeenBy;
  items: FirstSeenItem[];
  /** More new destinations than `limit`: the newest are listed. */
  truncated: boolean;
}

export interface FirstRow {
  host: string;
  client_ip: string | null;
  first_id: number;
  first_at_ms: number;
}

export interface DetailRow {
  client_ip: string;
  clients: string;
  count: number;
  denied: number;
  would_deny: number;
}

const FIRST_SQL: Record<FirstSeenBy, string> = {
  host: `SELECT host, NULL AS client_ip, first_id, first_at_ms FROM first_seen_hosts
    WHERE first_at_ms >= @since AND first_at_ms < @until ORDER BY first_at_ms DESC, host LIMIT @take`,
  client_host: `SELECT host, client_ip, first_id, first_at_ms FROM first_seen_client_hosts
    WHERE first_at_ms >= @since AND first_at_ms < @until ORDER BY first_at_ms DESC, host, client_ip LIMIT @take`,
};

const DETAIL_SQL = `SELECT client_ip, clients, count(*) AS count, sum(decision = 'deny') AS denied,
    sum(would_deny) AS would_deny
  FROM requests INDEXED BY requests_host
  WHERE host = @host AND id BETWEEN @lo AND @hi AND started_at_ms >= @since AND started_at_ms < @until`;

function groupsOf(json: string): string[] {
  const value: unknown = JSON.parse(json);
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

export function detail(first: FirstRow, rows: DetailRow[]): FirstSeenItem {
  const groups = new Set<string>();
  const ips = new Set<string>();
  const item: FirstSeenItem = {
    host: first.host,
    ...(first.client_ip === null ? {} : { client_ip: first.client_ip }),
    first_seen: new Date(first.first_at_ms).toISOString(),
    first_id: first.first_id,
    count: 0,
    denied: 0,
    would_deny: 0,
    clients: [],
    client_ips: [],
  };
  for (const row of rows) {
    item.count += row.count;
    item.denied += row.denied;
    item.would_deny += row.would_deny;
    ips.add(row.client_ip);
    for (const group of groupsOf(row.clients)) groups.add(group);
  }
  return { ...item, clients: [...groups].sort(), client_ips: [...ips].sort() };
}

/**
 * Destinations (or client/destination pairs) whose first record ever falls in the window,
 * newest first: "what started talking to something new since yesterday". first_seen_* tables
 * (migration 002) know the first record of every destination, so this reads only the new ones.
 */
export function listFirstSeen(db: Database.Database, window: StatsWindow, by: FirstSeenBy, limit: number): FirstSeenPage {
  const firsts = statement(db, FIRST_SQL[by]).all({ since: window.sinceMs, until: window.untilMs, take: limit + 1 }) as FirstRow[];
  const range = idRangeFor(db, window) ?? { lo: 1, hi: 0 };
  const detailSql = by === 'host' ? `${DETAIL_SQL} GROUP BY client_ip, clients` : `${DETAIL_SQL} AND client_ip = @client_ip GROUP BY client_ip, clients`;
  const items = firsts.slice(0, limit).map((first) => {
    const rows = statement(db, detailSql).all({
      host: first.host, client_ip: first.client_ip, lo: range.lo, hi: range.hi, since: window.sinceMs, until: window.untilMs,
    }) as DetailRow[];
    return detail(first, rows);
  });
  return {
    since: new Date(window.sinceMs).toISOString(),
    until: new Date(window.untilMs).toISOString(),
    by,
    items,
    truncated: firsts.length > limit,
  };
}
