// Drill-down links: a value shown anywhere becomes a link that narrows the list to it. The link
// adds to the filters in force (so the time window, `since`/`until`, always travels with it).
import { el } from './dom.js';
import { stateHref, FILTER_KEYS } from './state.js';

/** The filters that make a time window; a record's pivots keep only these. */
export const WINDOW_KEYS = ['since', 'until'];

export function windowOf(filters) {
  const window = {};
  for (const key of WINDOW_KEYS) if (filters[key] !== undefined) window[key] = filters[key];
  return window;
}

/** A plain DNS name of two labels or more (no IP literal, nothing a host glob would refuse). */
const DNS_NAME = /^(?!-)[a-z0-9_-]+(?:\.[a-z0-9_-]+)+$/i;
const IPV4 = /^[0-9.]+$/;

/**
 * The policy glob one level up: `api.github.com` → `**.github.com` (which matches github.com
 * and every name under it, policy `**` being any number of labels, none included). A name of
 * two labels offers its own glob (`github.com` → `**.github.com`), never a bare `**.com`. IP
 * literals and odd names have none.
 */
export function parentGlob(host) {
  if (typeof host !== 'string' || !DNS_NAME.test(host) || IPV4.test(host)) return null;
  const labels = host.toLowerCase().split('.');
  const parent = labels.length > 2 ? labels.slice(1) : labels;
  return `**.${parent.join('.')}`;
}

/**
 * Rules filter by `rule=` once the API has it (the filter list in state.js says so); until
 * then by a search for the rule's name, which the record's reason carries.
 */
export function ruleFilter(rule) {
  return FILTER_KEYS.includes('rule') ? { rule } : { q: rule };
}

/** `filters` plus `extra`, as a History link. */
export function drillHref(filters, extra) {
  return stateHref({ filters: { ...filters, ...extra } });
}

/** A link that filters the list to one value; `title` says so on hover. */
export function drillLink(filters, extra, content, { className = 'drill', title } = {}) {
  return el('a', { href: drillHref(filters, extra), 'data-route': '', class: className, title }, content);
}
