// One execution: its live output (Server-Sent Events), facts, usage and cost, the team tree,
// the history as a timeline, the cancel / retry / replay actions, and a person's part: the next
// message of a conversation and answers to the tool calls a turn asks about.

import { api } from '../api.js';
import { follow } from '../sse.js';
import {
  h, statusBadge, fmtTime, fmtDuration, fmtNumber, fmtCost, shortId, facts, errorBox, toast,
  prettyJson,
  put, redraw,
} from '../ui.js';
import { chart, eventList, payloadOf } from '../timeline.js';

const OPEN = new Set(['PENDING', 'RUNNING', 'WAITING']);

export async function render({ main, params, signal, navigate }) {
  const [id] = params;
  let execution = await api.execution(id, signal);

  const title = h('h1', {}, 'Execution ', h('span', { class: 'mono' }, shortId(id)));
  const badge = h('span', { id: 'exec-status' });
  const actions = h('div', { class: 'actions' });
  const summary = h('section', { class: 'card', 'aria-labelledby': 'h-summary' });
  const usage = h('section', { class: 'card', 'aria-labelledby': 'h-usage' });
  const replayBox = h('div', { 'aria-live': 'polite' });
  const loop = h('section', { class: 'card loop-card', 'aria-labelledby': 'h-loop', id: 'loop', hidden: true });
  const streamState = h('span', { class: 'live', id: 'stream-state' });
  const output = h('div', { class: 'output', id: 'output', role: 'log', 'aria-live': 'polite', tabindex: '0' });
  const children = h('section', { class: 'card', 'aria-labelledby': 'h-children', hidden: true });
  const timeline = h('section', { class: 'card', 'aria-labelledby': 'h-timeline' });
  const result = h('section', { class: 'card', 'aria-labelledby': 'h-result', hidden: true });

  put(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/executions' }, 'Executions'), ' / ', shortId(id)),
    h('div', { class: 'page-header' }, h('div', { class: 'title-row' }, title, badge), actions),
    replayBox,
    loop,
    h('div', { class: 'grid-2' }, summary, usage),
    h('section', { class: 'card', 'aria-labelledby': 'h-output' },
      h('div', { class: 'card-header' }, h('h2', { id: 'h-output' }, 'Output'), streamState),
      output),
    result,
    children,
    timeline);

  let names = new Map();
  // The prompt of each turn, in order (the start's, then each message), for the output's turn
  // headings in a conversation.
  let prompts = [];
  let writer = null;
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
    const events = history.events || [];
    if (execution.interactive) {
      prompts = promptsOf(events);
      if (writer) writer.relabel();
    }
    draw(events, children);
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
      e.interactive ? ['Conversation', e.waiting_for === 'input' ? 'waiting for the next message' : 'open'] : null,
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
    drawLoop(e);
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

  // The conversation's message box and the approvals. Redrawn only when what it shows changes,
  // so a person typing a message or a denial is not interrupted by a refresh.
  function drawLoop(e) {
    const approvals = e.approvals || [];
    const chatting = e.interactive && OPEN.has(e.status);
    const key = JSON.stringify([chatting, e.waiting_for, approvals.map((a) => [a.approval_id, a.state])]);
    if (loop.dataset.key === key) return;
    loop.dataset.key = key;
    loop.hidden = !chatting && !approvals.length;
    if (loop.hidden) return;
    const pending = approvals.filter((a) => a.state === 'pending');
    put(loop,
      h('h2', { id: 'h-loop' }, pending.length ? 'Waiting for you' : 'Conversation'),
      approvals.length ? h('div', { class: 'approvals' }, approvals.map(approvalBox)) : null,
      chatting ? messageForm() : null);
  }

  function approvalBox(a) {
    let input = a.input_json;
    try { input = JSON.stringify(JSON.parse(a.input_json), null, 2); } catch { /* shown as sent */ }
    const head = h('div', { class: 'approval-head' },
      h('strong', {}, a.tool), h('span', { class: 'muted' }, `asked by ${a.activity_id}`),
      h('span', { class: `badge status-${a.state === 'pending' ? 'waiting' : a.state === 'allowed' ? 'completed' : 'failed'}` }, a.state));
    const body = [head, h('pre', { class: 'json' }, input)];
    if (a.state === 'denied' && a.message) body.push(h('p', { class: 'muted' }, `Denied: ${a.message}`));
    if (a.state === 'pending') {
      const requestId = crypto.randomUUID();
      const reason = h('input', {
        id: `deny-message-${a.approval_id}`, 'aria-label': `Why ${a.tool} is denied (sent to the agent)`,
        placeholder: 'Why not? (the agent reads this)', autocomplete: 'off',
      });
      body.push(h('div', { class: 'approval-actions' },
        h('button', {
          type: 'button', class: 'btn btn-primary', dataset: { approve: a.approval_id },
          onclick: act('Allowed', () => api.resolve(id, a.approval_id, { allow: true, request_id: requestId })),
        }, 'Allow'),
        reason,
        h('button', {
          type: 'button', class: 'btn btn-danger', dataset: { deny: a.approval_id },
          onclick: act('Denied', () => api.resolve(id, a.approval_id, {
            allow: false, message: reason.value.trim() || 'denied from the console', request_id: requestId,
          })),
        }, 'Deny')));
    }
    return h('div', { class: 'approval', dataset: { approval: a.approval_id } }, body);
  }

  function messageForm() {
    const text = h('textarea', {
      id: 'message-text', rows: 2, required: true, 'aria-label': 'Next message',
      placeholder: execution.waiting_for === 'input' ? 'Your next message…' : 'Queued after the running turn…',
    });
    // One request id per message: sending it again (a lost reply) appends it once.
    let requestId = crypto.randomUUID();
    const send = h('button', { type: 'submit', class: 'btn btn-primary', id: 'send-message' }, 'Send');
    const close = h('button', {
      type: 'button', class: 'btn', id: 'close-conversation',
      onclick: act('Conversation closed', () => api.close(id)),
    }, 'Close conversation');
    return h('form', {
      class: 'message-form',
      onsubmit: async (event) => {
        event.preventDefault();
        const message = text.value.trim();
        if (!message) return;
        send.disabled = true;
        try {
          await api.send(id, message, requestId);
          requestId = crypto.randomUUID();
          text.value = '';
          toast('Message sent');
          await refresh();
        } catch (error) {
          if (!signal.aborted) put(replayBox, errorBox(error));
        } finally {
          send.disabled = false;
        }
      },
    }, text, send, close);
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
  writer = outputWriter(output, () => prompts);
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
      } else if (ev.event === 'waiting') {
        // Waiting for a message or an answer: show it now, not after the refresh delay.
        clearTimeout(pending);
        pending = null;
        refresh().catch((error) => { if (!signal.aborted) put(replayBox, errorBox(error)); });
      }
      return undefined;
    },
  });
}

/** The prompts of a conversation's turns: the start's, then each message received. */
function promptsOf(events) {
  const list = [];
  for (const e of events) {
    const p = payloadOf(e);
    if (e.type === 'ExecutionStarted') list.push(...(p.prompts || []));
    if (e.type === 'MessageReceived') list.push(p.text);
  }
  return list;
}

/**
 * Appends chunks to the output box: text as text, other kinds as tagged lines. In a conversation
 * (`prompts()` returns its turns' prompts) each turn starts under the message it answers.
 */
function outputWriter(box, prompts) {
  let turn = null;
  // Headings whose message the page had not read yet when their turn's output arrived.
  const headings = [];
  const label = (heading) => {
    const n = Number(String(heading.dataset.turn).replace(/^turn-/, ''));
    const said = Number.isInteger(n) && n >= 1 ? prompts()[n - 1] : undefined;
    heading.textContent = said === undefined ? heading.dataset.turn : `› ${said}`;
  };
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
      const turns = prompts();
      if (turns.length && !c.child_key && c.activity_id && c.activity_id !== turn) {
        turn = c.activity_id;
        const heading = h('div', { class: 'out-prompt', dataset: { turn } });
        headings.push(heading);
        box.append(heading);
        label(heading);
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
    /** Names the turns whose message is known by now. */
    relabel() {
      for (const heading of headings) if (!heading.textContent.startsWith('›')) label(heading);
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
