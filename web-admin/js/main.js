// Entry point: the navigation, and one view at a time chosen by the URL.
import { el, replaceChildren } from './dom.js';
import { startRouter, stateHref } from './state.js';
import { historyView } from './history-view.js';
import { detailView } from './detail-view.js';
import { overviewView } from './overview-view.js';
import { policyView } from './policy-view.js';
import { startHealthBanner } from './health-banner.js';
import { startKeyboard } from './keyboard.js';
import { applyDensity } from './table-prefs.js';

const VIEWS = { history: historyView, detail: detailView, overview: overviewView, policy: policyView };
const TITLES = { history: 'History', detail: 'Request', overview: 'Overview', policy: 'Policy' };

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let current = null;

function renderNav(state) {
  const link = (view, label) => {
    const active = state.view === view || (view === 'history' && state.view === 'detail');
    return el('li', {}, el('a', { href: stateHref({ view, filters: state.filters }), 'data-route': '', 'aria-current': active ? 'page' : null }, label));
  };
  replaceChildren(nav, el('ul', {}, link('history', 'History'), link('overview', 'Overview'), link('policy', 'Policy')));
}

function render(state) {
  const focusedId = document.activeElement?.id || null;
  if (current) current.dispose();
  current = VIEWS[state.view](state);
  renderNav(state);
  replaceChildren(main, current.node);
  document.title = `${state.view === 'detail' ? `Request #${state.id}` : TITLES[state.view]} · tollgate`;
  // Keep the keyboard where it was when a filter change rebuilt the view.
  const again = focusedId ? document.getElementById(focusedId) : null;
  if (again && main.contains(again)) again.focus();
  else if (state.view === 'detail') main.focus();
}

applyDensity();
startKeyboard(() => current);
startRouter(render);
startHealthBanner(document.getElementById('health-banner'));
