// The live tail's pause rule. New records go in at the top only while the person is at the top
// of the table, selecting nothing in it, and reading the server's order; otherwise they wait,
// counted on an "N new" button that brings them in. Reading or copying a row is never disturbed.
import { el } from './dom.js';
import { formatCount } from './format.js';

/** More waiting than this and the button starts the list over from the newest instead. */
export const MAX_PENDING = 500;

export class LiveTail {
  /** `table`: the element a selection is looked for in; `isSorted()`: a column sort is on. */
  constructor({ scroller, table, isSorted, onBringIn }) {
    this.scroller = scroller;
    this.table = table;
    this.isSorted = isSorted;
    this.pending = new Map();
    /** More arrived than MAX_PENDING (or than a live tick follows): only a restart shows them. */
    this.overflow = false;
    this.button = el('button', { type: 'button', class: 'new-rows', hidden: true, 'aria-live': 'polite' });
    this.button.addEventListener('click', () => onBringIn());
  }

  /** Why new rows would wait now, or null when they can go in at the top. */
  pauseReason() {
    if (this.isSorted()) return 'sorted';
    if (this.scroller.scrollTop > 2) return 'scrolled';
    if (this.hasSelection()) return 'selecting';
    return null;
  }

  hasSelection() {
    const selection = window.getSelection();
    if (selection === null || selection.isCollapsed || selection.rangeCount === 0) return false;
    return this.table.contains(selection.anchorNode) || this.table.contains(selection.focusNode);
  }

  hold(records) {
    for (const record of records) this.pending.set(record.id, record);
    if (this.pending.size > MAX_PENDING) this.overflow = true;
    this.render();
  }

  holdOverflow() {
    this.overflow = true;
    this.render();
  }

  /** The waiting records, emptied. */
  take() {
    const records = [...this.pending.values()];
    this.pending.clear();
    this.overflow = false;
    this.render();
    return records;
  }

  get waiting() {
    return this.pending.size > 0 || this.overflow;
  }

  reset() {
    this.pending.clear();
    this.overflow = false;
    this.render();
  }

  render() {
    const count = this.pending.size;
    this.button.hidden = !this.waiting;
    const amount = this.overflow ? `${formatCount(Math.max(count, MAX_PENDING))}+` : formatCount(count);
    this.button.textContent = `↑ ${amount} new`;
    this.button.title = this.overflow
      ? 'Many new requests arrived: start the list over from the newest'
      : 'Show the new requests at the top (live updates wait while you scroll, select text or sort)';
  }
}
