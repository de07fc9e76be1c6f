// The executions list: filters by status, runtime, agent and label (kept in the URL, so a
// filtered view can be bookmarked), refreshed every two seconds while the page is open, and the
// form that starts a run.

import { api } from '../api.js';
import {
  h, pageHeader, statusBadge, fmtAgo, fmtDuration, fmtCost, fmtNumber, shortId, field, select,
  errorBox, emptyState, toast,
  put, redraw,
} from '../ui.js';

const STATUSES = ['PENDING', 'RUNNING', 'WAITING', 'COMPLETED', 'FAILED', 'CANCELED'];
const REFRESH_MS = 2000;

export async function renderList({ main, query, signal, navigate }) {
  const [runtimes, agents, teams] = await Promise.all([
    api.runtimes(signal), api.agents({ include_archived: true, page_size: 1000 }, signal),
    api.teams({ include_archived: true, page_size: 1000 }, signal),
  ]);
  const agentList = agents.agents || [];
  const teamList = teams.teams || [];
  const names = new Map([...agentList, ...teamList].map((a) => [a.id, a.name]));

  const filters = {
    status: query.get('status') || '',
    runtime: query.get('runtime') || '',
    agent: query.get('agent') || '',
    label: query.get('label') || '',
    page_token: query.get('page_token') || '',
  };
  const setFilter = (key, value) => {
    const next = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...filters, page_token: '', [key]: value })) {
      if (v) next.set(k, v);
    }
    const qs = next.toString();
    navigate(`#/executions${qs ? `?${qs}` : ''}`, { replace: true });
  };

  const startPanel = h('div', { class: 'start-panel', hidden: true });
  const newRun = h('button', {
    type: 'button', class: 'btn btn-primary', id: 'new-run', 'aria-expanded': 'false', 'aria-controls': 'start-panel',
    onclick: () => {
      const open = startPanel.hidden;
      startPanel.hidden = !open;
      newRun.setAttribute('aria-expanded', String(open));
      if (open) startPanel.querySelector('select, textarea')?.focus();
    },
  }, 'New run');
  startPanel.id = 'start-panel';
  // `?new=1` (the agents page's Run) opens the form with the agent chosen.
  if (query.get('new') === '1') {
    startPanel.hidden = false;
    newRun.setAttribute('aria-expanded', 'true');
  }
  startPanel.append(startForm(agentList.filter((a) => a.status !== 'archived'),
    teamList.filter((t) => t.status !== 'archived'),
    query.get('team') ? `team:${query.get('team')}` : query.get('agent') ? `agent:${query.get('agent')}` : '', navigate));

  const labelInput = h('input', {
    type: 'search', id: 'filter-label', name: 'label', value: filters.label, placeholder: 'key=value',
    autocomplete: 'off', spellcheck: 'false', oninput: () => labelInput.setCustomValidity(''),
  });
  const filterBar = h('form', {
    class: 'filters', role: 'search', 'aria-label': 'Filter executions',
    onsubmit: (e) => {
      e.preventDefault();
      const bad = labelInput.value.split(',').map((s) => s.trim()).find((s) => s && s.indexOf('=') <= 0);
      if (bad) {
        labelInput.setCustomValidity(`“${bad}” is not key=value`);
        labelInput.reportValidity();
        return;
      }
      setFilter('label', labelInput.value.trim());
    },
  },
  field('Status', select({ id: 'filter-status', name: 'status', onchange: (e) => setFilter('status', e.target.value) },
    [['', 'Any status'], ...STATUSES.map((s) => [s, s.toLowerCase()])], filters.status)),
  field('Runtime', select({ id: 'filter-runtime', name: 'runtime', onchange: (e) => setFilter('runtime', e.target.value) },
    [['', 'Any runtime'], ...(runtimes.runtimes || []).map((r) => [r.name, r.name])], filters.runtime)),
  field('Agent', select({ id: 'filter-agent', name: 'agent', onchange: (e) => setFilter('agent', e.target.value) },
    [['', 'Any agent'], ...agentList.map((a) => [a.name, a.name])], filters.agent)),
  field('Label', labelInput),
  h('div', { class: 'field field-button' }, h('button', { type: 'submit', class: 'btn' }, 'Apply')));

  const live = h('span', { class: 'live', 'aria-live': 'off' });
  const body = h('div', { class: 'table-wrap' });
  put(main,
    pageHeader('Executions', live, newRun),
    startPanel,
    filterBar,
    body);

  // Labels as `key=value`, several separated by commas; each must match.
  const labels = filters.label.split(',').map((s) => s.trim()).filter(Boolean);
  const load = async () => {
    const page = await api.executions({
      status: filters.status, runtime: filters.runtime, agent: filters.agent, label: labels,
      page_size: 50, page_token: filters.page_token,
    }, signal);
    redraw(body, () => put(body, table(page.executions || [], names),
      pager(page.next_page_token, filters, navigate)));
    put(live, h('span', { class: 'dot', 'aria-hidden': 'true' }), `Live · updated ${new Date().toLocaleTimeString()}`);
  };
  await poll(load, signal, (error) => put(body, errorBox(error)));
}

/** Calls `load` now and every REFRESH_MS until `signal` aborts, while the tab is visible. */
export async function poll(load, signal, onError) {
  const once = async () => {
    if (signal.aborted || document.hidden) return;
    try { await load(); } catch (error) { if (!signal.aborted) onError(error); }
  };
  await once();
  const timer = setInterval(once, REFRESH_MS);
  signal.addEventListener('abort', () => clearInterval(timer), { once: true });
}

function table(executions, names) {
  if (!executions.length) {
    return emptyState('No executions match. Start one with “New run”.');
  }
  return h('table', { class: 'table' },
    h('caption', { class: 'visually-hidden' }, 'Executions, newest first'),
    h('thead', {}, h('tr', {},
      ['Execution', 'Agent or team', 'Runtime', 'Status', 'Activity', 'Started', 'Duration', 'Tokens', 'Cost']
        .map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, executions.map((e) => row(e, names))));
}

function row(e, names) {
  const who = names.get(e.team_id || e.agent_id) || shortId(e.team_id || e.agent_id);
  const usage = e.usage || {};
  return h('tr', { dataset: { execution: e.id, status: e.status } },
    h('td', { 'data-label': 'Execution' },
      h('a', { href: `#/executions/${e.id}`, class: 'mono', dataset: { key: `x:${e.id}` } }, shortId(e.id)),
      e.parent_id ? h('span', { class: 'tag' }, `child ${e.child_key || ''}`) : null,
      e.retry_of ? h('span', { class: 'tag' }, 'retry') : null),
    h('td', { 'data-label': 'Agent' }, e.kind === 'team' ? h('span', { class: 'tag' }, 'team') : null, who),
    h('td', { 'data-label': 'Runtime' }, e.runtime || '—'),
    h('td', { 'data-label': 'Status' }, statusBadge(e.status)),
    h('td', { 'data-label': 'Activity', class: 'muted' }, e.activity ? e.activity.state : ''),
    h('td', { 'data-label': 'Started', title: new Date(Number(e.created_at_ms)).toISOString() }, fmtAgo(e.created_at_ms)),
    h('td', { 'data-label': 'Duration', class: 'num' }, e.duration_ms ? fmtDuration(e.duration_ms) : '—'),
    h('td', { 'data-label': 'Tokens', class: 'num' }, fmtNumber(Number(usage.input_tokens || 0) + Number(usage.output_tokens || 0))),
    h('td', { 'data-label': 'Cost', class: 'num' }, fmtCost(usage.cost_usd)));
}

function pager(nextToken, filters, navigate) {
  if (!nextToken && !filters.page_token) return null;
  const go = (token) => {
    const next = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...filters, page_token: token })) if (v) next.set(k, v);
    navigate(`#/executions?${next}`);
  };
  return h('div', { class: 'pager' },
    filters.page_token ? h('button', { type: 'button', class: 'btn', dataset: { key: 'newest' }, onclick: () => go('') }, '← Newest') : null,
    nextToken ? h('button', { type: 'button', class: 'btn', dataset: { key: 'older' }, onclick: () => go(nextToken) }, 'Older →') : null);
}

/** The form that starts an execution of an agent or a team. */
function startForm(agents, teams, preselected, navigate) {
  const target = select({ id: 'start-target', name: 'target', required: true }, [
    ['', 'Choose an agent or team…'],
    ...agents.map((a) => [`agent:${a.name}`, `${a.name} (${a.runtime})`]),
    ...teams.map((t) => [`team:${t.name}`, `${t.name} (team, ${t.strategy})`]),
  ], preselected);
  const prompt = h('textarea', { id: 'start-prompt', name: 'prompt', rows: 3, required: true, placeholder: 'What should it do?' });
  const labels = h('input', { id: 'start-labels', name: 'labels', placeholder: 'user_id=42, session=abc', autocomplete: 'off' });
  const turns = h('input', { type: 'checkbox', id: 'start-turns', name: 'turns' });
  const interactive = h('input', { type: 'checkbox', id: 'start-interactive', name: 'interactive' });
  const message = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Start');
  return h('form', {
    class: 'card form-grid', 'aria-labelledby': 'h-start',
    onsubmit: async (event) => {
      event.preventDefault();
      put(message);
      const [kind, name] = target.value.split(/:(.*)/s);
      submit.disabled = true;
      try {
        const body = { labels: parseLabels(labels.value) };
        // Several turns: one conversation, each line a turn's prompt.
        if (turns.checked) body.turns = prompt.value.split('\n').map((s) => s.trim()).filter(Boolean);
        else body.prompt = prompt.value;
        // A chat: it waits for the next message after its turns (agents only).
        if (interactive.checked) body.interactive = true;
        if (kind === 'team') body.team = name; else body.agent = name;
        const started = await api.start(body);
        toast('Execution started');
        navigate(`#/executions/${started.execution_id}`);
      } catch (error) {
        put(message, errorBox(error));
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h2', { id: 'h-start', class: 'span-all' }, 'Start a run'),
  field('Agent or team', target),
  field('Labels', labels, 'Optional: key=value pairs, separated by commas.'),
  h('div', { class: 'prompt-field' }, field('Prompt', prompt),
    h('div', { class: 'check' }, turns, h('label', { for: 'start-turns' }, 'One turn per line (a conversation)')),
    h('div', { class: 'check' }, interactive, h('label', { for: 'start-interactive' }, 'Keep it open for more messages (a chat)'))),
  message,
  h('div', { class: 'form-actions' }, submit));
}

/** `a=1, b=2` → `{a: '1', b: '2'}`; an entry without `=` is an error that names it. */
function parseLabels(text) {
  const labels = {};
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw Object.assign(new Error(`label “${part}” needs the form key=value`), { code: 'invalid_argument' });
    labels[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return labels;
}
