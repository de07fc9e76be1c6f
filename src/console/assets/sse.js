// Server-Sent Events read with fetch, not EventSource: EventSource cannot send the
// `Authorization` header a signed-in console needs. The stream is resumed after a broken
// connection with `Last-Event-ID` (the last output seq seen), so output arrives gapless and once.

import { authHeaders, url, ApiError } from './api.js';

/**
 * Follows `path` until `signal` aborts or `onEvent` returns `'done'` (e.g. at the closing event).
 * Calls `onEvent({event, data, id})` for each event (data parsed as JSON when it is JSON) and
 * `onState('live' | 'reconnecting' | 'ended', detail)` as the connection changes.
 */
export async function follow(path, { signal, onEvent, onState = () => {}, lastEventId = '' }) {
  let last = lastEventId;
  let delay = 500;
  while (!signal.aborted) {
    try {
      const headers = authHeaders({ Accept: 'text/event-stream' });
      if (last) headers['Last-Event-ID'] = last;
      const response = await fetch(url(path), { headers, signal, cache: 'no-store' });
      if (!response.ok) {
        let message = response.statusText;
        try { message = (await response.json()).error.message; } catch { /* not JSON */ }
        throw new ApiError(response.status, `http_${response.status}`, message);
      }
      onState('live');
      delay = 500;
      const done = await read(response.body, signal, (ev) => {
        if (ev.id) last = ev.id;
        if (ev.retry) delay = ev.retry;
        return onEvent(ev);
      });
      if (done) {
        onState('ended');
        return;
      }
    } catch (error) {
      if (signal.aborted) return;
      // A refusal (bad id, no access) will not get better by asking again.
      if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
        onState('ended', error);
        return;
      }
      onState('reconnecting', error);
    }
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 10_000);
  }
}

/** Reads one response body as SSE; true when `dispatch` said the stream is done. */
async function read(body, signal, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = { event: 'message', data: [], id: '', retry: 0 };
  try {
    while (!signal.aborted) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += value;
      let newline;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
        if (line === '') {
          if (event.data.length) {
            const text = event.data.join('\n');
            let data = text;
            try { data = JSON.parse(text); } catch { /* plain text */ }
            if (dispatch({ event: event.event, data, id: event.id, retry: event.retry }) === 'done') {
              return true;
            }
          }
          event = { event: 'message', data: [], id: event.id, retry: 0 };
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const name = colon < 0 ? line : line.slice(0, colon);
        const raw = colon < 0 ? '' : line.slice(colon + 1);
        const fieldValue = raw.startsWith(' ') ? raw.slice(1) : raw;
        if (name === 'data') event.data.push(fieldValue);
        else if (name === 'event') event.event = fieldValue;
        else if (name === 'id') event.id = fieldValue;
        else if (name === 'retry' && /^\d+$/.test(fieldValue)) event.retry = Number(fieldValue);
      }
    }
    return false;
  } finally {
    reader.cancel().catch(() => {});
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
