import type { FacetBudget, FacetField, FacetsAnswer } from './facets';
import type { FirstSeenBy, FirstSeenPage } from './first-seen';
import type { RequestFilters } from './filters';
import type { ListRequestsOptions, RequestPage, SearchPace } from './query';
import type { AuditRecordJson } from './record-types';
import type { RuleHits } from './rule-hits';
import type { Stats, StatsWindow } from './stats';

/**
 * Everything the admin API reads from the audit history, on either engine: the local SQLite
 * store of one replica (sqlite-reader.ts) or the fleet's shared history in PostgreSQL
 * (src/fleet/pg-reader.ts). Filters, the cursor and the record JSON are the same values on both;
 * only `id` differs: the local store's own id, or the shared history's.
 */
export interface AuditReader {
  readonly engine: 'sqlite' | 'postgres';
  listRequests(opts: ListRequestsOptions): Promise<RequestPage>;
  getRequest(id: number): Promise<AuditRecordJson | null>;
  /** The filtered set, newest first, in batches read one at a time as the consumer pulls. */
  exportRecords(filters: RequestFilters, pace?: SearchPace): AsyncGenerator<AuditRecordJson[], void, undefined>;
  /**
   * GET /api/stats. With `filters` that narrow beyond the window (its own window is replaced by
   * `window`), the filtered set's records are read and counted (stats-filtered.ts).
   */
  stats(window: StatsWindow, top: number, filters?: RequestFilters): Promise<Stats>;
  /** GET /api/requests/facets: top values and the total of the filtered set (facets.ts). */
  facets(query: FacetsQuery): Promise<FacetsAnswer>;
  firstSeen(window: StatsWindow, by: FirstSeenBy, limit: number): Promise<FirstSeenPage>;
  ruleHits(names: readonly string[], sinceMs: number): Promise<Map<string, RuleHits>>;
  /** GET /api/nodes: the replicas whose records this history holds. */
  nodes(now: Date): Promise<NodesPage>;
}

export interface FacetsQuery {
  filters: RequestFilters;
  fields: readonly FacetField[];
  limit: number;
  budget: FacetBudget;
}

export interface NodeView {
  node: string;
  /** The local store's UUID (null for a single SQLite store, which is its own history). */
  store_id: string | null;
  /** The policy version the node last reported (PostgreSQL) or its newest record carries (SQLite). */
  policy_version: string | null;
  /** When the node last shipped (PostgreSQL) or now (SQLite: this process is the node). */
  last_contact: string | null;
  /** When its newest record started. */
  last_record: string | null;
  /** Log entries shipped (opens, completions, finished records); null on SQLite. */
  shipped_entries: number | null;
  /** Another store claims the same node name: two replicas were given one --node. */
  duplicate_name: boolean;
  /** Its policy version is not the one most nodes run (on a tie, every node is flagged). */
  policy_differs: boolean;
  /**
   * Not heard from for NODE_STALE_MS (a retired or stopped replica): still listed, but it takes
   * no part in the two flags, so an old name or an old policy does not flag the live nodes.
   */
  stale: boolean;
}

export interface NodesPage {
  engine: 'sqlite' | 'postgres';
  /** The policy version most nodes run; null when no node reported one, or on a tie. */
  common_policy_version: string | null;
  nodes: NodeView[];
}

export type UnflaggedNode = Omit<NodeView, 'duplicate_name' | 'policy_differs' | 'stale'>;

/**
 * A node whose last contact is older than this is stale. A live shipper touches its row at least
 * every 30 s, idle or not; a day leaves room for a PostgreSQL outage of hours.
 */
export const NODE_STALE_MS = 24 * 60 * 60 * 1000;

function isStale(row: UnflaggedNode, now: Date): boolean {
  return row.last_contact !== null && Date.parse(row.last_contact) < now.getTime() - NODE_STALE_MS;
}

/** The flags, from the names and versions of the nodes seen within NODE_STALE_MS (both engines). */
export function flagNodes(engine: NodesPage['engine'], rows: readonly UnflaggedNode[], now: Date): NodesPage {
  const names = new Map<string, number>();
  const versions = new Map<string, number>();
  for (const row of rows) {
    if (isStale(row, now)) continue;
    names.set(row.node, (names.get(row.node) ?? 0) + 1);
    if (row.policy_version !== null) versions.set(row.policy_version, (versions.get(row.policy_version) ?? 0) + 1);
  }
  const ranked = [...versions].sort((a, b) => b[1] - a[1]);
  const tie = ranked.length > 1 && ranked[0][1] === ranked[1][1];
  const common = ranked.length === 0 || tie ? null : ranked[0][0];
  return {
    engine,
    common_policy_version: common,
    nodes: rows.map((row) => {
      const stale = isStale(row, now);
      return {
        ...row,
        duplicate_name: !stale && (names.get(row.node) ?? 0) > 1,
        policy_differs: !stale && versions.size > 1 && row.policy_version !== null && row.policy_version !== common,
        stale,
      };
    }),
  };
}
