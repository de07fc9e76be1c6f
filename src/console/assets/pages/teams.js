// Teams: the list, one team (its members and strategy), and the form that creates one.

import { api } from '../api.js';
import {
  h, pageHeader, statusBadge, fmtAgo, fmtTime, field, select, facts, errorBox, emptyState, toast,
  prettyJson,
  put,
} from '../ui.js';

const STRATEGIES = [
  ['sequential', 'sequential: each member gets the previous member’s output'],
  ['parallel', 'parallel: all at once, optionally an aggregator writes the answer'],
  ['supervisor', 'supervisor: a leader picks the next member'],
];

function memberNames(team) {
  return (team.members || []).map((m) => (m.role ? `${m.agent} (${m.role})` : m.agent)).join(', ');
}

export async function renderList({ main, signal }) {
  const { teams = [] } = await api.teams({ page_size: 1000 }, signal);
  put(main,
    pageHeader('Teams', h('a', { href: '#/teams/new', class: 'btn btn-primary' }, 'New team')),
    teams.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
      h('caption', { class: 'visually-hidden' }, 'Teams'),
      h('thead', {}, h('tr', {}, ['Name', 'Strategy', 'Members', 'Status', 'Updated'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, teams.map((t) => h('tr', {},
        h('td', { 'data-label': 'Name' }, h('a', { href: `#/teams/${encodeURIComponent(t.id)}` }, t.name)),
        h('td', { 'data-label': 'Strategy' }, h('span', { class: 'tag' }, t.strategy)),
        h('td', { 'data-label': 'Members' }, memberNames(t)),
        h('td', { 'data-label': 'Status' }, statusBadge(t.status)),
        h('td', { 'data-label': 'Updated' }, fmtAgo(t.updated_at_ms)))))))
      : emptyState('No teams yet. A team runs its member agents as child executions, each on its own runtime.',
        h('a', { href: '#/teams/new', class: 'btn btn-primary' }, 'Create a team')));
}

export async function renderOne({ main, params, signal, navigate }) {
  const team = await api.team(params[0], signal);
  const message = h('div', { 'aria-live': 'polite' });
  const archive = team.status === 'archived' ? null : h('button', {
    type: 'button', class: 'btn btn-danger', id: 'archive-team',
    onclick: async () => {
      if (!window.confirm(`Archive ${team.name}? Running executions are not affected.`)) return;
      try {
        await api.archiveTeam(team.id);
        toast(`Archived ${team.name}`);
        navigate('#/teams');
      } catch (error) { put(message, errorBox(error)); }
    },
  }, 'Archive');
  const configuration = team.configuration ?? team.configuration_json;
  put(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/teams' }, 'Teams'), ' / ', team.name),
    h('div', { class: 'page-header' },
      h('div', { class: 'title-row' }, h('h1', {}, team.name), statusBadge(team.status)),
      h('div', { class: 'actions' },
        team.status === 'archived' ? null
          : h('a', { class: 'btn btn-primary', href: `#/executions?team=${encodeURIComponent(team.name)}&new=1` }, 'Run'),
        archive)),
    message,
    h('div', { class: 'grid-2' },
      h('section', { class: 'card' }, h('h2', {}, 'Definition'), facts([
        ['Strategy', team.strategy],
        ['Version', String(team.version ?? '')],
        ['Created', fmtTime(team.created_at_ms)],
        ['Updated', fmtTime(team.updated_at_ms)],
        ['ID', h('span', { class: 'mono small' }, team.id)],
      ]), configuration ? h('pre', { class: 'json' }, prettyJson(configuration)) : null),
      h('section', { class: 'card' }, h('h2', {}, 'Members'),
        h('ol', { class: 'members' }, (team.members || []).map((m) => h('li', {},
          h('a', { href: `#/agents/${encodeURIComponent(m.agent_id || m.agent)}` }, m.agent),
          m.role ? h('span', { class: 'muted' }, ` — ${m.role}`) : null))))));
}

export async function renderNew({ main, signal, navigate }) {
  const { agents = [] } = await api.agents({ page_size: 1000 }, signal);
  const agentOptions = agents.map((a) => [a.name, `${a.name} (${a.runtime})`]);
  const name = h('input', { id: 'team-name', required: true, autocomplete: 'off', spellcheck: 'false' });
  const strategy = select({ id: 'team-strategy' }, STRATEGIES, 'sequential');
  const aggregator = select({ id: 'team-aggregator' }, [['', 'none'], ...agentOptions], '');
  const leader = select({ id: 'team-leader' }, [['', 'none'], ...agentOptions], '');
  const continueOnFailure = h('input', { type: 'checkbox', id: 'team-continue' });
  const members = h('ol', { class: 'member-rows' });
  const message = h('div', { 'aria-live': 'polite' });
  let n = 0;
  const addMember = () => {
    n += 1;
    const agent = select({ id: `member-agent-${n}`, 'aria-label': `Member ${n} agent` }, agentOptions, agentOptions[0]?.[0]);
    const role = h('input', { id: `member-role-${n}`, 'aria-label': `Member ${n} role`, placeholder: 'role (optional)', autocomplete: 'off' });
    const row = h('li', { class: 'member-row' }, agent, role,
      h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Remove member ${n}`, onclick: () => row.remove() }, 'Remove'));
    members.append(row);
    agent.focus();
  };
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'save-team' }, 'Create team');
  put(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/teams' }, 'Teams'), ' / New'),
    pageHeader('New team'),
    agents.length ? h('form', {
      class: 'card',
      onsubmit: async (event) => {
        event.preventDefault();
        submit.disabled = true;
        try {
          const body = {
            name: name.value.trim(),
            strategy: strategy.value,
            members: [...members.children].map((row) => ({
              agent: row.querySelector('select').value, role: row.querySelector('input').value.trim(),
            })),
            aggregator: aggregator.value,
            leader: leader.value,
            continue_on_failure: continueOnFailure.checked,
          };
          const team = await api.createTeam(body);
          toast(`Created ${team.name}`);
          navigate(`#/teams/${encodeURIComponent(team.id)}`);
        } catch (error) {
          put(message, errorBox(error));
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('div', { class: 'grid-2' }, field('Name', name), field('Strategy', strategy)),
    h('fieldset', {}, h('legend', {}, 'Members, in order'), members,
      h('button', { type: 'button', class: 'btn', id: 'add-member', onclick: addMember }, 'Add member')),
    h('div', { class: 'grid-2' },
      field('Aggregator (parallel)', aggregator), field('Leader (supervisor)', leader)),
    h('div', { class: 'check' }, continueOnFailure, h('label', { for: 'team-continue' }, 'Continue when a member fails')),
    message,
    h('div', { class: 'form-actions' }, h('a', { href: '#/teams', class: 'btn' }, 'Cancel'), submit))
      : emptyState('A team is made of agents: create an agent first.', h('a', { href: '#/agents/new', class: 'btn btn-primary' }, 'New agent')));
  if (agents.length) { addMember(); name.focus(); }
}
