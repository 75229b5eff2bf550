import type Database from 'better-sqlite3';
import type { RowParams } from '../record-params';

/**
 * The admin API's side tables (migration 002: request_clients, request_minutes, first_seen_hosts,
 * first_seen_client_hosts), kept for a whole batch of inserted records at once: the batch is
 * aggregated in memory and written as one upsert per key, instead of 002's trigger running four
 * statements per row. On the project's schema that trigger was most of an insert's cost (issue
 * 14; figures in docs/performance.md). The results are exactly the trigger's:
 * - request_clients: one row per (text client group, record id);
 * - request_minutes: per started_at_ms / 60000 (SQLite's integer division truncates), the lowest
 *   and highest id and the decision counts;
 * - first_seen_*: the record with the earliest start; on equal starts the one inserted first keeps
 *   the place, as the trigger's strict `<` does when rows are inserted one by one.
 * Give it only rows that were really inserted: a row ignored as already present must not count.
 * Migration 003 dropped the trigger, so this is the only way the side tables follow inserts: every
 * writer of `requests` goes through it (connection.ts, carry-over.ts, index-db.ts, the benchmarks).
 */

interface MinuteTotals {
  firstId: number;
  lastId: number;
  allowed: number;
  denied: number;
  wouldDeny: number;
}

interface FirstSeen {
  id: number;
  atMs: number;
}

function prepareUpserts(db: Database.Database) {
  return {
    client: db.prepare('INSERT INTO request_clients (client, request_id) VALUES (?, ?) ON CONFLICT DO NOTHING'),
    minute: db.prepare(`INSERT INTO request_minutes (minute, first_id, last_id, allowed, denied, would_deny)
      VALUES (?, ?, ?, ?, ?, ?)
      ON CONFLICT (minute) DO UPDATE SET
        first_id = min(first_id, excluded.first_id),
        last_id = max(last_id, excluded.last_id),
        allowed = allowed + excluded.allowed,
        denied = denied + excluded.denied,
        would_deny = would_deny + excluded.would_deny`),
    host: db.prepare(`INSERT INTO first_seen_hosts (host, first_id, first_at_ms) VALUES (?, ?, ?)
      ON CONFLICT (host) DO UPDATE SET first_id = excluded.first_id, first_at_ms = excluded.first_at_ms
        WHERE excluded.first_at_ms < first_seen_hosts.first_at_ms`),
    clientHost: db.prepare(`INSERT INTO first_seen_client_hosts (client_ip, host, first_id, first_at_ms) VALUES (?, ?, ?, ?)
      ON CONFLICT (client_ip, host) DO UPDATE SET first_id = excluded.first_id, first_at_ms = excluded.first_at_ms
        WHERE excluded.first_at_ms < first_seen_client_hosts.first_at_ms`),
  };
}

/** Keeps the earlier start; on a tie the entry already held (inserted first) stays. */
function keepFirst<K>(map: Map<K, FirstSeen>, key: K, id: number, atMs: number): void {
  const held = map.get(key);
  if (held === undefined || atMs < held.atMs) map.set(key, { id, atMs });
}

export class SideTableBatch {
  private readonly upserts: ReturnType<typeof prepareUpserts>;
  private clients: Array<[string, number]> = [];
  private minutes = new Map<number, MinuteTotals>();
  private hosts = new Map<string, FirstSeen>();
  /** client_ip -> host -> first record: nested, so no separator can make two keys collide. */
  private clientHosts = new Map<string, Map<string, FirstSeen>>();

  constructor(db: Database.Database) {
    this.upserts = prepareUpserts(db);
  }

  /** One inserted record, with the parameters it was inserted with (record-params.ts). */
  add(id: number, row: RowParams): void {
    for (const client of JSON.parse(row.clients as string) as unknown[]) {
      if (typeof client === 'string') this.clients.push([client, id]);
    }
    this.addMinute(id, row);
    const host = row.host as string | null;
    if (host === null) return;
    const atMs = row.started_at_ms as number;
    keepFirst(this.hosts, host, id, atMs);
    const clientIp = row.client_ip as string;
    let perClient = this.clientHosts.get(clientIp);
    if (perClient === undefined) this.clientHosts.set(clientIp, (perClient = new Map()));
    keepFirst(perClient, host, id, atMs);
  }

  /** Writes what was added since the last flush, in the caller's transaction, and starts over. */
  flush(): void {
    const { client, minute, host, clientHost } = this.upserts;
    for (const [name, id] of this.clients) client.run(name, id);
    for (const [key, m] of this.minutes) minute.run(key, m.firstId, m.lastId, m.allowed, m.denied, m.wouldDeny);
    for (const [name, first] of this.hosts) host.run(name, first.id, first.atMs);
    for (const [ip, perClient] of this.clientHosts) {
      for (const [name, first] of perClient) clientHost.run(ip, name, first.id, first.atMs);
    }
    this.clear();
  }

  /** Drops what was added (the transaction it was meant for rolled back). */
  clear(): void {
    this.clients = [];
    this.minutes = new Map();
    this.hosts = new Map();
    this.clientHosts = new Map();
  }

  private addMinute(id: number, row: RowParams): void {
    const key = Math.trunc((row.started_at_ms as number) / 60000);
    let m = this.minutes.get(key);
    if (m === undefined) this.minutes.set(key, (m = { firstId: id, lastId: id, allowed: 0, denied: 0, wouldDeny: 0 }));
    m.firstId = Math.min(m.firstId, id);
    m.lastId = Math.max(m.lastId, id);
    if (row.decision === 'allow') m.allowed += 1;
    if (row.decision === 'deny') m.denied += 1;
    m.wouldDeny += row.would_deny as number;
  }
}

/**
 * The definition the batches must match, in SQL: empties the side tables and fills them from
 * `requests` as a whole, with 002's backfill statements. One change: 002 takes first_seen_*'s id
 * from "the row holding min(started_at_ms)", which SQLite leaves arbitrary on equal starts; here
 * the lowest id wins, the record inserted first, as the trigger and SideTableBatch decide. Used by
 * the tests as the reference; it can also repair a file after rows were inserted by hand (a
 * `sqlite3` shell keeps no side tables since 003), at a price: first_seen_* forget hosts whose
 * records retention already deleted.
 */
export function rebuildSideTables(db: Database.Database): void {
  db.transaction(() => db.exec(`
    DELETE FROM request_clients;
    DELETE FROM request_minutes;
    DELETE FROM first_seen_hosts;
    DELETE FROM first_seen_client_hosts;
    INSERT INTO request_clients (client, request_id)
      SELECT j.value, r.id FROM requests AS r, json_each(r.clients) AS j WHERE j.type = 'text'
      ON CONFLICT DO NOTHING;
    INSERT INTO request_minutes (minute, first_id, last_id, allowed, denied, would_deny)
      SELECT started_at_ms / 60000, min(id), max(id), sum(decision = 'allow'), sum(decision = 'deny'), sum(would_deny)
      FROM requests GROUP BY started_at_ms / 60000;
    INSERT INTO first_seen_hosts (host, first_at_ms, first_id)
      SELECT host, started_at_ms, id FROM (
        SELECT host, started_at_ms, id, row_number() OVER (PARTITION BY host ORDER BY started_at_ms, id) AS n
        FROM requests WHERE host IS NOT NULL) WHERE n = 1;
    INSERT INTO first_seen_client_hosts (client_ip, host, first_at_ms, first_id)
      SELECT client_ip, host, started_at_ms, id FROM (
        SELECT client_ip, host, started_at_ms, id,
          row_number() OVER (PARTITION BY client_ip, host ORDER BY started_at_ms, id) AS n
        FROM requests WHERE host IS NOT NULL) WHERE n = 1;
  `)).immediate();
}
