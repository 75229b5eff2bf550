// One audit record: every SPEC §4 field, the deciding rule's FILE:LINE, and pivots.
import { el, replaceChildren } from './dom.js';
import { apiGet } from './api.js';
import { formatBytes, formatCount, formatDuration, timeNode, valueText, destination } from './format.js';
import { navigate, stateHref } from './state.js';
import { decisionBadges } from './requests-table.js';
import { parentGlob, ruleFilter, windowOf } from './drill.js';
import { LAST_RECORD_KEY } from './history-view.js';

/** SPEC §4 fields in order, with what each means to someone reading an incident. */
export const RECORD_FIELDS = [
  ['id', 'record id, also sent to the client as X-Tollgate-Request-Id'],
  ['started_at', 'when the request arrived (UTC)'],
  ['ended_at', 'when the connection ended; null while open'],
  ['duration_ms', 'milliseconds from start to end'],
  ['client_ip', 'source address of the client'],
  ['client_port', 'source port of the client'],
  ['peer_ip', 'load balancer the request came through (PROXY protocol), if any'],
  ['clients', 'client groups the request belonged to'],
  ['user', 'proxy username'],
  ['kind', 'connect (tunnel), http (absolute URI) or https (a request inside an inspected tunnel)'],
  ['method', 'HTTP method'],
  ['scheme', 'URI scheme'],
  ['host', 'destination host as checked'],
  ['port', 'destination port'],
  ['path', 'plain HTTP path, without query string'],
  ['resolved_ip', 'address connected to, after the guard'],
  ['sni', 'server name the TLS client named inside the tunnel (ClientHello), if checked'],
  ['tunnel_id', 'record id of the tunnel an inspected https request was made inside'],
  ['decision', 'allow or deny'],
  ['would_deny', 'let through in report mode, but a denial under enforcement'],
  ['rule', 'rule that decided'],
  ['rule_source', 'FILE:LINE of that rule'],
  ['reason', 'why'],
  ['status', 'status answered to the client'],
  ['bytes_up', 'bytes client → destination'],
  ['bytes_down', 'bytes destination → client'],
  ['error', 'error, if the request failed'],
  ['policy_version', 'policy in force when decided'],
  ['node', 'the replica that recorded it (--node)'],
];

const POLL_OPEN_MS = 2000;

function fieldValue(name, value) {
  if ((name === 'started_at' || name === 'ended_at') && typeof value === 'string') return timeNode(value);
  if ((name === 'bytes_up' || name === 'bytes_down') && typeof value === 'number') {
    return el('span', {}, `${formatCount(value)} bytes`, value >= 1024 ? el('span', { class: 'muted' }, ` (${formatBytes(value)})`) : null);
  }
  if (name === 'duration_ms' && typeof value === 'number') {
    return el('span', {}, formatCount(value), value >= 1000 ? el('span', { class: 'muted' }, ` (${formatDuration(value)})`) : null);
  }
  if (name === 'ended_at' && value === null) return el('span', { class: 'badge badge-open' }, 'OPEN — still connected');
  const { text, isNull } = valueText(value);
  return el('code', { class: isNull ? 'null' : null }, text);
}

function fieldTable(record) {
  const body = el('tbody');
  for (const [name, description] of RECORD_FIELDS) {
    body.appendChild(el('tr', { 'data-field': name },
      el('th', { scope: 'row' }, el('code', {}, name), el('div', { class: 'sub' }, description)),
      el('td', {}, fieldValue(name, record[name]))));
  }
  return el('table', { class: 'fields' }, el('caption', {}, 'Every field of the audit record'), body);
}

/** Pivots start a new question about one value, in the time window the record was opened from. */
function pivots(record, hasInner, window) {
  const list = el('ul', { class: 'pivots' });
  const add = (label, filters, description) =>
    list.appendChild(el('li', {}, el('a', { href: stateHref({ filters: { ...window, ...filters } }), 'data-route': '', class: 'button' }, label), ' ', el('span', { class: 'hint' }, description)));
  if (hasInner) add('Requests inside this tunnel', { tunnel_id: String(record.id) }, 'inspected: each one decided and recorded on its own');
  if (record.host !== null) add('All requests to this host', { host: record.host }, `host = ${record.host}`);
  const glob = parentGlob(record.host);
  if (glob !== null) add('All requests to this domain', { host: glob }, `host = ${glob}`);
  add('Everything from this client', { client: record.client_ip }, `client = ${record.client_ip}`);
  if (record.host !== null) add('This client to this host', { client: record.client_ip, host: record.host }, 'both');
  if (typeof record.node === 'string' && record.node !== '') add('Everything this node recorded', { node: record.node }, `node = ${record.node}`);
  if (record.rule) {
    const filter = ruleFilter(record.rule);
    add('Other requests naming this rule', filter, filter.rule !== undefined ? `rule = ${record.rule}` : `search "${record.rule}"`);
  }
  const keys = Object.keys(window);
  if (keys.length > 0) list.appendChild(el('li', { class: 'hint' }, `Each keeps the time window: ${keys.map((k) => `${k} = ${window[k]}`).join(', ')}.`));
  return list;
}

function ruleSource(record) {
  if (!record.rule_source) return el('p', { class: 'muted' }, 'No rule source: decided before any rule was consulted.');
  return el('p', { class: 'rule-source' }, 'Decided by ', el('code', {}, record.rule ?? '(none)'), ' at ',
    el('code', { class: 'file-line' }, record.rule_source), ' ',
    record.rule && !record.rule.startsWith('(')
      ? el('a', { href: stateHref({ view: 'policy', rule: record.rule }), 'data-route': '' }, 'show in policy')
      : null);
}

function summary(record) {
  const target = record.kind === 'connect' ? `CONNECT ${destination(record)}` :
    `${record.method ?? ''} ${record.scheme ?? 'http'}://${destination(record)}${record.path ?? ''}`;
  return el('p', { class: 'summary' }, el('code', {}, target), ' → ',
    record.status === null ? 'no status yet' : `status ${record.status}`, ' · ', record.reason);
}

/** A request read inside an inspected tunnel links to the tunnel's own record. */
function tunnelLink(record, filters) {
  if (typeof record.tunnel_id !== 'number') return null;
  return el('p', { class: 'tunnel' },
    el('a', { href: stateHref({ id: record.tunnel_id, filters }), 'data-route': '' }, `inside tunnel #${record.tunnel_id}`));
}

/** The list with the filters (and sort) the record was opened from. */
function backLink(state) {
  return el('p', {}, el('a', { href: stateHref({ filters: state.filters, sort: state.sort }), 'data-route': '', class: 'back-link' }, '← Back to the list'));
}

function recordNode(record, state, hasInner) {
  return el('article', { 'aria-labelledby': 'detail-title', class: 'detail' },
    backLink(state),
    el('h1', { id: 'detail-title' }, `Request #${record.id} `, decisionBadges(record)),
    summary(record),
    tunnelLink(record, state.filters),
    ruleSource(record),
    el('h2', {}, 'Pivot'),
    pivots(record, hasInner, windowOf(state.filters)),
    fieldTable(record),
    el('p', {}, el('a', { href: `/api/requests/${encodeURIComponent(record.id)}` }, 'Raw JSON')));
}

/**
 * Whether a tunnel was inspected: its record does not say, the requests recorded inside it do.
 * Asked again while the tunnel is open (more may come); a failure only leaves the link out.
 */
async function hasInnerRequests(id, signal) {
  try {
    const page = await apiGet('requests', new URLSearchParams({ tunnel_id: String(id), limit: '1' }), { signal });
    return page.items.length > 0;
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    return false;
  }
}

export function detailView(state) {
  const container = el('div', {}, el('p', { class: 'muted' }, `Loading request #${state.id}…`));
  let timer = null;
  let disposed = false;
  const controller = new AbortController();
  let shown = '';
  const load = async () => {
    try {
      const record = await apiGet(`requests/${encodeURIComponent(state.id)}`, undefined, { signal: controller.signal });
      const hasInner = record.kind === 'connect' && await hasInnerRequests(record.id, controller.signal);
      if (disposed) return;
      const snapshot = JSON.stringify([record, hasInner]);
      if (snapshot !== shown) replaceChildren(container, recordNode(record, state, hasInner));
      sessionStorage.setItem(LAST_RECORD_KEY, String(record.id));
      shown = snapshot;
      // An open tunnel is completed later (bytes, status, end): follow it until it ends.
      if (record.ended_at === null) timer = setTimeout(load, POLL_OPEN_MS);
    } catch (err) {
      if (disposed || err.name === 'AbortError') return;
      replaceChildren(container, el('div', { class: 'alert', role: 'alert' }, el('strong', {}, 'Could not load the request: '), err.message),
        backLink(state));
    }
  };
  load();
  // Esc: back to the list it came from.
  const onKey = (event) => {
    if (event.key !== 'Escape') return false;
    navigate(stateHref({ filters: state.filters, sort: state.sort }));
    return true;
  };
  return { node: container, dispose: () => { disposed = true; clearTimeout(timer); controller.abort(); }, onKey };
}
