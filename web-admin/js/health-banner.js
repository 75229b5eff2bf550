// The audit log's health on every view: while the proxy refuses requests because the audit log
// cannot be written or its disk is below --min-free-disk, a banner says so. /readyz is the
// source (open without a token, and what load balancers see too). Its text is built with text
// nodes like everything else (dom.js): an error message may quote a path.
import { el, replaceChildren } from './dom.js';

const POLL_MS = 5000;

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
  return problems;
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
