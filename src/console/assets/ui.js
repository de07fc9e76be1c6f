// DOM helpers and formatting shared by every page. Pages build their DOM with `h` (never by
// assigning HTML strings), so text from the API is always text, never markup.

/** Creates an element: `h('a', {href: '#/x', class: 'btn'}, 'text', child, [more])`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** The same for SVG elements. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child !== undefined && child !== null && child !== false) {
      el.append(child instanceof Node ? child : String(child));
    }
  }
  return el;
}

/** A page title with optional actions on the right. */
export function pageHeader(title, ...actions) {
  return h('div', { class: 'page-header' }, h('h1', {}, title), h('div', { class: 'actions' }, actions));
}

/** The coloured status of an execution, agent or worker. */
export function statusBadge(status) {
  const s = String(status || 'unknown');
  return h('span', { class: `badge status-${s.toLowerCase()}` }, s.toLowerCase());
}

/** A short message at the bottom of the screen. */
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  const item = h('div', { class: `toast toast-${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 8000 : 3000);
}

/** An inline error box, for a failed load or a refused form. */
export function errorBox(error) {
  return h('div', { class: 'alert alert-error', role: 'alert' },
    h('strong', {}, error.code ? `${error.code}: ` : 'Error: '), error.message || String(error));
}

export function emptyState(text, ...actions) {
  return h('div', { class: 'empty' }, h('p', {}, text), actions);
}

/** Milliseconds since the epoch as a local date and time; "—" for 0 or missing. */
export function fmtTime(ms) {
  if (!ms) return '—';
  const d = new Date(Number(ms));
  return d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** "3 s ago", "5 min ago", ... */
export function fmtAgo(ms, now = Date.now()) {
  if (!ms) return '—';
  const s = Math.max(0, Math.round((now - Number(ms)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** A duration in milliseconds, at a useful precision. */
export function fmtDuration(ms) {
  if (ms === undefined || ms === null || Number.isNaN(Number(ms))) return '—';
  const v = Number(ms);
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60_000) return `${(v / 1000).toFixed(v < 10_000 ? 2 : 1)} s`;
  if (v < 3_600_000) return `${Math.floor(v / 60_000)} min ${Math.round((v % 60_000) / 1000)} s`;
  return `${Math.floor(v / 3_600_000)} h ${Math.round((v % 3_600_000) / 60_000)} min`;
}

export function fmtNumber(n) {
  return Number(n || 0).toLocaleString();
}

export function fmtCost(usd) {
  const v = Number(usd || 0);
  if (v === 0) return '$0';
  if (v < 0.01) return `$${v.toFixed(4)}`;
  return `$${v.toFixed(2)}`;
}

export function fmtPercent(rate) {
  return `${(Number(rate || 0) * 100).toFixed(1)}%`;
}

/** The first 8 characters of a UUIDv7's random tail, enough to tell executions apart. */
export function shortId(id) {
  const s = String(id || '');
  return s.length > 12 ? `${s.slice(0, 8)}…${s.slice(-4)}` : s;
}

/** A labelled form field. `control` is an input, select or textarea with an `id`. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) control.setAttribute('aria-describedby', hintId);
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    control,
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null);
}

/** `<select>` with options `[value, text]` and the given value selected. */
export function select(attrs, options, selected) {
  return h('select', attrs, options.map(([value, text]) =>
    h('option', { value, selected: String(value) === String(selected ?? '') }, text)));
}

/** A definition list of `[term, value]` pairs. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) =>
    h('div', {}, h('dt', {}, k), h('dd', {}, v))));
}

/** Parses JSON the user typed, with an error that says where. */
export function parseJsonInput(text, what) {
  const trimmed = String(text || '').trim();
  if (!trimmed) return undefined;
  try {
    return JSON.parse(trimmed);
  } catch (e) {
    throw new Error(`${what} is not valid JSON: ${e.message}`);
  }
}

/** Pretty JSON for display. */
export function prettyJson(value) {
  if (typeof value === 'string') {
    try { return JSON.stringify(JSON.parse(value), null, 2); } catch { return value; }
  }
  return JSON.stringify(value, null, 2);
}

/** Replaces `el`'s children with `children`, skipping the absent ones (null, undefined, false),
 *  which `replaceChildren` would show as the text "null". */
export function put(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/**
 * Rebuilds `container` with `build()` (which fills it) without taking the keyboard away: the
 * focused element and the open `<details>` are found again after the rebuild by their
 * `data-key`. Lists that refresh every few seconds would otherwise throw a keyboard user back to
 * the top of the page, and close what they opened.
 */
export function redraw(container, build) {
  const active = document.activeElement;
  const focused = active && container.contains(active) ? active.dataset.key : undefined;
  const open = [...container.querySelectorAll('details[open][data-key]')].map((d) => d.dataset.key);
  build();
  const find = (key) => container.querySelector(`[data-key="${CSS.escape(key)}"]`);
  for (const key of open) find(key)?.setAttribute('open', '');
  if (focused) find(focused)?.focus({ preventScroll: true });
}
