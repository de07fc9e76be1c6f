// The console's shell: hash routes (`#/executions/ID`), the navigation, the session, and the
// sign-in page when the server asks for a token. Each page module exports `render(ctx)`; the
// page's `ctx.signal` aborts when the user leaves it, which stops its polls and streams.

import { ApiError, token, setToken, namespace, setNamespace } from './api.js';
import { h, errorBox, put } from './ui.js';
import * as executions from './pages/executions.js';
import * as execution from './pages/execution.js';
import * as agents from './pages/agents.js';
import * as teams from './pages/teams.js';
import * as workers from './pages/workers.js';
import * as dashboard from './pages/dashboard.js';
import * as signin from './pages/signin.js';

const ROUTES = [
  [/^executions$/, 'executions', executions.renderList],
  [/^executions\/([^/]+)$/, 'executions', execution.render],
  [/^agents$/, 'agents', agents.renderList],
  [/^agents\/new$/, 'agents', agents.renderNew],
  [/^agents\/([^/]+)$/, 'agents', agents.renderEdit],
  [/^teams$/, 'teams', teams.renderList],
  [/^teams\/new$/, 'teams', teams.renderNew],
  [/^teams\/([^/]+)$/, 'teams', teams.renderOne],
  [/^workers$/, 'workers', workers.render],
  [/^dashboard$/, 'dashboard', dashboard.render],
  [/^signin$/, '', signin.render],
];

let current = null;
let afterSignIn = '#/executions';

/** Parses `#/path?query` into its path and query parameters. */
function parseHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#\/?/, '')) || 'executions';
  const [path, qs = ''] = raw.split('?');
  return { path: path.replace(/\/+$/, ''), query: new URLSearchParams(qs) };
}

/** Goes to `hash`; with `replace`, without a new history entry (e.g. a filter change). */
export function navigate(hash, { replace = false } = {}) {
  if (replace) {
    history.replaceState(null, '', hash);
    route(false);
  } else {
    location.hash = hash;
  }
}

function route(moveFocus = true) {
  // A redraw in place (a filter changed) gives the focus back to the control that changed it.
  const keep = moveFocus ? '' : document.activeElement?.id || '';
  if (current) current.abort();
  const controller = new AbortController();
  current = controller;
  const { path, query } = parseHash();
  const main = document.getElementById('main');
  const found = ROUTES.map(([re, nav, render]) => [path.match(re), nav, render]).find(([m]) => m);
  for (const link of document.querySelectorAll('[data-nav]')) {
    const active = found && link.dataset.nav === found[1];
    if (active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  renderSession();
  if (!found) {
    put(main, h('h1', {}, 'Not found'),
      h('p', {}, 'No page here. ', h('a', { href: '#/executions' }, 'Go to executions.')));
    return;
  }
  const [match, , render] = found;
  const ctx = {
    main,
    params: match.slice(1).map(decodeURIComponent),
    query,
    signal: controller.signal,
    navigate,
    signedIn,
  };
  put(main);
  Promise.resolve()
    .then(() => {
      const done = render(ctx);
      // The page's controls exist once its first data is drawn (before its polls settle).
      // (A failed render is reported by the `catch` below, not by this side chain.)
      if (keep) {
        Promise.resolve(done).then(() => document.getElementById(keep)?.focus(), () => {});
      }
      return done;
    })
    .catch((error) => {
      if (controller.signal.aborted) return;
      if (error instanceof ApiError && error.status === 401) return; // the sign-in page follows
      put(main, errorBox(error));
    });
  // After a click in the navigation, keyboard focus moves to the page, as a page load would.
  if (moveFocus) main.focus({ preventScroll: true });
}

function renderSession() {
  const box = document.getElementById('session');
  // The namespace box is made once, so it keeps its focus and what is typed in it.
  if (!document.getElementById('namespace')) box.append(namespaceForm());
  const signed = document.getElementById('signed') || box.appendChild(h('span', { id: 'signed', class: 'signed' }));
  put(signed, token()
    ? [h('span', { class: 'muted' }, 'Signed in'),
      h('button', { type: 'button', class: 'btn btn-small', onclick: signOut }, 'Sign out')]
    : null);
}

function namespaceForm() {
  const ns = h('input', {
    id: 'namespace', name: 'namespace', value: namespace() || 'default', autocomplete: 'off',
    spellcheck: 'false', size: 10, title: 'The namespace agents, teams and executions are listed and created in',
  });
  // A new namespace redraws the page in it (Enter, or leaving the field).
  const apply = () => {
    if ((ns.value.trim() || 'default') === (namespace() || 'default')) return;
    setNamespace(ns.value);
    route(false);
  };
  ns.addEventListener('change', apply);
  return h('form', {
    class: 'namespace', 'aria-label': 'Namespace',
    onsubmit: (e) => { e.preventDefault(); apply(); },
  }, h('label', { for: 'namespace' }, 'Namespace'), ns);
}

function signOut() {
  setToken('');
  afterSignIn = location.hash || '#/executions';
  navigate('#/signin');
}

/** After a successful sign-in: back to where the user was sent away from. */
function signedIn() {
  navigate(afterSignIn === '#/signin' ? '#/executions' : afterSignIn);
}

window.addEventListener('cairn:unauthenticated', () => {
  if (location.hash.startsWith('#/signin')) return;
  afterSignIn = location.hash || '#/executions';
  navigate('#/signin');
});
window.addEventListener('hashchange', () => route(true));
route(false);
