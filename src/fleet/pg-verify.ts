import type { Pool } from 'pg';
import { decodeEntry, EntryDecodeError, readEntryHead, storedHash } from '../audit/log/entry-codec';
import type { LogEntry } from '../audit/log/entry-codec';
import { ChainWalk } from '../audit/log/verify-chain';
import type { VerifyReport } from '../audit/log/verify-chain';
import { COMPLETION_COLUMNS, INSERT_COLUMNS, rowValues } from './pg-ship';

/**
 * `tollgate audit verify --audit-url` (issue 17): every replica's chain, from the copy the shippers
 * keep in PostgreSQL (audit_chain, migration 007), walked as `--db` walks a log (ChainWalk), and
 * every row of `requests` checked against the entries that made it. So an edited row (a field that
 * differs from its entry), a deleted row, a row no entry made, and entries edited, removed or
 * reordered are each a break. Records `audit prune` removed are not: the chain's copy is cut there
 * too, from a checkpoint of the head at the cut (pg-prune.ts).
 */

export interface StoreVerifyReport {
  storeId: string;
  node: string;
  report: VerifyReport;
  /** Rows checked against their entries. */
  rows: number;
  /** Rows shipped before the chain's copy existed (an upgraded replica): not verifiable. */
  rowsBeforeChain: number;
  /** The shared history's id of the record at the break, when it has a row. */
  breakRowId: number | null;
}

export interface PgVerifyOptions {
  key: Buffer | null;
  /** Hashes that must be met along some chain (heads witnessed earlier); lower-case hex. */
  expectHeads?: readonly string[];
  /** Payloads fetched per query. */
  pageSize?: number;
}

export interface PgVerifyResult {
  stores: StoreVerifyReport[];
  /** The expected heads no chain passed through. */
  headsNotMet: string[];
}

const COLUMN_LIST = INSERT_COLUMNS.map((c) => (c === 'user' ? '"user"' : c)).join(', ');

interface StoreRow {
  store_id: string;
  node: string;
  chain_after_local_id: string | null;
  chain_cut_ms: string | null;
}

export async function verifyHistory(pool: Pool, options: PgVerifyOptions): Promise<PgVerifyResult> {
  const stores = await pool.query<StoreRow>('SELECT store_id, node, chain_after_local_id, chain_cut_ms FROM audit_stores ORDER BY node, store_id');
  const pending = new Set(options.expectHeads ?? []);
  const result: PgVerifyResult = { stores: [], headsNotMet: [] };
  for (const store of stores.rows) result.stores.push(await verifyStore(pool, store, options, pending));
  result.headsNotMet = [...pending];
  return result;
}

interface RowFound {
  id: number;
  values: unknown[];
}

async function verifyStore(pool: Pool, store: StoreRow, options: PgVerifyOptions, pending: Set<string>): Promise<StoreVerifyReport> {
  const walk = new ChainWalk(options.key);
  const out: StoreVerifyReport = { storeId: store.store_id, node: store.node, report: walk.report, rows: 0, rowsBeforeChain: 0, breakRowId: null };
  const after = store.chain_after_local_id === null ? null : Number(store.chain_after_local_id);
  const cutMs = store.chain_cut_ms === null ? null : Number(store.chain_cut_ms);
  const pageSize = options.pageSize ?? 5000;
  /** Records whose open entry was met and whose row was found. */
  const matched = new Set<number>();
  /** Records whose first completion was met (a later one is ignored, as the shipper did). */
  const completed = new Set<number>();
  const rowIds = new Map<number, number>();
  const fail = (localId: number, message: string): void => {
    out.breakRowId = rowIds.get(localId) ?? null;
    walk.breakAt(localId, message);
  };

  let seq = 0;
  for (;;) {
    const page = await pool.query<{ seq: string; entry: Buffer }>(
      'SELECT seq, entry FROM audit_chain WHERE store_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3',
      [store.store_id, seq, pageSize],
    );
    if (page.rows.length === 0) break;
    const entries: Array<{ at: number; entry: LogEntry }> = [];
    for (const { seq: seqText, entry: payload } of page.rows) {
      const at = Number(seqText);
      // A copy cut by `audit prune` starts with a checkpoint, at whatever seq the cut left.
      const cutStart = seq === 0 && readEntryHeadOrNull(payload)?.type === 'head';
      if (at !== seq && !cutStart) walk.lost(`entries ${seq}..${at - 1} of its chain are missing from audit_chain before it`);
      seq = at + 1;
      const accepted = walk.payload(payload, { where: `entry ${at} of ${store.node}`, startOf: cutStart || at === 0 ? `${store.node}'s chain` : undefined });
      if (walk.broken) break;
      const hash = storedHash(payload);
      if (hash !== null && pending.size > 0) pending.delete(hash.toString('hex'));
      if (!accepted || readEntryHead(payload).type === 'head') continue;
      try {
        entries.push({ at, entry: decodeEntry(payload) });
      } catch (err) {
        if (!(err instanceof EntryDecodeError)) throw err;
        walk.breakAt(readEntryHead(payload).id, `entry ${at} carries a hash that holds, but does not decode (${err.message})`);
      }
    }
    if (walk.broken) break;
    const rows = await rowsOf(pool, store.store_id, entries.map((e) => e.entry.id));
    for (const { id, values } of rows.values()) rowIds.set(values[0] as number, id);
    for (const { entry } of entries) {
      const message = checkRow(entry, rows.get(entry.id), { after, cutMs, matched, completed });
      if (message !== null) {
        fail(entry.id, message);
        break;
      }
    }
    if (walk.broken) break;
    out.rows = matched.size;
  }
  walk.finish();
  out.rows = matched.size;
  if (!walk.broken) await checkNoStrayRows(pool, store, after, { matched, completed }, out, (localId, message) => fail(localId, message));
  return out;
}

/** The row each entry made, by local id, as rowValues writes them (jsonb keeps the types). */
async function rowsOf(pool: Pool, storeId: string, localIds: number[]): Promise<Map<number, RowFound>> {
  const found = new Map<number, RowFound>();
  if (localIds.length === 0) return found;
  const result = await pool.query<{ id: string; v: unknown[] }>(
    `SELECT id, jsonb_build_array(${COLUMN_LIST}) AS v FROM requests WHERE store_id = $1 AND local_id = ANY($2::bigint[])`,
    [storeId, [...new Set(localIds)]],
  );
  for (const row of result.rows) found.set(row.v[0] as number, { id: Number(row.id), values: row.v });
  return found;
}

interface RowCheckState {
  after: number | null;
  cutMs: number | null;
  matched: Set<number>;
  completed: Set<number>;
}

/** Null when the row agrees with the entry (or is rightly gone); else what differs. */
function checkRow(entry: LogEntry, row: RowFound | undefined, state: RowCheckState): string | null {
  if (entry.type === 'open' || entry.type === 'finished') {
    if (row === undefined) {
      if (state.cutMs !== null && entry.open.startedAt.getTime() < state.cutMs) return null;
      return 'its row is missing from the shared history (deleted), though its replica\'s chain holds it';
    }
    state.matched.add(entry.id);
    const expected = rowValues(entry.id, entry.open, entry.type === 'finished' ? entry.completion : null);
    const differs = firstDifference(expected, row.values, entry.type === 'open' ? 'open' : 'all');
    if (entry.type === 'finished') state.completed.add(entry.id);
    return differs;
  }
  // A completion: the first one filled the row; a later one for the same record changed nothing.
  if (state.completed.has(entry.id)) return null;
  state.completed.add(entry.id);
  if (row === undefined) {
    // Its open entry was checked (and the row found gone by a prune) or lies before the copy.
    if (state.matched.has(entry.id)) return 'its row is missing from the shared history (deleted), though its replica\'s chain holds it';
    return null;
  }
  const expected = rowValues(entry.id, FAKE_OPEN, entry.completion);
  return firstDifference(expected, row.values, 'completion');
}

/** Stand-in open facts for comparing a completion's columns only. */
const FAKE_OPEN = {
  startedAt: new Date(0), clientIp: '', clientPort: 0, clients: [], user: null, kind: 'http', method: null, scheme: null, host: null, port: null,
  path: null, resolvedIp: null, decision: 'allow', wouldDeny: false, rule: null, ruleSource: null, reason: '', policyVersion: null,
} as const satisfies Parameters<typeof rowValues>[1];

function firstDifference(expected: unknown[], actual: unknown[], which: 'open' | 'completion' | 'all'): string | null {
  for (let i = 0; i < INSERT_COLUMNS.length; i += 1) {
    const column = INSERT_COLUMNS[i];
    const isCompletion = COMPLETION_COLUMNS.has(column);
    if ((which === 'open' && isCompletion) || (which === 'completion' && !isCompletion)) continue;
    const want = JSON.stringify(expected[i] ?? null);
    const got = JSON.stringify(actual[i] ?? null);
    if (want !== got) return `its row's ${column} is ${clip(got)} in the shared history, but ${clip(want)} in its replica's chain (the row was edited)`;
  }
  return null;
}

function clip(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/**
 * Rows no entry made: more rows of the store (after the chain's start) than open entries matched,
 * or more completed rows than completions met. Only then are the store's rows walked, to name
 * the first such row.
 */
async function checkNoStrayRows(
  pool: Pool, store: StoreRow, after: number | null, seen: { matched: Set<number>; completed: Set<number> }, out: StoreVerifyReport,
  fail: (localId: number, message: string) => void,
): Promise<void> {
  const floor = after ?? -1;
  const counts = await pool.query<{ total: string; done: string; before: string }>(
    `SELECT count(*) FILTER (WHERE local_id > $2) AS total, count(ended_at_ms) FILTER (WHERE local_id > $2) AS done,
       count(*) FILTER (WHERE local_id <= $2) AS before FROM requests WHERE store_id = $1`,
    [store.store_id, floor],
  );
  out.rowsBeforeChain = Number(counts.rows[0].before);
  let completedRows = 0;
  for (const id of seen.completed) if (seen.matched.has(id)) completedRows += 1;
  if (Number(counts.rows[0].total) <= seen.matched.size && Number(counts.rows[0].done) <= completedRows) return;
  let from = floor;
  for (;;) {
    const page = await pool.query<{ id: string; local_id: string; done: boolean }>(
      'SELECT id, local_id, ended_at_ms IS NOT NULL AS done FROM requests WHERE store_id = $1 AND local_id > $2 ORDER BY local_id LIMIT 10000',
      [store.store_id, from],
    );
    if (page.rows.length === 0) return;
    for (const row of page.rows) {
      const localId = Number(row.local_id);
      const stray = !seen.matched.has(localId)
        ? 'its row is in the shared history, but no entry of its replica\'s chain made it (a row inserted)'
        : row.done && !seen.completed.has(localId)
          ? 'its row is completed in the shared history, but its replica\'s chain holds no completion for it (the row was edited)'
          : null;
      if (stray !== null) {
        fail(localId, stray);
        out.breakRowId = Number(row.id);
        return;
      }
      from = localId;
    }
  }
}

function readEntryHeadOrNull(payload: Buffer): ReturnType<typeof readEntryHead> | null {
  try {
    return readEntryHead(payload);
  } catch {
    return null;
  }
}
