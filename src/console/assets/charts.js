// Small SVG charts for the dashboard, drawn from the stats the API returns. Horizontal bars,
// so that long runtime or agent names stay readable on a phone. Each chart is drawn for the
// width it will have on screen (one SVG unit per CSS pixel), so its text keeps its size.

import { h, svg } from './ui.js';

const VALUE = 64;
const ROW = 30;

function layout(width) {
  const label = Math.round(Math.min(130, Math.max(70, width * 0.26)));
  return { width, label, inner: Math.max(40, width - label - VALUE) };
}

/**
 * One bar per row, stacked from `series` (`[{key, label, cls}]`), e.g. executions by status.
 * `rows` are `{label, values: {key: n}}`.
 */
export function stacked(title, rows, series, format, width, empty = 'None in this window.') {
  const { label, inner } = layout(width);
  const totalOf = (r) => series.reduce((n, s) => n + Number(r.values[s.key] || 0), 0);
  const max = Math.max(...rows.map(totalOf));
  if (!(max > 0)) return figure(title, h('p', { class: 'muted none' }, empty));
  const scale = inner / max;
  const height = rows.length * ROW + 4;
  return figure(title,
    svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title },
      svg('title', {}, title),
      rows.map((r, i) => {
        let x = label;
        const y = i * ROW + 4;
        return svg('g', {},
          svg('text', { x: label - 8, y: y + 16, 'text-anchor': 'end', class: 'label' }, clip(r.label)),
          svg('rect', { x: label, y: y + 2, width: inner, height: ROW - 12, class: 'track', rx: 3 }),
          series.map((s) => {
            const v = Number(r.values[s.key] || 0);
            if (!v) return null;
            const w = v * scale;
            const rect = svg('rect', { x, y: y + 2, width: Math.max(w, 1), height: ROW - 12, class: `seg ${s.cls}` },
              svg('title', {}, `${r.label}: ${format(v)} ${s.label}`));
            x += w;
            return rect;
          }),
          svg('text', { x: label + inner + 6, y: y + 16, class: 'value' }, format(totalOf(r))));
      })),
    legend(series));
}

/** One bar per row for each of `series` (grouped), e.g. p50 and p95 latency. */
export function grouped(title, rows, series, format, width, empty = 'None in this window.') {
  const { label, inner } = layout(width);
  const values = rows.flatMap((r) => series.map((s) => Number(r.values[s.key] || 0)));
  const max = Math.max(...values);
  if (!(max > 0)) return figure(title, h('p', { class: 'muted none' }, empty));
  const barH = series.length > 1 ? 15 : ROW - 12;
  const rowH = barH * series.length + (series.length > 1 ? 12 : 12);
  const height = rows.length * rowH + 4;
  const room = inner - 8; // the value label sits after its bar
  return figure(title,
    svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title },
      svg('title', {}, title),
      rows.map((r, i) => {
        const y = i * rowH + 4;
        return svg('g', {},
          svg('text', { x: label - 8, y: y + (barH * series.length) / 2 + 5, 'text-anchor': 'end', class: 'label' }, clip(r.label)),
          series.map((s, j) => {
            const raw = r.values[s.key];
            const absent = raw === undefined || raw === null;
            const v = Number(raw || 0);
            const w = (v / max) * room * 0.8;
            const by = y + j * barH;
            return svg('g', {},
              svg('rect', { x: label, y: by + 1, width: absent ? 0 : Math.max(w, 1), height: barH - 3, class: `seg ${s.cls}`, rx: 2 },
                svg('title', {}, `${r.label}: ${s.label} ${absent ? 'none' : format(v)}`)),
              svg('text', { x: label + w + 5, y: by + barH - 4, class: 'value small' },
                `${series.length > 1 ? `${s.label} ` : ''}${absent ? '—' : format(v)}`));
          }));
      })),
    series.length > 1 ? legend(series) : null);
}

function legend(series) {
  return h('div', { class: 'legend' }, series.map((s) => h('span', { class: `key ${s.cls}` },
    h('span', { class: 'swatch', 'aria-hidden': 'true' }), s.label)));
}

function figure(title, chart, key) {
  return h('figure', { class: 'chart' }, h('figcaption', {}, title), chart, key);
}

function clip(text) {
  const s = String(text || '(none)');
  return s.length > 18 ? `${s.slice(0, 17)}…` : s;
}
