// The URL is the state: every filter and view lives in the query string, so any view can be
// shared as a link, reloaded, and walked with back/forward.

/**
 * API filters of /api/requests (SPEC §5, §6), in the order they appear in URLs. `tunnel_id` (the
 * requests inside one inspected tunnel) has no form field: a tunnel's record page links to it.
 * `rule` and `user` are filled by the facets panel (SPEC §6 incident console).
 */
export const FILTER_KEYS = ['decision', 'would_deny', 'status', 'client', 'host', 'rule', 'user', 'node', 'since', 'until', 'q', 'tunnel_id'];

/** The prefix of a negated filter: `not.host=**.github.com` keeps every record host does not match. */
export const NOT_PREFIX = 'not.';

/** Filters that may be negated (SPEC §6): all but the time window, whose opposite is no window. */
export const NEGATABLE_KEYS = FILTER_KEYS.filter((key) => key !== 'since' && key !== 'until');

/** Every filter key a URL may hold, plain ones first, then the negations in the same order. */
export const ALL_FILTER_KEYS = [...FILTER_KEYS, ...NEGATABLE_KEYS.map((key) => `${NOT_PREFIX}${key}`)];

export const VIEWS = ['history', 'overview', 'policy'];

export function readState(search = window.location.search) {
  const params = new URLSearchParams(search);
  const filters = {};
  for (const key of ALL_FILTER_KEYS) {
    const value = params.get(key);
    if (value !== null && value.trim() !== '') filters[key] = value.trim();
  }
  const view = VIEWS.includes(params.get('view')) ? params.get('view') : 'history';
  // On the policy page `rule=` names the rule to highlight, not a filter of the history.
  if (view === 'policy') delete filters.rule;
  const idText = params.get('id');
  const id = idText !== null && /^[1-9][0-9]{0,15}$/.test(idText) ? idText : null;
  return {
    view: id !== null ? 'detail' : view,
    id,
    filters,
    by: params.get('by') === 'client_host' ? 'client_host' : 'host',
    rule: params.get('rule'),
    sort: params.get('sort'),
  };
}

/** URLSearchParams of the API filters only (for /api/requests and the export). */
export function filterParams(filters) {
  const params = new URLSearchParams();
  for (const key of ALL_FILTER_KEYS) {
    if (filters[key] !== undefined && filters[key] !== '') params.set(key, filters[key]);
  }
  return params;
}

/** A same-origin `?…` link for a UI state; only URLSearchParams ever builds it. */
export function stateHref({ view = 'history', id = null, filters = {}, by, rule, sort } = {}) {
  const params = filterParams(filters);
  if (id !== null && id !== undefined) params.set('id', String(id));
  else if (view !== 'history') params.set('view', view);
  if (by && by !== 'host') params.set('by', by);
  if (rule) params.set('rule', rule);
  if (sort) params.set('sort', sort);
  const text = params.toString();
  return text === '' ? '?' : `?${text}`;
}

let onNavigate = () => {};

/** Registers the renderer called after every navigation and on back/forward. */
export function startRouter(render) {
  onNavigate = render;
  window.addEventListener('popstate', () => onNavigate(readState()));
  // Same-origin links built by stateHref navigate without a reload; modified clicks (new tab)
  // and every other link keep the browser's behaviour.
  document.addEventListener('click', (event) => {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const link = event.target instanceof Element ? event.target.closest('a[data-route]') : null;
    if (link === null) return;
    event.preventDefault();
    navigate(link.getAttribute('href'));
  });
  onNavigate(readState());
}

export function navigate(href, { replace = false } = {}) {
  const url = new URL(href, window.location.href);
  // `?` alone (no filters) becomes the bare path, so the address bar stays clean.
  const target = `${url.pathname}${url.search === '?' ? '' : url.search}`;
  const here = `${window.location.pathname}${window.location.search}`;
  // Re-submitting the same filters refreshes the view without a duplicate history entry.
  if (replace || target === here) window.history.replaceState(null, '', target);
  else window.history.pushState(null, '', target);
  onNavigate(readState());
}
