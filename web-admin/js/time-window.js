// The time window of every view: quick presets, calendar days, typed and picked times. Calendar
// days are UTC days, as every time the UI shows is UTC: "yesterday" is the same window for every
// reader of a shared link, wherever they sit.

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
const UNIT_MS = { ms: 1, s: 1000, m: MINUTE_MS, h: 3_600_000, d: DAY_MS, w: 7 * DAY_MS };

/** "Last …" windows: relative, so a link always shows the latest of them. */
export const RELATIVE_PRESETS = [['15m', '15 min'], ['1h', '1 h'], ['24h', '24 h'], ['7d', '7 d'], ['30d', '30 d']];

/** The server's relative times (src/duration.ts): `90s`, `15m`, `1.5h`, `7d`, `2w`. */
const RELATIVE = /^([0-9]{1,15}(?:\.[0-9]{1,9})?)(ms|s|m|h|d|w)$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;
const ISO_ZONED = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/i;
/** A date and time as people type it, with a space or a T and no zone: read as UTC. */
const ISO_UNZONED = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)$/i;

function utcDate(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

/** A time as the URL carries it: ISO-8601 UTC to the second, no milliseconds. */
export function isoSeconds(ms) {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Midnight UTC of the day holding `ms`. */
function startOfUtcDay(ms) {
  return Math.floor(ms / DAY_MS) * DAY_MS;
}

/**
 * Calendar windows ending at today's midnight UTC (until is exclusive, so a window ending at
 * midnight holds the whole of the day before): yesterday, and the seven days before today.
 */
export function calendarPresets(nowMs = Date.now()) {
  const today = startOfUtcDay(nowMs);
  return [
    { label: 'yesterday', since: utcDate(today - DAY_MS), until: utcDate(today) },
    { label: 'previous 7 days', since: utcDate(today - 7 * DAY_MS), until: utcDate(today) },
  ];
}

/**
 * A typed time in the form the API accepts: relative times, `now`, dates and zoned ISO times pass
 * unchanged; a date and time without a zone ("2025-03-01 12:00") is read as UTC, as the UI shows
 * times. Anything else passes unchanged too, so the server's message explains what is wrong.
 */
export function normaliseTimeInput(text) {
  const value = text.trim();
  const unzoned = ISO_UNZONED.exec(value);
  return unzoned ? `${unzoned[1]}T${unzoned[2]}Z` : value;
}

/** The instant a since/until value names (ms), or null when it is not a time the UI can read. */
export function timeValueMs(text, nowMs = Date.now()) {
  if (typeof text !== 'string' || text === '') return null;
  if (text === 'now') return nowMs;
  const relative = RELATIVE.exec(text);
  if (relative) return nowMs - Math.round(Number(relative[1]) * UNIT_MS[relative[2]]);
  if (ISO_DATE.test(text)) return Date.parse(`${text}T00:00:00Z`);
  if (ISO_ZONED.test(text)) return Date.parse(text);
  return null;
}

/**
 * The `<input type=datetime-local>` value (UTC wall time, to the minute) for an absolute
 * since/until; empty for a relative one, which moves with the clock and stays typed.
 */
export function pickerValue(text) {
  if (typeof text !== 'string' || RELATIVE.test(text) || text === 'now') return '';
  const ms = timeValueMs(text);
  return ms === null || Number.isNaN(ms) ? '' : new Date(ms).toISOString().slice(0, 16);
}

/** A picked `YYYY-MM-DDTHH:MM` (UTC wall time, as the picker is labelled) as an API time. */
export function fromPickerValue(value) {
  return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(value) ? `${value}Z` : '';
}

/**
 * The window twice as long around the same middle, for "zoom out"; null when the window is not
 * two absolute ends. The end never goes past now.
 */
export function zoomedOut(filters, nowMs = Date.now()) {
  const since = timeValueMs(filters.since, nowMs);
  const until = filters.until === undefined ? nowMs : timeValueMs(filters.until, nowMs);
  if (since === null || until === null || !(until > since)) return null;
  const half = until - since;
  const end = Math.min(nowMs, until + half / 2);
  return { since: isoSeconds(end - 2 * half), until: end >= nowMs ? undefined : isoSeconds(end) };
}
