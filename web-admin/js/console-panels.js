// The incident-console panels the history view mounts: the histogram above its table, and
// beside it the counts (facets) and saved views. One object to create, refresh and dispose.
import { el } from './dom.js';
import { facetsPanel } from './facets-view.js';
import { histogramPanel } from './histogram-view.js';
import { savedViewsPanel } from './views-panel.js';

/** The live tail refreshes the counts at most this often, however fast records arrive. */
const MIN_REFRESH_MS = 10_000;

export function consolePanels(state) {
  const histogram = histogramPanel(state);
  const facets = facetsPanel(state);
  let lastRefresh = performance.now();
  return {
    histogram: histogram.node,
    aside: el('div', { class: 'console-aside' }, facets.node, savedViewsPanel(state)),
    /** New records arrived (live tail): recount, unless a count is recent. */
    refresh() {
      if (performance.now() - lastRefresh < MIN_REFRESH_MS) return;
      lastRefresh = performance.now();
      facets.refresh();
    },
    dispose() {
      histogram.dispose();
      facets.dispose();
    },
  };
}
