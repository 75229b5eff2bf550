// Windowed rendering of the history rows. Rows have one fixed height (CSS), so the rows in view
// follow from scrollTop alone: first = floor(scrollTop / rowHeight). The tbody is as tall as
// every row together (the scrollbar reads true) and each rendered row is placed at its index
// times that height (position: absolute, css/table.css): a row that stays never moves when
// others come and go around it, so the browser does not paint it again.
//
// What is in the page, and when it gets there:
// - in the same frame as a scroll, a sort or new records: the rows in view (and NEED_ROWS
//   beyond each edge). A scroll event only asks for an animation frame; the frame reads
//   scrollTop and the sizes cached below, never a row's layout.
// - in idle time afterwards (requestIdleCallback): OVERSCAN_ROWS
//   more on each side, or, for a list of up to FULL_LIST_ROWS, every row (a first page is
//   then all in the page, for find-in-page and copying, and scrolling it costs nothing).
// - rows further than KEEP_ROWS beyond the view are dropped as the view moves away.
//
// A row node, once made, is kept while its record stays in the block, whatever the order: new
// records at the top are inserted before the first row and nothing else is touched, so focus, a
// text selection and the CSS arrival animation of the others survive; a sort of a list whose
// rows are all in the page only moves nodes.

/** Up to this many loaded rows, all of them end up in the page. */
export const FULL_LIST_ROWS = 200;
/** Rows rendered beyond each edge of the view in idle time. */
const OVERSCAN_ROWS = 10;
/** Rows beyond each edge of the view rendered in the same frame. */
const NEED_ROWS = 2;
/** Rows beyond each edge kept while scrolling (more than OVERSCAN_ROWS: a small move back costs nothing). */
const KEEP_ROWS = 2 * OVERSCAN_ROWS;
/** Rows added per idle step. */
const FILL_STEP = 6;
/**
 * The idle fill runs within this long even while the page is never idle. Long: while frames
 * are full (a scrollbar dragged across the list) rows made for the overscan would be thrown
 * away a frame later, so they wait for a quiet moment instead.
 */
const IDLE_TIMEOUT_MS = 1000;
/** Until a row has been measured: small, so a first render covers the view in either density. */
const FALLBACK_ROW_PX = 24;

const requestIdle = typeof window.requestIdleCallback === 'function'
  ? (callback) => window.requestIdleCallback(callback, { timeout: IDLE_TIMEOUT_MS })
  : (callback) => window.setTimeout(() => callback({ didTimeout: true, timeRemaining: () => 0 }), 16);
const cancelIdle = typeof window.cancelIdleCallback === 'function' ? (id) => window.cancelIdleCallback(id) : (id) => window.clearTimeout(id);

export class VirtualRows {
  /**
   * `scroller`: the element that scrolls; `tbody`: sized for all rows, holding the rendered ones; `thead` (sticky, inside the scroller); `renderRow(record)`: a new
   * <tr data-id>.
   */
  constructor({ scroller, tbody, thead, renderRow }) {
    this.scroller = scroller;
    this.tbody = tbody;
    this.thead = thead;
    this.renderRow = renderRow;
    this.records = [];
    this.positions = new Map();
    this.nodes = new Map();
    this.start = 0;
    this.end = 0;
    this.rowHeight = 0;
    /** The scroller's visible height and the header's, read once and again after a resize. */
    this.viewHeight = 0;
    this.headHeight = 0;
    this.sized = false;
    this.height = -1;
    /** The offset each rendered row was placed at, so an unmoved row is not written to. */
    this.tops = new WeakMap();
    this.frame = 0;
    this.idle = 0;
    this.onScroll = () => this.requestUpdate();
    scroller.addEventListener('scroll', this.onScroll, { passive: true });
    if (typeof ResizeObserver === 'function') {
      this.resizes = new ResizeObserver(() => {
        this.sized = false;
        this.requestUpdate();
      });
      this.resizes.observe(scroller);
      if (thead) this.resizes.observe(thead);
    }
  }

  get length() {
    return this.records.length;
  }

  /** Replaces the ordered list of records; rows already made for records near the view stay. */
  setRecords(records) {
    this.records = records;
    this.positions = new Map(records.map((record, index) => [record.id, index]));
    this.update({ force: true });
  }

  indexOf(id) {
    return this.positions.get(id) ?? -1;
  }

  recordAt(index) {
    return this.records[index];
  }

  nodeFor(id) {
    return this.nodes.get(id) ?? null;
  }

  /** Drops every row node (columns or density changed): the rows are made again. */
  rebuild() {
    for (const node of this.nodes.values()) node.remove();
    this.nodes.clear();
    this.rowHeight = 0;
    this.sized = false;
    this.update({ force: true });
  }

  /** Puts a fresh node in place of a record's row, if it is rendered. */
  replaceRecord(record) {
    const index = this.indexOf(record.id);
    if (index >= 0) this.records[index] = record;
    const old = this.nodes.get(record.id);
    if (!old) return;
    const node = this.renderRow(record);
    old.replaceWith(node);
    this.nodes.set(record.id, node);
    this.place();
  }

  /** One update per animation frame, however many scroll events came. */
  requestUpdate() {
    if (this.frame === 0) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.update();
      });
    }
  }

  /** The cached sizes; read (a layout, if one is pending) only after a resize or a rebuild. */
  sizes() {
    if (!this.sized) {
      this.viewHeight = this.scroller.clientHeight;
      this.headHeight = this.thead ? this.thead.offsetHeight : 0;
      this.sized = this.viewHeight > 0;
    }
    // Not in the page yet: assume the window's height, so the first rows cover any view.
    return { view: this.viewHeight || window.innerHeight, head: this.headHeight };
  }

  /** The index range of rows in the view (clamped to the records), from scrollTop alone. */
  visibleRange() {
    const rowHeight = this.rowHeight || FALLBACK_ROW_PX;
    const { view, head } = this.sizes();
    const top = Math.max(0, this.scroller.scrollTop - head);
    const first = Math.min(this.length, Math.floor(top / rowHeight));
    const last = Math.min(this.length, Math.ceil((top + view) / rowHeight));
    return { first, last };
  }

  /**
   * This frame's block: the rows in view and NEED_ROWS around them, widened over the rows next
   * to them that already have a node (up to KEEP_ROWS beyond the view, or the whole of a short
   * list). Rows outside it leave the page; rows in it without a node are made now.
   */
  update({ force = false } = {}) {
    const n = this.length;
    const { first, last } = this.visibleRange();
    const full = n <= FULL_LIST_ROWS;
    const keepStart = full ? 0 : Math.max(0, first - KEEP_ROWS);
    const keepEnd = full ? n : Math.min(n, last + KEEP_ROWS);
    let start = Math.max(0, first - NEED_ROWS);
    let end = Math.min(n, last + NEED_ROWS);
    while (start > keepStart && this.nodes.has(this.records[start - 1].id)) start -= 1;
    while (end < keepEnd && this.nodes.has(this.records[end].id)) end += 1;
    if (force || start !== this.start || end !== this.end) this.reconcile(start, end);
    if (this.rowHeight === 0 && this.measure()) {
      this.update({ force: true });
      return;
    }
    this.place();
    this.scheduleFill();
  }

  /** The row height, from the first rendered row, once per rebuild (the CSS sets it per density). */
  measure() {
    const row = this.tbody.firstElementChild;
    const height = row ? row.getBoundingClientRect().height : 0;
    if (height > 0) this.rowHeight = height;
    return height > 0;
  }

  /** Sizes the tbody for every record and puts each rendered row at its index. */
  place() {
    const rowHeight = this.rowHeight || FALLBACK_ROW_PX;
    const height = this.length * rowHeight;
    if (height !== this.height) this.tbody.style.height = `${height}px`;
    this.height = height;
    for (let i = this.start; i < this.end; i += 1) {
      const node = this.nodes.get(this.records[i].id);
      const top = i * rowHeight;
      if (node && this.tops.get(node) !== top) {
        node.style.top = `${top}px`;
        this.tops.set(node, top);
      }
    }
  }

  /** Where the idle fill grows the block to: the overscan, or all of a short list. */
  fillTarget() {
    const n = this.length;
    if (n <= FULL_LIST_ROWS) return { start: 0, end: n };
    const { first, last } = this.visibleRange();
    return { start: Math.max(0, first - OVERSCAN_ROWS), end: Math.min(n, last + OVERSCAN_ROWS) };
  }

  scheduleFill() {
    if (this.idle !== 0) return;
    const target = this.fillTarget();
    if (this.start <= target.start && this.end >= target.end) return;
    this.idle = requestIdle((deadline) => {
      this.idle = 0;
      this.fill(deadline);
    });
  }

  /** Grows the block toward its target a few rows at a time while the page is idle; rows below first. */
  fill(deadline) {
    if (this.frame !== 0) return; // a scroll is pending: its frame decides, then asks again
    const target = this.fillTarget();
    let { start, end } = this;
    // The view moved past the block meanwhile: the next frame's update handles it.
    if (start > target.end || end < target.start) return;
    do {
      if (end < target.end) end = Math.min(target.end, end + FILL_STEP);
      else if (start > target.start) start = Math.max(target.start, start - FILL_STEP);
      else break;
      this.reconcile(start, end);
      this.place();
    } while (deadline.timeRemaining() > 2);
    this.scheduleFill();
  }

  /**
   * Makes the tbody hold exactly records[start, end), in order, reusing the nodes it has: rows
   * that left the block are removed, missing ones are inserted where they belong, and a row
   * already in its place is not touched.
   */
  reconcile(start, end) {
    const wanted = new Set();
    for (let i = start; i < end; i += 1) wanted.add(this.records[i].id);
    for (const [id, node] of this.nodes) {
      if (!wanted.has(id)) {
        node.remove();
        this.nodes.delete(id);
      }
    }
    let cursor = this.tbody.firstElementChild;
    for (let i = start; i < end; i += 1) {
      const record = this.records[i];
      let node = this.nodes.get(record.id);
      if (!node) {
        node = this.renderRow(record);
        this.nodes.set(record.id, node);
      }
      if (node === cursor) cursor = cursor.nextElementSibling;
      else this.tbody.insertBefore(node, cursor);
    }
    this.start = start;
    this.end = end;
  }

  /** Scrolls just enough for row `index` to be fully in view below the sticky header; renders it now. */
  scrollToIndex(index) {
    const rowHeight = this.rowHeight || FALLBACK_ROW_PX;
    const { view, head } = this.sizes();
    const top = head + index * rowHeight;
    const scrollTop = this.scroller.scrollTop;
    if (top < scrollTop + head) this.scroller.scrollTop = top - head;
    else if (top + rowHeight > scrollTop + view) this.scroller.scrollTop = top + rowHeight - view;
    this.update();
  }

  dispose() {
    this.scroller.removeEventListener('scroll', this.onScroll);
    if (this.frame !== 0) cancelAnimationFrame(this.frame);
    if (this.idle !== 0) cancelIdle(this.idle);
    this.resizes?.disconnect();
  }
}
