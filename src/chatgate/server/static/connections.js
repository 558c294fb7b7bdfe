// The API Connections panel: the list (config connections read-only), the form, and
// the keys of the connection being edited.
import { api, seg } from './api.js';
import { edit, editing, keysChanged, setupForm } from './conn_form.js';
import { confirmAction } from './dialogs.js';
import { actionButton, byId, h } from './dom.js';
import { setupKeys, showKeys } from './keys.js';
import { alertError, announce, clearAlert } from './status.js';

let known = [];

function row(conn) {
  const actions = h('td', {class: 'actions'},
    actionButton(conn.read_only ? 'View' : 'Edit', conn.name, () => open(conn.name)));
  if (!conn.read_only) {
    actions.append(actionButton('Delete', conn.name, () => remove(conn), 'danger'));
  }
  return h('tr', {'data-name': conn.name},
    h('th', {scope: 'row'}, conn.name),
    h('td', {}, conn.source_name || conn.source),
    h('td', {}, conn.read_only ? 'config file (read-only)' : 'store',
      // A store connection that cannot serve (its key unreadable, say) says why.
      conn.unavailable ? h('p', {class: 'field-error'}, `Not serving: ${conn.unavailable}`) : ''),
    h('td', {class: 'mono'}, conn.api_key || '—'),
    actions);
}

async function open(name) {
  clearAlert();
  try {
    const conn = await api(`/api/connections/${seg(name)}`);
    await edit(conn);
    byId('conn-form-title').scrollIntoView({block: 'nearest'});
    const first = [...byId('conn-fields').querySelectorAll('input, select')]
      .find((input) => !input.disabled && !input.closest('[hidden]'));
    (byId('conn-fields').disabled || !first ? byId('conn-connect') : first).focus();
  } catch (error) {
    alertError(error);
  }
}

async function remove(conn) {
  const sure = await confirmAction(`Delete connection "${conn.name}"?`,
    'Its keys are erased and its models stop answering at once.', 'Delete connection');
  if (!sure) return;
  clearAlert();
  try {
    await api(`/api/connections/${seg(conn.name)}`, {method: 'DELETE'});
    if (editing()?.name === conn.name) await edit(null);
    await refresh();
    byId('conn-new').focus(); // its row, and the button that had the focus, are gone
    announce(`Connection ${conn.name} deleted.`);
  } catch (error) {
    alertError(error);
  }
}

/** Read the list again, and tell the other panels (event chatgate:connections). */
export async function refresh() {
  const answer = await api('/api/connections');
  known = answer.connections || [];
  byId('conn-rows').replaceChildren(...(known.length ? known.map(row)
    : [h('tr', {}, h('td', {colspan: 5}, 'No connections yet.'))]));
  document.dispatchEvent(new CustomEvent('chatgate:connections', {detail: known}));
}

/** The connections as last read. */
export function connections() {
  return known;
}

/** Build the panel. */
export async function setupConnections() {
  setupKeys(async (conn) => {
    keysChanged(conn);
    await refresh();
  });
  await setupForm({
    saved: () => refresh().catch(alertError),
    editing: (conn) => showKeys(conn),
  });
  await refresh();
}
