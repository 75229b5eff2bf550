// The keyboard's row highlight in the history table: j/k move it, Enter opens its record, Esc
// lets it go. It is kept as a record id, so it survives live rows arriving above it and the
// windowed rendering dropping and making its row again.

/** The record a detail page showed last (detail-view.js): highlighted when the list comes back. */
export const LAST_RECORD_KEY = 'tollgate.lastRecord';

export class RowCursor {
  /** `virtual`: the VirtualRows of the table; `open(id)`: shows a record. */
  constructor(virtual, open) {
    this.virtual = virtual;
    this.open = open;
    this.currentId = null;
  }

  /** Marks row `id` as the current one, scrolled into view; its ID link takes the focus. */
  highlight(id, { focus = true } = {}) {
    const previous = this.currentId === null ? null : this.virtual.nodeFor(this.currentId);
    if (previous) previous.classList.remove('row-current');
    this.currentId = id;
    const index = this.virtual.indexOf(id);
    if (index < 0) return;
    this.virtual.scrollToIndex(index);
    const node = this.virtual.nodeFor(id);
    if (!node) return;
    node.classList.add('row-current');
    const link = node.querySelector('a.open-link');
    if (focus && link) link.focus({ preventScroll: true });
  }

  /** The rows were made again (columns, density): mark the current one again. */
  refresh() {
    if (this.currentId !== null) this.highlight(this.currentId, { focus: false });
  }

  move(delta) {
    const count = this.virtual.length;
    if (count === 0) return;
    const index = this.currentId === null ? -1 : this.virtual.indexOf(this.currentId);
    const next = index < 0 ? this.virtual.visibleRange().first : index + delta;
    this.highlight(this.virtual.recordAt(Math.min(count - 1, Math.max(0, next))).id);
  }

  /** After a record's page, the list shows that record as the current row (once). */
  returnToLastRecord(isLoaded) {
    const id = Number(sessionStorage.getItem(LAST_RECORD_KEY));
    sessionStorage.removeItem(LAST_RECORD_KEY);
    if (id > 0 && isLoaded(id)) this.highlight(id, { focus: false });
  }

  clear() {
    const node = this.currentId === null ? null : this.virtual.nodeFor(this.currentId);
    if (node) node.classList.remove('row-current');
    this.currentId = null;
  }

  /** True when the key was used. */
  onKey(event) {
    if (event.key === 'j') this.move(1);
    else if (event.key === 'k') this.move(-1);
    else if (event.key === 'Enter' && this.currentId !== null) this.open(this.currentId);
    else if (event.key === 'Escape' && this.currentId !== null) this.clear();
    else return false;
    return true;
  }
}
