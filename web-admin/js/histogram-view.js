// The requests-over-time chart for a filtered set, shared by Overview and History: drag across
// it (or click a bar) to narrow the time window, which goes into the URL like any filter.
import { el, replaceChildren } from './dom.js';
import { apiGet } from './api.js';
import { formatCount, timeNode } from './format.js';
import { filterParams, navigate, stateHref } from './state.js';
import { timeSeriesChart, chartLegend, seriesTable } from './chart.js';
import { isoSeconds, zoomedOut } from './time-window.js';

/** The state with the time window set to [sinceMs, untilMs). */
export function windowHref(state, { sinceMs, untilMs }) {
  return stateHref({ ...state, id: null, filters: { ...state.filters, since: isoSeconds(sinceMs), until: isoSeconds(untilMs) } });
}

function zoomOutLink(state) {
  const wider = zoomedOut(state.filters);
  if (wider === null || state.filters.until === undefined) return null;
  const filters = { ...state.filters, since: wider.since };
  if (wider.until === undefined) delete filters.until;
  else filters.until = wider.until;
  return el('a', { href: stateHref({ ...state, id: null, filters }), 'data-route': '', class: 'button zoom-out' }, 'Zoom out ×2');
}

/**
 * The chart of a stats answer with its legend, window line, zoom-out link and data table.
 * `defaultNote` says what the chart covers when the URL names no window.
 */
export function chartSection(state, stats, { heading = 'Requests over time', defaultNote = null, height = undefined } = {}) {
  const series = Array.isArray(stats.series) ? stats.series : [];
  const bucketSeconds = stats.bucket_seconds ?? 0;
  const window = { sinceMs: Date.parse(stats.since), untilMs: Date.parse(stats.until) };
  const onSelect = (range) => navigate(windowHref(state, range));
  return el('section', { class: 'panel panel-wide histogram', 'aria-label': heading },
    el('div', { class: 'histogram-head' },
      el('h2', {}, heading), chartLegend(),
      el('span', { class: 'hint brush-hint' }, 'Drag across the chart, or click a bar, to zoom to that time.'),
      zoomOutLink(state)),
    typeof stats.since === 'string' && typeof stats.until === 'string'
      ? el('p', { class: 'muted window-line' }, 'From ', timeNode(stats.since), ' to ', timeNode(stats.until), '.', defaultNote ? ` ${defaultNote}` : '')
      : null,
    series.length === 0 ? el('p', { class: 'muted' }, 'No requests in this window.')
      : timeSeriesChart(series, bucketSeconds, `Allowed, would-deny and denied requests per ${formatCount(bucketSeconds)} s`,
        { onSelect, height, window: Number.isFinite(window.sinceMs) && Number.isFinite(window.untilMs) ? window : null }),
    series.length === 0 ? null : seriesTable(series, bucketSeconds));
}

/** Chart units: a strip above the table that leaves the rows in view. */
const HISTORY_CHART_HEIGHT = 140;

/** The histogram above the history table: /api/stats with the table's filters (SPEC §6). */
export function histogramPanel(state) {
  const controller = new AbortController();
  const node = el('div', { class: 'histogram-mount' }, el('p', { class: 'muted' }, 'Loading the chart…'));
  const defaultNote = state.filters.since === undefined ? 'No window chosen: the chart shows the last 24 h, the table all time.' : null;
  apiGet('stats', filterParams(state.filters), { signal: controller.signal })
    .then((stats) => replaceChildren(node, chartSection(state, stats, { defaultNote, height: HISTORY_CHART_HEIGHT })))
    .catch((err) => {
      // No role=alert: a filter the server refuses is announced once, by the table below.
      if (err.name !== 'AbortError') replaceChildren(node, el('div', { class: 'alert panel-error' }, el('strong', {}, 'Could not load the chart: '), err.message));
    });
  return { node, dispose: () => controller.abort() };
}
