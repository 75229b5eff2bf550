import type Database from 'better-sqlite3';
import { DURATION_EXAMPLES, durationMs } from '../duration';
import { QueryInputError } from './query-errors';
import { statement } from './statement-cache';

/** A half-open window [sinceMs, untilMs) of start times; null = unbounded on that side. */
export interface TimeWindow {
  sinceMs: number | null;
  untilMs: number | null;
}

/** Ids that can hold a window's records: lo <= id <= hi; null when no record can match. */
export interface IdRange {
  lo: number;
  hi: number;
}

/**
 * ISO-8601 as people paste it: a date (midnight UTC), or a date and time with seconds and
 * fractions optional and a zone required: a time without a zone would be read in the server's
 * local zone, and the same link would mean different records on different machines.
 */
const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/i;

/** Ten years: beyond it a relative time is a typo, and the arithmetic stays exact. */
const MAX_RELATIVE_MS = 3650 * 86_400_000;

/** A relative time counts back from now by a duration with its unit (src/duration.ts): `90s`, `7d`, `2w`. */
export function parseTimeParam(param: string, text: string, now: Date): number {
  const relative = durationMs(text, null);
  if (relative !== null) {
    if (relative > MAX_RELATIVE_MS) throw new QueryInputError(param, `${param} reaches back more than 3650 days`);
    return now.getTime() - relative;
  }
  if (text === 'now') return now.getTime();
  const ms = ISO_DATE.test(text) ? Date.parse(`${text}T00:00:00Z`) : ISO_DATE_TIME.test(text) ? Date.parse(text) : NaN;
  if (!Number.isFinite(ms)) {
    throw new QueryInputError(
      param,
      `${param} must be an ISO-8601 time with a zone (2025-03-01T12:00:00Z), a date (2025-03-01), or a relative time such as ${DURATION_EXAMPLES}`,
    );
  }
  return ms;
}

export function parseTimeWindow(raw: { since?: string; until?: string }, now: Date): TimeWindow {
  const sinceMs = raw.since === undefined ? null : parseTimeParam('since', raw.since, now);
  const untilMs = raw.until === undefined ? null : parseTimeParam('until', raw.until, now);
  if (sinceMs !== null && untilMs !== null && sinceMs >= untilMs) {
    throw new QueryInputError('since', 'since must be earlier than until');
  }
  return { sinceMs, untilMs };
}

const MINUTE_MS = 60_000;

/**
 * The ids a window's records can have, from the per-minute id ranges (migration 002): a
 * superset, never missing a record, so callers still test started_at_ms. Null: nothing in it.
 */
export function idRangeFor(db: Database.Database, window: TimeWindow): IdRange | null {
  if (window.sinceMs === null && window.untilMs === null) return { lo: 1, hi: Number.MAX_SAFE_INTEGER };
  const row = statement(
    db,
    `SELECT min(first_id) AS lo, max(last_id) AS hi FROM request_minutes
      WHERE minute >= @first AND minute <= @last`,
  ).get({
      first: window.sinceMs === null ? Number.MIN_SAFE_INTEGER : Math.floor(window.sinceMs / MINUTE_MS),
      // until is exclusive: a window ending exactly on a minute does not need that minute.
      last: window.untilMs === null ? Number.MAX_SAFE_INTEGER : Math.floor((window.untilMs - 1) / MINUTE_MS),
    }) as { lo: number | null; hi: number | null };
  return row.lo === null || row.hi === null ? null : { lo: row.lo, hi: row.hi };
}
