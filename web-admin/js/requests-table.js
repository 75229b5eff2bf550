// The history table: columns, row rendering and the client-side sort of the loaded rows. Every
// row has the same height (two lines, or one when compact: css/app.css), which is what lets
// virtual-rows.js keep only the rows near the viewport in the page.
import { el, badge } from './dom.js';
import { formatBytes, formatCount, formatDuration, localTime, destination } from './format.js';
import { stateHref } from './state.js';
import { drillHref, parentGlob, ruleFilter } from './drill.js';

const text = (value) => (value === null || value === undefined ? '' : String(value));

/**
 * Columns in display order; `value` is the sort key (numbers sort numerically, null last).
 * `optional` columns can be hidden with the column chooser; ID stays, as the row's link.
 */
export const COLUMNS = [
  { key: 'id', label: 'ID', value: (r) => r.id, numeric: true },
  { key: 'time', label: 'Started (UTC)', short: 'Started', value: (r) => r.started_at, optional: true },
  { key: 'decision', label: 'Decision', value: (r) => `${r.decision}${r.would_deny ? '-would' : ''}`, optional: true },
  { key: 'client', label: 'Client', value: (r) => r.client_ip, optional: true },
  { key: 'node', label: 'Node', value: (r) => text(r.node), optional: true },
  { key: 'request', label: 'Request (method host:port path)', short: 'Request', value: (r) => `${text(r.host)}:${r.port ?? ''}${text(r.path)}`, optional: true },
  { key: 'status', label: 'Status', value: (r) => r.status, numeric: true, optional: true },
  { key: 'why', label: 'Why (rule · reason)', short: 'Why', value: (r) => `${text(r.rule)} ${r.reason}`, optional: true },
  { key: 'bytes', label: 'Bytes ↑ / ↓', short: 'Bytes', value: (r) => r.bytes_up + r.bytes_down, numeric: true, optional: true },
  { key: 'duration', label: 'Duration', short: 'Dur.', value: (r) => (r.ended_at === null ? Number.POSITIVE_INFINITY : r.duration_ms), numeric: true, optional: true },
];

/** `sort` as written in the URL: a column key, `-key` for descending. */
export function parseSort(sort) {
  if (typeof sort !== 'string' || sort === '') return null;
  const descending = sort.startsWith('-');
  const key = descending ? sort.slice(1) : sort;
  const column = COLUMNS.find((c) => c.key === key);
  return column ? { column, descending } : null;
}

const collator = new Intl.Collator('en', { numeric: true });

/**
 * The loaded rows in display order: the server's (newest first) unless a column is chosen.
 * Each key is computed once (not once per comparison) and strings compare with one shared
 * Intl.Collator: 10,000 rows sort in a few milliseconds (bench/ui).
 */
export function sortRows(rows, sort) {
  const parsed = parseSort(sort);
  if (parsed === null) return [...rows].sort((a, b) => b.id - a.id);
  const { column, descending } = parsed;
  const keyed = rows.map((record) => {
    const value = column.value(record);
    return { record, value: value === null || value === undefined ? null : column.numeric ? value : String(value) };
  });
  const compare = column.numeric ? (a, b) => a - b : collator.compare;
  keyed.sort((a, b) => {
    if (a.value === null || b.value === null) {
      return a.value === b.value ? b.record.id - a.record.id : a.value === null ? 1 : -1;
    }
    const order = compare(a.value, b.value);
    // Ties keep newest first, whatever the direction.
    return order === 0 ? b.record.id - a.record.id : descending ? -order : order;
  });
  return keyed.map((entry) => entry.record);
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

/**
 * Links of one table: a row has up to seven, and most values repeat (hosts, rules, statuses,
 * client groups), so each href is built once per filter set and value, not once per row.
 */
const hrefCache = new WeakMap();

function cachedHref(filters, key, value) {
  let cache = hrefCache.get(filters);
  if (cache === undefined) {
    cache = new Map();
    hrefCache.set(filters, cache);
  }
  const name = `${key}\u0000${value}`;
  let href = cache.get(name);
  if (href === undefined) {
    href = key === 'id' ? stateHref({ id: value, filters }) : drillHref(filters, { [key]: value });
    cache.set(name, href);
  }
  return href;
}

/** A link that narrows the list to one value (drill.js), its href from the cache. */
function drill(filters, key, value, content, className, title) {
  return el('a', { href: cachedHref(filters, key, value), 'data-route': '', class: className, title }, content);
}

/**
 * A cell: a block of the row's fixed height that clips what does not fit (longer text is cut,
 * full on hover and on the record's page). Kept to a few elements: a row is built for every
 * record scrolled into view.
 */
function cell(className, attrs, ...content) {
  return el('td', { class: className, role: 'cell', ...attrs }, ...content);
}

/**
 * Date and clock as one text: the column is too narrow for both, so they wrap onto two lines at
 * the space (a date does not break at its hyphens), and sit side by side when compact (nowrap).
 */
function timeCell(record) {
  const iso = record.started_at;
  const short = iso.replace('T', ' ').replace(/\.\d{3}Z$/, 'Z');
  const [date, clock] = short.split(' ');
  return cell('col-time', {}, el('time', { datetime: iso, title: localTime(iso) }, `${date} ${clock ?? ''}`));
}

function clientCell(record, filters) {
  const groups = record.clients.map((group, i) => [i > 0 ? ', ' : null,
    drill(filters, 'client', group, group, 'drill', `Only requests from client group ${group}`)]);
  return cell('col-client', {},
    el('div', { class: 'line' }, drill(filters, 'client', record.client_ip, record.client_ip, 'drill mono', `Only requests from ${record.client_ip}`)),
    record.clients.length > 0 || record.user
      ? el('div', { class: 'line sub' }, groups, record.user ? `${groups.length > 0 ? ' · ' : ''}user ${record.user}` : null)
      : null);
}

/** The destination (a link to the host, and to its parent domain glob), then method and path. */
function requestCell(record, filters) {
  const method = text(record.method) || (record.kind === 'connect' ? 'CONNECT' : '');
  const glob = parentGlob(record.host);
  const target = destination(record);
  return cell('col-request', {},
    el('div', { class: 'line' },
      record.host === null
        ? el('code', { class: 'destination', title: text(record.host) }, target)
        : drill(filters, 'host', record.host, target, 'drill host-link destination mono', `Only requests to ${record.host}`),
      glob === null ? null : drill(filters, 'host', glob, glob, 'drill parent-glob', `Only requests to ${glob} (the domain and every name under it)`)),
    el('div', { class: 'line sub' },
      el('span', { class: 'method' }, method),
      record.path === null ? null : el('code', { class: 'path', title: record.path }, record.path),
      typeof record.tunnel_id === 'number' ? ` inside tunnel #${record.tunnel_id}` : null));
}

function whyCell(record, filters) {
  const source = record.rule_source ? `source ${record.rule_source}` : null;
  const reason = record.error ? `${record.reason} · error: ${record.error}` : record.reason;
  const [key, value] = Object.entries(ruleFilter(record.rule ?? ''))[0];
  return cell('col-why', { title: reason },
    el('div', { class: 'line' }, record.rule
      ? drill(filters, key, value, record.rule, 'drill rule mono', `Only requests decided by ${record.rule}${source ? ` (${source})` : ''}`)
      : el('code', { class: 'rule', title: source }, '(no rule)')),
    el('div', { class: `line reason${record.error ? ' error-text' : ''}` }, reason));
}

function statusCell(record, filters) {
  if (record.status === null) return cell('num col-status', {}, record.ended_at === null ? 'open' : '—');
  const status = String(record.status);
  return cell('num col-status', {}, drill(filters, 'status', status, status, 'drill', `Only requests answered ${status}`));
}

function bytesCell(record) {
  return cell('num col-bytes', { title: `${formatCount(record.bytes_up)} bytes up, ${formatCount(record.bytes_down)} bytes down` },
    el('span', { class: 'up' }, formatBytes(record.bytes_up)), el('span', { class: 'sep' }, ' / '), el('span', { class: 'down' }, formatBytes(record.bytes_down)));
}

/** The replica that recorded it; a pivot to everything that node recorded under the same filters. */
function nodeCell(record, filters) {
  const node = text(record.node);
  return cell('col-node', {}, node === '' ? '' : drill(filters, 'node', node, node, 'drill mono', `Only requests recorded by ${node}`));
}

const CELLS = {
  id: (record, filters) => cell('num col-id', {}, el('a', { href: cachedHref(filters, 'id', record.id), 'data-route': '', class: 'open-link', 'aria-label': `Open request ${record.id}` }, `#${record.id}`)),
  time: timeCell,
  decision: (record) => cell('col-decision', {}, decisionBadges(record)),
  client: clientCell,
  node: nodeCell,
  request: requestCell,
  status: statusCell,
  why: whyCell,
  bytes: bytesCell,
  duration: (record) => cell('num col-duration', {}, record.ended_at === null ? 'open' : formatDuration(record.duration_ms)),
};

/**
 * One table row with the chosen columns. Every value is text; the id cell is the
 * keyboard-focusable link to the detail, and host, client, rule and status cells are links
 * that filter the list to their value (real hrefs: a middle click opens a tab). Clicks are
 * handled once for the whole table (history-view.js, state.js), not per row.
 */
export function requestRow(record, filters, columns = COLUMNS) {
  const row = el('tr', { class: rowClass(record), role: 'row', 'data-id': record.id });
  for (const column of columns) row.appendChild(CELLS[column.key](record, filters));
  return row;
}

/**
 * The CSS grid template of a row for these columns (css/table.css defines each width): rows
 * are grid boxes, not table rows, so they are laid out one by one (see table.css).
 */
export function columnTemplate(columns = COLUMNS) {
  return columns.map((column) => `var(--w-${column.key})`).join(' ');
}

/** The header row; each sortable header is a button, and aria-sort says the current order. */
export function headerRow(sort, onSort, columns = COLUMNS) {
  const parsed = parseSort(sort);
  const row = el('tr', { role: 'row' });
  for (const column of columns) {
    const active = parsed !== null && parsed.column.key === column.key;
    const direction = active ? (parsed.descending ? 'descending' : 'ascending') : null;
    const arrow = active ? (parsed.descending ? ' ▼' : ' ▲') : '';
    const button = el('button', { type: 'button', class: 'sort', 'data-sort': column.key, title: `Sort the loaded rows by ${column.label}` },
      el('span', { class: 'label-long' }, column.label), column.short ? el('span', { class: 'label-short', 'aria-hidden': 'true' }, column.short) : null,
      el('span', { class: 'arrow', 'aria-hidden': 'true' }, arrow));
    button.addEventListener('click', () => onSort(column.key));
    row.appendChild(el('th', { scope: 'col', role: 'columnheader', class: `col-${column.key}`, 'aria-sort': direction ?? (column.key === 'id' && parsed === null ? 'descending' : 'none') }, button));
  }
  return row;
}
