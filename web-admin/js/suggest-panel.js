// The Policy page's "Suggest rules" panel: `tollgate policy suggest` for the requests the current
// filters select (GET /api/policy/suggest), the YAML to copy or download, and what was left out.
// The YAML names hosts and paths workloads chose: it reaches the page as one text node only.
import { el, replaceChildren, downloadLink } from './dom.js';
import { apiGet } from './api.js';
import { formatCount } from './format.js';
import { filterParams } from './state.js';
import { activeFilterChips } from './filters-view.js';

/** The file the download is named: it must sort after every other file of the policies folder. */
export const SUGGESTED_FILE = '90-suggested.yaml';

/** Without `since`, the suggestion reads 14 days back, as `tollgate policy suggest` does. */
const DEFAULT_SUGGEST_WINDOW = '14d';

/** Left-out destinations listed on screen; the YAML's closing comment lists them by reason too. */
const MAX_LEFT_OUT_ROWS = 50;

const REASONS = {
  explicit_deny: 'an explicit deny rule decides it (never undone by a suggestion)',
  guard: 'refused by the destination guard',
  sni: 'refused by the SNI check',
  already_allowed: 'already allowed by a rule',
  default_deny: 'denied by settings.default in enforce mode',
  below_min_requests: 'seen fewer times than the minimum',
  invalid_host: 'not expressible as a policy host',
};

const plural = (n, word) => `${formatCount(n)} ${word}${n === 1 ? '' : 's'}`;

function optionsForm(onSubmit) {
  const minRequests = el('input', { id: 'suggest-min', name: 'min_requests', type: 'number', min: 1, value: '1', inputmode: 'numeric' });
  const by = el('select', { id: 'suggest-by', name: 'by' },
    el('option', { value: '' }, 'client group where the policy has groups'),
    el('option', { value: 'client-group' }, 'client group'),
    el('option', { value: 'none' }, 'none: rules for every client'));
  const withPaths = el('input', { id: 'suggest-paths', name: 'with_paths', type: 'checkbox', value: '1' });
  const form = el('form', { class: 'filters suggest-options', 'aria-label': 'Suggestion options' },
    el('div', { class: 'field' }, el('label', { for: 'suggest-min' }, 'Min requests'), minRequests),
    el('div', { class: 'field' }, el('label', { for: 'suggest-by' }, 'One rule per'), by),
    el('div', { class: 'field field-check' }, withPaths, ' ', el('label', { for: 'suggest-paths' }, 'Methods and paths (plain HTTP)')),
    el('div', { class: 'field field-actions' }, el('button', { type: 'submit', class: 'primary', id: 'suggest-run' }, 'Suggest rules')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    const min = minRequests.value.trim();
    if (min !== '' && min !== '1') params.set('min_requests', min);
    if (by.value !== '') params.set('by', by.value);
    if (withPaths.checked) params.set('with_paths', '1');
    onSubmit(params);
  });
  return form;
}

function appliesTo(state) {
  const since = state.filters.since;
  return el('div', { class: 'toolbar applied-filters' },
    el('div', {}, el('span', { class: 'hint' }, 'Reads only the requests matching: '),
      activeFilterChips(state, { emptyText: 'No filters: every request in the window.' })),
    el('p', { class: 'hint' }, since ? `Window: since ${since}${state.filters.until ? ` until ${state.filters.until}` : ''}.`
      : `Window: the last ${DEFAULT_SUGGEST_WINDOW} (no since in the filters).`));
}

function summaryText(summary) {
  const { records, suggested } = summary;
  const skipped = records.skipped_malformed + records.skipped_undecided;
  return el('p', { class: 'suggest-summary' },
    el('strong', {}, `${plural(summary.rules, 'allow rule')} for ${plural(suggested.requests, 'request')} to ${plural(suggested.destinations, 'destination')}`),
    ` (one rule per ${summary.by === 'none' ? 'destination family, every client' : 'client group and destination family'}), from ${plural(records.in_window, 'record')} in the window`,
    `: ${formatCount(records.considered)} decided again under the policy in force`,
    records.inside_tunnels > 0 ? `, ${formatCount(records.inside_tunnels)} inside inspected tunnels (covered by their tunnel's rule)` : '',
    skipped > 0 ? `, ${formatCount(skipped)} skipped (malformed or undecided)` : '', '.',
    summary.ip_literal_rules.length > 0 ? [' Review the IP-literal rules: ', summary.ip_literal_rules.map((name, i) => [i > 0 ? ', ' : '', el('code', {}, name)])] : '');
}

function leftOutTable(leftOut) {
  if (leftOut.length === 0) return el('p', { class: 'muted' }, 'Nothing was left out.');
  const shown = leftOut.slice(0, MAX_LEFT_OUT_ROWS);
  return [
    el('h3', {}, `Left out: ${plural(leftOut.length, 'destination')}`),
    el('div', { class: 'table-wrap' }, el('table', { class: 'suggest-left-out' },
      el('thead', {}, el('tr', {}, ['destination', 'why', 'requests', 'decided by'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, shown.map((row) => el('tr', { 'data-reason': row.reason },
        el('td', {}, el('code', {}, row.destination)),
        el('td', {}, REASONS[row.reason] ?? row.reason),
        el('td', { class: 'num' }, formatCount(row.requests)),
        el('td', {}, row.rules.map((rule, i) => [i > 0 ? ', ' : '', el('code', {}, rule)]))))))),
    leftOut.length > shown.length ? el('p', { class: 'muted' }, `… and ${formatCount(leftOut.length - shown.length)} more (listed in the file's closing comment).`) : null,
  ];
}

/** Clipboard when the browser grants it; otherwise the text is selected for Ctrl+C. */
async function copyText(pre, yaml, status) {
  try {
    if (!navigator.clipboard) throw new Error('no clipboard');
    await navigator.clipboard.writeText(yaml);
    status.textContent = 'Copied to the clipboard.';
  } catch {
    window.getSelection().selectAllChildren(pre);
    status.textContent = 'The browser refused the clipboard: the YAML is selected, press Ctrl+C (⌘C) to copy it.';
  }
}

function result(answer, previous) {
  const pre = el('pre', { class: 'suggest-yaml', tabindex: '0', 'aria-label': 'Suggested policy file (YAML)' }, answer.yaml);
  const status = el('span', { class: 'hint', role: 'status', id: 'suggest-copy-status' });
  const copy = el('button', { type: 'button', id: 'suggest-copy' }, 'Copy');
  copy.addEventListener('click', () => copyText(pre, answer.yaml, status));
  previous.revoke();
  const download = downloadLink(new Blob([answer.yaml], { type: 'application/yaml' }), SUGGESTED_FILE,
    `Download ${SUGGESTED_FILE}`, { class: 'button', id: 'suggest-download' });
  return {
    revoke: download.revoke,
    nodes: [
      summaryText(answer.summary),
      el('p', { class: 'suggest-order' }, 'Save it in the policies folder under a name that sorts after every other file (',
        el('code', {}, SUGGESTED_FILE), '), so existing rules, explicit denies first, still decide before these; review it, then replay with settings.mode: enforce.'),
      el('div', { class: 'toolbar suggest-actions' }, copy, download.node, status),
      pre,
      leftOutTable(answer.summary.left_out),
    ],
  };
}

/** The panel; `dispose` aborts a request in flight and frees the download's object URL. */
export function suggestPanel(state) {
  const output = el('div', { class: 'suggest-output', 'aria-live': 'polite' });
  let controller = null;
  let current = { revoke: () => {} };
  const run = (options) => {
    controller?.abort();
    controller = new AbortController();
    const params = filterParams(state.filters);
    for (const [key, value] of options) params.set(key, value);
    replaceChildren(output, el('p', { class: 'muted' }, 'Reading the matching requests…'));
    apiGet('policy/suggest', params, { signal: controller.signal })
      .then((answer) => {
        current = result(answer, current);
        replaceChildren(output, current.nodes);
      })
      .catch((err) => {
        if (err.name !== 'AbortError') replaceChildren(output, el('div', { class: 'alert', role: 'alert' }, el('strong', {}, 'Could not suggest rules: '), err.message));
      });
  };
  const node = el('section', { class: 'panel suggest-panel', 'aria-labelledby': 'suggest-title' },
    el('h2', { id: 'suggest-title' }, 'Suggest rules'),
    el('p', {}, 'Allow rules for the recorded requests that the policy in force only reports (would_deny) or allows by default: ',
      'the first allowlist, written as ', el('code', {}, 'tollgate policy suggest'), ' writes it.'),
    appliesTo(state),
    optionsForm(run),
    output);
  return {
    node,
    dispose: () => {
      controller?.abort();
      current.revoke();
    },
  };
}
