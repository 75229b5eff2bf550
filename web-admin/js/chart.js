// A stacked bar chart of allowed / would-deny / denied requests over time, drawn as SVG elements
// through DOM APIs (no chart library, nothing inline for the CSP to refuse).
import { svg, el, setAttr } from './dom.js';
import { axisLabel, formatCount } from './format.js';

const WIDTH = 960;
const HEIGHT = 260;
const MARGIN = { top: 12, right: 12, bottom: 34, left: 60 };

/** Bottom to top. would_deny requests were let through, so they are split out of `allowed`. */
export const SERIES = [
  { key: 'allowed_only', label: 'allowed', className: 'bar-allowed' },
  { key: 'would_deny', label: 'would deny (let through, report mode)', className: 'bar-would' },
  { key: 'denied', label: 'denied', className: 'bar-denied' },
];

/** The three stacked values of one bucket; they add up to the bucket's total. */
export function bucketValues(point) {
  const allowed = Number(point.allowed) || 0;
  const wouldDeny = Number(point.would_deny) || 0;
  return { allowed_only: Math.max(0, allowed - wouldDeny), would_deny: wouldDeny, denied: Number(point.denied) || 0 };
}

/** A round upper bound for the y axis and its tick step (1, 2 or 5 times a power of ten). */
export function niceScale(max, ticks = 4) {
  if (!(max > 0)) return { top: 1, step: 1 };
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  return { top: Math.max(step, Math.ceil(max / step) * step), step: Math.max(1, step) };
}

function pointTime(point) {
  return typeof point.t === 'number' ? new Date(point.t < 1e12 ? point.t * 1000 : point.t) : new Date(point.t);
}

function bucketTitle(point, values, bucketSeconds) {
  const start = pointTime(point);
  const iso = Number.isNaN(start.getTime()) ? String(point.t) : start.toISOString();
  const total = values.allowed_only + values.would_deny + values.denied;
  return `${iso} (+${formatCount(bucketSeconds)} s): ${formatCount(total)} total — ` +
    `${formatCount(values.allowed_only + values.would_deny)} allowed (of which ${formatCount(values.would_deny)} would deny), ${formatCount(values.denied)} denied`;
}

function yAxis(scale, plotHeight) {
  const group = svg('g', { class: 'axis axis-y' });
  for (let value = 0; value <= scale.top; value += scale.step) {
    const y = MARGIN.top + plotHeight - (value / scale.top) * plotHeight;
    group.appendChild(svg('line', { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y, y2: y, class: 'grid' }));
    group.appendChild(svg('text', { x: MARGIN.left - 6, y, 'text-anchor': 'end', 'dominant-baseline': 'middle' }, formatCount(value)));
  }
  return group;
}

function xAxis(series, barWidth, plotHeight, spanMs) {
  const group = svg('g', { class: 'axis axis-x' });
  const every = Math.max(1, Math.ceil(series.length / 8));
  series.forEach((point, i) => {
    if (i % every !== 0) return;
    const x = MARGIN.left + i * barWidth + barWidth / 2;
    group.appendChild(svg('text', { x, y: MARGIN.top + plotHeight + 20, 'text-anchor': 'middle' }, axisLabel(pointTime(point).toISOString(), spanMs)));
  });
  return group;
}

/**
 * A stacked bar chart. With `onSelect`, dragging across it (a brush) or clicking a bar calls
 * `onSelect({ sinceMs, untilMs })` with whole buckets, clipped to `window` (the stats window,
 * whose first bucket may start before it). `height` (chart units) makes a compact strip.
 */
export function timeSeriesChart(series, bucketSeconds, title, { onSelect = null, window = null, height = HEIGHT } = {}) {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = height - MARGIN.top - MARGIN.bottom;
  const values = series.map(bucketValues);
  const max = Math.max(0, ...values.map((v) => v.allowed_only + v.would_deny + v.denied));
  const scale = niceScale(max, height < HEIGHT ? 2 : 4);
  const barWidth = series.length > 0 ? plotWidth / series.length : plotWidth;
  const gap = barWidth > 6 ? Math.min(4, barWidth * 0.15) : 0;
  const chart = svg('svg', { viewBox: `0 0 ${WIDTH} ${height}`, class: 'chart', role: 'img', 'aria-label': title, focusable: 'false' },
    svg('title', {}, title), yAxis(scale, plotHeight));
  series.forEach((point, i) => {
    const group = svg('g', { class: 'bucket' }, svg('title', {}, bucketTitle(point, values[i], bucketSeconds)));
    let base = MARGIN.top + plotHeight;
    for (const s of SERIES) {
      const h = (values[i][s.key] / scale.top) * plotHeight;
      if (h <= 0) continue;
      base -= h;
      group.appendChild(svg('rect', { x: MARGIN.left + i * barWidth + gap / 2, y: base, width: Math.max(1, barWidth - gap), height: h, class: s.className }));
    }
    // A full-height transparent target so the tooltip shows even over an empty bucket.
    group.appendChild(svg('rect', { x: MARGIN.left + i * barWidth, y: MARGIN.top, width: barWidth, height: plotHeight, class: 'hover-target' }));
    chart.appendChild(group);
  });
  const spanMs = series.length * bucketSeconds * 1000;
  chart.appendChild(xAxis(series, barWidth, plotHeight, spanMs));
  chart.appendChild(svg('line', { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: MARGIN.top + plotHeight, y2: MARGIN.top + plotHeight, class: 'baseline' }));
  if (onSelect !== null && series.length > 0) {
    const bucketMs = bucketSeconds * 1000;
    attachBrush(chart, { plotHeight, barWidth, count: series.length }, (first, last) => {
      const start = pointTime(series[first]).getTime();
      const end = pointTime(series[last]).getTime() + bucketMs;
      onSelect({
        sinceMs: window?.sinceMs !== undefined ? Math.max(start, window.sinceMs) : start,
        untilMs: window?.untilMs !== undefined ? Math.min(end, window.untilMs) : end,
      });
    });
  }
  return chart;
}

/** Below this many chart units of travel a press is a click on one bar, not a drag. */
const CLICK_TOLERANCE = 3;

/** Client coordinates to the chart's own (viewBox) units, whatever size the SVG is drawn at. */
function chartX(chart, event) {
  const matrix = chart.getScreenCTM();
  if (matrix === null) return MARGIN.left;
  const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
  return point.x;
}

/**
 * The brush: press, drag, release. A shaded band follows the pointer; on release the buckets it
 * touches are handed to `select(firstIndex, lastIndex)`. Pointer capture keeps the drag alive
 * when the pointer leaves the chart.
 */
function attachBrush(chart, { plotHeight, barWidth, count }, select) {
  chart.classList.add('chart-brushable');
  const band = svg('rect', { class: 'brush', x: 0, y: MARGIN.top, width: 0, height: plotHeight });
  chart.appendChild(band);
  const index = (x) => Math.min(count - 1, Math.max(0, Math.floor((x - MARGIN.left) / barWidth)));
  const clamp = (x) => Math.min(WIDTH - MARGIN.right, Math.max(MARGIN.left, x));
  let startX = null;
  chart.addEventListener('pointerdown', (event) => {
    if (event.button !== 0) return;
    const x = chartX(chart, event);
    if (x < MARGIN.left || x > WIDTH - MARGIN.right) return;
    startX = x;
    chart.setPointerCapture(event.pointerId);
    event.preventDefault();
  });
  chart.addEventListener('pointermove', (event) => {
    if (startX === null) return;
    const x = clamp(chartX(chart, event));
    setAttr(band, 'x', String(Math.min(startX, x)));
    setAttr(band, 'width', String(Math.abs(x - startX)));
    band.classList.add('brush-active');
  });
  const finish = (event, cancelled) => {
    if (startX === null) return;
    const x = clamp(chartX(chart, event));
    const from = startX;
    startX = null;
    band.classList.remove('brush-active');
    if (cancelled) return;
    if (Math.abs(x - from) < CLICK_TOLERANCE) select(index(from), index(from));
    else select(index(Math.min(from, x)), index(Math.max(from, x) - 0.001));
  };
  chart.addEventListener('pointerup', (event) => finish(event, false));
  chart.addEventListener('pointercancel', (event) => finish(event, true));
}

export function chartLegend() {
  return el('ul', { class: 'legend' }, SERIES.map((s) => el('li', {}, el('span', { class: `swatch ${s.className}`, 'aria-hidden': 'true' }), s.label)));
}

/** The same numbers as a table, for screen readers and for copying. */
export function seriesTable(series, bucketSeconds) {
  const body = el('tbody');
  for (const point of series) {
    const v = bucketValues(point);
    const start = pointTime(point);
    body.appendChild(el('tr', {},
      el('td', {}, Number.isNaN(start.getTime()) ? String(point.t) : start.toISOString()),
      el('td', { class: 'num' }, formatCount(Number(point.allowed) || 0)),
      el('td', { class: 'num' }, formatCount(v.would_deny)),
      el('td', { class: 'num' }, formatCount(v.denied))));
  }
  return el('details', { class: 'series-data' },
    el('summary', {}, `Chart data (${formatCount(series.length)} buckets of ${formatCount(bucketSeconds)} s)`),
    el('table', {}, el('thead', {}, el('tr', {},
      el('th', { scope: 'col' }, 'bucket start (UTC)'), el('th', { scope: 'col' }, 'allowed'),
      el('th', { scope: 'col' }, 'would deny'), el('th', { scope: 'col' }, 'denied'))), body));
}
