// Agents: the list, and the form that creates or edits one. The runtime selector shows every
// runtime the server knows, how many connected workers offer it, and its configuration keys,
// each with an input of its type, which together make the agent's `runtime_config`.

import { api } from '../api.js';
import {
  h, pageHeader, statusBadge, fmtAgo, field, errorBox, emptyState, toast, parseJsonInput, shortId,
  put,
} from '../ui.js';

export async function renderList({ main, query, signal }) {
  const archived = query.get('archived') === '1';
  const { agents = [] } = await api.agents({ include_archived: archived, page_size: 1000 }, signal);
  const toggle = h('a', { href: archived ? '#/agents' : '#/agents?archived=1', class: 'btn' },
    archived ? 'Hide archived' : 'Show archived');
  put(main,
    pageHeader('Agents', toggle, h('a', { href: '#/agents/new', class: 'btn btn-primary', id: 'new-agent' }, 'New agent')),
    agents.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
      h('caption', { class: 'visually-hidden' }, 'Agents'),
      h('thead', {}, h('tr', {}, ['Name', 'Runtime', 'Model', 'Status', 'Version', 'Updated', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, agents.map((a) => h('tr', { dataset: { agent: a.name } },
        h('td', { 'data-label': 'Name' }, h('a', { href: `#/agents/${encodeURIComponent(a.id)}` }, a.name)),
        h('td', { 'data-label': 'Runtime' }, h('span', { class: 'tag' }, a.runtime)),
        h('td', { 'data-label': 'Model' }, a.model_id || '—'),
        h('td', { 'data-label': 'Status' }, statusBadge(a.status)),
        h('td', { 'data-label': 'Version', class: 'num' }, a.version ?? ''),
        h('td', { 'data-label': 'Updated' }, fmtAgo(a.updated_at_ms)),
        h('td', { 'data-label': '', class: 'row-actions' },
          a.status === 'archived' ? null : h('a', { href: `#/executions?agent=${encodeURIComponent(a.name)}&new=1`, class: 'btn btn-small' }, 'Run'),
          h('a', { href: `#/executions?agent=${encodeURIComponent(a.name)}`, class: 'btn btn-small' }, 'Executions')))))))
      : emptyState('No agents yet.', h('a', { href: '#/agents/new', class: 'btn btn-primary' }, 'Create the first agent')));
}

export async function renderNew(ctx) {
  const { runtimes = [] } = await api.runtimes(ctx.signal);
  form(ctx, runtimes, null);
}

export async function renderEdit(ctx) {
  const [{ runtimes = [] }, agent] = await Promise.all([api.runtimes(ctx.signal), api.agent(ctx.params[0], ctx.signal)]);
  form(ctx, runtimes, agent);
}

/** The configuration of an agent as an object, whichever way the API spells it. */
function configurationOf(agent) {
  if (!agent) return {};
  if (agent.configuration && typeof agent.configuration === 'object') return agent.configuration;
  if (agent.configuration_json) {
    try { return JSON.parse(agent.configuration_json); } catch { return {}; }
  }
  return {};
}

function form({ main, navigate }, runtimes, agent) {
  const configuration = configurationOf(agent);
  const { runtime_config: initialRuntimeConfig = {}, ...extra } = configuration;
  let current = agent ? agent.runtime : (runtimes.find((r) => r.name === 'default') || runtimes[0] || {}).name;

  const name = h('input', { id: 'agent-name', name: 'name', required: !agent, value: agent ? agent.name : '', autocomplete: 'off', spellcheck: 'false', readonly: Boolean(agent) });
  const model = h('input', { id: 'agent-model', name: 'model_id', value: agent ? agent.model_id || '' : '', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. claude-sonnet-4' });
  const extraJson = h('textarea', { id: 'agent-extra', name: 'extra', rows: 4, spellcheck: 'false', class: 'mono' },
    Object.keys(extra).length ? JSON.stringify(extra, null, 2) : '');
  const keysBox = h('div', { class: 'config-keys', id: 'config-keys', 'aria-live': 'polite' });
  const message = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'save-agent' }, agent ? 'Save changes' : 'Create agent');
  const inputs = new Map();

  const selector = h('fieldset', { class: 'runtime-select' },
    h('legend', {}, 'Runtime'),
    runtimes.map((r) => h('label', { class: 'runtime-option', for: `runtime-${r.name}` },
      h('input', {
        type: 'radio', name: 'runtime', id: `runtime-${r.name}`, value: r.name, checked: r.name === current,
        onchange: () => { current = r.name; drawKeys(); },
      }),
      h('span', { class: 'runtime-card' },
        h('span', { class: 'runtime-name' }, r.name),
        h('span', { class: `workers ${Number(r.workers) > 0 ? 'has-workers' : 'no-workers'}` },
          `${Number(r.workers || 0)} worker${Number(r.workers) === 1 ? '' : 's'}`),
        h('span', { class: 'runtime-desc' }, r.description)))));

  function drawKeys() {
    inputs.clear();
    const runtime = runtimes.find((r) => r.name === current);
    const keys = runtime ? runtime.config_keys || [] : [];
    // An agent may be made before any worker offers its runtime; its runs then wait for one.
    const idle = runtime && !Number(runtime.workers)
      ? h('p', { class: 'alert alert-warn' }, `No connected worker offers ${current} yet: this agent's executions will wait until one does.`)
      : null;
    if (!keys.length) {
      put(keysBox, idle, h('p', { class: 'muted' }, `${current} takes no runtime configuration.`));
      return;
    }
    const keep = current === (agent && agent.runtime) ? initialRuntimeConfig : {};
    put(keysBox, idle,
      h('h3', {}, `Configuration of ${current}`),
      h('p', { class: 'muted' }, 'Leave a key empty to use its default. Arrays and objects are JSON.'),
      h('div', { class: 'key-grid' }, keys.map((k) => {
        const input = keyInput(k, keep[k.name]);
        inputs.set(k.name, [k, input]);
        return h('div', { class: 'key-row' },
          h('label', { for: input.id }, h('code', {}, k.name), h('span', { class: 'type' }, k.type)),
          input,
          h('p', { class: 'hint', id: `${input.id}-hint` }, k.description));
      })));
  }

  async function onSubmit(event) {
    event.preventDefault();
    put(message);
    submit.disabled = true;
    try {
      const base = parseJsonInput(extraJson.value, 'Other configuration') ?? {};
      if (typeof base !== 'object' || Array.isArray(base)) throw new Error('Other configuration must be a JSON object');
      const runtimeConfig = { ...(base.runtime_config || {}) };
      for (const [key, [info, input]] of inputs) {
        const value = readKey(info, input);
        if (value === undefined) delete runtimeConfig[key]; else runtimeConfig[key] = value;
      }
      const configuration = { ...base };
      if (Object.keys(runtimeConfig).length) configuration.runtime_config = runtimeConfig;
      else delete configuration.runtime_config;
      const body = { runtime: current, model_id: model.value.trim(), configuration };
      let saved;
      if (agent) {
        saved = await api.updateAgent(agent.id, { ...body, expected_version: agent.version });
        toast(`Saved ${saved.name} (version ${saved.version})`);
      } else {
        saved = await api.createAgent({ name: name.value.trim(), ...body });
        toast(`Created ${saved.name}`);
      }
      navigate('#/agents');
    } catch (error) {
      put(message, errorBox(error));
      message.querySelector('[role=alert]')?.scrollIntoView({ block: 'nearest' });
    } finally {
      submit.disabled = false;
    }
  }

  const archive = agent && agent.status !== 'archived'
    ? h('button', {
      type: 'button', class: 'btn btn-danger', id: 'archive-agent',
      onclick: async () => {
        if (!window.confirm(`Archive ${agent.name}? Running executions are not affected.`)) return;
        try {
          await api.archiveAgent(agent.id);
          toast(`Archived ${agent.name}`);
          navigate('#/agents');
        } catch (error) { put(message, errorBox(error)); }
      },
    }, 'Archive')
    : null;

  put(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/agents' }, 'Agents'), ' / ', agent ? agent.name : 'New'),
    pageHeader(agent ? `Edit ${agent.name}` : 'New agent',
      agent ? h('a', { class: 'btn', href: `#/executions?agent=${encodeURIComponent(agent.name)}` }, 'Executions') : null, archive),
    h('form', { class: 'card agent-form', onsubmit: onSubmit, novalidate: false },
      h('div', { class: 'grid-2' },
        field('Name', name, agent ? `id ${shortId(agent.id)} · version ${agent.version}` : 'Unique among active agents.'),
        field('Model', model, 'Optional; the runtime decides what it means.')),
      selector,
      keysBox,
      h('details', { class: 'advanced', open: Object.keys(extra).length > 0 },
        h('summary', {}, 'Other configuration (JSON)'),
        field('Configuration beside runtime_config', extraJson, 'A JSON object; merged with the keys above.')),
      message,
      h('div', { class: 'form-actions' }, h('a', { href: '#/agents', class: 'btn' }, 'Cancel'), submit)));
  drawKeys();
  (agent ? model : name).focus();
}

/** An input for one configuration key, by its JSON type. */
function keyInput(key, value) {
  const id = `cfg-${key.name}`;
  const has = value !== undefined && value !== null;
  if (key.type === 'integer' || key.type === 'number') {
    return h('input', { id, name: key.name, type: 'number', step: key.type === 'integer' ? '1' : 'any', inputmode: 'numeric', value: has ? value : '', 'aria-describedby': `${id}-hint` });
  }
  if (key.type === 'boolean') {
    return h('select', { id, name: key.name, 'aria-describedby': `${id}-hint` },
      h('option', { value: '', selected: !has }, 'default'),
      h('option', { value: 'true', selected: value === true }, 'true'),
      h('option', { value: 'false', selected: value === false }, 'false'));
  }
  if (key.type === 'string' && /instruction|prompt/.test(key.name)) {
    return h('textarea', { id, name: key.name, rows: 3, 'aria-describedby': `${id}-hint` }, has ? value : '');
  }
  if (key.type === 'string') {
    return h('input', { id, name: key.name, type: 'text', value: has ? value : '', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': `${id}-hint` });
  }
  return h('input', { id, name: key.name, type: 'text', class: 'mono', value: has ? JSON.stringify(value) : '', autocomplete: 'off', spellcheck: 'false', placeholder: key.type.startsWith('array') ? '[ ]' : '{ }', 'aria-describedby': `${id}-hint` });
}

/** The value of a key's input, or undefined when empty; an error names the key. */
function readKey(key, input) {
  const raw = input.value.trim();
  if (raw === '') return undefined;
  if (key.type === 'integer' || key.type === 'number') {
    const n = Number(raw);
    if (!Number.isFinite(n) || (key.type === 'integer' && !Number.isInteger(n))) {
      throw new Error(`runtime_config.${key.name} must be ${key.type === 'integer' ? 'an integer' : 'a number'}`);
    }
    return n;
  }
  if (key.type === 'boolean') return raw === 'true';
  if (key.type === 'string') return input.value;
  return parseJsonInput(raw, `runtime_config.${key.name}`);
}
