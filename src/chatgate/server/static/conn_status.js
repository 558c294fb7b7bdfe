// The connection's status light: a colour and a shape (style.css), always with the
// reason in words beside it, inside a role=status region.
import { byId } from './dom.js';

/** Set the light to *state* (ok, error, bypassed, unchecked, checking, unknown). */
export function setLight(state, text) {
  byId('conn-status').querySelector('.light').dataset.state = state;
  byId('conn-status-text').textContent = text;
}

/** Show the status call's answer as the light and its reason. */
export function showStatus(status) {
  const reason = status.message || status.warning || status.error || status.note || '';
  const texts = {
    ok: () => `Connected: ${status.models ?? 0} models listed (${status.latency_ms ?? '?'} ms)` +
      (status.note ? `. ${status.note}` : ''),
    error: () => `Not connected: ${reason || 'the status check failed'}`,
    bypassed: () => `Status check bypassed: ${reason}`,
    unchecked: () => `Not checked: ${reason}`,
  };
  const state = status.status in texts ? status.status : 'unknown';
  setLight(state, state === 'unknown' ? `Status: ${status.status || 'unknown'} ${reason}`.trim()
    : texts[state]());
}

