import type { Pool, PoolClient } from 'pg';
import { decodeEntry, EntryDecodeError, readEntryHead } from '../audit/log/entry-decode';
import type { LogEntry } from '../audit/log/entry-codec';
import { ChainWalk } from '../audit/log/verify-chain';
import type { VerifyReport } from '../audit/log/verify-chain';
import { COMPLETION_COLUMNS } from '../audit/record-params';
import { inTransaction } from './pg-client';
import { INSERT_COLUMN_LIST, INSERT_COLUMNS, rowValues } from './pg-ship';

/**
 * `tollgate audit verify --audit-url` (issue 17): every replica's chain, from the copy the shippers
 * keep in PostgreSQL (audit_chain, migration 007), walked as `--db` walks a log (ChainWalk), and
 * every row of `requests` checked against the entries that made it. So an edited row (a field that
 * differs from its entry), a deleted row, a row no entry made, a row moved in the shared order, and
 * entries edited, removed or reordered are each a break. Records `audit prune` removed are not: the
 * chain's copy is cut there too, from a checkpoint of the head at the cut (pg-prune.ts).
 *
 * Each store is read in one REPEATABLE READ snapshot, so a batch shipped or a prune running while
 * it walks is not taken for an inserted or a deleted row.
 */

export interface StoreVerifyReport {
  storeId: string;
  node: string;
  report: VerifyReport;
  /** Rows checked against their entries. */
  rows: number;
  /** Rows shipped before the chain's copy existed (an upgraded replica): not verifiable. */
  rowsBeforeChain: number;
  /** Records whose entries are in the copy but whose rows `audit prune` removed (started before its cut). */
  pruned: number;
  /** The store has no copy of its chain (shipped only by a release before it): nothing verified. */
  noCopy: boolean;
  /** The shared history's id of the record at the break, when it has a row. */
  breakRowId: number | null;
}

export interface PgVerifyOptions {
  key: Buffer | null;
  /** Hashes that must be met along some chain (heads witnessed earlier); lower-case hex. */
  expectHeads?: readonly string[];
  /** Payloads fetched per query. */
  pageSize?: number;
  clock?: () => number;
}

export interface PgVerifyResult {
  stores: StoreVerifyReport[];
  /** The expected heads no chain passed through. */
  headsNotMet: string[];
}

/** Which columns an open entry and a completion fill (the row's other columns are the other's). */
const COMPLETION_AT = INSERT_COLUMNS.map((c) => (COMPLETION_COLUMNS as readonly string[]).includes(c));

interface StoreRow {
  store_id: string;
  node: string;
  chain_entries: string;
  chain_hash: Buffer | null;
  chain_after_local_id: string | null;
  chain_cut_ms: string | null;
  chain_cut_seq: string | null;
}

export async function verifyHistory(pool: Pool, options: PgVerifyOptions): Promise<PgVerifyResult> {
  const stores = await pool.query<{ store_id: string }>('SELECT store_id FROM audit_stores ORDER BY node, store_id');
  const pending = new Set(options.expectHeads ?? []);
  const result: PgVerifyResult = { stores: [], headsNotMet: [] };
  for (const { store_id: storeId } of stores.rows) {
    // Read only: its ROLLBACK on an error ends it as COMMIT would.
    result.stores.push(await inTransaction(pool, (client) => verifyStore(client, storeId, options, pending), 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY'));
  }
  result.headsNotMet = [...pending];
  return result;
}

interface RowFound {
  id: number;
  values: unknown[];
}

/** What the walk has seen of the store's rows so far. */
interface RowCheckState {
  after: number | null;
  cutMs: number | null;
  cutSeq: number;
  /** Records whose open entry was met and whose row was found. */
  matched: Set<number>;
  /** Records whose first completion was met, with their row (a later one is ignored, as the shipper did). */
  completed: Set<number>;
  /** The shared id of the last row matched: rows are inserted in their replica's order. */
  lastRowId: number;
  pruned: number;
}

async function verifyStore(client: PoolClient, storeId: string, options: PgVerifyOptions, pending: Set<string>): Promise<StoreVerifyReport> {
  const { rows: [store] } = await client.query<StoreRow>(
    'SELECT store_id, node, chain_entries, chain_hash, chain_after_local_id, chain_cut_ms, chain_cut_seq FROM audit_stores WHERE store_id = $1',
    [storeId],
  );
  const walk = new ChainWalk(options.key);
  const out: StoreVerifyReport = { storeId, node: store.node, report: walk.report, rows: 0, rowsBeforeChain: 0, pruned: 0, noCopy: false, breakRowId: null };
  const entriesShipped = Number(store.chain_entries);
  if (entriesShipped === 0) {
    // Shipped by a release before the copy (a rolling upgrade): nothing to walk, and not a break.
    out.noCopy = true;
    out.rowsBeforeChain = Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM requests WHERE store_id = $1', [storeId])).rows[0].n);
    return out;
  }
  const state: RowCheckState = {
    after: store.chain_after_local_id === null ? null : Number(store.chain_after_local_id),
    cutMs: store.chain_cut_ms === null ? null : Number(store.chain_cut_ms),
    cutSeq: store.chain_cut_seq === null ? 0 : Number(store.chain_cut_seq),
    matched: new Set(), completed: new Set(), lastRowId: 0, pruned: 0,
  };
  const pageSize = options.pageSize ?? 5000;
  let rowIds = new Map<number, number>();
  const fail = (localId: number, message: string): void => {
    out.breakRowId = rowIds.get(localId) ?? null;
    walk.breakAt(localId, message);
  };
  if (state.cutMs !== null && state.cutMs > (options.clock ?? Date.now)()) {
    walk.breakAt(null, `its prune cut (chain_cut_ms ${state.cutMs}) is in the future: records it would excuse as pruned are not`);
  }

  let seq = 0;
  while (!walk.broken) {
    const page = await client.query<{ seq: string; local_id: string; entry: Buffer }>(
      'SELECT seq, local_id, entry FROM audit_chain WHERE store_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3',
      [storeId, seq, pageSize],
    );
    if (page.rows.length === 0) break;
    const entries: Array<{ at: number; entry: LogEntry }> = [];
    for (const { seq: seqText, local_id: localText, entry: payload } of page.rows) {
      const at = Number(seqText);
      const head = readEntryHeadOrNull(payload);
      // A copy cut by `audit prune` starts with a checkpoint, at whatever seq the cut left.
      const cutStart = seq === 0 && head?.type === 'head';
      if (at !== seq && !cutStart) walk.lost(`entries ${seq}..${at - 1} of its chain are missing from audit_chain before it`);
      seq = at + 1;
      if (head !== null && head.id !== Number(localText)) {
        walk.breakAt(head.id, `entry ${at} of its chain is filed under record ${localText} in audit_chain (the copy was edited)`);
        break;
      }
      const accepted = walk.payload(payload, { where: `entry ${at} of ${store.node}`, startOf: cutStart || at === 0 ? `${store.node}'s chain` : undefined });
      if (walk.broken) break;
      if (!accepted || head === null || head.type === 'head') continue;
      // Only a head recomputed from an entry is met: a checkpoint carries whatever hash it was given.
      if (pending.size > 0 && walk.report.headRecomputed) pending.delete(walk.report.head.hash.toString('hex'));
      try {
        entries.push({ at, entry: decodeEntry(payload) });
      } catch (err) {
        if (!(err instanceof EntryDecodeError)) throw err;
        walk.breakAt(head.id, `entry ${at} carries a hash that holds, but does not decode (${err.message})`);
      }
    }
    if (walk.broken) break;
    const rows = await rowsOf(client, storeId, entries.map((e) => e.entry.id));
    rowIds = new Map([...rows.values()].map((row) => [row.values[0] as number, row.id]));
    for (const { at, entry } of entries) {
      const message = checkRow(entry, at, rows.get(entry.id), state);
      if (message !== null) {
        fail(entry.id, message);
        break;
      }
    }
  }
  if (!walk.broken && seq < entriesShipped) walk.lost(`entries ${seq}..${entriesShipped - 1} at the end of its chain are missing from audit_chain`);
  walk.finish();
  out.rows = state.matched.size;
  out.pruned = state.pruned;
  if (walk.broken) return out;
  if (store.chain_hash !== null && !store.chain_hash.equals(walk.report.head.hash)) {
    walk.breakAt(walk.report.head.id, 'the copy ends at another head than its store says it shipped (entries at the end removed or rewritten)');
    return out;
  }
  await checkNoStrayRows(client, storeId, state, out, fail);
  return out;
}

/** The row each entry made, by local id, as rowValues writes them (jsonb keeps the types). */
async function rowsOf(client: PoolClient, storeId: string, localIds: number[]): Promise<Map<number, RowFound>> {
  const found = new Map<number, RowFound>();
  if (localIds.length === 0) return found;
  const result = await client.query<{ id: string; v: unknown[] }>(
    `SELECT id, jsonb_build_array(${INSERT_COLUMN_LIST}) AS v FROM requests WHERE store_id = $1 AND local_id = ANY($2::bigint[])`,
    [storeId, [...new Set(localIds)]],
  );
  for (const row of result.rows) found.set(row.v[0] as number, { id: Number(row.id), values: row.v });
  return found;
}

const MISSING = 'its row is missing from the shared history (deleted), though its replica\'s chain holds it';

/** Null when the row agrees with the entry (or is rightly gone); else what differs. */
function checkRow(entry: LogEntry, at: number, row: RowFound | undefined, state: RowCheckState): string | null {
  if (entry.type === 'open' || entry.type === 'finished') {
    // Entries of records shipped before the copy began are completions only: an open at or below
    // that point means the point was moved to hide rows (chain_after_local_id edited).
    if (state.after !== null && entry.id <= state.after) return `its open entry is in the chain's copy, but the store says records up to ${state.after} were shipped before the copy began`;
    if (row === undefined) {
      // Pruned: shipped before the last prune's cut and started before its cutoff.
      if (state.cutMs !== null && at < state.cutSeq && entry.open.startedAt.getTime() < state.cutMs) {
        state.pruned += 1;
        return null;
      }
      return MISSING;
    }
    if (row.id <= state.lastRowId) return 'its row is out of its replica\'s order in the shared history (moved: re-inserted with another id)';
    state.lastRowId = row.id;
    state.matched.add(entry.id);
    if (entry.type === 'finished') state.completed.add(entry.id);
    const expected = rowValues(entry.id, entry.open, entry.type === 'finished' ? entry.completion : null);
    return firstDifference(expected, row.values, entry.type === 'open' ? 'open' : 'all');
  }
  // A completion: the first one filled the row; a later one for the same record changed nothing.
  // One whose open entry is not in the copy (shipped before it began, or pruned) cannot be checked:
  // which completion the row took is not known.
  if (!state.matched.has(entry.id) || state.completed.has(entry.id)) return null;
  state.completed.add(entry.id);
  if (row === undefined) return MISSING;
  return firstDifference(rowValues(entry.id, STAND_IN_OPEN, entry.completion), row.values, 'completion');
}

/** Stand-in open facts for comparing a completion's columns only. */
const STAND_IN_OPEN = {
  startedAt: new Date(0), clientIp: '', clientPort: 0, clients: [], user: null, kind: 'http', method: null, scheme: null, host: null, port: null,
  path: null, resolvedIp: null, decision: 'allow', wouldDeny: false, rule: null, ruleSource: null, reason: '', policyVersion: null,
} as const satisfies Parameters<typeof rowValues>[1];

function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => v === b[i]);
  return (a ?? null) === (b ?? null);
}

function firstDifference(expected: unknown[], actual: unknown[], which: 'open' | 'completion' | 'all'): string | null {
  for (let i = 0; i < INSERT_COLUMNS.length; i += 1) {
    if ((which === 'open' && COMPLETION_AT[i]) || (which === 'completion' && !COMPLETION_AT[i])) continue;
    if (same(expected[i], actual[i])) continue;
    const want = JSON.stringify(expected[i] ?? null);
    const got = JSON.stringify(actual[i] ?? null);
    return `its row's ${INSERT_COLUMNS[i]} is ${clip(got)} in the shared history, but ${clip(want)} in its replica's chain (the row was edited)`;
  }
  return null;
}

function clip(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function readEntryHeadOrNull(payload: Buffer): ReturnType<typeof readEntryHead> | null {
  try {
    return readEntryHead(payload);
  } catch {
    return null;
  }
}

/**
 * Rows no entry made: more rows of the store (after the chain's start) than open entries matched,
 * or more completed rows than completions met. Only then are the store's rows walked, to name the
 * first such row. Read in the walk's snapshot, so the counts are of the same rows.
 */
async function checkNoStrayRows(
  client: PoolClient, storeId: string, state: RowCheckState, out: StoreVerifyReport, fail: (localId: number, message: string) => void,
): Promise<void> {
  const floor = state.after ?? -1;
  const counts = await client.query<{ total: string; done: string; before: string }>(
    `SELECT count(*) FILTER (WHERE local_id > $2) AS total, count(ended_at_ms) FILTER (WHERE local_id > $2) AS done,
       count(*) FILTER (WHERE local_id <= $2) AS before FROM requests WHERE store_id = $1`,
    [storeId, floor],
  );
  out.rowsBeforeChain = Number(counts.rows[0].before);
  let completedRows = 0;
  for (const id of state.completed) if (state.matched.has(id)) completedRows += 1;
  if (Number(counts.rows[0].total) === state.matched.size && Number(counts.rows[0].done) === completedRows) return;
  let from = floor;
  for (;;) {
    const page = await client.query<{ id: string; local_id: string; done: boolean }>(
      'SELECT id, local_id, ended_at_ms IS NOT NULL AS done FROM requests WHERE store_id = $1 AND local_id > $2 ORDER BY local_id LIMIT 10000',
      [storeId, from],
    );
    if (page.rows.length === 0) break;
    for (const row of page.rows) {
      const localId = Number(row.local_id);
      const stray = !state.matched.has(localId)
        ? 'its row is in the shared history, but no entry of its replica\'s chain made it (a row inserted)'
        : row.done !== state.completed.has(localId)
          ? row.done
            ? 'its row is completed in the shared history, but its replica\'s chain holds no completion for it (the row was edited)'
            : 'its row is open in the shared history, but its replica\'s chain completed it (the row was edited)'
          : null;
      if (stray !== null) {
        fail(localId, stray);
        out.breakRowId = Number(row.id);
        return;
      }
      from = localId;
    }
  }
  // Counts differ but every row agrees: the copy is short of what the rows say (should not happen).
  fail(state.after ?? 0, `the store's rows (${counts.rows[0].total}, ${counts.rows[0].done} completed) do not match the chain's records (${state.matched.size}, ${completedRows} completed)`);
}
