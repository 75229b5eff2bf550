// Formatting of times, numbers and sizes. Everything returns strings or text-only nodes.
import { el } from './dom.js';

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

export function formatCount(n) {
  return typeof n === 'number' && Number.isFinite(n) ? integer.format(n) : '—';
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? integer.format(value) : decimal.format(value)} ${BYTE_UNITS[unit]}`;
}

export function formatDuration(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${integer.format(ms)} ms`;
  if (ms < 60_000) return `${decimal.format(ms / 1000)} s`;
  if (ms < 3_600_000) return `${decimal.format(ms / 60_000)} min`;
  return `${decimal.format(ms / 3_600_000)} h`;
}

/**
 * What `Date.prototype.toLocaleString()` shows, from one shared formatter: toLocaleString builds
 * a new Intl.DateTimeFormat on every call (a fraction of a millisecond each, which adds up over
 * the rows of a scrolled table).
 */
const localFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
});

/** The local-time rendering shown on hover next to the UTC ISO text. */
export function localTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  const hh = String(Math.floor(Math.abs(offset) / 60)).padStart(2, '0');
  const mm = String(Math.abs(offset) % 60).padStart(2, '0');
  return `${localFormat.format(date)} local (UTC${sign}${hh}:${mm})`;
}

/** `<time>` with the UTC ISO text as written by the API and the local time as its tooltip. */
export function timeNode(iso, { short = false } = {}) {
  if (typeof iso !== 'string') return el('span', { class: 'null' }, 'null');
  const text = short ? iso.replace('T', ' ').replace(/\.\d{3}Z$/, 'Z') : iso;
  return el('time', { datetime: iso, title: localTime(iso) }, text);
}

/** Short axis label for a chart bucket: date and time in UTC. */
export function axisLabel(iso, spanMs) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const full = date.toISOString();
  return spanMs > 2 * 86_400_000 ? full.slice(5, 10) : `${full.slice(11, 16)}Z`;
}

/** "host:port", with an IPv6 literal bracketed; a missing host says so. */
export function destination(record) {
  if (record.host === null || record.host === undefined) return '(no host)';
  const host = record.host.includes(':') && !record.host.startsWith('[') ? `[${record.host}]` : record.host;
  return record.port === null || record.port === undefined ? host : `${host}:${record.port}`;
}

/** Text for a possibly-null field, and whether it was null (for muted styling). */
export function valueText(value) {
  if (value === null || value === undefined) return { text: 'null', isNull: true };
  if (Array.isArray(value)) return { text: value.length === 0 ? '[]' : value.join(', '), isNull: value.length === 0 };
  if (typeof value === 'boolean') return { text: String(value), isNull: false };
  return { text: String(value), isNull: false };
}
