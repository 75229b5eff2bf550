// The history view: filters, the live table of requests, load more, export.
//
// Layout, and where other panels go: `.history-chart` (above the table, full width) and
// `.history-side` (beside it; collapses while empty) are mount points for the histogram and the
// facets panel (console-panels.js); `HistoryTable.chartMount` / `.sideMount` hold them.
import { el, replaceChildren } from './dom.js';
import { apiGet, exportHref } from './api.js';
import { formatCount } from './format.js';
import { filterParams, navigate, stateHref } from './state.js';
import { filterForm, activeFilterChips } from './filters-view.js';
import { columnTemplate, headerRow, requestRow, sortRows, nextSort, parseSort } from './requests-table.js';
import { VirtualRows } from './virtual-rows.js';
import { LiveTail } from './live-tail.js';
import { tablePrefsControls, visibleColumns } from './table-prefs.js';
import { RowCursor } from './row-cursor.js';
import { consolePanels } from './console-panels.js';

const PAGE_SIZE = 100;
/** The bigger step of Load more: a page of the API's largest size. */
const BIG_PAGE_SIZE = 1000;
export const LIVE_INTERVAL_MS = 2000;
/** New records a live tick adds (in pages) before it starts the list over from the top. */
const MAX_CATCH_UP_PAGES = 5;
/** Answers a live tick follows (some may be partial) before it starts over. */
const MAX_CATCH_UP_ANSWERS = 20;
/** Open tunnels re-read on each tick, newest first. */
const MAX_OPEN_REFRESH = 20;
/** How long a search follows partial pages on its own; a button takes it further. */
const MAX_AUTO_SEARCH_MS = 15000;
export { LAST_RECORD_KEY } from './row-cursor.js';

function exportLinks(filters) {
  const params = filterParams(filters);
  return el('div', { class: 'export', role: 'group', 'aria-label': 'Export the filtered set' },
    el('span', { class: 'hint' }, 'Export all matching rows:'),
    el('a', { class: 'button', href: exportHref('csv', params), download: '', 'data-export': 'csv' }, 'CSV'),
    el('a', { class: 'button', href: exportHref('ndjson', params), download: '', 'data-export': 'ndjson' }, 'NDJSON'));
}

function keyHints() {
  const key = (k) => el('kbd', {}, k);
  return el('p', { class: 'hint key-hints' }, 'Keys: ', key('/'), ' search · ', key('j'), ' ', key('k'), ' move · ',
    key('Enter'), ' open · ', key('Esc'), ' back');
}

class HistoryTable {
  constructor(state) {
    this.state = state;
    this.sort = parseSort(state.sort) ? state.sort : null;
    this.columns = visibleColumns();
    this.rows = new Map();
    this.order = [];
    this.nextCursor = null;
    /** While a rare match is being searched for: the answers come back partial. */
    this.searching = false;
    /** The start time the last partial answer reached back to; null when none is pending. */
    this.searchedTo = null;
    /** Bumped when the list starts over: answers for an older list are dropped. */
    this.generation = 0;
    /** A fill is reading pages; live ticks wait. */
    this.busy = false;
    /** The newest id in the log at the last answer from the top: live ticks read only above it. */
    this.watermark = 0;
    this.live = sessionStorage.getItem('tollgate.live') !== 'off';
    this.timer = null;
    this.polling = false;
    this.disposed = false;
    /** The rows the last live tick brought in. */
    this.freshIds = new Set();
    this.controller = new AbortController();
    this.build();
  }

  build() {
    this.thead = el('thead', { role: 'rowgroup' });
    this.tbody = el('tbody', { role: 'rowgroup' });
    this.table = el('table', { class: 'requests', role: 'table', 'aria-describedby': 'table-summary' },
      el('caption', { class: 'visually-hidden' }, 'Recorded requests'), this.thead, this.tbody);
    this.spacer = el('div', { class: 'table-window' }, this.table);
    this.scroller = el('div', { class: 'table-wrap', tabindex: '-1' }, this.spacer);
    this.virtual = new VirtualRows({
      scroller: this.scroller, tbody: this.tbody, thead: this.thead, renderRow: (record) => this.renderRow(record),
    });
    this.cursor = new RowCursor(this.virtual, (id) => navigate(stateHref({ id, filters: this.state.filters })));
    this.tail = new LiveTail({ scroller: this.scroller, table: this.table, isSorted: () => this.sort !== null, onBringIn: () => this.bringIn() });
    this.scroller.addEventListener('scroll', () => this.onScroll(), { passive: true });
    this.summary = el('p', { id: 'table-summary', class: 'muted' });
    this.empty = el('p', { class: 'empty', hidden: true }, 'No requests match these filters.');
    this.progress = el('p', { class: 'muted search-progress', role: 'status', hidden: true });
    this.error = el('div', { class: 'alert', role: 'alert', hidden: true });
    this.announcer = el('p', { class: 'visually-hidden', 'aria-live': 'polite' });
    this.liveButton = el('button', { type: 'button', class: 'live-toggle', 'aria-pressed': String(this.live) });
    this.liveButton.addEventListener('click', () => this.setLive(!this.live));
    this.liveStatus = el('span', { class: 'live-status muted', 'aria-live': 'off' });
    this.moreButton = el('button', { type: 'button', class: 'load-more' }, 'Load more (older)');
    this.moreButton.addEventListener('click', () => this.loadMore(PAGE_SIZE));
    this.bigMoreButton = el('button', { type: 'button', class: 'load-more-big' }, `Load ${formatCount(BIG_PAGE_SIZE)} more`);
    this.bigMoreButton.addEventListener('click', () => this.loadMore(BIG_PAGE_SIZE));
    this.more = el('div', { class: 'more', hidden: true }, this.moreButton, this.bigMoreButton);
    this.end = el('p', { class: 'muted end', hidden: true }, 'End of the matching requests.');
    this.chartMount = el('div', { class: 'history-chart' });
    this.sideMount = el('aside', { class: 'history-side', 'aria-label': 'Counts' });
    this.renderLiveButton();
    this.renderHeader();
  }

  node() {
    return el('section', { class: 'history', 'aria-labelledby': 'history-title' },
      el('h1', { id: 'history-title' }, 'Request history'),
      filterForm(this.state, { keys: 'all' }),
      el('div', { class: 'toolbar' }, activeFilterChips(this.state), exportLinks(this.state.filters)),
      this.chartMount,
      el('div', { class: 'history-body' },
        this.sideMount,
        el('div', { class: 'history-main' },
          el('div', { class: 'toolbar table-toolbar' },
            el('div', { class: 'live' }, this.liveButton, this.liveStatus, this.tail.button),
            tablePrefsControls(() => this.changeLayout())),
          this.summary,
          this.error, this.announcer,
          this.scroller,
          this.empty, this.progress, this.more, this.end, keyHints())));
  }

  params(extra = {}, limit = PAGE_SIZE) {
    const params = filterParams(this.state.filters);
    params.set('limit', String(limit));
    for (const [key, value] of Object.entries(extra)) params.set(key, value);
    return params;
  }

  async fetchPage(extra, limit) {
    return apiGet('requests', this.params(extra, limit), { signal: this.controller.signal });
  }

  showError(err) {
    if (this.disposed || err.name === 'AbortError') return;
    replaceChildren(this.error, el('strong', {}, 'Could not load requests: '), err.message);
    this.error.hidden = false;
  }

  /**
   * Reads pages from `cursor` until `size` rows arrived, the log ended, or the search ran
   * MAX_AUTO_SEARCH_MS. A page that spent its server-side search budget (a rare match over a
   * long log) comes back partial: its rows show at once with how far back the search has
   * reached, and the next request resumes the search there. Stops if the list was started over
   * meanwhile (another generation). Older rows go below the others: the rows shown stay as
   * they are.
   */
  async fill(cursor, size = PAGE_SIZE) {
    const generation = this.generation;
    const started = performance.now();
    let added = 0;
    let next = cursor;
    this.busy = true;
    try {
      for (;;) {
        const page = await this.fetchPage(next === null ? {} : { cursor: next }, size);
        if (this.disposed || generation !== this.generation) return;
        if (next === null) this.watermark = page.newest_id ?? 0;
        for (const record of page.items) this.rows.set(record.id, record);
        added += page.items.length;
        this.nextCursor = page.next_cursor;
        this.searchedTo = page.partial ? (page.searched_to ?? null) : null;
        this.searching = page.partial && added < size && performance.now() - started < MAX_AUTO_SEARCH_MS;
        this.error.hidden = true;
        this.appendOlder(page.items);
        if (!this.searching) return;
        next = page.next_cursor;
      }
    } catch (err) {
      if (generation === this.generation) this.searching = false;
      throw err;
    } finally {
      if (generation === this.generation) this.busy = false;
    }
  }

  /** Older records arrive in server order: appended without sorting all the rest again. */
  appendOlder(items) {
    if (this.sort === null) this.order = this.order.concat(items);
    else this.order = sortRows([...this.rows.values()], this.sort);
    this.showOrder();
  }

  async start() {
    this.generation += 1;
    this.rows.clear();
    this.order = [];
    this.tail.reset();
    this.nextCursor = null;
    this.searchedTo = null;
    try {
      await this.fill(null);
      this.cursor.returnToLastRecord((id) => this.rows.has(id));
    } catch (err) {
      this.showError(err);
    }
    this.schedule();
  }

  async loadMore(size) {
    if (this.nextCursor === null) return;
    this.moreButton.disabled = true;
    this.bigMoreButton.disabled = true;
    try {
      await this.fill(this.nextCursor, size);
    } catch (err) {
      this.showError(err);
    } finally {
      this.moreButton.disabled = false;
      this.bigMoreButton.disabled = false;
    }
  }

  /**
   * One live tick: the records that arrived since the last answer (`after_id` = the newest id
   * in the log then), followed page by page; however far down the last match was, only the new
   * records are searched. They go in at the top, or wait on the "N new" button (live-tail.js).
   * Open tunnels shown are re-read by id, so their bytes and end appear when they close. When
   * more arrived than a few pages hold, the list starts over from the top rather than hold
   * thousands of rows (at once if the person is at the top, else when they ask).
   */
  async poll() {
    const generation = this.generation;
    const after = String(this.watermark);
    let page = await this.fetchPage({ after_id: after });
    const newest = page.newest_id ?? this.watermark;
    const fresh = [];
    for (let pages = 1; ; pages += 1) {
      if (generation !== this.generation) return;
      for (const record of page.items) if (!this.rows.has(record.id)) fresh.push(record);
      if (page.next_cursor === null) break;
      if (fresh.length >= MAX_CATCH_UP_PAGES * PAGE_SIZE || pages >= MAX_CATCH_UP_ANSWERS) return this.tooManyNew(newest);
      page = await this.fetchPage({ cursor: page.next_cursor, after_id: after });
    }
    await this.refreshOpenRows(generation);
    if (generation !== this.generation) return;
    this.watermark = Math.max(this.watermark, newest);
    if (fresh.length === 0 && !this.tail.waiting) return;
    if (this.tail.pauseReason() !== null) {
      this.tail.hold(fresh);
      if (fresh.length > 0) this.announcer.textContent = `${formatCount(this.tail.pending.size)} new waiting: the list holds still while you read`;
      return;
    }
    if (this.tail.overflow) return this.restartFromTop();
    this.insertNewest([...this.tail.take(), ...fresh]);
  }

  tooManyNew(newest) {
    if (this.tail.pauseReason() === null) return this.restartFromTop();
    this.watermark = Math.max(this.watermark, newest);
    this.tail.holdOverflow();
    return undefined;
  }

  /** New records at the top; the rows already shown are not touched. */
  insertNewest(records) {
    if (records.length === 0) return;
    for (const record of records) this.rows.set(record.id, record);
    this.freshIds = new Set(records.map((r) => r.id));
    const newest = records.filter((r) => this.virtual.indexOf(r.id) < 0).sort((a, b) => b.id - a.id);
    this.order = this.sort === null ? newest.concat(this.order) : sortRows([...this.rows.values()], this.sort);
    this.showOrder();
    this.announcer.textContent = `${formatCount(records.length)} new ${records.length === 1 ? 'request' : 'requests'}`;
    this.onFresh?.();
  }

  /** The "N new" button: to the top, with what waited. */
  bringIn() {
    if (this.tail.overflow) {
      this.scroller.scrollTop = 0;
      this.restartFromTop();
      return;
    }
    if (this.sort !== null) this.setSort(null);
    this.scroller.scrollTop = 0;
    this.insertNewest(this.tail.take());
  }

  /** Back at the top with nothing selected: what waited comes in on its own. */
  onScroll() {
    if (this.tail.waiting && !this.tail.overflow && this.tail.pauseReason() === null) this.insertNewest(this.tail.take());
  }

  /**
   * Re-reads the newest open tunnels shown, by id: a record changes only when it ends. A row
   * holding the keyboard focus or a selection is left as it is until the next tick.
   */
  async refreshOpenRows(generation) {
    const open = [...this.rows.values()].filter((r) => r.ended_at === null).sort((a, b) => b.id - a.id);
    for (const record of open.slice(0, MAX_OPEN_REFRESH)) {
      const latest = await apiGet(`requests/${record.id}`, undefined, { signal: this.controller.signal });
      if (generation !== this.generation) return;
      if (latest.ended_at === null) continue;
      const node = this.virtual.nodeFor(latest.id);
      if (node && (node.contains(document.activeElement) || this.tail.hasSelection())) continue;
      this.rows.set(latest.id, latest);
      this.virtual.replaceRecord(latest);
    }
  }

  async restartFromTop() {
    await this.start();
    this.announcer.textContent = 'Many new requests arrived: the list restarted from the newest.';
  }

  schedule() {
    if (this.disposed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), LIVE_INTERVAL_MS);
  }

  async tick() {
    if (this.disposed) return;
    // A hidden tab skips its polls (and catches up when shown): no load for a forgotten tab.
    if (this.live && !this.polling && !this.busy && !document.hidden) {
      this.polling = true;
      try {
        await this.poll();
        this.error.hidden = true;
        const held = this.tail.pauseReason();
        this.liveStatus.textContent = `checked ${new Date().toISOString().slice(11, 19)}Z${held === null ? '' : ` · holding new rows (${held})`}`;
      } catch (err) {
        this.showError(err);
      } finally {
        this.polling = false;
      }
    }
    this.schedule();
  }

  setLive(on) {
    this.live = on;
    sessionStorage.setItem('tollgate.live', on ? 'on' : 'off');
    this.renderLiveButton();
    if (on) this.tick();
  }

  renderLiveButton() {
    this.liveButton.setAttribute('aria-pressed', String(this.live));
    this.liveButton.textContent = this.live ? '❚❚ Pause live updates' : '▶ Resume live updates';
    this.liveStatus.textContent = this.live ? `live: checks every ${LIVE_INTERVAL_MS / 1000} s` : 'paused: new requests are not fetched';
  }

  /** A column's sort, or null for the server's order; the sort is in the URL, not a new entry. */
  setSort(key) {
    this.sort = key === null ? null : nextSort(this.sort, key);
    const url = new URL(window.location.href);
    if (this.sort === null) url.searchParams.delete('sort');
    else url.searchParams.set('sort', this.sort);
    // Sorting is a view of the rows already loaded: no new history entry, no refetch.
    window.history.replaceState(null, '', `${url.pathname}${url.search}`);
    this.state = { ...this.state, sort: this.sort };
    this.renderHeader();
    this.order = sortRows([...this.rows.values()], this.sort);
    this.showOrder();
    const button = key === null ? null : this.thead.querySelector(`button[data-sort="${key}"]`);
    if (button) button.focus();
  }

  /** Columns or density changed: header and rows are made again (only the block in view). */
  changeLayout() {
    this.columns = visibleColumns();
    this.renderHeader();
    this.virtual.rebuild();
    this.cursor.refresh();
  }

  renderHeader() {
    this.table.style.setProperty('--cols', columnTemplate(this.columns));
    replaceChildren(this.thead, headerRow(this.sort, (key) => this.setSort(key), this.columns));
  }

  renderRow(record) {
    const row = requestRow(record, this.state.filters, this.columns);
    if (this.freshIds.has(record.id)) row.classList.add('row-new');
    if (record.id === this.cursor.currentId) row.classList.add('row-current');
    return row;
  }

  /** Hands the order to the windowed rows and says where the list stands. */
  showOrder() {
    if (this.disposed) return;
    this.virtual.setRecords(this.order);
    const count = this.order.length;
    this.empty.hidden = count > 0 || this.nextCursor !== null;
    this.renderProgress(count);
    this.more.hidden = this.nextCursor === null || this.searching;
    this.moreButton.textContent = this.searchedTo === null ? 'Load more (older)' : 'Search older records';
    this.bigMoreButton.hidden = this.searchedTo !== null;
    this.end.hidden = this.nextCursor !== null || count === 0;
    const parsed = parseSort(this.sort);
    const order = parsed === null
      ? 'newest first (server order)'
      : `sorted by ${parsed.column.label} ${parsed.descending ? 'descending' : 'ascending'} — sorting reorders only the loaded rows`;
    this.summary.textContent = `${formatCount(count)} ${count === 1 ? 'row' : 'rows'} loaded, ${order}. Click a row or its ID for every field.`;
  }

  /** Where a search stands while its answers come back partial. */
  renderProgress(rowCount) {
    const reached = this.searchedTo === null ? '' : ` back to ${this.searchedTo.replace('T', ' ').slice(0, 19)} UTC`;
    if (this.searching) {
      this.progress.textContent = `Searching older records… checked${reached}.`;
    } else if (this.searchedTo !== null) {
      const found = rowCount === 0 ? 'No matches' : 'These are the matches';
      this.progress.textContent = `${found} in the records checked so far (${reached.trim()}); older records have not been searched yet.`;
    }
    this.progress.hidden = !this.searching && this.searchedTo === null;
  }

  /** j/k move the current row, Enter opens it, Esc lets it go. True when the key was used. */
  onKey(event) {
    return this.cursor.onKey(event);
  }

  dispose() {
    this.disposed = true;
    clearTimeout(this.timer);
    this.controller.abort();
    this.virtual.dispose();
  }
}

/** Click anywhere on a row (except a link, or while selecting text) to open its detail. */
function openRowOnClick(table) {
  table.addEventListener('click', (event) => {
    if (!(event.target instanceof Element) || event.target.closest('a, button')) return;
    if (String(window.getSelection()) !== '') return;
    const link = event.target.closest('tr')?.querySelector('a.open-link');
    if (link) link.click();
  });
}

export function historyView(state) {
  const view = new HistoryTable(state);
  const node = view.node();
  const panels = consolePanels(state);
  view.chartMount.appendChild(panels.histogram);
  view.sideMount.appendChild(panels.aside);
  view.onFresh = () => panels.refresh();
  openRowOnClick(view.table);
  view.start();
  return { node, dispose: () => { view.dispose(); panels.dispose(); }, onKey: (event) => view.onKey(event), table: view };
}
