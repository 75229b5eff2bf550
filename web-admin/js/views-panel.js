// Saved views (SPEC §6): named filter sets kept by the server. Save the current filters under a
// name, apply one (its filters replace the current ones, the page stays), delete one. The names
// and queries come from other admins: shown as text, applied only through the URL parser.
import { el, replaceChildren } from './dom.js';
import { apiGet, apiSend } from './api.js';
import { filterParams, readState, stateHref } from './state.js';

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
  return el('li', { class: 'saved-view', 'data-view-id': String(view.id) },
    el('a', { href: stateHref({ ...state, id: null, filters }), 'data-route': '', class: 'view-apply', title: typeof view.query === 'string' ? view.query : '' }, name),
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

/** The saved-views panel: list, apply, delete, and save the filters in force now. */
export function savedViewsPanel(state) {
  const list = el('ul', { class: 'saved-views' });
  const status = el('p', { class: 'muted view-status', role: 'status' });
  const report = (text) => { status.textContent = text; };
  const reload = async () => {
    try {
      const answer = await apiGet('views');
      const items = Array.isArray(answer?.items) ? answer.items : [];
      replaceChildren(list, items.length === 0 ? el('li', { class: 'muted' }, 'No saved views yet.')
        : items.map((view) => viewItem(state, view, reload, report)));
    } catch (err) {
      replaceChildren(list, el('li', { class: 'muted' }, `Saved views are unavailable: ${err.message}`));
    }
  };
  reload();
  return el('section', { class: 'views-panel', 'aria-labelledby': 'views-title' },
    el('h2', { id: 'views-title' }, 'Saved views'), list, saveForm(state, reload, report), status);
}
