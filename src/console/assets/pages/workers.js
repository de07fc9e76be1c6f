// Workers heard from recently: what runtimes and queue each serves, and how busy it is.

import { api } from '../api.js';
import { h, pageHeader, fmtAgo, fmtTime, emptyState, errorBox, put } from '../ui.js';
import { poll } from './executions.js';

export async function render({ main, signal }) {
  const body = h('div', {});
  const live = h('span', { class: 'live' });
  put(main, pageHeader('Workers', live), body);
  await poll(async () => {
    const { workers = [] } = await api.workers(signal);
    const slots = workers.reduce((n, w) => n + Number(w.slots || 0), 0);
    const busy = workers.reduce((n, w) => n + Number(w.slots_in_use || 0), 0);
    put(body,
      h('div', { class: 'stat-grid wide' },
        stat('Workers', workers.length), stat('Slots', slots), stat('In use', busy),
        stat('Runtimes', new Set(workers.flatMap((w) => w.runtimes || [])).size)),
      workers.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
        h('caption', { class: 'visually-hidden' }, 'Workers'),
        h('thead', {}, h('tr', {}, ['Worker', 'Runtimes', 'Queue', 'Slots in use', 'Last seen', 'First seen'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, workers.map((w) => h('tr', {},
          h('td', { 'data-label': 'Worker', class: 'mono' }, w.worker_id),
          h('td', { 'data-label': 'Runtimes' }, (w.runtimes || []).map((r) => h('span', { class: 'tag' }, r))),
          h('td', { 'data-label': 'Queue' }, w.queue || 'default'),
          h('td', { 'data-label': 'Slots in use' }, usage(w)),
          h('td', { 'data-label': 'Last seen', title: fmtTime(w.last_seen_ms) }, fmtAgo(w.last_seen_ms)),
          h('td', { 'data-label': 'First seen' }, fmtTime(w.first_seen_ms)))))))
        : emptyState('No worker has polled recently. Start one with `cairn worker --server URL`.'));
    put(live, h('span', { class: 'dot', 'aria-hidden': 'true' }), `Live · updated ${new Date().toLocaleTimeString()}`);
  }, signal, (error) => put(body, errorBox(error)));
}

function stat(label, value) {
  return h('div', { class: 'stat' }, h('div', { class: 'stat-value' }, String(value)), h('div', { class: 'stat-label' }, label));
}

function usage(w) {
  const slots = Number(w.slots || 0);
  const used = Number(w.slots_in_use || 0);
  const share = slots ? Math.min(1, used / slots) : 0;
  return h('span', { class: 'meter-wrap' },
    h('meter', { min: 0, max: slots || 1, value: used, 'aria-label': `${used} of ${slots} slots in use` }),
    ` ${used} / ${slots || '?'}`, share >= 1 ? h('span', { class: 'tag tag-warn' }, 'full') : null);
}
