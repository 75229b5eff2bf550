// How the table looks to this browser: which columns show, and row density. Kept in
// localStorage (a preference of the person, not part of a shared link); dark mode follows the
// system setting through CSS alone.
import { el } from './dom.js';
import { COLUMNS } from './requests-table.js';

const COLUMNS_KEY = 'tollgate.columns.hidden';
const DENSITY_KEY = 'tollgate.density';
/** Below this width the Node column starts hidden (until a choice is made): it fits 800 px then. */
const NARROW_PX = 1100;

function readJson(key) {
  try {
    return JSON.parse(localStorage.getItem(key) ?? 'null');
  } catch {
    return null;
  }
}

/** The hidden column keys: the saved choice, else the default for this screen width. */
export function hiddenColumns() {
  const saved = readJson(COLUMNS_KEY);
  if (Array.isArray(saved)) return new Set(saved.filter((key) => COLUMNS.some((c) => c.key === key && c.optional)));
  return new Set(window.innerWidth < NARROW_PX ? ['node'] : []);
}

export function visibleColumns() {
  const hidden = hiddenColumns();
  return COLUMNS.filter((column) => !hidden.has(column.key));
}

function saveHidden(hidden) {
  localStorage.setItem(COLUMNS_KEY, JSON.stringify([...hidden]));
}

export function density() {
  return localStorage.getItem(DENSITY_KEY) === 'compact' ? 'compact' : 'comfortable';
}

/** Applies the saved density to the whole page (a class on <html>, read by the CSS). */
export function applyDensity(value = density()) {
  document.documentElement.classList.toggle('density-compact', value === 'compact');
}

/**
 * The "Columns" menu (a checkbox per optional column) and the density switch. `onChange` is
 * called after either changed, so the table can render its rows again.
 */
export function tablePrefsControls(onChange) {
  const hidden = hiddenColumns();
  const boxes = COLUMNS.filter((column) => column.optional).map((column) => {
    const box = el('input', { type: 'checkbox', name: 'column', value: column.key, 'data-column': column.key });
    box.checked = !hidden.has(column.key);
    box.addEventListener('change', () => {
      const now = hiddenColumns();
      if (box.checked) now.delete(column.key);
      else now.add(column.key);
      saveHidden(now);
      onChange();
    });
    return el('label', { class: 'column-choice' }, box, ' ', column.short ?? column.label);
  });
  const menu = el('details', { class: 'columns-menu' },
    el('summary', { class: 'button' }, 'Columns'),
    el('fieldset', {}, el('legend', { class: 'visually-hidden' }, 'Columns to show'), boxes));
  const compact = el('button', { type: 'button', class: 'density-toggle', 'aria-pressed': String(density() === 'compact') }, 'Compact rows');
  compact.addEventListener('click', () => {
    const next = density() === 'compact' ? 'comfortable' : 'compact';
    localStorage.setItem(DENSITY_KEY, next);
    compact.setAttribute('aria-pressed', String(next === 'compact'));
    applyDensity(next);
    onChange();
  });
  return el('div', { class: 'table-prefs', role: 'group', 'aria-label': 'Table display' }, menu, compact);
}
