import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type Database from 'better-sqlite3';
import { FACET_SAMPLE_CAP, FacetTally, facetsAnswer } from './facets';
import type { FacetBudget, FacetField, FacetRow, FacetsAnswer } from './facets';
import type { RequestFilters } from './filters';
import { TOP } from './query';
import { openIdCounter, openIdWalk } from './request-plan';
import { statement } from './statement-cache';

/**
 * Facets and filtered walks on one replica's SQLite store. The admin app shares the proxy's
 * thread: every step here is one short query (a walk slice, a row fetch of at most FACET_BATCH
 * ids, a count slice of about 8 ms), with a turn of the event loop between steps.
 */

/** Ids per step of a facet tally: one walk slice and one row fetch. */
export const FACET_BATCH = 2000;

const FACET_COLUMNS = 'host, client_ip, clients, rule, decision, status, user, started_at_ms, would_deny';

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

/** The facet columns of the records with these ids (any order). */
export function readFacetRows(db: Database.Database, ids: readonly number[], node: string): FacetRow[] {
  if (ids.length === 0) return [];
  const rows = statement(db, `SELECT ${FACET_COLUMNS} FROM requests WHERE id IN (SELECT value FROM json_each(?))`).all(JSON.stringify(ids)) as RawFacetRow[];
  return rows.map((row) => ({ ...row, clients: groupsOf(row.clients), node, would_deny: row.would_deny === 1 }));
}

/**
 * Every matching record's facet columns, newest first, a batch per pull, with a turn of the
 * event loop between batches. `stopBelow` reports where an unfinished walk stopped: every
 * matching id at or above it was handed over.
 */
export async function* walkFacetRows(
  db: Database.Database,
  filters: RequestFilters,
  node: string,
  batch: number = FACET_BATCH,
): AsyncGenerator<{ rows: FacetRow[]; resumeBelow: number | null }, void, undefined> {
  const walk = openIdWalk(db, filters, { before: TOP, after: 0 });
  if (walk === null) return;
  for (;;) {
    const slice = walk.slice(batch);
    yield { rows: readFacetRows(db, slice.ids, node), resumeBelow: slice.resumeBelow };
    if (slice.resumeBelow === null) return;
    await nextTurn();
  }
}

/** What one count slice should cost, and its bounds in ids. */
const COUNT_SLICE_TARGET_MS = 8;
const FIRST_COUNT_SLICE = 65_536;
const MAX_COUNT_SLICE = 1_048_576;

/** The matching records below `before`, counted down in slices until done or out of time. */
async function countBelow(db: Database.Database, filters: RequestFilters, before: number, budgetMs: number): Promise<{ counted: number; complete: boolean }> {
  const counter = openIdCounter(db, filters);
  if (counter === null) return { counted: 0, complete: true };
  const deadline = performance.now() + budgetMs;
  let counted = 0;
  let hi = before;
  let size = FIRST_COUNT_SLICE;
  while (hi > counter.lo) {
    const lo = Math.max(counter.lo, hi - size);
    const started = performance.now();
    counted += counter.count(lo, hi);
    hi = lo;
    const ms = performance.now() - started;
    if (ms < COUNT_SLICE_TARGET_MS / 2) size = Math.min(MAX_COUNT_SLICE, size * 2);
    else if (ms > COUNT_SLICE_TARGET_MS * 2) size = Math.max(1024, Math.floor(size / 2));
    if (hi <= counter.lo) break;
    if (performance.now() >= deadline) return { counted, complete: false };
    await nextTurn();
  }
  return { counted, complete: true };
}

/**
 * GET /api/requests/facets on SQLite: tally the newest matches until the cap or the tally budget,
 * then count the rest within the count budget. `db` is read at each step: the store replaces its
 * connection when it reopens the file, and the facets are then read again on the new one.
 */
export async function sqliteFacets(
  db: () => Database.Database,
  query: { filters: RequestFilters; fields: readonly FacetField[]; limit: number; node: string; budget: FacetBudget },
): Promise<FacetsAnswer> {
  const conn = db();
  const { filters, fields, limit, node, budget } = query;
  const cap = budget.sampleCap ?? FACET_SAMPLE_CAP;
  const deadline = performance.now() + budget.tallyMs;
  const tally = new FacetTally(fields);
  let stoppedBelow: number | null = null;
  for await (const batch of walkFacetRows(conn, filters, node, Math.max(1, Math.min(FACET_BATCH, cap)))) {
    if (db() !== conn) return sqliteFacets(db, query);
    tally.add(batch.rows);
    stoppedBelow = batch.resumeBelow;
    if (stoppedBelow !== null && (tally.rows >= cap || performance.now() >= deadline)) break;
  }
  if (stoppedBelow === null) return facetsAnswer(tally, limit, { exhausted: true, counted: 0, countComplete: true });
  const rest = await countBelow(conn, filters, stoppedBelow, budget.countMs);
  return facetsAnswer(tally, limit, { exhausted: false, counted: rest.counted, countComplete: rest.complete });
}
