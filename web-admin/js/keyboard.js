// Keyboard use of the whole UI: `/` focuses the search, Esc leaves a field (or goes back, in a
// view that says so), and the view in front gets every other key (j, k, Enter) through its
// `onKey(event)`, which returns true when it used the key. Nothing is taken while the person is
// typing in a field, or with a modifier held (browser and screen reader shortcuts stay theirs).

const TEXT_INPUT_TYPES = new Set(['text', 'search', 'email', 'number', 'password', 'tel', 'url', 'date', 'datetime-local', 'time']);

function isTyping(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  return target instanceof HTMLInputElement && TEXT_INPUT_TYPES.has(target.type);
}

/** A control that handles Enter itself (a link opens, a button presses). */
function isControl(target) {
  return target instanceof Element && target.closest('a, button, summary, input, select, textarea') !== null;
}

function searchField() {
  return document.querySelector('#main [role="search"] input[type="search"], #main #f-q');
}

/** `currentView()`: the view object in front ({ onKey? }). */
export function startKeyboard(currentView) {
  document.addEventListener('keydown', (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const target = event.target;
    if (isTyping(target)) {
      if (event.key === 'Escape' && target instanceof HTMLInputElement) {
        target.blur();
        event.preventDefault();
      }
      return;
    }
    if (event.key === '/') {
      const field = searchField();
      if (field === null) return;
      event.preventDefault();
      field.focus();
      field.select();
      return;
    }
    if (event.key === 'Enter' && isControl(target)) return;
    const menu = target instanceof Element ? target.closest('details[open]') : null;
    if (event.key === 'Escape' && menu !== null) {
      menu.open = false;
      menu.querySelector('summary')?.focus();
      event.preventDefault();
      return;
    }
    const view = currentView();
    if (view && typeof view.onKey === 'function' && view.onKey(event)) event.preventDefault();
  });
}
