import { isIP } from 'node:net';
import { getDomain } from 'tldts';
import { ranked } from './stats';

/**
 * GET /api/requests/facets (SPEC §6): the top values of a few fields over the filtered set, and
 * how many records match. Both engines read the matching records newest first through their own
 * walk (request-plan.ts, pg-request-walk.ts), hand each batch of rows to a FacetTally, and stop
 * at a record cap or a time budget; what was not tallied is then counted, within a budget of its
 * own. So the answer is exact when the matches are few enough, and otherwise says what it is:
 * counts over the newest `sampled` matching records, and a total that is at least `total`.
 */

export const FACET_FIELDS = ['client_ip', 'clients', 'host', 'domain', 'rule', 'decision', 'status', 'user', 'node'] as const;
export type FacetField = (typeof FACET_FIELDS)[number];

export const DEFAULT_FACET_LIMIT = 10;
export const MAX_FACET_LIMIT = 100;

/** Records tallied at most: past it the counts are those of the newest this many matches. */
export const FACET_SAMPLE_CAP = 100_000;

/**
 * Time budgets, in ms, of the tally and of the count of the rest. Together with the set-up they
 * keep an answer under 500 ms at 1,000,000 records (SPEC §6 issue 19); a free-text search (`q`,
 * every row read and compared) gets the 2 s the issue allows it.
 */
export const FACET_BUDGETS = {
  plain: { tallyMs: 200, countMs: 120 },
  search: { tallyMs: 900, countMs: 500 },
} as const;

export interface FacetBudget {
  tallyMs: number;
  countMs: number;
  /** Records tallied at most (default FACET_SAMPLE_CAP); tests shrink it. */
  sampleCap?: number;
  /** SQLite: ids in the first slice of the scan (tests shrink it to see several slices). */
  firstSliceIds?: number;
}

/** The columns a facet reads from a matching record, as both engines hand them over. */
export interface FacetRow {
  host: string | null;
  client_ip: string;
  /** The client groups (SQLite keeps them as JSON text, PostgreSQL as text[]). */
  clients: readonly string[];
  rule: string | null;
  decision: string;
  status: number | null;
  user: string | null;
  node: string;
  started_at_ms: number;
  would_deny: boolean;
}

export interface FacetValue {
  value: string;
  count: number;
}

export interface FacetsAnswer {
  /** Matching records: exact when `total_exact`, else a lower bound (docs/admin.md, facets). */
  total: number;
  total_exact: boolean;
  /** Top values per asked field, most frequent first (ties by value, byte order). */
  facets: Partial<Record<FacetField, FacetValue[]>>;
  /** Matching records the facet counts were made from: the newest ones. */
  sampled: number;
  /** The facet counts are over every matching record (sampled === total, total exact). */
  counts_exact: boolean;
  /** When the counts are not over every match: the start time of the oldest record tallied. */
  sampled_since: string | null;
}

/** Registrable domains by host: hosts repeat far more than they vary. Bounded, cleared when full. */
const DOMAINS = new Map<string, string>();
const MAX_CACHED_DOMAINS = 50_000;

/**
 * The registrable domain (Public Suffix List, private section included, as policy suggest uses
 * it); an IP literal, or a name with no registrable part (`localhost`), is itself.
 */
export function registrableDomain(host: string): string {
  const cached = DOMAINS.get(host);
  if (cached !== undefined) return cached;
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const domain = isIP(bare) !== 0 ? host : getDomain(host, { allowPrivateDomains: true }) ?? host;
  if (DOMAINS.size >= MAX_CACHED_DOMAINS) DOMAINS.clear();
  DOMAINS.set(host, domain);
  return domain;
}

/** A field's values in one record: none (a record without a host), one, or several (groups). */
function valuesOf(row: FacetRow, field: FacetField): readonly string[] {
  switch (field) {
    case 'client_ip':
      return [row.client_ip];
    case 'clients':
      return row.clients;
    case 'host':
      return row.host === null ? [] : [row.host];
    case 'domain':
      return row.host === null ? [] : [registrableDomain(row.host)];
    case 'rule':
      return row.rule === null ? [] : [row.rule];
    case 'decision':
      return [row.decision];
    case 'status':
      return row.status === null ? [] : [String(row.status)];
    case 'user':
      return row.user === null ? [] : [row.user];
    case 'node':
      return [row.node];
  }
}

/** Counts per value of each asked field, over the rows added. */
export class FacetTally {
  private readonly counts: Map<FacetField, Map<string, number>>;
  rows = 0;
  /** The earliest start time of the rows added. */
  oldestMs: number | null = null;

  constructor(readonly fields: readonly FacetField[]) {
    this.counts = new Map(fields.map((field) => [field, new Map<string, number>()]));
  }

  add(rows: readonly FacetRow[]): void {
    const bump = (counts: Map<string, number>, value: string): void => void counts.set(value, (counts.get(value) ?? 0) + 1);
    for (const row of rows) {
      for (const [field, counts] of this.counts) {
        const values = valuesOf(row, field);
        if (values.length === 1) bump(counts, values[0]);
        // A record in a group twice is counted once in it, as request_clients keeps it.
        else if (values.length > 1) for (const value of new Set(values)) bump(counts, value);
      }
      if (this.oldestMs === null || row.started_at_ms < this.oldestMs) this.oldestMs = row.started_at_ms;
    }
    this.rows += rows.length;
  }

  /** Counts already grouped by the database (PostgreSQL's slices): `n` records with this value. */
  addCount(field: FacetField, value: string, n: number): void {
    const counts = this.counts.get(field);
    if (counts !== undefined) counts.set(value, (counts.get(value) ?? 0) + n);
  }

  /** Records counted through addCount, and the earliest start time among them. */
  addRecords(n: number, oldestMs: number | null): void {
    this.rows += n;
    if (oldestMs !== null && (this.oldestMs === null || oldestMs < this.oldestMs)) this.oldestMs = oldestMs;
  }

  top(limit: number): Partial<Record<FacetField, FacetValue[]>> {
    const out: Partial<Record<FacetField, FacetValue[]>> = {};
    for (const [field, counts] of this.counts) out[field] = ranked(counts, limit).map(({ key, count }) => ({ value: key, count }));
    return out;
  }
}

/** Splits and checks `fields=a,b`: known names, each once. */
export function parseFacetFields(text: string | undefined): FacetField[] | string {
  if (text === undefined) return 'fields is required: a comma-separated list of ' + FACET_FIELDS.join(', ');
  const fields = text.split(',').map((f) => f.trim()).filter((f) => f !== '');
  const unknown = fields.filter((f) => !(FACET_FIELDS as readonly string[]).includes(f));
  if (unknown.length > 0) return `fields: unknown field "${unknown[0]}" (known: ${FACET_FIELDS.join(', ')})`;
  if (fields.length === 0) return 'fields must name at least one field';
  return [...new Set(fields)] as FacetField[];
}

/** What is left of the matches once a tally stops: counted, or none (the tally read them all). */
export interface FacetsRest {
  exhausted: boolean;
  counted: number;
  countComplete: boolean;
}

/** The tally read every match: nothing is left to count. */
export const NOTHING_LEFT: Readonly<FacetsRest> = Object.freeze({ exhausted: true, counted: 0, countComplete: true });

/** What a tally and a count of the rest found, turned into the answer. */
export function facetsAnswer(tally: FacetTally, limit: number, rest: FacetsRest): FacetsAnswer {
  // Nothing left once the rest is counted: the tally was every match after all.
  const all = rest.exhausted || (rest.countComplete && rest.counted === 0);
  return {
    total: tally.rows + (all ? 0 : rest.counted),
    total_exact: all || rest.countComplete,
    facets: tally.top(limit),
    sampled: tally.rows,
    counts_exact: all,
    sampled_since: all || tally.oldestMs === null ? null : new Date(tally.oldestMs).toISOString(),
  };
}

/** Free text costs a read and compare of every row: such a filter gets the search budgets. */
export function budgetFor(hasSearch: boolean): FacetBudget {
  return hasSearch ? { ...FACET_BUDGETS.search } : { ...FACET_BUDGETS.plain };
}
