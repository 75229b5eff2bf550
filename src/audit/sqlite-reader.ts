import { setImmediate as nextTurn } from 'node:timers/promises';
import type Database from 'better-sqlite3';
import { listFirstSeen } from './first-seen';
import type { FirstSeenBy, FirstSeenPage } from './first-seen';
import type { RequestFilters } from './filters';
import { decodeCursor, DEFAULT_NODE, exportRecords, getRequest, listRequests } from './query';
import type { ListRequestsOptions, RequestPage, SearchPace } from './query';
import type { AuditRecordJson } from './record-types';
import { flagNodes } from './reader';
import type { AuditReader, FacetsQuery, NodesPage } from './reader';
import { FacetTally, facetsAnswer, NOTHING_LEFT } from './facets';
import type { FacetsAnswer } from './facets';
import { scanFacetRows, sqliteFacets } from './facets-sqlite';
import { narrowsBeyondWindow } from './filters';
import { StatsTally } from './stats-filtered';
import { ruleHits } from './rule-hits';
import type { RuleHits } from './rule-hits';
import { computeStatsPaced } from './stats';
import type { Stats, StatsWindow } from './stats';
import { statement } from './statement-cache';

/**
 * The AuditReader of one replica's own SQLite store: the hand-tuned synchronous queries of
 * query.ts, stats.ts, first-seen.ts and rule-hits.ts, unchanged, behind the async interface.
 * A single store is a single node, so `node=` matches every record or none.
 */
export class SqliteAuditReader implements AuditReader {
  readonly engine = 'sqlite' as const;

  /** `db` is read at each call: the store replaces its connection when it reopens the file. */
  constructor(
    private readonly db: () => Database.Database,
    private readonly node: string = DEFAULT_NODE,
    private readonly pace?: SearchPace,
  ) {}

  /** The filters leave out this store's one node: nothing can match. */
  private otherNode(filters: RequestFilters | undefined): boolean {
    if (filters === undefined) return false;
    return (filters.node !== null && filters.node !== this.node) || filters.not.node === this.node;
  }

  async listRequests(opts: ListRequestsOptions): Promise<RequestPage> {
    const pace = opts.pace ?? this.pace;
    if (this.otherNode(opts.filters)) {
      if (opts.cursor !== undefined && opts.cursor !== null) decodeCursor(opts.cursor);
      const newest = statement(this.db(), 'SELECT max(id) FROM requests').pluck().get() as number | null;
      return { items: [], next_cursor: null, newest_id: newest, partial: false };
    }
    return listRequests(this.db(), { ...opts, pace, node: this.node });
  }

  async getRequest(id: number): Promise<AuditRecordJson | null> {
    return getRequest(this.db(), id, this.node);
  }

  /**
   * A turn of the event loop after each batch: the proxy shares this thread, and a rare match is
   * a long run of slices that find nothing and would otherwise be read back to back.
   */
  async *exportRecords(filters: RequestFilters, pace?: SearchPace): AsyncGenerator<AuditRecordJson[], void, undefined> {
    if (this.otherNode(filters)) return;
    for (const batch of exportRecords(this.db(), filters, pace ?? this.pace, this.node)) {
      yield batch;
      await nextTurn();
    }
  }

  async stats(window: StatsWindow, top: number, filters?: RequestFilters): Promise<Stats> {
    if (filters === undefined || !narrowsBeyondWindow(filters)) return computeStatsPaced(this.db, window, top);
    const tally = new StatsTally(window);
    if (this.otherNode(filters)) return tally.stats(top);
    const windowed = { ...filters, window: { sinceMs: window.sinceMs, untilMs: window.untilMs } };
    const scan = await scanFacetRows(this.db, windowed, this.node, (rows) => tally.add(rows));
    // Reopened meanwhile (the file was moved): count again on the new connection.
    return scan.restart ? this.stats(window, top, filters) : tally.stats(top);
  }

  async facets(query: FacetsQuery): Promise<FacetsAnswer> {
    if (this.otherNode(query.filters)) return facetsAnswer(new FacetTally(query.fields), query.limit, NOTHING_LEFT);
    return sqliteFacets(this.db, { ...query, node: this.node });
  }

  async firstSeen(window: StatsWindow, by: FirstSeenBy, limit: number): Promise<FirstSeenPage> {
    return listFirstSeen(this.db(), window, by, limit);
  }

  async ruleHits(names: readonly string[], sinceMs: number): Promise<Map<string, RuleHits>> {
    return ruleHits(this.db(), names, sinceMs);
  }

  /** One node: this process. Its policy version is its newest record's. */
  async nodes(now: Date): Promise<NodesPage> {
    const newest = statement(this.db(), 'SELECT started_at_ms, policy_version FROM requests ORDER BY id DESC LIMIT 1').get() as
      | { started_at_ms: number; policy_version: string | null }
      | undefined;
    return flagNodes('sqlite', [{
      node: this.node,
      store_id: null,
      policy_version: newest?.policy_version ?? null,
      last_contact: now.toISOString(),
      last_record: newest === undefined ? null : new Date(newest.started_at_ms).toISOString(),
      shipped_entries: null,
    }], now);
  }
}
