// Modal questions on native <dialog>s: focus moves in, Escape closes (as Cancel), and
// focus goes back to where it was.
import { byId } from './dom.js';

function run(dialog, setUp) {
  const back = document.activeElement;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'ok');
      if (back instanceof HTMLElement && back.isConnected) back.focus();
    }, {once: true});
    dialog.returnValue = '';
    setUp();
    dialog.showModal();
  });
}

/** Ask "are you sure?"; true when confirmed. */
export function confirmAction(title, text, okLabel) {
  byId('confirm-title').textContent = title;
  byId('confirm-text').textContent = text;
  byId('confirm-ok').textContent = okLabel;
  return run(byId('confirm-dialog'), () => {});
}

/** Ask for a new secret for key *label*; the secret, or null when cancelled. The input
 * is emptied before this returns, so the secret never stays in the page. */
export async function askNewKey(label) {
  const input = byId('rotate-key');
  byId('rotate-title').textContent = `Rotate key "${label}"`;
  const ok = await run(byId('rotate-dialog'), () => { input.value = ''; });
  const value = input.value.trim();
  input.value = '';
  return ok && value ? value : null;
}
