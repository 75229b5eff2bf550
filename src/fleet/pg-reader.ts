import { performance } from 'node:perf_hooks';
import type { Pool } from 'pg';
import type { FirstSeenBy, FirstSeenPage } from '../audit/first-seen';
import { narrowsBeyondWindow, parseRequestFilters } from '../audit/filters';
import type { FacetsAnswer } from '../audit/facets';
import { pgFacets, pgFilteredStats } from './pg-facets';
import type { RequestFilters } from '../audit/filters';
import { checkLimit, decodeCursor, encodeCursor, EXPORT_BATCH, TOP } from '../audit/query';
import type { ListRequestsOptions, RequestPage, SearchPace } from '../audit/query';
import type { AuditRecordJson } from '../audit/record-types';
import type { AuditReader, FacetsQuery, NodesPage } from '../audit/reader';
import type { RuleHits } from '../audit/rule-hits';
import type { Stats, StatsWindow } from '../audit/stats';
import { pgFirstSeen, pgNodes, pgRuleHits, pgStats } from './pg-aggregates';
import { pgNewestId, pgRecordById, pgRecordsByIds } from './pg-records';
import { openPgIdWalk } from './pg-request-walk';

/**
 * How long one page may search the shared history before it answers with what it has (partial,
 * with a cursor to go on). Longer than SQLite's 40 ms: no proxy shares this thread or database,
 * only a person waits.
 */
export const PG_PAGE_SEARCH_BUDGET_MS = 500;

const NO_FILTERS: RequestFilters = parseRequestFilters({}, new Date(0));

/** The fleet's shared history (migrations/postgres/) read through the AuditReader contract. */
export class PgAuditReader implements AuditReader {
  readonly engine = 'postgres' as const;

  constructor(private readonly pool: Pool, private readonly pace: SearchPace = {}) {}

  /** The same page as query.ts listRequests gives on SQLite: keyset by id, partial on budget. */
  async listRequests(opts: ListRequestsOptions): Promise<RequestPage> {
    const pace = opts.pace ?? this.pace;
    const limit = checkLimit(opts.limit);
    const before = opts.cursor === undefined || opts.cursor === null ? TOP : decodeCursor(opts.cursor);
    const deadline = performance.now() + (pace.budgetMs ?? PG_PAGE_SEARCH_BUDGET_MS);
    const want = limit + 1;
    const ids: number[] = [];
    let resumeBelow: number | null = null;
    // Read first, and the walk bounded by it: a record shipped while the page is read is above
    // newest_id, so a live view asking for after_id=newest_id gets it next time, not never.
    const newest = await pgNewestId(this.pool);
    if (newest === null) return { items: [], newest_id: null, next_cursor: null, partial: false };
    const walk = await openPgIdWalk(this.pool, opts.filters ?? NO_FILTERS, { before: Math.min(before, newest + 1), after: opts.afterId ?? 0 }, pace.firstSliceIds);
    while (walk !== null) {
      const slice = await walk.slice(want - ids.length);
      ids.push(...slice.ids);
      resumeBelow = slice.resumeBelow;
      if (ids.length === want || resumeBelow === null || performance.now() >= deadline) break;
    }
    const items = await pgRecordsByIds(this.pool, ids.slice(0, limit));
    const page = { items, newest_id: newest };
    // ids, not items: a record pruned between the walk and the read is missing from items.
    if (ids.length > limit) return { ...page, next_cursor: encodeCursor(ids[limit - 1]), partial: false };
    if (resumeBelow === null) return { ...page, next_cursor: null, partial: false };
    const reached = await this.pool.query<{ started_at_ms: string }>(
      'SELECT started_at_ms FROM requests WHERE id >= $1 ORDER BY id LIMIT 1',
      [resumeBelow],
    );
    const at = reached.rows[0]?.started_at_ms;
    return {
      ...page,
      next_cursor: encodeCursor(resumeBelow),
      partial: true,
      searched_to_id: resumeBelow,
      searched_to: at === undefined ? null : new Date(Number(at)).toISOString(),
    };
  }

  getRequest(id: number): Promise<AuditRecordJson | null> {
    return pgRecordById(this.pool, id);
  }

  /** Batches of at most EXPORT_BATCH, one slice query and one fetch each, read as pulled. */
  async *exportRecords(filters: RequestFilters, pace?: SearchPace): AsyncGenerator<AuditRecordJson[], void, undefined> {
    const walk = await openPgIdWalk(this.pool, filters, { before: TOP, after: 0 }, (pace ?? this.pace).firstSliceIds);
    if (walk === null) return;
    for (;;) {
      const slice = await walk.slice(EXPORT_BATCH);
      yield await pgRecordsByIds(this.pool, slice.ids);
      if (slice.resumeBelow === null) return;
    }
  }

  stats(window: StatsWindow, top: number, filters?: RequestFilters): Promise<Stats> {
    if (filters !== undefined && narrowsBeyondWindow(filters)) return pgFilteredStats(this.pool, window, top, filters);
    return pgStats(this.pool, window, top);
  }

  facets(query: FacetsQuery): Promise<FacetsAnswer> {
    return pgFacets(this.pool, query);
  }

  firstSeen(window: StatsWindow, by: FirstSeenBy, limit: number): Promise<FirstSeenPage> {
    return pgFirstSeen(this.pool, window, by, limit);
  }

  ruleHits(names: readonly string[], sinceMs: number): Promise<Map<string, RuleHits>> {
    return pgRuleHits(this.pool, names, sinceMs);
  }

  nodes(now: Date): Promise<NodesPage> {
    return pgNodes(this.pool, now);
  }

  /** The shared history answers (for /readyz of `tollgate admin`). */
  async answers(): Promise<boolean> {
    try {
      await this.pool.query('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }
}
