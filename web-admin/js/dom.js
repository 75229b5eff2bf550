// Every element the UI shows is built here. Audit data (hosts, paths, reasons, user agents) is
// attacker-controlled, so it only ever reaches the page as text nodes or as the value of an
// attribute on the allow-list below; there is no code path that parses data as HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Attributes that can never carry script, whatever their value. */
const SAFE_ATTRIBUTES = new Set([
  'class', 'id', 'title', 'datetime', 'tabindex', 'role', 'type', 'name', 'value', 'for',
  'colspan', 'scope', 'hidden', 'disabled', 'placeholder', 'autocomplete', 'list', 'rel',
  'download', 'method', 'action', 'spellcheck', 'inputmode', 'min', 'max', 'lang', 'dir',
  // SVG geometry and paint
  'viewBox', 'preserveAspectRatio', 'x', 'y', 'x1', 'x2', 'y1', 'y2', 'width', 'height', 'fill',
  'stroke', 'stroke-width', 'stroke-dasharray', 'text-anchor', 'dominant-baseline',
  'patternUnits', 'patternTransform', 'd', 'focusable', 'transform',
]);

/**
 * A link target is only ever a same-origin path or query built by this UI (URLSearchParams), so
 * a script or data URL cannot be produced even if a value contains one.
 */
export function isSafeHref(href) {
  return typeof href === 'string' && (href.startsWith('?') || href.startsWith('#') ||
    (href.startsWith('/') && !href.startsWith('//') && !href.startsWith('/\\')));
}

export function setAttr(node, name, value) {
  if (value === null || value === undefined || value === false) return;
  const text = value === true ? '' : String(value);
  if (name === 'href') {
    if (!isSafeHref(text)) throw new Error(`refusing unsafe href ${JSON.stringify(text)}`);
  } else if (!SAFE_ATTRIBUTES.has(name) && !name.startsWith('aria-') && !name.startsWith('data-')) {
    throw new Error(`attribute ${name} is not on the allow-list`);
  }
  node.setAttribute(name, text);
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (typeof child === 'string' || typeof child === 'number') node.appendChild(document.createTextNode(String(child)));
    else node.appendChild(child);
  }
}

/** `el('td', { class: 'x' }, 'text', otherNode)`: strings become text nodes, never markup. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) setAttr(node, name, value);
  append(node, children);
  return node;
}

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) setAttr(node, name, value);
  append(node, children);
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function replaceChildren(node, ...children) {
  clear(node);
  append(node, children);
  return node;
}

/** A small labelled badge: the label carries the meaning, colour only repeats it. */
export function badge(kind, label, title) {
  return el('span', { class: `badge badge-${kind}`, title }, label);
}

/**
 * A link that saves `blob` as `fileName`. Its href is an object URL the browser minted for data
 * this page holds (`blob:` on this origin), never text from the data, so it bypasses isSafeHref
 * here and nowhere else. `revoke` frees the blob once the link is gone.
 */
export function downloadLink(blob, fileName, label, attrs = {}) {
  const url = URL.createObjectURL(blob);
  const node = el('a', { ...attrs, download: fileName }, label);
  node.href = url;
  return { node, revoke: () => URL.revokeObjectURL(url) };
}
