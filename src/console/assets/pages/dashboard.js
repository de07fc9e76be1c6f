// The dashboard: the stats of the executions started in a window, by runtime (or agent, or
// model): counts by status, error rate, latency, tokens, tool calls and cost, as charts and as a
// table with every figure.

import { api } from '../api.js';
import {
  h, pageHeader, select, field, fmtNumber, fmtPercent, fmtDuration, fmtCost, emptyState, errorBox,
  put,
} from '../ui.js';
import { stacked, grouped } from '../charts.js';
import { poll } from './executions.js';

const WINDOWS = [['3600000', 'Last hour'], ['86400000', 'Last 24 hours'], ['604800000', 'Last 7 days'], ['0', 'All time']];
const GROUPS = [['runtime', 'Runtime'], ['agent', 'Agent'], ['model', 'Model']];
const STATUS_SERIES = [
  { key: 'completed', label: 'completed', cls: 's-completed' },
  { key: 'failed', label: 'failed', cls: 's-failed' },
  { key: 'canceled', label: 'canceled', cls: 's-canceled' },
  { key: 'running', label: 'running', cls: 's-running' },
  { key: 'pending', label: 'pending', cls: 's-pending' },
];

export async function render({ main, query, signal, navigate }) {
  const windowMs = query.get('window') || '86400000';
  const by = query.get('by') || 'runtime';
  const set = (key, value) => {
    const next = new URLSearchParams({ window: windowMs, by, [key]: value });
    navigate(`#/dashboard?${next}`, { replace: true });
  };
  const controls = h('form', { class: 'filters', 'aria-label': 'Dashboard window', onsubmit: (e) => e.preventDefault() },
    field('Window', select({ id: 'dash-window', onchange: (e) => set('window', e.target.value) }, WINDOWS, windowMs)),
    field('Group by', select({ id: 'dash-by', onchange: (e) => set('by', e.target.value) }, GROUPS, by)));
  const body = h('div', { id: 'dashboard' });
  const live = h('span', { class: 'live' });
  put(main, pageHeader('Dashboard', live), controls, body);

  await poll(async () => {
    const stats = await api.stats({ window_ms: windowMs, by }, signal);
    put(body, ...draw(stats, by, chartWidth(body)));
    put(live, h('span', { class: 'dot', 'aria-hidden': 'true' }), `Live · updated ${new Date().toLocaleTimeString()}`);
  }, signal, (error) => put(body, errorBox(error)));
}

/** The drawing width of one chart: the width of a card in the dashboard's grid (two columns
 *  from 872 px, as `.chart-grid` lays them out), less the card's padding. */
function chartWidth(container) {
  const total = container.clientWidth || 800;
  const columns = Math.max(1, Math.floor((total + 16) / 436));
  return Math.floor((total - 16 * (columns - 1)) / columns) - 42;
}

function draw(stats, by, width) {
  const groups = stats.executions || [];
  const agents = stats.agents || [];
  const sum = (key) => groups.reduce((n, g) => n + Number(g[key] || 0), 0);
  const closed = sum('completed') + sum('failed') + sum('canceled');
  const totals = h('div', { class: 'stat-grid wide' },
    stat('Executions', fmtNumber(sum('total'))),
    stat('Running', fmtNumber(sum('running') + sum('pending'))),
    stat('Error rate', fmtPercent(closed ? sum('failed') / closed : 0)),
    stat('Tokens', fmtNumber(sum('input_tokens') + sum('output_tokens'))),
    stat('Tool calls', fmtNumber(sum('tool_calls'))),
    stat('Cost', fmtCost(sum('cost_usd'))));
  const agentsCard = h('section', { class: 'card' },
    stacked('Agents by runtime', agents.map((a) => ({ label: a.runtime, values: a })),
      [{ key: 'active', label: 'active', cls: 's-completed' }, { key: 'archived', label: 'archived', cls: 's-pending' }], fmtNumber, width, 'No agents.'));
  if (!groups.length) {
    return [totals, emptyState('No executions in this window.'), agentsCard];
  }
  const label = (g) => g.key || '(none)';
  const rows = (values) => groups.map((g) => ({ label: label(g), values: values(g) }));
  const name = GROUPS.find(([k]) => k === by)?.[1].toLowerCase() || by;
  return [
    totals,
    h('div', { class: 'chart-grid' },
      card(stacked(`Executions by ${name} and status`, rows((g) => g), STATUS_SERIES, fmtNumber, width)),
      card(grouped('Error rate (failed / closed)', rows((g) => ({ rate: g.error_rate })), [{ key: 'rate', label: 'error rate', cls: 's-failed' }], fmtPercent, width, 'No failures in this window.')),
      card(grouped('Duration of closed executions', rows((g) => ({ p50: g.duration_p50_ms, p95: g.duration_p95_ms, mean: g.duration_mean_ms })),
        [{ key: 'p50', label: 'p50', cls: 's-running' }, { key: 'p95', label: 'p95', cls: 's-canceled' }, { key: 'mean', label: 'mean', cls: 's-pending' }], fmtDuration, width)),
      card(stacked('Tokens', rows((g) => g), [
        { key: 'input_tokens', label: 'input', cls: 's-running' }, { key: 'output_tokens', label: 'output', cls: 's-completed' }], fmtNumber, width)),
      card(grouped('Tool calls', rows((g) => ({ calls: g.tool_calls })), [{ key: 'calls', label: 'tool calls', cls: 's-running' }], fmtNumber, width)),
      card(grouped('Cost', rows((g) => ({ cost: g.cost_usd })), [{ key: 'cost', label: 'cost', cls: 's-completed' }], fmtCost, width)),
      agentsCard),
    h('section', { class: 'card' }, h('h2', {}, 'All figures'), h('div', { class: 'table-wrap' }, h('table', { class: 'table compact' },
      h('thead', {}, h('tr', {}, [GROUPS.find(([k]) => k === by)?.[1] || by, 'Total', 'Completed', 'Failed', 'Canceled', 'Running', 'Error rate', 'p50', 'p95', 'Tokens in', 'Tokens out', 'Tool calls', 'Cost']
        .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, groups.map((g) => h('tr', {},
        h('th', { scope: 'row' }, label(g)),
        ...[fmtNumber(g.total), fmtNumber(g.completed), fmtNumber(g.failed), fmtNumber(g.canceled), fmtNumber(Number(g.running || 0) + Number(g.pending || 0)),
          fmtPercent(g.error_rate), fmtDuration(g.duration_p50_ms), fmtDuration(g.duration_p95_ms), fmtNumber(g.input_tokens),
          fmtNumber(g.output_tokens), fmtNumber(g.tool_calls), fmtCost(g.cost_usd)].map((v) => h('td', { class: 'num' }, v)))))))),
  ];
}

function card(chart) {
  return h('section', { class: 'card' }, chart);
}

function stat(label, value) {
  return h('div', { class: 'stat' }, h('div', { class: 'stat-value' }, value), h('div', { class: 'stat-label' }, label));
}
