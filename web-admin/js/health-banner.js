// The audit log's health on every view: while the proxy refuses requests because the audit log
// cannot be written or its disk is below --min-free-disk, a banner says so. /readyz is the
// source (open without a token, and what load balancers see too). Its text is built with text
// nodes like everything else (dom.js): an error message may quote a path.
import { el, replaceChildren } from './dom.js';

const POLL_MS = 5000;

/** Shipping to PostgreSQL (--audit-url) counts as behind once its oldest unshipped entry is this old. */
export const SHIP_BEHIND_SECONDS = 60;

function duration(seconds) {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

function mib(bytes) {
  return typeof bytes === 'number' ? `${Math.round(bytes / 1024 ** 2).toLocaleString('en-US')} MiB` : 'unknown';
}

/** The problems /readyz reports, as sentences; empty when the audit log takes writes. */
export function auditProblems(readiness) {
  if (readiness === null || typeof readiness !== 'object') return [];
  const problems = [];
  const disk = readiness.audit_disk;
  if (disk && disk.low === true) {
    problems.push(`Low on disk: ${mib(disk.free_bytes)} free on the audit log's volume, below --min-free-disk (${mib(disk.min_free_bytes)}). ` +
      'New requests are refused (503) until space is freed; completions and retention go on.');
  }
  if (readiness.audit_writable === false) {
    const why = readiness.audit && typeof readiness.audit.lastError === 'string' ? `: ${readiness.audit.lastError}` : '';
    problems.push(`The audit log cannot be written${why}. New requests are refused (503).`);
  }
  const ship = shipProblem(readiness.ship);
  if (ship !== null) problems.push(ship);
  return problems;
}

/**
 * Shipping behind (PostgreSQL down or slow): egress goes on, the records wait on local disk.
 * The error text comes from the server and may quote anything: it is only ever a text node.
 */
export function shipProblem(ship) {
  if (ship === null || typeof ship !== 'object') return null;
  const oldest = typeof ship.oldest_seconds === 'number' ? ship.oldest_seconds : 0;
  if (oldest <= SHIP_BEHIND_SECONDS) return null;
  const count = typeof ship.backlog_records === 'number' ? ship.backlog_records.toLocaleString('en-US') : 'some';
  const why = typeof ship.last_error === 'string' ? ` Last error: ${ship.last_error}.` : '';
  return `Shipping to PostgreSQL is behind: ${count} audit entries not yet shipped, the oldest ${duration(oldest)} old.${why} ` +
    'Requests go on; the records wait on local disk and are shipped when PostgreSQL answers.';
}

async function fetchReadiness() {
  try {
    const response = await fetch('/readyz', { headers: { accept: 'application/json' }, cache: 'no-store', credentials: 'same-origin' });
    return await response.json();
  } catch {
    return null;
  }
}

/** Keeps `node` showing the current problems (hidden when there are none). */
export function startHealthBanner(node) {
  const refresh = async () => {
    const problems = auditProblems(await fetchReadiness());
    node.hidden = problems.length === 0;
    replaceChildren(node, ...problems.map((text) => el('p', {}, el('strong', {}, '⚠ '), text)));
  };
  void refresh();
  setInterval(() => void refresh(), POLL_MS);
}
