// The connection form, in the order a person works through it: API type, source (with
// its notes), URL, key, connect (save, then the status call and the models), the model,
// bypass, post-processing, the instruct template, the reverse proxy, Test Message.
import { api, seg } from './api.js';
import { catalogue, modeHelp, modeOptions } from './catalogue.js';
import { byId, h } from './dom.js';
import { clearFieldErrors, missingRequired, showFieldError } from './fields.js';
import { newBody, patchBody, snapshot, typedModel } from './conn_body.js';
import { setLight, showStatus } from './conn_status.js';
import { alertError, announce, clearAlert } from './status.js';

let current = null; // the connection being edited, as the API shows it; null: a new one
let manual = []; // its manual model ids, from the last models call
let hooks = {saved: () => {}, editing: () => {}};

const el = (id) => byId(id);

function sourceOf(id) {
  return catalogue().then(({sources}) => sources.find((s) => s.id === id) || null);
}

async function fillSources(apiType, selected) {
  const {sources} = await catalogue();
  const select = el('conn-source');
  // The embedded model comes from the config file only: shown, never offered.
  const offered = sources.filter(
    (s) => s.api === apiType && (s.id !== 'local' || selected === 'local'));
  select.replaceChildren(...offered.map((s) => h('option', {value: s.id}, s.name)));
  if (selected) select.value = selected;
  await applySource();
}

/** Show the fields the chosen source has, with its notes. */
async function applySource() {
  const source = await sourceOf(el('conn-source').value);
  if (!source) return;
  const notes = source.notes || {};
  el('conn-hint').textContent = notes.hint || '';
  el('conn-key-link').hidden = !notes.key_url;
  if (notes.key_url) {
    el('conn-key-url').href = notes.key_url;
    el('conn-key-url').textContent = notes.key_url;
  }
  const embedded = source.id === 'local';
  const proxied = source.reverse_proxy && Boolean(source.default_base_url);
  const urlField = el('conn-url-field');
  const url = el('conn-url');
  // A reverse proxy stands where the provider's own URL would: one base_url, shown
  // inside the proxy group beside its password.
  if (proxied) el('conn-proxy-help').insertAdjacentElement('afterend', urlField);
  else el('conn-key-field').insertAdjacentElement('beforebegin', urlField);
  urlField.hidden = embedded;
  url.required = !source.default_base_url && !embedded;
  el('conn-url-label').textContent = proxied ? 'Reverse proxy URL (optional)'
    : source.default_base_url ? 'Server URL (optional)' : 'Endpoint URL';
  url.placeholder = source.default_base_url || 'http://127.0.0.1:1234/v1';
  el('conn-url-help').textContent = source.default_base_url
    ? `Empty: ${source.default_base_url}.`
    : 'The server\'s base URL, with /v1 if it serves there; without /chat/completions.';
  el('conn-proxy').hidden = !source.reverse_proxy;
  el('conn-proxy-help').textContent = proxied
    ? 'To go through a proxy in front of the provider: its URL, and its password, which is '
      + 'sent instead of the API key.'
    : 'When the server is a proxy that wants a password: it is sent instead of the API key.';
  el('conn-key-field').hidden = embedded;
  el('conn-key').required = source.key_required && current === null;
  const pp = el('conn-pp');
  pp.disabled = Boolean(source.post_processing_forced);
  if (current === null || source.post_processing_forced) {
    pp.value = source.post_processing || 'none';
  }
  el('conn-pp-help').textContent = source.post_processing_forced
    ? `${source.name} needs this mode; it is always applied.`
    : modeHelp(pp.value);
  el('conn-template-field').hidden = source.api !== 'text';
}

async function loadModels(name) {
  const answer = await api(`/api/connections/${seg(name)}/models`);
  manual = answer.manual || [];
  const select = el('conn-model');
  const models = answer.models || [];
  select.replaceChildren(...(models.length ? models.map((m) => h('option', {value: m}, m))
    : [h('option', {value: ''}, 'No models listed: type an id below')]));
  if (answer.note) announce(answer.note);
}

/** The masked forms of the connection's secrets, beside their (empty) inputs. */
function showSecrets(conn) {
  const key = conn?.api_key ? `Current key: ${conn.api_key}. Leave empty to keep it.` : '';
  el('conn-key-current').hidden = !key;
  el('conn-key-current').textContent = key;
  const proxy = conn?.proxy_password ? `Current password: ${conn.proxy_password}.` : '';
  el('conn-proxy-current').hidden = !proxy;
  el('conn-proxy-current').textContent = proxy;
}

/** The connection in the form changed elsewhere (its keys): show it, keep the rest. */
export function keysChanged(conn) {
  if (current === null || current.name !== conn.name) return;
  current = {...conn, shown: current.shown};
  showSecrets(conn);
}

/** Start editing *conn* (null: a new connection). */
export async function edit(conn) {
  current = conn;
  manual = [];
  const form = el('conn-form');
  clearFieldErrors(form);
  form.reset();
  const apiType = conn ? conn.api || (await sourceOf(conn.source))?.api || 'chat' : 'chat';
  form.querySelector(`input[name="api"][value="${apiType}"]`).checked = true;
  await fillSources(apiType, conn?.source);
  const source = conn ? await sourceOf(conn.source) : null;
  if (conn) {
    const shown = snapshot(conn, source);
    el('conn-name').value = conn.name;
    el('conn-url').value = shown.base_url;
    el('conn-bypass').checked = shown.bypass_status_check;
    el('conn-pp').value = shown.post_processing;
    el('conn-template').value = shown.instruct_template;
    current = {...conn, shown};
  }
  showSecrets(conn);
  el('conn-fields').disabled = Boolean(conn?.read_only);
  for (const id of ['conn-name', 'conn-source']) el(id).disabled = conn !== null;
  for (const radio of form.querySelectorAll('input[name="api"]')) radio.disabled = conn !== null;
  el('conn-form-title').textContent = conn === null ? 'New connection'
    : conn.read_only ? `${conn.name} (from the config file, read-only)` : `Edit ${conn.name}`;
  el('conn-connect').textContent = conn === null ? 'Save and connect'
    : conn.read_only ? 'Connect' : 'Save and connect';
  el('conn-test').disabled = conn === null;
  el('conn-model').replaceChildren(h('option', {value: ''}, 'Connect to list the models'));
  el('conn-test-result').textContent = '';
  setLight('unknown', conn === null ? 'Not connected' : 'Not checked yet: press Connect');
  hooks.editing(current);
  // The dropdown of a saved connection is filled at once (a free call, cached upstream);
  // if it fails, Connect says why.
  if (conn !== null) await loadModels(conn.name).catch(() => {});
}

function forgetSecrets() {
  for (const id of ['conn-key', 'conn-proxy-password']) el(id).value = '';
}

function fail(error) {
  if (!showFieldError(el('conn-form'), error.param, error.message)) alertError(error);
}

/** Save (a new or changed store connection), then the status call and the models. */
async function connect(event) {
  event.preventDefault();
  const form = el('conn-form');
  clearFieldErrors(form);
  clearAlert();
  if (current === null) {
    // Behind a reverse proxy with a password, the provider's key is not needed.
    const source = await sourceOf(el('conn-source').value);
    const proxied = source.reverse_proxy && el('conn-url').value.trim()
      && el('conn-proxy-password').value.trim();
    el('conn-key').required = source.key_required && !proxied;
    if (missingRequired(form)) return;
  }
  const typed = typedModel();
  try {
    let conn = current;
    if (current === null) {
      conn = await api('/api/connections', {
        method: 'POST', body: newBody(await sourceOf(el('conn-source').value)),
      });
      announce(`Connection ${conn.name} saved.`);
    } else if (!current.read_only) {
      const patch = patchBody(current, await sourceOf(current.source), manual);
      if (Object.keys(patch).length) {
        conn = await api(`/api/connections/${seg(current.name)}`, {method: 'PATCH', body: patch});
        announce(`Connection ${conn.name} saved.`);
      }
    }
    forgetSecrets();
    if (conn !== current) {
      await edit(conn);
      hooks.saved(conn);
    }
    setLight('checking', 'Checking…');
    showStatus(await api(`/api/connections/${seg(conn.name)}/status`));
    await loadModels(conn.name);
    if (typed && [...el('conn-model').options].some((o) => o.value === typed)) {
      el('conn-model').value = typed;
    } else if (typed) el('conn-model-id').value = typed;
  } catch (error) {
    forgetSecrets();
    if (current !== null) setLight('error', `Not connected: ${error.message}`);
    fail(error);
  }
}

/** "Test Message": a real minimal request through the connection; reply and latency. */
async function testMessage() {
  if (current === null) return;
  const out = el('conn-test-result');
  const model = typedModel() || el('conn-model').value;
  out.textContent = 'Sending a test message…';
  try {
    const answer = await api(`/api/connections/${seg(current.name)}/test`, {
      method: 'POST', body: model ? {model} : {},
    });
    out.textContent =
      `Reply from ${answer.model}: “${answer.reply}” in ${answer.latency_ms} ms.` +
      (answer.billing_note ? ` (${answer.billing_note}.)` : '');
  } catch (error) {
    out.textContent = `Test failed: ${error.message}`;
  }
}

/** Wire the form; *saved(conn)* runs after a save, *editing(conn)* when a connection
 * (or none) is put in the form. */
export async function setupForm(callbacks) {
  hooks = {...hooks, ...callbacks};
  const {templates} = await catalogue();
  el('conn-templates').replaceChildren(...templates.map((t) => h('option', {value: t})));
  modeOptions(el('conn-pp'), null);
  const form = el('conn-form');
  for (const radio of form.querySelectorAll('input[name="api"]')) {
    radio.addEventListener('change', () => fillSources(radio.value, null));
  }
  el('conn-source').addEventListener('change', applySource);
  el('conn-pp').addEventListener('change', () => {
    el('conn-pp-help').textContent = modeHelp(el('conn-pp').value);
  });
  form.addEventListener('submit', connect);
  el('conn-test').addEventListener('click', testMessage);
  el('conn-new').addEventListener('click', () => edit(null).then(() => el('conn-source').focus()));
  await edit(null);
}

/** The connection in the form, if any. */
export function editing() {
  return current;
}
