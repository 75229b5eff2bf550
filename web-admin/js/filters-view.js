// The facet form and the chips that show (and remove) the active filters. Submitting writes the
// filters into the URL; the views read them back from there.
import { el } from './dom.js';
import { navigate, stateHref, FILTER_KEYS } from './state.js';

const LABELS = {
  q: 'Search', decision: 'Decision', would_deny: 'Would deny', status: 'Status', client: 'Client',
  host: 'Host glob', node: 'Node', since: 'Since', until: 'Until', tunnel_id: 'Inside tunnel',
};

/** Filters with no field in the form: submitting it keeps them; their chip removes them. */
const LINK_ONLY_KEYS = ['tunnel_id'];

const RANGE_PRESETS = [['15m', '15 min'], ['1h', '1 h'], ['24h', '24 h'], ['7d', '7 days'], ['30d', '30 days']];

function select(name, value, options) {
  const node = el('select', { id: `f-${name}`, name });
  for (const [optionValue, label] of options) {
    const option = el('option', { value: optionValue }, label);
    if (optionValue === (value ?? '')) option.selected = true;
    node.appendChild(option);
  }
  return node;
}

function input(name, value, attrs) {
  const node = el('input', { id: `f-${name}`, name, type: 'text', autocomplete: 'off', spellcheck: 'false', ...attrs });
  node.value = value ?? '';
  return node;
}

function field(name, control, hint) {
  return el('div', { class: `field field-${name}` },
    el('label', { for: `f-${name}` }, LABELS[name]), control,
    hint ? el('span', { class: 'hint' }, hint) : null);
}

function datalist(id, values) {
  return el('datalist', { id }, values.map(([value, label]) => el('option', { value }, label)));
}

function facetFields(filters) {
  return [
    field('decision', select('decision', filters.decision, [['', 'any'], ['allow', 'allow'], ['deny', 'deny']])),
    field('would_deny', select('would_deny', filters.would_deny, [['', 'any'], ['true', 'would deny only'], ['false', 'not would deny']])),
    field('status', input('status', filters.status, { placeholder: '4xx or 403', list: 'status-classes', inputmode: 'numeric' })),
    field('client', input('client', filters.client, { placeholder: 'IP or group' })),
    field('host', input('host', filters.host, { placeholder: '**.example.com' })),
    field('node', input('node', filters.node, { placeholder: 'replica name' })),
  ];
}

function windowFields(filters, withUntil) {
  return [
    field('since', input('since', filters.since, { placeholder: '24h or 2025-03-01T12:00Z', list: 'since-presets' })),
    withUntil ? field('until', input('until', filters.until, { placeholder: 'now' })) : null,
  ];
}

function valuesOf(form) {
  const data = new FormData(form);
  const values = {};
  for (const [key, value] of data.entries()) {
    if (typeof value === 'string' && value.trim() !== '') values[key] = value.trim();
  }
  return values;
}

/**
 * The filter form. `keys: 'all'` shows every facet (history); `'window'` only since/until
 * (overview, policy), keeping the other filters in the URL untouched.
 */
export function filterForm(state, { keys = 'all', defaultSince = '', withUntil = true } = {}) {
  const { filters } = state;
  const form = el('form', { class: 'filters', role: 'search', 'aria-label': keys === 'all' ? 'Filter requests' : 'Time window' });
  if (keys === 'all') {
    const search = input('q', filters.q, { type: 'search', placeholder: 'host, path, reason, rule, client…' });
    form.appendChild(field('q', search));
    form.append(...facetFields(filters));
  }
  for (const node of windowFields(filters, withUntil)) if (node) form.appendChild(node);
  form.append(
    datalist('status-classes', [['1xx', ''], ['2xx', ''], ['3xx', ''], ['4xx', ''], ['5xx', '']]),
    datalist('since-presets', RANGE_PRESETS),
    el('div', { class: 'field field-actions' },
      el('button', { type: 'submit', class: 'primary' }, 'Apply'),
      el('a', { href: stateHref({ view: state.view === 'detail' ? 'history' : state.view }), 'data-route': '', class: 'button' }, 'Clear')),
  );
  form.appendChild(presetButtons(state, defaultSince, withUntil));
  form.addEventListener('change', (event) => {
    if (event.target instanceof HTMLSelectElement) form.requestSubmit();
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const values = valuesOf(form);
    const owned = keys === 'all' ? FILTER_KEYS.filter((key) => !LINK_ONLY_KEYS.includes(key)) : withUntil ? ['since', 'until'] : ['since'];
    const next = { ...filters };
    for (const key of owned) delete next[key];
    navigate(stateHref({ ...state, id: null, filters: { ...next, ...values } }));
  });
  return form;
}

/** Quick ranges; a view with a default window (overview) offers no "all time". */
function presetButtons(state, defaultSince, withUntil) {
  const group = el('div', { class: 'presets', role: 'group', 'aria-label': 'Quick time ranges' }, el('span', { class: 'hint' }, 'Last:'));
  const presets = defaultSince === '' ? [...RANGE_PRESETS, ['', 'all time']] : RANGE_PRESETS;
  for (const [value, label] of presets) {
    const filters = { ...state.filters, since: value };
    if (withUntil) delete filters.until;
    const current = (state.filters.since ?? defaultSince) === value && !(withUntil && state.filters.until);
    group.appendChild(el('a', {
      href: stateHref({ ...state, id: null, filters }), 'data-route': '', class: current ? 'chip chip-current' : 'chip',
      'aria-current': current ? 'true' : null,
    }, label));
  }
  return group;
}

/** One chip per active filter, each a link that removes it. */
export function activeFilterChips(state) {
  const entries = FILTER_KEYS.filter((key) => state.filters[key] !== undefined);
  if (entries.length === 0) return el('p', { class: 'chips muted' }, 'No filters: showing every request.');
  const list = el('ul', { class: 'chips', 'aria-label': 'Active filters' });
  for (const key of entries) {
    const rest = { ...state.filters };
    delete rest[key];
    list.appendChild(el('li', {},
      el('span', { class: 'chip chip-filter' }, el('span', { class: 'chip-key' }, `${LABELS[key]}:`), ' ', el('code', {}, state.filters[key]),
        ' ', el('a', { href: stateHref({ ...state, id: null, filters: rest }), 'data-route': '', class: 'chip-remove', 'aria-label': `Remove filter ${LABELS[key]}`, title: 'Remove this filter' }, '×'))));
  }
  return list;
}
