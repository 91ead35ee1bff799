// Small DOM helpers. User-provided text only ever goes through textContent.

export const $ = (sel, root = document) => root.querySelector(sel);

/**
 * Create an element. `attrs` keys: `class`, `text` (textContent), `dataset`
 * (object), `hidden`, `disabled`, `on<Event>` listeners (functions, attached
 * with addEventListener, never as attributes), anything else via setAttribute.
 * Children may be nodes or strings (added as text nodes).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'hidden' || key === 'disabled') el[key] = Boolean(value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2).toLowerCase(), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return el;
}

/** Read `t=` from the URL fragment (#t=...). Not URLSearchParams: it turns '+' into a space. */
export function tokenFromHash(hash = location.hash) {
  for (const part of hash.replace(/^#/, '').split('&')) {
    if (part.startsWith('t=')) {
      try {
        return decodeURIComponent(part.slice(2));
      } catch {
        return part.slice(2);
      }
    }
  }
  return '';
}

/** Copy text; returns true on success. Clipboard needs https or localhost. */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch { /* fall back below */ }
  return false;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export function formatDate(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : dateFormat.format(d);
}
