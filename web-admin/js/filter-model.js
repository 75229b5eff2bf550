// One filter model for every view: the URL's filters (state.js), what adding, excluding and
// removing a value does to them, and how each filter is named on screen.
import { FILTER_KEYS, NOT_PREFIX } from './state.js';

export const FILTER_LABELS = {
  q: 'Search', decision: 'Decision', would_deny: 'Would deny', status: 'Status', client: 'Client',
  host: 'Host', rule: 'Rule', user: 'User', node: 'Node', since: 'Since', until: 'Until', tunnel_id: 'Inside tunnel',
};

/**
 * The facets of GET /api/requests/facets (SPEC §6), in the panel's order, with the filter each
 * value becomes. A registrable domain filters as the host glob that covers it and its subdomains.
 */
export const FACET_FIELDS = [
  { field: 'decision', label: 'Decision', key: 'decision' },
  { field: 'host', label: 'Host', key: 'host' },
  { field: 'domain', label: 'Registrable domain', key: 'host', toFilter: (value) => `**.${value}` },
  { field: 'client_ip', label: 'Client address', key: 'client' },
  { field: 'clients', label: 'Client group', key: 'client' },
  { field: 'rule', label: 'Rule', key: 'rule' },
  { field: 'status', label: 'Status', key: 'status' },
  { field: 'user', label: 'User', key: 'user' },
  { field: 'node', label: 'Node', key: 'node' },
];

/** Keys whose filter takes a comma-separated list (host globs): exclusions accumulate there. */
const LIST_KEYS = new Set(['host']);

export function isNegated(key) {
  return key.startsWith(NOT_PREFIX);
}

export function baseKey(key) {
  return isNegated(key) ? key.slice(NOT_PREFIX.length) : key;
}

export function labelOf(key) {
  return FILTER_LABELS[baseKey(key)] ?? baseKey(key);
}

/** The filter value a facet value becomes, or null when it cannot be one (a null user). */
export function facetFilterValue(facet, value) {
  if (value === null || value === undefined || value === '') return null;
  const text = String(value);
  return facet.toFilter ? facet.toFilter(text) : text;
}

/**
 * Keeps only this value for `key`: the filter is replaced (narrowing to one value is what a click
 * on a count means), and an exclusion of the same value, which would contradict it, goes.
 */
export function withIncluded(filters, key, value) {
  const next = { ...filters, [key]: value };
  const negated = `${NOT_PREFIX}${key}`;
  if (next[negated] !== undefined && listValues(next[negated]).includes(value)) delete next[negated];
  return next;
}

/**
 * Leaves this value out: `not.KEY=value`. Host exclusions accumulate as a list (leave out
 * several destinations one after another); other keys hold one value, so the newest wins. An
 * include filter of exactly that value goes, since keeping it would match nothing.
 */
export function withExcluded(filters, key, value) {
  const negated = `${NOT_PREFIX}${key}`;
  const present = filters[negated] === undefined ? [] : listValues(filters[negated]);
  const values = LIST_KEYS.has(key) ? [...present.filter((v) => v !== value), value] : [value];
  const next = { ...filters, [negated]: values.join(',') };
  if (next[key] === value) delete next[key];
  return next;
}

export function without(filters, key) {
  const next = { ...filters };
  delete next[key];
  return next;
}

function listValues(text) {
  return text.split(',').map((part) => part.trim()).filter((part) => part !== '');
}

/** The filters that narrow the set beyond the time window, in URL order (for "which apply"). */
export function nonWindowKeys(filters) {
  return Object.keys(filters).filter((key) => baseKey(key) !== 'since' && baseKey(key) !== 'until')
    .sort((a, b) => order(a) - order(b));
}

function order(key) {
  return FILTER_KEYS.indexOf(baseKey(key)) + (isNegated(key) ? FILTER_KEYS.length : 0);
}
