// The overview: totals, the allowed/denied/would-deny chart, top lists and first-seen
// destinations for one time window, under the same filters as the history (SPEC §6).
import { el, replaceChildren } from './dom.js';
import { apiGet } from './api.js';
import { formatCount, timeNode } from './format.js';
import { filterParams, stateHref } from './state.js';
import { filterForm, activeFilterChips } from './filters-view.js';
import { chartSection } from './histogram-view.js';
import { savedViewsPanel } from './views-panel.js';
import { nonWindowKeys } from './filter-model.js';

export const DEFAULT_WINDOW = '24h';

/** Every filter of the URL, with the overview's default window when it names none. */
function overviewFilters(state) {
  return { ...state.filters, since: state.filters.since ?? DEFAULT_WINDOW };
}

/** First-seen answers for the window alone: whether a destination is new is not a filtered fact. */
function windowParams(state) {
  const { since, until } = overviewFilters(state);
  return new URLSearchParams(until ? { since, until } : { since });
}

function card(label, value, filters, className) {
  return el('li', { class: `card ${className}` },
    el('a', { href: stateHref({ filters }), 'data-route': '', title: `Show these requests in the history` },
      el('span', { class: 'card-value' }, formatCount(value)), el('span', { class: 'card-label' }, label)));
}

function totals(stats, range) {
  return el('ul', { class: 'cards', 'aria-label': 'Totals in the window' },
    card('requests', stats.total, range, 'card-total'),
    card('allowed', stats.allowed, { ...range, decision: 'allow' }, 'card-allowed'),
    card('denied', stats.denied, { ...range, decision: 'deny' }, 'card-denied'),
    card('would deny', stats.would_deny, { ...range, would_deny: 'true' }, 'card-would'));
}

/** A ranked list: each name links to the history filtered to it; the bar shows its share. */
function topList(title, items, nameKey, filterKey, range, emptyText, label = nameKey) {
  const max = Math.max(1, ...items.map((i) => i.count));
  const body = el('tbody');
  items.forEach((item, index) => {
    const name = item[nameKey];
    const bar = el('span', { class: 'bar' });
    bar.style.width = `${Math.round((item.count / max) * 100)}%`;
    body.appendChild(el('tr', {},
      el('td', { class: 'num rank' }, String(index + 1)),
      el('td', { class: 'name' }, name === null || name === undefined ? el('span', { class: 'null' }, '(none)')
        : el('a', { href: stateHref({ filters: { ...range, [filterKey]: name } }), 'data-route': '', title: name }, el('code', {}, name))),
      el('td', { class: 'num' }, formatCount(item.count)),
      el('td', { class: 'bar-cell', 'aria-hidden': 'true' }, bar)));
  });
  return el('section', { class: 'panel' }, el('h2', {}, title),
    items.length === 0 ? el('p', { class: 'muted' }, emptyText)
      : el('table', { class: 'top' }, el('thead', {}, el('tr', {},
        el('th', { scope: 'col', class: 'num col-rank' }, '#'), el('th', { scope: 'col' }, label),
        el('th', { scope: 'col', class: 'num col-count' }, 'requests'),
        el('th', { scope: 'col', class: 'col-bar' }, el('span', { class: 'visually-hidden' }, 'share')))), body));
}

function firstSeenRow(row, byClient, range) {
  const client = row.client_ip ?? row.client ?? null;
  const filters = byClient && client ? { ...range, host: row.host, client } : { ...range, host: row.host };
  const ips = Array.isArray(row.client_ips) ? row.client_ips : [];
  const groups = Array.isArray(row.clients) ? row.clients : [];
  return el('tr', {},
    el('td', {}, el('a', { href: stateHref({ filters }), 'data-route': '', title: 'These requests in the history' }, el('code', {}, row.host ?? '(no host)'))),
    byClient ? el('td', {}, el('code', {}, client ?? '')) : null,
    el('td', {}, typeof row.first_id === 'number'
      ? el('a', { href: stateHref({ id: row.first_id }), 'data-route': '', title: 'The first request' }, timeNode(row.first_seen, { short: true }))
      : timeNode(row.first_seen, { short: true })),
    el('td', { class: 'num' }, formatCount(row.count)),
    el('td', { class: 'num' }, formatCount(row.denied ?? 0)),
    el('td', { class: 'num' }, formatCount(row.would_deny ?? 0)),
    byClient ? el('td', {}, groups.join(', ')) : el('td', {}, [ips.join(', '), groups.length > 0 ? el('div', { class: 'sub' }, groups.join(', ')) : null]));
}

function firstSeenTable(state, page, range) {
  const byClient = state.by === 'client_host';
  const rows = page.items;
  const head = el('tr', {}, el('th', { scope: 'col' }, 'host'), byClient ? el('th', { scope: 'col' }, 'client') : null,
    el('th', { scope: 'col' }, 'first seen (UTC)'), el('th', { scope: 'col', class: 'num' }, 'requests'),
    el('th', { scope: 'col', class: 'num' }, 'denied'), el('th', { scope: 'col', class: 'num' }, 'would deny'),
    el('th', { scope: 'col' }, byClient ? 'client groups' : 'clients'));
  if (rows.length === 0) return el('p', { class: 'muted' }, 'Nothing new in this window: every destination was seen before it.');
  return [
    el('div', { class: 'table-wrap' }, el('table', { class: 'first-seen' }, el('thead', {}, head),
      el('tbody', {}, rows.map((row) => firstSeenRow(row, byClient, range))))),
    page.truncated ? el('p', { class: 'muted' }, `Only the newest ${formatCount(rows.length)} are listed.`) : null,
  ];
}

function firstSeenSection(state, page, range) {
  const toggle = (by, label) => el('a', {
    href: stateHref({ ...state, by }), 'data-route': '', class: state.by === by ? 'chip chip-current' : 'chip',
    'aria-current': state.by === by ? 'true' : null,
  }, label);
  return el('section', { class: 'panel panel-wide' },
    el('h2', {}, 'First seen in this window'),
    el('p', { class: 'muted' }, 'Destinations never contacted before this window — a new dependency, a new tool, or exfiltration. Newest first.'),
    el('div', { class: 'presets', role: 'group', 'aria-label': 'First seen by' }, el('span', { class: 'hint' }, 'By:'),
      toggle('host', 'host'), toggle('client_host', 'client + host')),
    firstSeenTable(state, page, range));
}

function nodeFlags(node) {
  if (node.stale) return el('span', { class: 'badge', title: 'No contact for more than a day (a stopped or retired replica): it takes no part in the other flags' }, 'stale');
  const flags = [];
  if (node.duplicate_name) flags.push(el('span', { class: 'badge badge-deny', title: 'Two or more local stores report this node name: give each replica its own --node' }, 'duplicate name'));
  if (node.policy_differs) flags.push(el('span', { class: 'badge badge-would', title: 'This node runs a different policy version from most nodes' }, 'policy differs'));
  return flags.length === 0 ? el('span', { class: 'muted' }, 'ok') : flags;
}

/** The replicas whose records this history holds, with their policy version and last contact. */
function nodesSection(page) {
  if (page === null || !Array.isArray(page.nodes)) {
    return el('section', { class: 'panel panel-wide' }, el('h2', {}, 'Nodes'), el('p', { class: 'muted' }, 'The node list could not be loaded.'));
  }
  const when = (iso) => (typeof iso === 'string' ? timeNode(iso, { short: true }) : el('span', { class: 'null' }, '—'));
  const rows = page.nodes.map((node) => el('tr', { class: node.duplicate_name || node.policy_differs ? 'node-flagged' : null },
    el('td', {}, el('a', { href: stateHref({ filters: { node: node.node } }), 'data-route': '', title: 'Requests recorded by this node' }, el('code', {}, String(node.node)))),
    el('td', {}, node.policy_version === null ? el('span', { class: 'null' }, '—') : el('code', {}, String(node.policy_version))),
    el('td', {}, when(node.last_contact)),
    el('td', {}, when(node.last_record)),
    el('td', { class: 'num' }, typeof node.shipped_entries === 'number' ? formatCount(node.shipped_entries) : '—'),
    el('td', { class: 'node-flags' }, nodeFlags(node))));
  return el('section', { class: 'panel panel-wide nodes' }, el('h2', {}, 'Nodes'),
    el('p', { class: 'muted' }, page.engine === 'postgres'
      ? 'Every replica shipping to this shared history. A flagged node runs another policy than most, or shares its name with another.'
      : 'This replica alone: its own audit store.'),
    el('div', { class: 'table-wrap' }, el('table', { class: 'nodes-table' },
      el('thead', {}, el('tr', {}, ['node', 'policy version', 'last contact (UTC)', 'last record (UTC)', 'entries shipped', 'flags']
        .map((label) => el('th', { scope: 'col' }, label)))),
      el('tbody', {}, rows))));
}

async function loadOverview(state, signal) {
  const firstSeenParams = windowParams(state);
  firstSeenParams.set('by', state.by);
  const [stats, firstSeen, nodes] = await Promise.all([
    apiGet('stats', filterParams(overviewFilters(state)), { signal }),
    apiGet('first-seen', firstSeenParams, { signal }).catch((err) => ({ error: err })),
    apiGet('nodes', new URLSearchParams(), { signal }).catch(() => null),
  ]);
  return { stats, firstSeen, nodes };
}

function overviewBody(state, { stats, firstSeen, nodes }) {
  const range = overviewFilters(state);
  const firstSeenPage = Array.isArray(firstSeen) ? { items: firstSeen, truncated: false }
    : firstSeen !== null && Array.isArray(firstSeen.items) ? firstSeen : null;
  return [
    totals(stats, range),
    chartSection(state, stats),
    el('div', { class: 'panels' },
      topList('Top destinations', stats.top_hosts ?? [], 'host', 'host', range, 'No requests in this window.'),
      topList('Top denied destinations', stats.top_denied_hosts ?? [], 'host', 'host', { ...range, decision: 'deny' }, 'Nothing denied in this window.'),
      topList('Top clients', stats.top_clients ?? [], 'client', 'client', range, 'No requests in this window.'),
      Array.isArray(stats.top_client_groups)
        ? topList('Top client groups', stats.top_client_groups, 'client', 'client', range, 'No request belonged to a client group.', 'group') : null),
    firstSeenPage === null
      ? el('div', { class: 'alert', role: 'alert' }, 'First-seen destinations could not be loaded: ', firstSeen.error?.message ?? 'unexpected answer')
      : firstSeenSection(state, firstSeenPage, range),
    nodesSection(nodes),
  ];
}

/** Which filters the numbers below honour; first-seen takes the window alone, and says so. */
function appliedFilters(state) {
  const narrowed = nonWindowKeys(state.filters).length > 0;
  return el('div', { class: 'toolbar applied-filters' },
    el('div', {}, el('span', { class: 'hint' }, narrowed ? 'Totals, chart and top lists count only requests matching: ' : ''),
      activeFilterChips(state, { emptyText: 'No filters: every request in the window counts.' })),
    narrowed ? el('p', { class: 'hint' }, 'First seen uses the time window only.') : null);
}

export function overviewView(state) {
  const body = el('div', {}, el('p', { class: 'muted' }, 'Loading…'));
  const controller = new AbortController();
  const node = el('section', { 'aria-labelledby': 'overview-title' },
    el('h1', { id: 'overview-title' }, 'Overview'),
    filterForm(state, { keys: 'all', defaultSince: DEFAULT_WINDOW }),
    appliedFilters(state),
    body,
    savedViewsPanel(state));
  loadOverview(state, controller.signal)
    .then((data) => replaceChildren(body, overviewBody(state, data)))
    .catch((err) => {
      if (err.name !== 'AbortError') replaceChildren(body, el('div', { class: 'alert', role: 'alert' }, el('strong', {}, 'Could not load statistics: '), err.message));
    });
  return { node, dispose: () => controller.abort() };
}
