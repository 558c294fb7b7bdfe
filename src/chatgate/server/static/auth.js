// The admin key: asked for once, kept in this tab's sessionStorage (never in the DOM
// after it is given, never in a URL, never logged), sent as a bearer token.
import { byId } from './dom.js';

const STORE = 'chatgate.adminKey';
let pending = null;

/** The admin key given in this tab, if any. */
export function storedKey() {
  try {
    return window.sessionStorage.getItem(STORE);
  } catch {
    return null;
  }
}

/** Forget the admin key (the next call that needs one asks again). */
export function forgetKey() {
  try {
    window.sessionStorage.removeItem(STORE);
  } catch {
    // storage refused (private mode): nothing was kept
  }
  byId('forget-key').hidden = true;
}

/** Ask for the admin key in a dialog; resolves once given, rejects on Cancel/Escape.
 * Calls that fail at the same time share the one dialog. */
export function askForKey(reason) {
  if (pending !== null) return pending;
  const dialog = byId('auth-dialog');
  const form = byId('auth-form');
  const input = byId('auth-key');
  byId('auth-reason').textContent = reason
    ? `${reason} The key is kept in this tab only (session storage).`
    : 'This chatgate has keys: give an admin key. It is kept in this tab only (session storage).';
  pending = new Promise((resolve, reject) => {
    const done = () => {
      const value = dialog.returnValue === 'ok' ? input.value.trim() : '';
      input.value = '';
      form.removeEventListener('submit', onSubmit);
      pending = null;
      if (value) {
        try {
          window.sessionStorage.setItem(STORE, value);
        } catch {
          reject(new Error('this browser refuses session storage; the key cannot be kept'));
          return;
        }
        byId('forget-key').hidden = false;
        resolve();
      } else {
        reject(new Error('an admin key is needed for this'));
      }
    };
    const onSubmit = (event) => {
      // An empty key is not an answer: keep the dialog open (Cancel has formnovalidate).
      if (event.submitter?.value === 'ok' && !input.value.trim()) {
        event.preventDefault();
        input.focus();
      }
    };
    form.addEventListener('submit', onSubmit);
    dialog.addEventListener('close', done, {once: true});
    dialog.returnValue = '';
    dialog.showModal();
    input.focus();
  });
  return pending;
}

/** Wire the header's "Forget admin key" button. */
export function setupAuth() {
  const button = byId('forget-key');
  button.hidden = storedKey() === null;
  button.addEventListener('click', forgetKey);
}
