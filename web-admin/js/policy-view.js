// The loaded policy: the last reload result first (a failed reload is what an operator must
// not miss), then the rules in evaluation order with their source, hits and last hit.
import { el, badge, replaceChildren } from './dom.js';
import { apiGet } from './api.js';
import { formatCount, timeNode } from './format.js';
import { stateHref } from './state.js';
import { filterForm } from './filters-view.js';
import { suggestPanel } from './suggest-panel.js';

/** /api/policy counts hits over the last 7 days unless told otherwise. */
export const DEFAULT_HITS_WINDOW = '7d';

/** A reload problem as `FILE:LINE: message`, whether the API sends a string or an object. */
export function problemText(problem) {
  if (typeof problem === 'string') return problem;
  if (problem === null || typeof problem !== 'object') return String(problem);
  const where = problem.file ? `${problem.file}${problem.line ? `:${problem.line}` : ''}: ` : '';
  return `${where}${problem.message ?? JSON.stringify(problem)}`;
}

function reloadResult(reload) {
  if (!reload) return el('p', { class: 'muted' }, 'No reload result reported.');
  const when = reload.at ? [' at ', timeNode(reload.at)] : [];
  if (reload.ok) {
    return el('div', { class: 'reload reload-ok', role: 'status' },
      el('strong', {}, '✓ Last reload succeeded'), ...when, reload.version ? [' — version ', el('code', {}, reload.version)] : '');
  }
  const problems = Array.isArray(reload.problems) ? reload.problems : [];
  return el('div', { class: 'reload reload-failed', role: 'alert' },
    el('h2', {}, '✗ Last reload FAILED', ...when),
    el('p', {}, 'The proxy keeps enforcing the last good policy', reload.version ? [' (', el('code', {}, reload.version), ')'] : '',
      '. Fix these problems and save again:'),
    el('ul', { class: 'problems' }, problems.map((p) => el('li', {}, el('code', {}, problemText(p))))));
}

function list(values, emptyText = 'any') {
  if (values === null || values === undefined) return el('span', { class: 'muted' }, emptyText);
  if (!Array.isArray(values)) return el('code', {}, String(values));
  if (values.length === 0) return el('span', { class: 'muted' }, emptyText);
  return el('ul', { class: 'values' }, values.map((v) => el('li', {}, el('code', {}, String(v)))));
}

function neverMatched(rule) {
  return rule.never_matched === true || rule.unused === true;
}

function ruleBadges(rule) {
  const mode = rule.effective_mode ?? rule.mode;
  return [
    rule.action === 'deny' ? badge('deny', 'DENY') : badge('allow', 'ALLOW'),
    mode === 'report' ? el('div', {}, badge('would', 'REPORT MODE', 'denials are let through and recorded as would_deny')) : null,
    rule.expired ? el('div', {}, badge('never', 'EXPIRED', 'past its expires date: no longer matches')) : null,
  ];
}

function hitsLink(rule, since) {
  const filters = { q: rule.name, ...(since ? { since } : { since: DEFAULT_HITS_WINDOW }) };
  return el('a', { href: stateHref({ filters }), 'data-route': '', title: 'Search the history for this rule name (free text: can also match a host or reason)' }, formatCount(rule.hits ?? 0));
}

function ruleRow(rule, index, highlighted, since) {
  const classes = [rule.action === 'deny' ? 'rule-deny' : 'rule-allow'];
  if (neverMatched(rule)) classes.push('rule-never');
  if (highlighted) classes.push('rule-highlighted');
  return el('tr', { class: classes.join(' '), id: `rule-${index + 1}`, 'data-rule': rule.name, tabindex: highlighted ? '-1' : null },
    el('td', { class: 'num' }, String(index + 1)),
    el('td', {}, el('code', { class: 'rule-name' }, rule.name),
      neverMatched(rule) ? el('div', {}, badge('never', 'NEVER MATCHED', 'no request was decided by this rule in the window')) : null),
    el('td', {}, ruleBadges(rule)),
    el('td', {}, list(rule.clients, 'every client')),
    el('td', {}, list(rule.hosts)),
    el('td', {}, list(rule.ports)),
    el('td', {}, list(rule.methods)),
    el('td', {}, list(rule.paths)),
    el('td', {}, rule.expires ? el('code', {}, String(rule.expires)) : el('span', { class: 'muted' }, 'never')),
    el('td', {}, el('code', { class: 'file-line' }, rule.source ?? '')),
    el('td', { class: 'num' }, hitsLink(rule, since)),
    el('td', {}, rule.last_hit ? timeNode(rule.last_hit, { short: true }) : el('span', { class: 'muted' }, 'never')));
}

function fallbackText(rule, policy) {
  if (rule === '(guard)') return 'the destination guard: blocked addresses, whatever the rules say';
  if (rule === '(sni)') return "tunnels closed on their TLS ClientHello (tls: sni-must-match or require): the SNI named another host";
  return `no rule matched: settings.default (${policy.settings?.default ?? 'deny'})`;
}

function fallbackRows(policy, since) {
  const fallbacks = Array.isArray(policy.fallbacks) ? policy.fallbacks : [];
  return fallbacks.map((f) => el('tr', { class: 'rule-fallback', 'data-rule': f.rule },
    el('td', { class: 'num' }, '—'),
    el('td', {}, el('code', { class: 'rule-name' }, f.rule)),
    el('td', { colspan: 8 }, el('span', { class: 'muted' }, fallbackText(f.rule, policy))),
    el('td', { class: 'num' }, hitsLink({ name: f.rule, hits: f.hits }, since)),
    el('td', {}, f.last_hit ? timeNode(f.last_hit, { short: true }) : el('span', { class: 'muted' }, 'never'))));
}

function rulesTable(policy, state) {
  const head = el('tr', {}, ['#', 'rule', 'action', 'clients', 'hosts', 'ports', 'methods', 'paths', 'expires', 'source (FILE:LINE)', 'hits', 'last hit (UTC)']
    .map((h) => el('th', { scope: 'col' }, h)));
  const rules = Array.isArray(policy.rules) ? policy.rules : [];
  const never = rules.filter(neverMatched).length;
  const since = state.filters.since;
  return [
    el('p', { class: 'muted' }, `${formatCount(rules.length)} rules in evaluation order — the first match decides. `,
      never > 0 ? el('strong', { class: 'never-count' }, `${formatCount(never)} never matched in the window (highlighted).`)
        : 'Every rule matched at least once in the window.'),
    el('div', { class: 'table-wrap' }, el('table', { class: 'rules' }, el('thead', {}, head),
      el('tbody', {}, rules.map((rule, i) => ruleRow(rule, i, rule.name === state.rule, since))),
      el('tbody', { class: 'fallbacks' }, fallbackRows(policy, since)))),
  ];
}

function settingsList(policy) {
  const settings = policy.settings ?? {};
  const files = Array.isArray(policy.files) ? policy.files : [];
  return el('dl', { class: 'settings' },
    el('dt', {}, 'version'), el('dd', {}, el('code', {}, policy.version ?? 'none loaded')),
    el('dt', {}, 'default'), el('dd', {}, el('code', {}, String(settings.default ?? 'deny')),
      settings.source ? [' at ', el('code', { class: 'file-line' }, settings.source)] : null),
    el('dt', {}, 'mode'), el('dd', {}, el('code', {}, String(settings.mode ?? 'enforce'))),
    el('dt', {}, 'files'), el('dd', {}, files.length === 0 ? 'none' : el('ul', { class: 'values' },
      files.map((f) => el('li', {}, el('code', {}, typeof f === 'string' ? f : (f.name ?? f.file ?? JSON.stringify(f))))))),
    policy.hits_since ? [el('dt', {}, 'hits since'), el('dd', {}, timeNode(policy.hits_since))] : null);
}

export function policyView(state) {
  const body = el('div', {}, el('p', { class: 'muted' }, 'Loading…'));
  const controller = new AbortController();
  const params = new URLSearchParams();
  if (state.filters.since) params.set('since', state.filters.since);
  apiGet('policy', params, { signal: controller.signal })
    .then((policy) => {
      replaceChildren(body, reloadResult(policy.last_reload), settingsList(policy), ...rulesTable(policy, state));
      const target = body.querySelector('tr.rule-highlighted');
      if (target) { target.scrollIntoView({ block: 'center' }); target.focus(); }
    })
    .catch((err) => {
      if (err.name !== 'AbortError') replaceChildren(body, el('div', { class: 'alert', role: 'alert' }, el('strong', {}, 'Could not load the policy: '), err.message));
    });
  const suggest = suggestPanel(state);
  return {
    node: el('section', { 'aria-labelledby': 'policy-title' }, el('h1', { id: 'policy-title' }, 'Policy'),
      el('p', { class: 'muted' }, `Hit counts, last hits and "never matched" cover the window below (default: last ${DEFAULT_HITS_WINDOW}).`),
      filterForm(state, { keys: 'window', defaultSince: DEFAULT_HITS_WINDOW, withUntil: false }), body, suggest.node),
    dispose: () => {
      controller.abort();
      suggest.dispose();
    },
  };
}
