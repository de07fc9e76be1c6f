// Sign-in with a client token, shown when the server answers 401. The token stays in this tab's
// sessionStorage and is sent as `Authorization: Bearer` with every call.

import { api, setToken, ApiError } from '../api.js';
import { h, field, errorBox, put } from '../ui.js';

export function render({ main, signedIn }) {
  const input = h('input', {
    type: 'password', id: 'token', name: 'token', autocomplete: 'current-password', required: true,
    spellcheck: 'false',
  });
  const message = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Sign in');
  const form = h('form', { class: 'card signin', onsubmit: onSubmit },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'This server requires a client token. Ask its operator for one; it is kept only in this browser tab.'),
    field('Client token', input),
    message,
    h('div', { class: 'form-actions' }, submit));
  put(main, form);
  input.focus();

  async function onSubmit(event) {
    event.preventDefault();
    submit.disabled = true;
    setToken(input.value.trim());
    try {
      await api.runtimes();
      signedIn();
    } catch (error) {
      setToken('');
      put(message, errorBox(error instanceof ApiError && error.status === 401
        ? { code: 'unauthenticated', message: 'The server refused this token.' }
        : error));
      input.focus();
    } finally {
      submit.disabled = false;
    }
  }
}
