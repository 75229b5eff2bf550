import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type Database from 'better-sqlite3';
import { FACET_SAMPLE_CAP, FacetTally, facetsAnswer, NOTHING_LEFT } from './facets';
import type { FacetBudget, FacetField, FacetRow, FacetsAnswer } from './facets';
import type { RequestFilters } from './filters';
import { openSliceScanner } from './request-plan';
import type { SliceScanner } from './request-plan';
import { nextSliceSize } from './slice-size';
import type { SliceSizing } from './slice-size';

/**
 * Facets and filtered stats on one replica's SQLite store. The admin app shares the proxy's
 * thread: the filtered set is read down the id space in slices (request-plan.ts SliceScanner),
 * each one short query sized to cost about SLICE_TARGET_MS, with a turn of the event loop between.
 */

const FACET_COLUMNS = 'r.host, r.client_ip, r.clients, r.rule, r.decision, r.status, r.user, r.started_at_ms, r.would_deny';

interface RawFacetRow extends Omit<FacetRow, 'clients' | 'node' | 'would_deny'> {
  clients: string;
  would_deny: number;
}

/** Group lists repeat (a few distinct JSON texts in a million rows): parsed once each. */
const parsedGroups = new Map<string, readonly string[]>();

function groupsOf(text: string): readonly string[] {
  let groups = parsedGroups.get(text);
  if (groups === undefined) {
    const value: unknown = JSON.parse(text);
    groups = Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
    if (parsedGroups.size > 10_000) parsedGroups.clear();
    parsedGroups.set(text, groups);
  }
  return groups;
}

function toFacetRow(row: RawFacetRow, node: string): FacetRow {
  return {
    host: row.host, client_ip: row.client_ip, clients: groupsOf(row.clients), rule: row.rule, decision: row.decision,
    status: row.status, user: row.user, node, started_at_ms: row.started_at_ms, would_deny: row.would_deny === 1,
  };
}

/** What one slice should cost, and its bounds in ids. */
const SLICE_SIZING: SliceSizing = { targetMs: 8, min: 512, max: 32_768 };
const FIRST_SLICE = 4096;

/**
 * Slices of [scanner.lo, before), newest first: each yields the id it starts at (every match at
 * or above it has been handed over once the caller resumes). `work` runs one slice.
 */
async function* slices(
  scanner: SliceScanner<unknown>,
  before: number,
  work: (lo: number, hi: number) => void,
  first: number = FIRST_SLICE,
): AsyncGenerator<number, void, undefined> {
  let hi = Math.min(before, scanner.top);
  let size = Math.max(1, first);
  while (hi > scanner.lo) {
    const lo = Math.max(scanner.lo, hi - size);
    const started = performance.now();
    work(lo, hi);
    size = nextSliceSize(size, performance.now() - started, SLICE_SIZING);
    hi = lo;
    if (hi <= scanner.lo) return;
    yield hi;
    await nextTurn();
  }
}

const TOP = Number.MAX_SAFE_INTEGER;

/**
 * Every matching record's facet columns handed to `add`, newest slice first, until done or
 * `stop()` says so. Returns where it stopped (every match at or above was added), null when done.
 * `db` is read at each step: when the store reopened its file meanwhile, the read starts over.
 */
export async function scanFacetRows(
  db: () => Database.Database,
  filters: RequestFilters,
  node: string,
  add: (rows: FacetRow[]) => void,
  stop: () => boolean = () => false,
  firstSlice: number = FIRST_SLICE,
): Promise<{ stoppedBelow: number | null; restart: boolean }> {
  const conn = db();
  const scanner = openSliceScanner<RawFacetRow>(conn, filters, FACET_COLUMNS);
  if (scanner === null) return { stoppedBelow: null, restart: false };
  return scanWith(db, conn, scanner, node, add, stop, firstSlice);
}

/** scanFacetRows on a scanner already open on `conn`. */
async function scanWith(
  db: () => Database.Database,
  conn: Database.Database,
  scanner: SliceScanner<RawFacetRow>,
  node: string,
  add: (rows: FacetRow[]) => void,
  stop: () => boolean,
  firstSlice: number,
): Promise<{ stoppedBelow: number | null; restart: boolean }> {
  const read = (lo: number, hi: number): void => add(scanner.rows(lo, hi).map((row) => toFacetRow(row, node)));
  for await (const below of slices(scanner, TOP, read, firstSlice)) {
    if (db() !== conn) return { stoppedBelow: null, restart: true };
    if (stop()) return { stoppedBelow: below, restart: false };
  }
  return { stoppedBelow: null, restart: false };
}

/** The matching records below `before`, counted down in slices (the tally's scanner) until done or out of time. */
async function countBelow(scanner: SliceScanner<unknown>, before: number, budgetMs: number): Promise<{ counted: number; complete: boolean }> {
  const deadline = performance.now() + budgetMs;
  let counted = 0;
  for await (const _below of slices(scanner, before, (lo, hi) => void (counted += scanner.count(lo, hi)))) {
    if (performance.now() >= deadline) return { counted, complete: false };
  }
  return { counted, complete: true };
}

/**
 * GET /api/requests/facets on SQLite: tally the newest matches until the cap or the tally budget,
 * then count the rest within the count budget.
 */
export async function sqliteFacets(
  db: () => Database.Database,
  query: { filters: RequestFilters; fields: readonly FacetField[]; limit: number; node: string; budget: FacetBudget },
): Promise<FacetsAnswer> {
  const { filters, fields, limit, node, budget } = query;
  const cap = budget.sampleCap ?? FACET_SAMPLE_CAP;
  // Both budgets count from here: the answer's time is bounded by their sum.
  const began = performance.now();
  const deadline = began + budget.tallyMs;
  const tally = new FacetTally(fields);
  const conn = db();
  const scanner = openSliceScanner<RawFacetRow>(conn, filters, FACET_COLUMNS);
  if (scanner === null) return facetsAnswer(tally, limit, NOTHING_LEFT);
  const stop = (): boolean => tally.rows >= cap || performance.now() >= deadline;
  const scan = await scanWith(db, conn, scanner, node, (rows) => tally.add(rows), stop, budget.firstSliceIds ?? FIRST_SLICE);
  if (scan.restart) return sqliteFacets(db, query);
  if (scan.stoppedBelow === null) return facetsAnswer(tally, limit, NOTHING_LEFT);
  const rest = await countBelow(scanner, scan.stoppedBelow, Math.max(0, began + budget.tallyMs + budget.countMs - performance.now()));
  return facetsAnswer(tally, limit, { exhausted: false, counted: rest.counted, countComplete: rest.complete });
}
