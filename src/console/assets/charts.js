// Small SVG charts for the dashboard, drawn from the stats the API returns. Horizontal bars,
// so that long runtime or agent names stay readable on a phone.

import { h, svg } from './ui.js';

const WIDTH = 480;
const LABEL = 120;
const VALUE = 70;
const ROW = 30;

/**
 * One bar per row, stacked from `series` (`[{key, label, cls}]`), e.g. executions by status.
 * `rows` are `{label, values: {key: n}}`.
 */
export function stacked(title, rows, series, format = String) {
  const max = Math.max(1, ...rows.map((r) => series.reduce((n, s) => n + Number(r.values[s.key] || 0), 0)));
  const scale = (WIDTH - LABEL - VALUE) / max;
  const height = rows.length * ROW + 4;
  return figure(title,
    svg('svg', { viewBox: `0 0 ${WIDTH} ${height}`, role: 'img', 'aria-label': title },
      svg('title', {}, title),
      rows.map((r, i) => {
        let x = LABEL;
        const y = i * ROW + 4;
        const total = series.reduce((n, s) => n + Number(r.values[s.key] || 0), 0);
        return svg('g', {},
          svg('text', { x: LABEL - 8, y: y + 16, 'text-anchor': 'end', class: 'label' }, clip(r.label)),
          svg('rect', { x: LABEL, y: y + 2, width: WIDTH - LABEL - VALUE, height: ROW - 12, class: 'track', rx: 3 }),
          series.map((s) => {
            const v = Number(r.values[s.key] || 0);
            if (!v) return null;
            const w = v * scale;
            const rect = svg('rect', { x, y: y + 2, width: Math.max(w, 1), height: ROW - 12, class: `seg ${s.cls}` },
              svg('title', {}, `${r.label}: ${format(v)} ${s.label}`));
            x += w;
            return rect;
          }),
          svg('text', { x: WIDTH - VALUE + 6, y: y + 16, class: 'value' }, format(total)));
      })),
    h('div', { class: 'legend' }, series.map((s) => h('span', { class: `key ${s.cls}` }, h('span', { class: 'swatch', 'aria-hidden': 'true' }), s.label))));
}

/** One bar per row for each of `series` (grouped), e.g. p50 and p95 latency. */
export function grouped(title, rows, series, format = String) {
  const max = Math.max(1e-9, ...rows.flatMap((r) => series.map((s) => Number(r.values[s.key] || 0))));
  const inner = WIDTH - LABEL - VALUE;
  const barH = Math.max(8, Math.floor((ROW - 8) / series.length));
  const rowH = barH * series.length + 10;
  const height = rows.length * rowH + 4;
  return figure(title,
    svg('svg', { viewBox: `0 0 ${WIDTH} ${height}`, role: 'img', 'aria-label': title },
      svg('title', {}, title),
      rows.map((r, i) => {
        const y = i * rowH + 4;
        return svg('g', {},
          svg('text', { x: LABEL - 8, y: y + rowH / 2, 'text-anchor': 'end', class: 'label' }, clip(r.label)),
          series.map((s, j) => {
            const raw = r.values[s.key];
            const v = Number(raw || 0);
            const by = y + j * barH;
            return svg('g', {},
              svg('rect', { x: LABEL, y: by, width: Math.max((v / max) * inner, raw === undefined || raw === null ? 0 : 1), height: barH - 2, class: `seg ${s.cls}`, rx: 2 },
                svg('title', {}, `${r.label}: ${s.label} ${raw === undefined || raw === null ? 'none' : format(v)}`)),
              svg('text', { x: LABEL + Math.max((v / max) * inner, 0) + 4, y: by + barH - 4, class: 'value small' },
                raw === undefined || raw === null ? '—' : format(v)));
          }));
      })),
    series.length > 1
      ? h('div', { class: 'legend' }, series.map((s) => h('span', { class: `key ${s.cls}` }, h('span', { class: 'swatch', 'aria-hidden': 'true' }), s.label)))
      : null);
}

function figure(title, chart, legend) {
  return h('figure', { class: 'chart' }, h('figcaption', {}, title), chart, legend);
}

function clip(text) {
  const s = String(text || '(none)');
  return s.length > 18 ? `${s.slice(0, 17)}…` : s;
}
