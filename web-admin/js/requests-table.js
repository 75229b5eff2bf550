// The history table: columns, row rendering and the client-side sort of the loaded rows.
import { el, badge } from './dom.js';
import { formatBytes, formatCount, formatDuration, timeNode, destination } from './format.js';
import { stateHref } from './state.js';

const text = (value) => (value === null || value === undefined ? '' : String(value));

/** Columns in display order; `value` is the sort key (numbers sort numerically, null last). */
export const COLUMNS = [
  { key: 'id', label: 'ID', value: (r) => r.id, numeric: true },
  { key: 'time', label: 'Started (UTC)', value: (r) => r.started_at },
  { key: 'decision', label: 'Decision', value: (r) => `${r.decision}${r.would_deny ? '-would' : ''}` },
  { key: 'client', label: 'Client', value: (r) => r.client_ip },
  { key: 'node', label: 'Node', value: (r) => text(r.node) },
  { key: 'request', label: 'Request (method host:port path)', value: (r) => `${text(r.host)}:${r.port ?? ''}${text(r.path)}` },
  { key: 'status', label: 'Status', value: (r) => r.status, numeric: true },
  { key: 'why', label: 'Why (rule · reason)', value: (r) => `${text(r.rule)} ${r.reason}` },
  { key: 'bytes', label: 'Bytes ↑ / ↓', value: (r) => r.bytes_up + r.bytes_down, numeric: true },
  { key: 'duration', label: 'Duration', value: (r) => (r.ended_at === null ? Number.POSITIVE_INFINITY : r.duration_ms), numeric: true },
];

/** `sort` as written in the URL: a column key, `-key` for descending. */
export function parseSort(sort) {
  if (typeof sort !== 'string' || sort === '') return null;
  const descending = sort.startsWith('-');
  const key = descending ? sort.slice(1) : sort;
  const column = COLUMNS.find((c) => c.key === key);
  return column ? { column, descending } : null;
}

function compare(a, b, numeric) {
  if (a === null || a === undefined) return b === null || b === undefined ? 0 : 1;
  if (b === null || b === undefined) return -1;
  if (numeric) return a - b;
  return String(a).localeCompare(String(b), 'en', { numeric: true });
}

/** The loaded rows in display order: the server's (newest first) unless a column is chosen. */
export function sortRows(rows, sort) {
  const parsed = parseSort(sort);
  if (parsed === null) return [...rows].sort((a, b) => b.id - a.id);
  const { column, descending } = parsed;
  return [...rows].sort((a, b) => {
    const order = compare(column.value(a), column.value(b), column.numeric);
    // Ties keep newest first, whatever the direction.
    return order === 0 ? b.id - a.id : descending ? -order : order;
  });
}

/** The next sort after a click on a column: ascending, descending, then the server's order. */
export function nextSort(current, key) {
  if (current === key) return `-${key}`;
  if (current === `-${key}`) return null;
  return key;
}

export function decisionBadges(record) {
  const badges = [record.decision === 'deny' ? badge('deny', 'DENY', 'denied') : badge('allow', 'ALLOW', 'allowed')];
  if (record.would_deny) badges.push(badge('would', 'WOULD DENY', 'let through in report mode; an enforced policy would deny it'));
  if (record.ended_at === null) badges.push(badge('open', 'OPEN', 'still open: the connection has not ended'));
  return badges;
}

function rowClass(record) {
  const classes = [record.decision === 'deny' ? 'row-deny' : 'row-allow'];
  if (record.would_deny) classes.push('row-would-deny');
  if (record.ended_at === null) classes.push('row-open');
  return classes.join(' ');
}

function clientCell(record) {
  return el('td', { class: 'col-client' },
    el('code', {}, record.client_ip),
    record.clients.length > 0 ? el('div', { class: 'sub' }, record.clients.join(', ')) : null,
    record.user ? el('div', { class: 'sub' }, `user ${record.user}`) : null);
}

/** Method, destination and path; long attacker-chosen values are cut visually, full on hover. */
function requestCell(record) {
  const method = text(record.method) || (record.kind === 'connect' ? 'CONNECT' : '');
  return el('td', { class: 'col-request' },
    el('span', { class: 'method' }, method),
    el('code', { class: 'destination', title: text(record.host) }, destination(record)),
    record.path === null ? null : el('code', { class: 'path', title: record.path }, record.path),
    typeof record.tunnel_id === 'number' ? el('div', { class: 'sub' }, `inside tunnel #${record.tunnel_id}`) : null);
}

function whyCell(record) {
  return el('td', { class: 'col-why' },
    el('code', { class: 'rule', title: record.rule_source ? `source ${record.rule_source}` : null }, text(record.rule) || '(no rule)'),
    el('span', { class: 'reason' }, record.reason),
    record.error ? el('div', { class: 'sub error-text' }, `error: ${record.error}`) : null);
}

function bytesCell(record) {
  return el('td', { class: 'num col-bytes', title: `${formatCount(record.bytes_up)} bytes up, ${formatCount(record.bytes_down)} bytes down` },
    `${formatBytes(record.bytes_up)} / ${formatBytes(record.bytes_down)}`);
}

/** The replica that recorded it; a pivot to everything that node recorded under the same filters. */
function nodeCell(record, filters) {
  const node = text(record.node);
  return el('td', { class: 'col-node' }, node === '' ? '' : el('a', {
    href: stateHref({ filters: { ...filters, node } }), 'data-route': '', title: `Only requests recorded by ${node}`,
  }, el('code', {}, node)));
}

/** One table row. Every value is text; the id cell is the keyboard-focusable link to the detail. */
export function requestRow(record, filters) {
  const href = stateHref({ id: record.id, filters });
  const row = el('tr', { class: rowClass(record), 'data-id': record.id },
    el('td', { class: 'num col-id' }, el('a', { href, 'data-route': '', 'aria-label': `Open request ${record.id}` }, `#${record.id}`)),
    el('td', { class: 'col-time' }, timeNode(record.started_at, { short: true })),
    el('td', { class: 'col-decision' }, decisionBadges(record)),
    clientCell(record),
    nodeCell(record, filters),
    requestCell(record),
    el('td', { class: 'num col-status' }, record.status === null ? (record.ended_at === null ? 'open' : '—') : String(record.status)),
    whyCell(record),
    bytesCell(record),
    el('td', { class: 'num col-duration' }, record.ended_at === null ? 'open' : formatDuration(record.duration_ms)),
  );
  return row;
}

/** The header row; each sortable header is a button, and aria-sort says the current order. */
export function headerRow(sort, onSort) {
  const parsed = parseSort(sort);
  const row = el('tr');
  for (const column of COLUMNS) {
    const active = parsed !== null && parsed.column.key === column.key;
    const direction = active ? (parsed.descending ? 'descending' : 'ascending') : null;
    const arrow = active ? (parsed.descending ? ' ▼' : ' ▲') : '';
    const button = el('button', { type: 'button', class: 'sort', 'data-sort': column.key, title: 'Sort the loaded rows by this column' },
      column.label, el('span', { class: 'arrow', 'aria-hidden': 'true' }, arrow));
    button.addEventListener('click', () => onSort(column.key));
    row.appendChild(el('th', { scope: 'col', class: `col-${column.key}`, 'aria-sort': direction ?? (column.key === 'id' && parsed === null ? 'descending' : 'none') }, button));
  }
  return row;
}
