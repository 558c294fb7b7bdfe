// The page's two live regions: polite news (role=status) and errors (role=alert).
import { byId } from './dom.js';

let timer = 0;

/** Say *text* in the status bar (read out politely by screen readers). */
export function announce(text) {
  const bar = byId('status');
  bar.textContent = text;
  window.clearTimeout(timer);
  timer = window.setTimeout(() => { bar.textContent = ''; }, 8000);
}

/** Show an error in the alert bar until the next one or until cleared. */
export function alertError(error) {
  const bar = byId('alert');
  bar.textContent = error ? `Error: ${error.message || error}` : '';
}

/** Clear the alert bar. */
export function clearAlert() {
  byId('alert').textContent = '';
}
