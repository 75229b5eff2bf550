// The filter form, the time window (presets, typed and picked times) and the chips that show
// (and remove) the active filters, negated ones included. Submitting writes the filters into the
// URL; the views read them back from there.
import { el } from './dom.js';
import { navigate, stateHref, FILTER_KEYS } from './state.js';
import { FILTER_LABELS, isNegated, labelOf, without } from './filter-model.js';
import { RELATIVE_PRESETS, calendarPresets, fromPickerValue, normaliseTimeInput, pickerValue } from './time-window.js';

/** Filters with no field in the form: submitting it keeps them; their chip removes them. */
const LINK_ONLY_KEYS = ['tunnel_id', 'rule', 'user'];

const LABELS = { ...FILTER_LABELS, host: 'Host glob' };

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

/**
 * A since/until field: typed (relative, ISO, or a date and time read as UTC), or picked with the
 * browser's date-time picker, which writes the typed field (UTC, as labelled).
 */
function timeField(name, value, placeholder) {
  const text = input(name, value, { placeholder, list: name === 'since' ? 'since-presets' : null });
  const picker = el('input', {
    type: 'datetime-local', class: 'time-picker', id: `f-${name}-picker`, 'aria-label': `Pick ${LABELS[name].toLowerCase()} (UTC)`,
    title: 'Pick a time (UTC)',
  });
  picker.value = pickerValue(value);
  picker.addEventListener('change', () => {
    const picked = fromPickerValue(picker.value);
    if (picked !== '') text.value = picked;
  });
  return el('div', { class: `field field-${name}` },
    el('label', { for: `f-${name}` }, LABELS[name]), el('div', { class: 'time-inputs' }, text, picker));
}

function valuesOf(form) {
  const data = new FormData(form);
  const values = {};
  for (const [key, value] of data.entries()) {
    if (typeof value !== 'string' || value.trim() === '') continue;
    values[key] = key === 'since' || key === 'until' ? normaliseTimeInput(value) : value.trim();
  }
  return values;
}

/**
 * The filter form. `keys: 'all'` shows every field; `'window'` only since/until, keeping the
 * other filters in the URL untouched. Filters with no field (negations, rule, user, tunnel) are
 * kept by a submit; their chips remove them.
 */
export function filterForm(state, { keys = 'all', defaultSince = '', withUntil = true } = {}) {
  const { filters } = state;
  const form = el('form', { class: 'filters', role: 'search', 'aria-label': keys === 'all' ? 'Filter requests' : 'Time window' });
  if (keys === 'all') {
    const search = input('q', filters.q, { type: 'search', placeholder: 'host, path, reason, rule, client…' });
    form.appendChild(field('q', search));
    form.append(...facetFields(filters));
  }
  form.appendChild(timeField('since', filters.since, defaultSince === '' ? '24h or 2025-03-01 12:00' : `${defaultSince} (default)`));
  if (withUntil) form.appendChild(timeField('until', filters.until, 'now'));
  form.append(
    datalist('status-classes', [['1xx', ''], ['2xx', ''], ['3xx', ''], ['4xx', ''], ['5xx', '']]),
    datalist('since-presets', RELATIVE_PRESETS),
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

function presetLink(state, label, window, current) {
  const filters = { ...state.filters, since: window.since };
  if (window.since === '') delete filters.since;
  if (window.until === undefined) delete filters.until;
  else filters.until = window.until;
  return el('a', {
    href: stateHref({ ...state, id: null, filters }), 'data-route': '', class: current ? 'chip chip-current' : 'chip',
    'aria-current': current ? 'true' : null, 'data-preset': label,
  }, label);
}

/**
 * Quick ranges: the last 15 min … 30 d (relative), yesterday and the previous 7 days (UTC
 * calendar days); a view with a default window (overview) offers no "all time".
 */
function presetButtons(state, defaultSince, withUntil) {
  const { since = defaultSince, until } = state.filters;
  const group = el('div', { class: 'presets', role: 'group', 'aria-label': 'Quick time ranges' }, el('span', { class: 'hint' }, 'Last:'));
  const relative = defaultSince === '' ? [...RELATIVE_PRESETS, ['', 'all time']] : RELATIVE_PRESETS;
  for (const [value, label] of relative) {
    group.appendChild(presetLink(state, label, { since: value }, since === value && !(withUntil && until)));
  }
  if (!withUntil) return group;
  group.appendChild(el('span', { class: 'hint preset-sep' }, 'Days (UTC):'));
  for (const preset of calendarPresets()) {
    group.appendChild(presetLink(state, preset.label, preset, since === preset.since && until === preset.until));
  }
  return group;
}

/** One chip per active filter, each with a link that removes it; exclusions read "NOT". */
export function activeFilterChips(state, { emptyText = 'No filters: showing every request.' } = {}) {
  const entries = Object.keys(state.filters);
  if (entries.length === 0) return el('p', { class: 'chips muted' }, emptyText);
  const list = el('ul', { class: 'chips', 'aria-label': 'Active filters' });
  for (const key of entries) {
    const negated = isNegated(key);
    const label = labelOf(key);
    list.appendChild(el('li', {},
      el('span', { class: negated ? 'chip chip-filter chip-negated' : 'chip chip-filter', 'data-filter': key },
        negated ? el('span', { class: 'chip-not' }, 'NOT') : null, negated ? ' ' : null,
        el('span', { class: 'chip-key' }, `${label}:`), ' ', el('code', {}, state.filters[key]),
        ' ', el('a', {
          href: stateHref({ ...state, id: null, filters: without(state.filters, key) }), 'data-route': '', class: 'chip-remove',
          'aria-label': `Remove filter ${negated ? 'not ' : ''}${label}`, title: 'Remove this filter',
        }, '×'))));
  }
  return list;
}
