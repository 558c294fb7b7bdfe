// The keys of a store connection: add one with a label, make one active, rotate a
// secret, delete. Secrets go to the server and their inputs are emptied at once; only
// the masked forms the server answers with are ever shown.
import { api, seg } from './api.js';
import { askNewKey, confirmAction } from './dialogs.js';
import { actionButton, byId, h, when } from './dom.js';
import { clearFieldErrors, missingRequired, showFieldError } from './fields.js';
import { alertError, announce, clearAlert } from './status.js';

let conn = null;
let changed = () => {};

async function reload(message) {
  conn = await api(`/api/connections/${seg(conn.name)}`);
  render();
  changed(conn);
  announce(message);
}

async function act(run, message) {
  clearAlert();
  try {
    await run();
    await reload(message);
  } catch (error) {
    alertError(error);
  }
}

function row(key) {
  const path = `/api/connections/${seg(conn.name)}/keys/${seg(key.label)}`;
  const target = `key ${key.label}`;
  const actions = h('td', {class: 'actions'});
  if (!key.active) {
    actions.append(actionButton('Activate', target, () => act(
      () => api(`${path}/activate`, {method: 'POST'}), `Key ${key.label} is now active.`)));
  }
  actions.append(actionButton('Rotate', target, async () => {
    const secret = await askNewKey(key.label);
    if (secret === null) return;
    await act(() => api(path, {method: 'PUT', body: {key: secret}}), `Key ${key.label} rotated.`);
  }));
  actions.append(actionButton('Delete', target, async () => {
    const sure = await confirmAction(`Delete key "${key.label}"?`,
      'The secret is erased from the store; it cannot be shown again.', 'Delete key');
    if (sure) await act(() => api(path, {method: 'DELETE'}), `Key ${key.label} deleted.`);
  }, 'danger'));
  const masked = key.readable === false
    ? `${key.masked} (unreadable: ${key.problem || "the store's key file changed"}; add it again)`
    : key.masked;
  return h('tr', {'data-label': key.label},
    h('th', {scope: 'row'}, key.label),
    h('td', {class: 'mono'}, masked),
    h('td', {}, key.active ? 'active' : ''),
    h('td', {}, when(key.created_at)),
    actions);
}

// Which row and button had the focus, so that it can come back after the rows are
// drawn again (an Activate button goes away once its key is active: then the row's first).
function focusedAction() {
  const button = document.activeElement;
  const tr = button?.closest?.('#keys-rows tr');
  return tr ? {label: tr.dataset.label, text: button.firstChild?.textContent} : null;
}

function refocus(where) {
  if (where === null) return;
  const rows = [...byId('keys-rows').querySelectorAll('tr')];
  const tr = rows.find((r) => r.dataset.label === where.label);
  const buttons = tr ? [...tr.querySelectorAll('button')] : [];
  (buttons.find((b) => b.firstChild?.textContent === where.text) || buttons[0] || byId('key-label'))
    .focus();
}

function render() {
  const section = byId('keys');
  section.hidden = conn === null || Boolean(conn.read_only);
  if (section.hidden) return;
  const where = focusedAction();
  byId('keys-title').textContent = `Keys of ${conn.name}`;
  const keys = conn.keys || [];
  byId('keys-rows').replaceChildren(...(keys.length ? keys.map(row)
    : [h('tr', {}, h('td', {colspan: 5}, 'No key: requests go without one.'))]));
  refocus(where);
}

async function add(event) {
  event.preventDefault();
  const form = byId('key-add-form');
  clearFieldErrors(form);
  if (missingRequired(form)) return;
  const body = {
    label: byId('key-label').value.trim(),
    key: byId('key-secret').value.trim(),
    activate: byId('key-activate').checked,
  };
  byId('key-secret').value = '';
  clearAlert();
  try {
    await api(`/api/connections/${seg(conn.name)}/keys`, {method: 'POST', body});
    form.reset();
    await reload(`Key ${body.label} added.`);
  } catch (error) {
    if (!showFieldError(form, error.param, error.message)) alertError(error);
  }
}

/** Show the keys of *connection* (hidden for none, and for read-only connections). */
export function showKeys(connection) {
  conn = connection;
  render();
}

/** Wire the add form; *onChange(conn)* runs after each change with the fresh connection. */
export function setupKeys(onChange) {
  changed = onChange;
  byId('key-add-form').addEventListener('submit', add);
}
