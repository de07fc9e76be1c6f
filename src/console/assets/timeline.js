// An execution's history as a timeline: a chart of its attempts and back-offs over time, and
// the events in order, each in words, with its recorded payload one click away.

import { h, svg, fmtDuration, prettyJson } from './ui.js';

/** The payload of a history event, whichever way the API spells it. */
export function payloadOf(event) {
  if (event.payload && typeof event.payload === 'object') return event.payload;
  if (typeof event.payload_json === 'string' && event.payload_json) {
    try { return JSON.parse(event.payload_json); } catch { return {}; }
  }
  return {};
}

/** Attempts (`turn-1` #2, ...) and back-off timers with their start and end times. */
export function spans(events) {
  const attempts = new Map();
  const timers = new Map();
  const key = (p) => `${p.activity_id}#${p.attempt}`;
  for (const ev of events) {
    const p = payloadOf(ev);
    const at = Number(ev.created_at_ms || 0);
    switch (ev.type) {
      case 'ActivityScheduled':
        attempts.set(key(p), { kind: 'attempt', activity: p.activity_id, attempt: p.attempt, turn: p.turn, scheduled: at, start: at, end: null, outcome: 'open' });
        break;
      case 'ActivityStarted': {
        const a = attempts.get(key(p));
        if (a) { a.start = Number(p.started_at || at); a.worker = p.worker; }
        break;
      }
      case 'ActivityCompleted':
      case 'ActivityFailed':
      case 'ActivityTimedOut':
      case 'ActivityCanceled': {
        const a = attempts.get(key(p));
        if (a) {
          a.end = Number(p.at || at);
          a.outcome = ev.type.replace('Activity', '').toLowerCase();
          if (p.failure) a.failure = p.failure;
          if (p.kind) a.timeout = p.kind;
        }
        break;
      }
      case 'TimerStarted':
        timers.set(p.timer_id, { kind: 'backoff', id: p.timer_id, start: at, end: null, due: Number(p.fire_at), delay: p.delay_ms, purpose: p.purpose, outcome: 'open' });
        break;
      case 'TimerFired':
      case 'TimerCanceled': {
        const t = timers.get(p.timer_id);
        if (t) { t.end = at; t.outcome = ev.type === 'TimerFired' ? 'fired' : 'canceled'; }
        break;
      }
      default:
    }
  }
  return [...attempts.values(), ...timers.values()].sort((a, b) => a.start - b.start);
}

/** The chart: one row per attempt or back-off, on a shared time axis. */
export function chart(events, now = Date.now(), width = 640) {
  const rows = spans(events);
  if (!rows.length) return null;
  const t0 = Math.min(...events.map((e) => Number(e.created_at_ms || 0)).filter(Boolean), ...rows.map((r) => r.start));
  const endOf = (r) => r.end ?? (r.kind === 'backoff' ? Math.max(r.due || now, now) : now);
  const t1 = Math.max(t0 + 1, ...rows.map(endOf));
  const labelW = Math.round(Math.min(150, Math.max(96, width * 0.3)));
  const rowH = 26;
  const height = rows.length * rowH + 26;
  const x = (t) => labelW + ((t - t0) / (t1 - t0)) * (width - labelW - 10);
  // Fewer ticks on a narrow chart, so their labels do not run into each other.
  const ticks = (width < 520 ? [0, 0.5, 1] : [0, 0.25, 0.5, 0.75, 1]).map((f) => t0 + f * (t1 - t0));
  const title = 'Attempts and back-offs over time';
  return h('figure', { class: 'gantt' },
    svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title, preserveAspectRatio: 'xMinYMin meet' },
      svg('title', {}, title),
      ticks.map((t, i) => [
        svg('line', { x1: x(t), x2: x(t), y1: 0, y2: height - 18, class: 'grid' }),
        svg('text', { x: x(t), y: height - 4, 'text-anchor': i === ticks.length - 1 ? 'end' : 'middle', class: 'axis' }, `+${fmtDuration(t - t0)}`),
      ]),
      rows.map((r, i) => {
        const y = i * rowH + 4;
        const label = r.kind === 'attempt' ? `${r.activity} #${r.attempt}` : 'back-off';
        const w = Math.max(3, x(endOf(r)) - x(r.start));
        return svg('g', { class: `span span-${r.kind} outcome-${r.outcome}` },
          svg('text', { x: 4, y: y + 15, class: 'label' }, label),
          svg('rect', { x: x(r.start), y: y + 3, width: w, height: rowH - 10, rx: 3 },
            svg('title', {}, `${label}: ${r.outcome}, ${fmtDuration(endOf(r) - r.start)}${r.worker ? ` on ${r.worker}` : ''}`)));
      })),
    // The legend names only what the chart shows.
    h('figcaption', { class: 'legend' }, [
      ['outcome-completed', 'completed'], ['outcome-failed', 'failed'], ['outcome-timedout', 'timed out'],
      ['outcome-canceled', 'canceled'], ['outcome-open', 'running'],
    ].filter(([cls]) => rows.some((r) => r.kind === 'attempt' && `outcome-${r.outcome}` === cls))
      .map(([cls, text]) => legend(cls, text)),
    rows.some((r) => r.kind === 'backoff') ? legend('span-backoff', 'back-off') : null));
}

function legend(cls, text) {
  return h('span', { class: `key ${cls}` }, h('span', { class: 'swatch', 'aria-hidden': 'true' }), text);
}

/** The events in order, each in one sentence. */
export function eventList(events) {
  if (!events.length) return h('p', { class: 'muted' }, 'No events yet.');
  const t0 = Number(events[0].created_at_ms || 0);
  return h('ol', { class: 'timeline' }, events.map((ev) => {
    const p = payloadOf(ev);
    const [text, tone] = describe(ev.type, p);
    const at = Number(ev.created_at_ms || 0);
    return h('li', { class: `tl-item tone-${tone}`, dataset: { type: ev.type } },
      h('span', { class: 'tl-dot', 'aria-hidden': 'true' }),
      h('div', { class: 'tl-body' },
        h('div', { class: 'tl-head' },
          h('span', { class: 'tl-seq mono' }, `#${ev.seq}`),
          h('strong', {}, text),
          h('span', { class: 'tl-time muted', title: at ? new Date(at).toISOString() : '' }, at && t0 ? `+${fmtDuration(at - t0)}` : '')),
        detail(ev.type, p),
        h('details', { class: 'raw', dataset: { key: `ev:${ev.seq}` } },
          h('summary', { dataset: { key: `sum:${ev.seq}` } }, ev.type), h('pre', {}, prettyJson(p)))));
  }));
}

/** A sentence and a tone (ok, bad, warn, info) for an event. */
function describe(type, p) {
  const act = p.activity_id ? `${p.activity_id}, attempt ${p.attempt}` : '';
  switch (type) {
    case 'ExecutionStarted': return [`Started: ${(p.prompts || []).length} turn(s) of ${p.agent?.name || 'the agent'} on ${p.agent?.runtime || '?'}`, 'info'];
    case 'TeamStarted': return [`Team started (${p.team?.strategy || 'team'})`, 'info'];
    case 'ActivityScheduled': return [`Scheduled ${act}`, 'info'];
    case 'ActivityStarted': return [`Ran ${act} on ${p.worker}`, 'info'];
    case 'ActivityCompleted': return [`Completed ${act}`, 'ok'];
    case 'ActivityFailed': return [`Failed ${act}: ${p.failure?.code || ''}`, 'bad'];
    case 'ActivityTimedOut': return [`Timed out ${act} (${String(p.kind || '').replaceAll('_', ' ')})`, 'bad'];
    case 'ActivityCancelRequested': return [`Asked ${act} to stop`, 'warn'];
    case 'ActivityCanceled': return [`Canceled ${act}${p.abandoned ? ' (abandoned)' : ''}`, 'warn'];
    case 'TimerStarted': return [`Back-off ${fmtDuration(p.delay_ms)} before ${p.purpose?.activity_id || ''} attempt ${p.purpose?.attempt || ''}`, 'warn'];
    case 'TimerFired': return [`Timer ${p.timer_id} fired`, 'info'];
    case 'TimerCanceled': return [`Timer ${p.timer_id} canceled`, 'info'];
    case 'CancelRequested': return [`Cancel requested${p.reason ? `: ${p.reason}` : ''}`, 'warn'];
    case 'ChildScheduled': return [`Started child ${p.key}`, 'info'];
    case 'ChildCancelRequested': return [`Asked child ${p.key} to stop`, 'warn'];
    case 'ChildClosed': return [`Child ${p.key} ${String(p.status || '').toLowerCase()}`, p.status === 'COMPLETED' ? 'ok' : 'bad'];
    case 'MessageReceived': return [`Message: ${clip(p.text)}`, 'info'];
    case 'CloseRequested': return ['Conversation closed: it completes after the turns it has', 'info'];
    case 'ExecutionTimedOut': return [`Ran past its execution timeout of ${fmtDuration(p.execution_timeout_ms)}: the execution fails`, 'bad'];
    case 'HistoryLimitReached': return [`History reached ${p.max_history_events} events, the server's limit: the execution fails`, 'bad'];
    case 'IdleTimedOut': return [`No message for ${fmtDuration(p.idle_timeout_ms)}: the conversation closes`, 'warn'];
    case 'ApprovalRequested': return [`${p.activity_id} asks to run ${p.tool}`, 'warn'];
    case 'ApprovalResolved': return p.decision?.decision === 'deny'
      ? [`Denied ${p.approval_id}${p.decision.message ? `: ${clip(p.decision.message)}` : ''}`, 'bad']
      : [`Allowed ${p.approval_id}`, 'ok'];
    case 'ExecutionCompleted': return ['Execution completed', 'ok'];
    case 'ExecutionFailed': return [`Execution failed: ${p.failure?.code || ''}`, 'bad'];
    case 'ExecutionCanceled': return [`Execution canceled${p.reason ? `: ${p.reason}` : ''}`, 'warn'];
    default:
      // Events this console does not know yet (approvals, messages, ...) still read as words.
      return [type.replace(/([a-z])([A-Z])/g, '$1 $2'), /Approval/.test(type) ? 'warn' : 'info'];
  }
}

function detail(type, p) {
  if (p.failure?.message) return h('p', { class: 'tl-detail' }, p.failure.message);
  if (type === 'ActivityCompleted' && p.usage) {
    const u = p.usage;
    return h('p', { class: 'tl-detail muted' }, `${u.input_tokens || 0} in / ${u.output_tokens || 0} out tokens, ${u.tool_calls || 0} tool calls`);
  }
  if (type === 'ChildScheduled' && p.prompt) return h('p', { class: 'tl-detail muted' }, p.prompt.slice(0, 200));
  return null;
}

/** At most 80 characters of a person's text, for a one-line title. */
function clip(text) {
  const t = String(text || '');
  return t.length > 80 ? `${t.slice(0, 79)}…` : t;
}
