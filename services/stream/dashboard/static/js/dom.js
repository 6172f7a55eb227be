// Safe DOM building: every piece of data reaches the page as a text node or a checked attribute,
// never as markup, so an event field holding `<script>` shows up as those characters.

const FORBIDDEN_ATTR = /^(on|style$|srcdoc$)/i;

/**
 * h('tr', {className: 'row', dataset: {id}, title: '…'}, 'text', childNode, [more, children])
 * Strings become text nodes; arrays are flattened; null/undefined/false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'className') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'hidden') el.hidden = Boolean(value);
    else if (key === 'on') {
      for (const [type, handler] of Object.entries(value)) el.addEventListener(type, handler);
    } else if (FORBIDDEN_ATTR.test(key)) {
      throw new Error(`h(): refusing attribute ${key}`);
    } else if (key === 'href' && !/^(#|\?|[a-z0-9/._-]*$)/i.test(String(value))) {
      throw new Error('h(): only relative links');
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function setText(id, value) {
  const el = typeof id === 'string' ? document.getElementById(id) : id;
  if (el && el.textContent !== String(value)) el.textContent = String(value);
  return el;
}

export function $(id) {
  return document.getElementById(id);
}

/** A string shown in full when short, else cut with a toggle to see all of it. */
export function longText(value, limit = 240) {
  const text = String(value);
  if (text.length <= limit) return h('span', { className: 'text' }, text);
  const shown = h('span', { className: 'text' }, text.slice(0, limit) + '…');
  const toggle = h('button', { type: 'button', className: 'link more' }, `show all (${text.length} chars)`);
  let open = false;
  toggle.addEventListener('click', (ev) => {
    ev.stopPropagation();
    open = !open;
    shown.textContent = open ? text : text.slice(0, limit) + '…';
    toggle.textContent = open ? 'show less' : `show all (${text.length} chars)`;
  });
  return h('span', { className: 'long' }, shown, ' ', toggle);
}

/** Any JSON value as nested definition lists; strings collapsed past `limit` characters. */
export function jsonView(value, limit = 240, depth = 0) {
  if (value === null || value === undefined) return h('span', { className: 'j-null' }, 'null');
  if (typeof value === 'string') return h('span', { className: 'j-str' }, longText(value, limit));
  if (typeof value === 'number' || typeof value === 'boolean') {
    return h('span', { className: `j-${typeof value}` }, String(value));
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
  if (entries.length === 0) return h('span', { className: 'j-empty' }, Array.isArray(value) ? '[]' : '{}');
  if (depth > 8) return h('span', { className: 'j-str' }, longText(JSON.stringify(value), limit));
  return h(
    'dl',
    { className: Array.isArray(value) ? 'json json-array' : 'json' },
    entries.map(([k, v]) => [h('dt', {}, k), h('dd', {}, jsonView(v, limit, depth + 1))]),
  );
}

export function badge(text, kind = '') {
  return h('span', { className: `badge ${kind}`.trim() }, text);
}
