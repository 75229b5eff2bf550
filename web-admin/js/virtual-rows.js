// Windowed rendering of the history rows: however many records are loaded, only a block of
// about WINDOW_ROWS rows around the viewport is in the page. Rows have one fixed height (CSS),
// so a row's position is its index times that height; padding above and below the table stands
// in for the rows that are not rendered, and the scrollbar reads true.
//
// A row node, once made, is kept while its record stays in the block: new records at the top
// are inserted before the first row and nothing else is touched, so focus, a text selection
// and the CSS arrival animation of the others survive.
//
// While scrolling, a frame renders at most what the viewport needs (when it jumped past the
// block) or one GROW_ROWS step toward the full block: the cost of a frame stays
// bounded however the scrollbar is dragged. A change of the records (load, sort, live rows)
// renders the full block at once.

/** Rows kept in the page: enough to cover a tall screen with room to scroll before a shift. */
export const WINDOW_ROWS = 150;
/** Rows rendered beyond each edge of the viewport when the block moves. */
const OVERSCAN_ROWS = 60;
/** The block moves when the viewport comes this close (in rows) to one of its edges. */
const EDGE_ROWS = 15;
/** Rows beyond the viewport always rendered, so a row in view is never missing. */
const NEED_ROWS = 6;
/** Rows a scroll frame may add to the block while it grows back to full size. */
const GROW_ROWS = 24;
/** Until a row has been measured. */
const FALLBACK_ROW_PX = 46;

export class VirtualRows {
  /**
   * `scroller`: the element that scrolls; `spacer`: the table's wrapper, padded for the rows
   * not rendered; `tbody`; `renderRow(record)`: a new <tr data-id>.
   */
  constructor({ scroller, spacer, tbody, thead, renderRow }) {
    this.scroller = scroller;
    this.spacer = spacer;
    this.tbody = tbody;
    this.thead = thead;
    this.renderRow = renderRow;
    this.records = [];
    this.positions = new Map();
    this.nodes = new Map();
    this.start = 0;
    this.end = 0;
    this.rowHeight = 0;
    this.onScroll = () => this.update();
    scroller.addEventListener('scroll', this.onScroll, { passive: true });
  }

  get length() {
    return this.records.length;
  }

  /** Replaces the ordered list of records; rows already made for records still in the block stay. */
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

  /** Drops every row node (columns or density changed): the block is made again. */
  rebuild() {
    for (const node of this.nodes.values()) node.remove();
    this.nodes.clear();
    this.rowHeight = 0;
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
  }

  headHeight() {
    return this.thead ? this.thead.offsetHeight : 0;
  }

  /** The row height, measured on a rendered row (the CSS sets it per density). */
  measure() {
    if (this.rowHeight > 0) return this.rowHeight;
    const first = this.tbody.firstElementChild;
    const height = first ? first.getBoundingClientRect().height : 0;
    if (height > 0) this.rowHeight = height;
    return this.rowHeight || FALLBACK_ROW_PX;
  }

  /** The index range of rows in the viewport (clamped to the records). */
  visibleRange() {
    const rowHeight = this.measure();
    const top = Math.max(0, this.scroller.scrollTop - this.headHeight());
    const first = Math.min(this.length, Math.floor(top / rowHeight));
    const last = Math.min(this.length, Math.ceil((top + this.scroller.clientHeight) / rowHeight));
    return { first, last };
  }

  /** The block to render for the viewport; the current one while it still covers it. */
  blockFor({ first, last }) {
    const n = this.length;
    const wanted = Math.max(WINDOW_ROWS, last - first + 2 * OVERSCAN_ROWS);
    const coversTop = this.start <= Math.max(0, first - EDGE_ROWS);
    const coversBottom = this.end >= Math.min(n, last + EDGE_ROWS);
    const fullEnough = this.end - this.start >= Math.min(n, WINDOW_ROWS);
    if (coversTop && coversBottom && fullEnough && this.end <= n) return { start: this.start, end: this.end };
    let start = Math.max(0, first - OVERSCAN_ROWS);
    const end = Math.min(n, start + wanted);
    start = Math.max(0, Math.min(start, end - wanted));
    return { start, end };
  }

  /** Renders the block the viewport needs; cheap when it has not moved. */
  update({ force = false } = {}) {
    const visible = this.visibleRange();
    const target = this.blockFor(visible);
    const { start, end } = force ? target : this.stepToward(target, visible);
    if (!force && start === this.start && end === this.end) return;
    this.reconcile(start, end);
    const rowHeight = this.measure();
    this.spacer.style.paddingTop = `${start * rowHeight}px`;
    this.spacer.style.paddingBottom = `${(this.length - end) * rowHeight}px`;
  }

  /**
   * One scroll frame's block: the rows in view (and NEED_ROWS around them) if the block does
   * not hold them, else the block grown by GROW_ROWS on one side toward `target`, and trimmed
   * to it.
   */
  stepToward(target, { first, last }) {
    const needStart = Math.max(0, first - NEED_ROWS);
    const needEnd = Math.min(this.length, last + NEED_ROWS);
    let start = Math.max(this.start, target.start);
    let end = Math.min(this.end, target.end);
    if (start > needStart || end < needEnd) {
      if (start >= end || start > needEnd || end < needStart) return { start: needStart, end: needEnd };
      return { start: Math.min(start, needStart), end: Math.max(end, needEnd) };
    }
    // Ahead first: rows below (the usual direction, down the list), then rows above.
    if (end < target.end) end = Math.min(target.end, end + GROW_ROWS);
    else start = Math.max(target.start, start - GROW_ROWS);
    return { start, end };
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

  /** Scrolls just enough for row `index` to be fully in view below the sticky header. */
  scrollToIndex(index) {
    const rowHeight = this.measure();
    const head = this.headHeight();
    const top = head + index * rowHeight;
    const viewTop = this.scroller.scrollTop + head;
    const viewBottom = this.scroller.scrollTop + this.scroller.clientHeight;
    if (top < viewTop) this.scroller.scrollTop = top - head;
    else if (top + rowHeight > viewBottom) this.scroller.scrollTop = top + rowHeight - this.scroller.clientHeight;
    this.update();
  }

  dispose() {
    this.scroller.removeEventListener('scroll', this.onScroll);
  }
}
