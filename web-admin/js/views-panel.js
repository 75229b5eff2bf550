// Saved views (SPEC §6): named filter sets kept by the server. Save the current filters under a
// name, apply one (its filters replace the current ones, the page stays), delete one; and the
// console's activity (who exported, who changed views). Names, queries and identities come from
// other admins and proxies: shown as text, a query applied only through the URL parser.
import { el, replaceChildren } from './dom.js';
import { apiGet, apiSend } from './api.js';
import { filterParams, readState, stateHref } from './state.js';
import { timeNode } from './format.js';

/** Console events shown: the newest few; the API pages further back. */
const ACTIVITY_LIMIT = 15;

/** The filters a saved query string holds, read as a URL is: unknown keys are dropped. */
function viewFilters(query) {
  return readState(`?${typeof query === 'string' ? query : ''}`).filters;
}

function viewItem(state, view, reload, report) {
  const filters = viewFilters(view.query);
  const name = typeof view.name === 'string' && view.name !== '' ? view.name : `view ${view.id}`;
  const remove = el('button', { type: 'button', class: 'view-delete', 'aria-label': `Delete saved view ${name}`, title: 'Delete this saved view' }, '×');
  remove.addEventListener('click', async () => {
    remove.disabled = true;
    try {
      await apiSend('DELETE', `views/${encodeURIComponent(String(view.id))}`);
      report(`Deleted "${name}".`);
      await reload();
    } catch (err) {
      remove.disabled = false;
      report(`Could not delete "${name}": ${err.message}`);
    }
  });
  const by = typeof view.created_by === 'string' ? `saved by ${view.created_by}` : '';
  return el('li', { class: 'saved-view', 'data-view-id': String(view.id) },
    el('a', {
      href: stateHref({ ...state, id: null, filters }), 'data-route': '', class: 'view-apply',
      title: [typeof view.query === 'string' ? view.query : '', by].filter((t) => t !== '').join(' — '),
    }, name),
    remove);
}

function saveForm(state, reload, report) {
  const name = el('input', { type: 'text', id: 'view-name', name: 'name', autocomplete: 'off', placeholder: 'e.g. paste sites, last day' });
  const form = el('form', { class: 'view-save', 'aria-label': 'Save the current filters' },
    el('label', { for: 'view-name', class: 'visually-hidden' }, 'Name for this view'), name,
    el('button', { type: 'submit' }, 'Save view'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = name.value.trim();
    if (text === '') {
      report('Give the view a name first.');
      name.focus();
      return;
    }
    try {
      await apiSend('POST', 'views', { name: text, query: filterParams(state.filters).toString() });
      name.value = '';
      report(`Saved "${text}".`);
      await reload();
    } catch (err) {
      report(`Could not save: ${err.message}`);
    }
  });
  return form;
}

const ACTIONS = { export: 'exported', view_create: 'saved view', view_delete: 'deleted view' };

/** One console event as a line: when, who (and how they were identified), what. */
function activityItem(event) {
  const detail = event.detail !== null && typeof event.detail === 'object' ? event.detail : {};
  const action = ACTIONS[event.action] ?? String(event.action);
  const what = event.action === 'export'
    ? [typeof detail.format === 'string' ? ` ${detail.format.toUpperCase()}` : '', typeof detail.query === 'string' ? ' ' : '',
      typeof detail.query === 'string' ? el('code', {}, detail.query === '' ? '(everything)' : detail.query) : null]
    : [' ', el('q', {}, typeof detail.name === 'string' ? detail.name : `#${String(detail.view_id ?? '?')}`)];
  return el('li', { 'data-action': String(event.action) },
    typeof event.at === 'string' ? timeNode(event.at, { short: true }) : null, ' ',
    el('strong', { class: 'actor', title: typeof event.actor_source === 'string' ? `identified by ${event.actor_source}` : null }, String(event.actor ?? 'unknown')),
    ` ${action}`, ...what);
}

/** Who exported and who changed views, newest first; hidden when the API offers no events. */
function activitySection() {
  const list = el('ul', { class: 'activity' });
  const section = el('section', { class: 'activity-panel', 'aria-labelledby': 'activity-title', hidden: true },
    el('h3', { id: 'activity-title' }, 'Activity'), list);
  const load = async () => {
    try {
      const answer = await apiGet('console/events', new URLSearchParams({ limit: String(ACTIVITY_LIMIT) }));
      const items = Array.isArray(answer?.items) ? answer.items : [];
      replaceChildren(list, items.length === 0 ? el('li', { class: 'muted' }, 'No exports or view changes yet.') : items.map(activityItem));
      section.hidden = false;
    } catch {
      section.hidden = true;
    }
  };
  return { node: section, reload: load };
}

/** The saved-views panel: list, apply, delete, and save the filters in force now. */
export function savedViewsPanel(state) {
  const list = el('ul', { class: 'saved-views' });
  const status = el('p', { class: 'muted view-status', role: 'status' });
  const report = (text) => { status.textContent = text; };
  const activity = activitySection();
  const loadList = async () => {
    try {
      const answer = await apiGet('views');
      const items = Array.isArray(answer?.items) ? answer.items : [];
      replaceChildren(list, items.length === 0 ? el('li', { class: 'muted' }, 'No saved views yet.')
        : items.map((view) => viewItem(state, view, reload, report)));
    } catch (err) {
      replaceChildren(list, el('li', { class: 'muted' }, `Saved views are unavailable: ${err.message}`));
    }
  };
  /** The list and the activity together: a save or a delete is an event of its own. */
  const reload = () => Promise.all([loadList(), activity.reload()]);
  reload();
  return el('section', { class: 'views-panel', 'aria-labelledby': 'views-title' },
    el('h2', { id: 'views-title' }, 'Saved views'), list, saveForm(state, reload, report), status, activity.node);
}
