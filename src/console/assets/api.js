// The console's only way to the server: `/api/v1`, as any client, with the token the user signed
// in with (kept in sessionStorage, so it ends with the tab) as `Authorization: Bearer`.

const TOKEN_KEY = 'cairn.token';
const NAMESPACE_KEY = 'cairn.namespace';

/** A refused or failed call: the API's `{"error": {"code", "message"}}` and the HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** The namespace the console works in ('' is the server's `default`); kept across tabs. */
export function namespace() {
  return localStorage.getItem(NAMESPACE_KEY) || '';
}

export function setNamespace(value) {
  const v = String(value || '').trim();
  if (v && v !== 'default') localStorage.setItem(NAMESPACE_KEY, v);
  else localStorage.removeItem(NAMESPACE_KEY);
}

/** `{namespace}` for the calls that take one, when it is not the default. */
const ns = () => (namespace() ? { namespace: namespace() } : {});

/** The headers every call carries. */
export function authHeaders(extra = {}) {
  const headers = { Accept: 'application/json', ...extra };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  return headers;
}

/** `path` under `/api/v1` with the query parameters that are set (arrays repeat the key). */
export function url(path, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, String(v));
  }
  const qs = params.toString();
  return `/api/v1${path}${qs ? `?${qs}` : ''}`;
}

/**
 * Calls the API and returns the decoded JSON body. A 401 also tells the app to show the sign-in
 * page (the `cairn:unauthenticated` event).
 */
export async function call(method, path, { query, body, signal } = {}) {
  const headers = authHeaders(body === undefined ? {} : { 'Content-Type': 'application/json' });
  const response = await fetch(url(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    const e = data && data.error;
    const error = new ApiError(response.status, (e && e.code) || `http_${response.status}`,
      (e && e.message) || text || response.statusText);
    if (response.status === 401) window.dispatchEvent(new CustomEvent('cairn:unauthenticated'));
    throw error;
  }
  return data;
}

export const get = (path, query, signal) => call('GET', path, { query, signal });
export const post = (path, body) => call('POST', path, { body: body ?? {} });
export const patch = (path, body) => call('PATCH', path, { body });

// The operations the pages use, named after the API's routes. Those that take a namespace get
// the console's (executions by id need none: ids are unique).
export const api = {
  runtimes: (signal) => get('/runtimes', {}, signal),
  agents: (query, signal) => get('/agents', { ...ns(), ...query }, signal),
  agent: (id, signal) => get(`/agents/${encodeURIComponent(id)}`, ns(), signal),
  createAgent: (body) => post('/agents', { ...ns(), ...body }),
  updateAgent: (id, body) => patch(`/agents/${encodeURIComponent(id)}`, { ...ns(), ...body }),
  archiveAgent: (id) => call('DELETE', `/agents/${encodeURIComponent(id)}`, { query: ns() }),
  teams: (query, signal) => get('/teams', { ...ns(), ...query }, signal),
  team: (id, signal) => get(`/teams/${encodeURIComponent(id)}`, ns(), signal),
  createTeam: (body) => post('/teams', { ...ns(), ...body }),
  archiveTeam: (id) => call('DELETE', `/teams/${encodeURIComponent(id)}`, { query: ns() }),
  executions: (query, signal) => get('/executions', { ...ns(), ...query }, signal),
  execution: (id, signal) => get(`/executions/${encodeURIComponent(id)}`, {}, signal),
  history: (id, signal) => get(`/executions/${encodeURIComponent(id)}/history`, {}, signal),
  start: (body) => post('/executions', { ...ns(), ...body }),
  cancel: (id, reason) => post(`/executions/${encodeURIComponent(id)}/cancel`, { reason }),
  retry: (id) => post(`/executions/${encodeURIComponent(id)}/retry`, {}),
  replay: (id) => post(`/executions/${encodeURIComponent(id)}/replay`, {}),
  // A person in the loop: the next message of a conversation, its close, and answers to the
  // tool calls a turn asks about. Each carries a request id, so a resend is one message or answer.
  send: (id, text, requestId) => post(`/executions/${encodeURIComponent(id)}/messages`, { text, request_id: requestId }),
  close: (id) => post(`/executions/${encodeURIComponent(id)}/close`, {}),
  resolve: (id, approvalId, body) => post(
    `/executions/${encodeURIComponent(id)}/approvals/${encodeURIComponent(approvalId)}`, body),
  stats: (query, signal) => get('/stats', { ...ns(), ...query }, signal),
  workers: (signal) => get('/workers', {}, signal),
};
