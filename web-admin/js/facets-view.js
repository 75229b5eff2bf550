// The facets panel beside the history table: how many records match the filters, and the top
// values of each field with their counts. Every value is a link that keeps only it, with a
// second link that leaves it out (`not.FIELD=`); the time window and other filters stay.
import { el, replaceChildren } from './dom.js';
import { apiGet } from './api.js';
import { formatCount, timeNode } from './format.js';
import { filterParams, stateHref } from './state.js';
import { FACET_FIELDS, facetFilterValue, withExcluded, withIncluded } from './filter-model.js';

const FIELDS_PARAM = FACET_FIELDS.map((facet) => facet.field).join(',');

/** "1,234", or "at least 10,000" when the server stopped counting at a bound (SPEC §6). */
export function totalText(total, exact) {
  const count = formatCount(total);
  return exact === false ? `at least ${count}` : count;
}

function valueLinks(state, facet, item, share) {
  const filterValue = facetFilterValue(facet, item.value);
  const shown = item.value === null || item.value === undefined ? null : String(item.value);
  const bar = el('span', { class: 'facet-bar', 'aria-hidden': 'true' });
  bar.style.width = `${Math.max(2, Math.round(share * 100))}%`;
  const count = el('span', { class: 'facet-count' }, formatCount(item.count));
  if (filterValue === null) {
    return el('li', { class: 'facet-value' }, el('span', { class: 'facet-name null' }, shown === null ? '(none)' : '(empty)'), count, bar);
  }
  const active = state.filters[facet.key] === filterValue;
  const include = el('a', {
    href: stateHref({ ...state, id: null, filters: withIncluded(state.filters, facet.key, filterValue) }), 'data-route': '',
    class: 'facet-name', 'data-facet-value': shown, title: `Only ${facet.label.toLowerCase()} ${filterValue}`,
    'aria-current': active ? 'true' : null,
  }, el('code', {}, shown));
  const exclude = el('a', {
    href: stateHref({ ...state, id: null, filters: withExcluded(state.filters, facet.key, filterValue) }), 'data-route': '',
    class: 'facet-exclude', 'data-exclude-value': shown, 'aria-label': `Exclude ${facet.label.toLowerCase()} ${shown}`,
    title: `Leave out ${facet.label.toLowerCase()} ${filterValue}`,
  }, '−');
  return el('li', { class: 'facet-value' }, include, count, exclude, bar);
}

function facetSection(state, facet, items, total) {
  const list = el('ul', { class: 'facet-values' });
  for (const item of items) {
    list.appendChild(valueLinks(state, facet, item, total > 0 ? item.count / total : 0));
  }
  return el('section', { class: 'facet', 'data-facet': facet.field },
    el('h3', {}, facet.label),
    items.length === 0 ? el('p', { class: 'muted facet-empty' }, 'none') : list);
}

/** When the server tallied only the newest matches (a large set), the counts say over what. */
function samplingNote(answer) {
  if (answer?.counts_exact !== false || typeof answer.sampled !== 'number') return null;
  return el('p', { class: 'hint facets-sampled' }, `Top values counted over the newest ${formatCount(answer.sampled)} matches`,
    typeof answer.sampled_since === 'string' ? [' (since ', timeNode(answer.sampled_since, { short: true }), ')'] : null, '.');
}

function panelBody(state, answer) {
  const facets = answer !== null && typeof answer.facets === 'object' && answer.facets !== null ? answer.facets : {};
  const total = typeof answer?.total === 'number' ? answer.total : 0;
  return [
    el('p', { class: 'facets-total' },
      el('span', { class: 'facets-total-value', 'data-exact': String(answer?.total_exact !== false) }, totalText(total, answer?.total_exact)),
      ' ', total === 1 && answer?.total_exact !== false ? 'matching request' : 'matching requests'),
    samplingNote(answer),
    FACET_FIELDS.filter((facet) => Array.isArray(facets[facet.field]))
      .map((facet) => facetSection(state, facet, facets[facet.field], total)),
  ];
}

/** The panel; it loads at once and again on `refresh()` (the history's live tail calls it). */
export function facetsPanel(state) {
  const controller = new AbortController();
  const body = el('div', { class: 'facets-body', 'aria-live': 'off' }, el('p', { class: 'muted' }, 'Counting…'));
  const node = el('section', { class: 'facets', 'aria-labelledby': 'facets-title' },
    el('h2', { id: 'facets-title' }, 'Counts'), body);
  let loading = false;
  const load = async () => {
    if (loading) return;
    loading = true;
    const params = filterParams(state.filters);
    params.set('fields', FIELDS_PARAM);
    try {
      const answer = await apiGet('requests/facets', params, { signal: controller.signal });
      replaceChildren(body, panelBody(state, answer));
    } catch (err) {
      // No role=alert: a filter the server refuses is announced once, by the table above.
      if (err.name !== 'AbortError') {
        replaceChildren(body, el('div', { class: 'alert panel-error' }, el('strong', {}, 'Could not count: '), err.message));
      }
    } finally {
      loading = false;
    }
  };
  load();
  return { node, refresh: load, dispose: () => controller.abort() };
}
