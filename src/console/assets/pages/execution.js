// One execution: its live output (Server-Sent Events), facts, usage and cost, the team tree,
// the history as a timeline, and the cancel / retry / replay actions.

import { api } from '../api.js';
import { follow } from '../sse.js';
import {
  h, statusBadge, fmtTime, fmtDuration, fmtNumber, fmtCost, shortId, facts, errorBox, toast,
  prettyJson,
  put, redraw,
} from '../ui.js';
import { chart, eventList } from '../timeline.js';

const OPEN = new Set(['PENDING', 'RUNNING']);

export async function render({ main, params, signal, navigate }) {
  const [id] = params;
  let execution = await api.execution(id, signal);

  const title = h('h1', {}, 'Execution ', h('span', { class: 'mono' }, shortId(id)));
  const badge = h('span', { id: 'exec-status' });
  const actions = h('div', { class: 'actions' });
  const summary = h('section', { class: 'card', 'aria-labelledby': 'h-summary' });
  const usage = h('section', { class: 'card', 'aria-labelledby': 'h-usage' });
  const replayBox = h('div', { 'aria-live': 'polite' });
  const streamState = h('span', { class: 'live', id: 'stream-state' });
  const output = h('div', { class: 'output', id: 'output', role: 'log', 'aria-live': 'polite', tabindex: '0' });
  const children = h('section', { class: 'card', 'aria-labelledby': 'h-children', hidden: true });
  const timeline = h('section', { class: 'card', 'aria-labelledby': 'h-timeline' });
  const result = h('section', { class: 'card', 'aria-labelledby': 'h-result', hidden: true });

  put(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/executions' }, 'Executions'), ' / ', shortId(id)),
    h('div', { class: 'page-header' }, h('div', { class: 'title-row' }, title, badge), actions),
    replayBox,
    h('div', { class: 'grid-2' }, summary, usage),
    h('section', { class: 'card', 'aria-labelledby': 'h-output' },
      h('div', { class: 'card-header' }, h('h2', { id: 'h-output' }, 'Output'), streamState),
      output),
    result,
    children,
    timeline);

  let names = new Map();
  const refresh = async () => {
    execution = await api.execution(id, signal);
    const [history, kids, agents, teams] = await Promise.all([
      api.history(id, signal),
      execution.kind === 'team' ? api.executions({ parent_id: id, page_size: 100 }, signal) : null,
      names.size ? null : api.agents({ include_archived: true, page_size: 1000 }, signal),
      names.size || execution.kind !== 'team' ? null : api.teams({ include_archived: true, page_size: 1000 }, signal),
    ]);
    if (agents) {
      names = new Map([...(agents.agents || []), ...((teams && teams.teams) || [])].map((a) => [a.id, a.name]));
    }
    // Children in the order the team started them.
    const children = kids ? [...(kids.executions || [])].sort((a, b) => Number(a.created_at_ms) - Number(b.created_at_ms)) : [];
    draw(history.events || [], children);
  };

  function draw(events, kids) {
    const e = execution;
    put(badge, statusBadge(e.status));
    // The buttons change only with the status, so one the user is on keeps its focus.
    if (actions.dataset.status !== e.status) {
      actions.dataset.status = e.status;
      put(actions, ...buttons(e));
    }
    redraw(summary, () => put(summary, h('h2', { id: 'h-summary' }, 'Summary'), facts([
      [e.kind === 'team' ? 'Team' : 'Agent', e.kind === 'team'
        ? h('a', { href: `#/teams/${e.team_id}`, dataset: { key: 'owner' } }, names.get(e.team_id) || shortId(e.team_id))
        : h('a', { href: `#/agents/${e.agent_id}`, dataset: { key: 'owner' } }, names.get(e.agent_id) || shortId(e.agent_id))],
      ['Runtime', e.runtime || '—'],
      ['Queue', e.queue || 'default'],
      ['Activity', e.activity ? `${e.activity.activity_id} · attempt ${e.activity.attempt} · ${e.activity.state}` : '—'],
      ['Created', fmtTime(e.created_at_ms)],
      ['Started', fmtTime(e.started_at_ms)],
      ['Closed', fmtTime(e.closed_at_ms)],
      ['Duration', e.duration_ms ? fmtDuration(e.duration_ms) : '—'],
      e.parent_id ? ['Parent', h('a', { href: `#/executions/${e.parent_id}`, dataset: { key: 'parent' } }, `${shortId(e.parent_id)} (${e.child_key || 'child'})`)] : null,
      e.retry_of ? ['Retry of', h('a', { href: `#/executions/${e.retry_of}`, dataset: { key: 'retry-of' } }, shortId(e.retry_of))] : null,
      ['Labels', Object.keys(e.labels || {}).length
        ? h('span', {}, Object.entries(e.labels).map(([k, v]) => h('span', { class: 'tag' }, `${k}=${v}`)))
        : '—'],
      ['ID', h('span', { class: 'mono small' }, e.id)],
    ])));
    const u = e.usage || {};
    put(usage, h('h2', { id: 'h-usage' }, 'Usage and cost'), h('div', { class: 'stat-grid' },
      stat('Input tokens', fmtNumber(u.input_tokens)),
      stat('Output tokens', fmtNumber(u.output_tokens)),
      stat('Tool calls', fmtNumber(u.tool_calls)),
      stat('Cost', fmtCost(u.cost_usd)),
      stat('History events', fmtNumber(e.history_length)),
      stat('Output chunks', fmtNumber(e.output_length))),
    e.failure ? h('div', { class: 'alert alert-error', role: 'alert' },
      h('strong', {}, `${e.failure.code}: `), e.failure.message,
      e.failure.retryable ? h('span', { class: 'tag' }, 'retryable') : null) : null);
    if (e.result_json || e.result) {
      result.hidden = false;
      put(result, h('h2', { id: 'h-result' }, 'Result'), h('pre', { class: 'json' }, prettyJson(e.result ?? e.result_json)));
    }
    if (e.kind === 'team') {
      children.hidden = false;
      redraw(children, () => put(children, h('h2', { id: 'h-children' }, 'Team'), tree(e, kids, names)));
    }
    redraw(timeline, () => put(timeline, h('h2', { id: 'h-timeline' }, 'History'),
      chart(events, Date.now(), Math.max(280, timeline.clientWidth - 42)), eventList(events)));
  }

  function buttons(e) {
    const list = [];
    if (OPEN.has(e.status)) {
      // Cancelling cannot be undone, so it takes a second press (within five seconds).
      const cancel = act('Cancel requested', () => api.cancel(id, 'canceled from the console'));
      let armed = null;
      const button = h('button', {
        type: 'button', class: 'btn btn-danger', id: 'cancel',
        onclick: (event) => {
          if (armed) {
            clearTimeout(armed);
            armed = null;
            return cancel(event);
          }
          button.textContent = 'Confirm cancel';
          button.classList.add('armed');
          armed = setTimeout(() => {
            armed = null;
            button.textContent = 'Cancel';
            button.classList.remove('armed');
          }, 5000);
          return undefined;
        },
      }, 'Cancel');
      list.push(button);
    }
    if (e.status === 'FAILED' || e.status === 'CANCELED') {
      list.push(h('button', {
        type: 'button', class: 'btn btn-primary', id: 'retry',
        onclick: act(null, async () => {
          const retried = await api.retry(id);
          toast(retried.created === false ? 'Already retried: opening that retry' : 'Retry started');
          navigate(`#/executions/${retried.execution_id}`);
        }),
      }, 'Retry'));
    }
    list.push(h('button', {
      type: 'button', class: 'btn', id: 'replay',
      onclick: act(null, async () => put(replayBox, replayResult(await api.replay(id)))),
    }, 'Replay'));
    return list;
  }

  function act(done, fn) {
    return async (event) => {
      const button = event.currentTarget;
      button.disabled = true;
      try {
        await fn();
        if (done) toast(done);
        await refresh();
      } catch (error) {
        if (!signal.aborted) put(replayBox, errorBox(error));
      } finally {
        button.disabled = false;
      }
    };
  }

  await refresh();

  // The output, live: chunks as they are stored, then the closing event. History and facts are
  // read again (at most every 700 ms) while chunks arrive, and once more at the close.
  const writer = outputWriter(output);
  let pending = null;
  const soon = () => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      refresh().catch((error) => { if (!signal.aborted) put(replayBox, errorBox(error)); });
    }, 700);
  };
  signal.addEventListener('abort', () => clearTimeout(pending), { once: true });
  follow(`/executions/${encodeURIComponent(id)}/events`, {
    signal,
    onState: (state, error) => {
      put(streamState,
        h('span', { class: `dot dot-${state}`, 'aria-hidden': 'true' }),
        { live: 'Live', reconnecting: 'Reconnecting…', ended: 'Ended' }[state] || state);
      if (state === 'ended' && error) writer.note(`Stream refused: ${error.message}`);
    },
    onEvent: (ev) => {
      // The API's events: `status` (the execution as the stream opens), `output` (a chunk,
      // id = its seq), `closed` (last), `error` (the stream broke; `follow` reconnects).
      if (ev.event === 'closed') {
        writer.end();
        clearTimeout(pending);
        pending = null;
        refresh().catch(() => {});
        return 'done';
      }
      if (ev.event === 'output') {
        writer.chunk(ev.data);
        soon();
      } else if (ev.event === 'status') {
        soon();
      }
      return undefined;
    },
  });
}

/** Appends chunks to the output box: text as text, other kinds as tagged lines. */
function outputWriter(box) {
  let child = null;
  let reused = '';
  let text = null;
  let lastSeq = 0;
  put(box);
  const empty = h('p', { class: 'muted placeholder' }, 'Waiting for output…');
  box.append(empty);
  const stickToBottom = () => box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  return {
    chunk(c) {
      // A resumed stream starts after the last seq shown; a chunk at or before it is one the
      // box already has.
      if (Number(c.seq) <= lastSeq) return;
      lastSeq = Number(c.seq);
      empty.remove();
      const atBottom = stickToBottom();
      if ((c.reused_from || '') !== reused) {
        reused = c.reused_from || '';
        box.append(h('div', { class: 'out-note' }, reused ? `Output reused from ${shortId(reused)}` : 'Output of this execution'));
        text = null;
      }
      if ((c.child_key || '') !== (child || '')) {
        child = c.child_key || '';
        box.append(h('div', { class: 'out-child' }, child ? `── ${child} ──` : '──'));
        text = null;
      }
      let data = c.data;
      if (data === undefined && typeof c.data_json === 'string') {
        try { data = JSON.parse(c.data_json); } catch { data = c.data_json; }
      }
      if (c.kind === 'text' && data && typeof data.text === 'string') {
        if (!text) { text = h('span', { class: 'out-text' }); box.append(text); }
        text.append(data.text);
      } else {
        text = null;
        box.append(h('div', { class: `out-other kind-${c.kind}` }, h('span', { class: 'tag' }, c.kind), JSON.stringify(data).slice(0, 400)));
      }
      if (atBottom) box.scrollTop = box.scrollHeight;
    },
    note(message) {
      empty.remove();
      box.append(h('div', { class: 'out-note' }, message));
    },
    end() {
      empty.remove();
      if (!box.childNodes.length) box.append(h('p', { class: 'muted' }, 'No output.'));
    },
  };
}

function stat(label, value) {
  return h('div', { class: 'stat' }, h('div', { class: 'stat-value' }, value), h('div', { class: 'stat-label' }, label));
}

/** The team execution and its children, each with its member, runtime, status and a link. */
function tree(team, kids, names) {
  const node = (e, label, detail) => h('span', { class: 'node' },
    e.id === team.id ? h('strong', {}, label) : h('a', { href: `#/executions/${e.id}`, dataset: { key: `c:${e.id}` } }, label), ' ',
    statusBadge(e.status), ' ', h('span', { class: 'muted' }, detail));
  return h('ul', { class: 'tree root' }, h('li', {},
    node(team, names.get(team.team_id) || 'team', `this execution${team.duration_ms ? ` · ${fmtDuration(team.duration_ms)}` : ''}`),
    kids.length
      ? h('ul', { class: 'tree' }, kids.map((k) => h('li', { dataset: { child: k.child_key } },
        node(k, k.child_key || shortId(k.id),
          `${names.get(k.agent_id) || ''} · ${k.runtime}${k.duration_ms ? ` · ${fmtDuration(k.duration_ms)}` : ''}`))))
      : h('p', { class: 'muted' }, 'No children yet.')));
}

function replayResult(r) {
  if (r.ok) {
    return h('div', { class: 'alert alert-ok', role: 'status' },
      h('strong', {}, 'Replay OK: '), `this server's code reproduces all ${r.events} events (ends ${String(r.status).toLowerCase()}).`);
  }
  const d = r.divergence || {};
  return h('div', { class: 'alert alert-error', role: 'alert' },
    h('strong', {}, `Replay diverges at event #${d.seq} (${d.kind}): `), d.message || '',
    h('details', {}, h('summary', {}, 'Details'),
      h('p', {}, 'History has:'), h('pre', {}, prettyJson(d.history_has || '')),
      h('p', {}, 'Code would:'), h('pre', {}, prettyJson(d.code_would || ''))));
}
