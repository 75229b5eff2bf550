import type Database from 'better-sqlite3';
import { statement } from './statement-cache';
import type { IdRange } from './time-window';

/**
 * A window of start times split along the per-minute table of migration 002. Minutes wholly in
 * the window are read from their counts; the rest is read record by record, and only a few
 * minutes' worth of records ever is. Every aggregate here is exact.
 */
export interface ClosedWindow {
  sinceMs: number;
  untilMs: number;
}

export const MINUTE_MS = 60_000;

export interface MinuteRow {
  minute: number;
  first_id: number;
  last_id: number;
  allowed: number;
  denied: number;
  would_deny: number;
}

/** What the aggregates need of one record. */
export interface EdgeRecord {
  minute: number;
  host: string | null;
  client_ip: string;
  clients: string;
  decision: 'allow' | 'deny';
  would_deny: number;
}

export interface WindowMinutes {
  /** Minutes touching the window, with their counts of records in the whole minute. */
  rows: MinuteRow[];
  /** The id range of those minutes: it holds every record of the window, and maybe others. */
  range: IdRange | null;
}

function whollyInside(minute: number, window: ClosedWindow): boolean {
  return minute * MINUTE_MS >= window.sinceMs && (minute + 1) * MINUTE_MS <= window.untilMs;
}

export function windowMinutes(db: Database.Database, window: ClosedWindow): WindowMinutes {
  const rows = statement(
    db,
    `SELECT minute, first_id, last_id, allowed, denied, would_deny FROM request_minutes
      WHERE minute >= @first AND minute <= @last ORDER BY minute`,
  ).all({
    first: Math.floor(window.sinceMs / MINUTE_MS),
    last: Math.floor((window.untilMs - 1) / MINUTE_MS),
  }) as MinuteRow[];
  if (rows.length === 0) return { rows, range: null };
  // A loop, not Math.min(...ids): a year holds half a million minutes, too many arguments.
  let lo = Number.MAX_SAFE_INTEGER;
  let hi = 0;
  for (const row of rows) {
    lo = Math.min(lo, row.first_id);
    hi = Math.max(hi, row.last_id);
  }
  return { rows, range: { lo, hi } };
}

/** Minutes counted whole: every record of the minute is in the window. */
export function fullMinutes(minutes: WindowMinutes, window: ClosedWindow): MinuteRow[] {
  return minutes.rows.filter((row) => whollyInside(row.minute, window));
}

const RECORDS_OF_MINUTE = `SELECT CAST(started_at_ms / ${MINUTE_MS} AS INTEGER) AS minute, host, client_ip, clients,
    decision, would_deny
  FROM requests NOT INDEXED
  WHERE id BETWEEN @from_id AND @to_id AND started_at_ms >= @minute_start AND started_at_ms < @minute_end`;

function recordsOfMinute(db: Database.Database, row: MinuteRow, range: IdRange, inside: boolean, window: ClosedWindow): EdgeRecord[] {
  const test = inside
    ? 'AND started_at_ms >= @since AND started_at_ms < @until'
    : 'AND NOT (started_at_ms >= @since AND started_at_ms < @until)';
  return statement(db, `${RECORDS_OF_MINUTE} ${test}`).all({
    from_id: Math.max(row.first_id, range.lo),
    to_id: Math.min(row.last_id, range.hi),
    minute_start: row.minute * MINUTE_MS,
    minute_end: (row.minute + 1) * MINUTE_MS,
    since: window.sinceMs,
    until: window.untilMs,
  }) as EdgeRecord[];
}

/** Records of the partly covered minutes (at most the first and the last) that are in the window. */
export function partialMinuteRecords(db: Database.Database, minutes: WindowMinutes, window: ClosedWindow): EdgeRecord[] {
  if (minutes.range === null) return [];
  const range = minutes.range;
  return minutes.rows
    .filter((row) => !whollyInside(row.minute, window))
    .flatMap((row) => recordsOfMinute(db, row, range, true, window));
}

/**
 * Records whose id is in the window's id range but whose start is not in the window: those of
 * the partly covered minutes that fall outside it, and those of other minutes whose ids
 * interleave (inserted late). Counting an index over the id range and subtracting these is
 * exact. Each minute is read with its own start-time test, so no record is counted twice.
 */
export function strayRecords(db: Database.Database, minutes: WindowMinutes, window: ClosedWindow): EdgeRecord[] {
  if (minutes.range === null) return [];
  const range = minutes.range;
  const partial = minutes.rows.filter((row) => !whollyInside(row.minute, window));
  const outside = statement(
    db,
    `SELECT minute, first_id, last_id, allowed, denied, would_deny FROM request_minutes
      WHERE (minute < @first AND last_id >= @lo) OR (minute > @last AND first_id <= @hi)`,
  ).all({
    first: Math.floor(window.sinceMs / MINUTE_MS),
    last: Math.floor((window.untilMs - 1) / MINUTE_MS),
    lo: range.lo,
    hi: range.hi,
  }) as MinuteRow[];
  return [...partial, ...outside].flatMap((row) => recordsOfMinute(db, row, range, false, window));
}
