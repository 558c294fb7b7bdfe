// What the connection form sends: a new connection's fields (only those given), or an
// edited one's changes (only those changed), in the admin API's names.
import { byId } from './dom.js';

const el = (id) => byId(id);

/** The values the form showed for *conn*, to tell a change from none. */
export function snapshot(conn, source) {
  const base = conn.base_url && conn.base_url !== source?.default_base_url ? conn.base_url : '';
  return {
    base_url: base,
    bypass_status_check: Boolean(conn.bypass_status_check),
    post_processing: conn.post_processing || source?.post_processing || 'none',
    instruct_template: conn.text?.instruct_template || '',
  };
}

/** The model id typed beside the dropdown. */
export function typedModel() {
  return el('conn-model-id').value.trim();
}

/** The POST body of a new connection from *source*: only what was given. */
export function newBody(source) {
  const body = {name: el('conn-name').value.trim(), source: source.id};
  const url = el('conn-url').value.trim();
  if (url && !el('conn-url-field').hidden) body.base_url = url;
  const key = el('conn-key').value.trim();
  if (key && !el('conn-key-field').hidden) body.api_key = key;
  const password = el('conn-proxy-password').value.trim();
  if (password && source.reverse_proxy) body.proxy_password = password;
  body.bypass_status_check = el('conn-bypass').checked;
  const mode = el('conn-pp').value;
  if (!source.post_processing_forced && mode !== (source.post_processing || 'none')) {
    body.post_processing = mode;
  }
  const template = el('conn-template').value.trim();
  if (source.api === 'text' && template) body.text = {instruct_template: template};
  if (typedModel()) body.models = [typedModel()];
  return body;
}

/** The PATCH of *current* (its source row, its manual ids): only what changed. */
export function patchBody(current, source, manual) {
  const was = current.shown;
  const patch = {};
  const url = el('conn-url').value.trim();
  if (url !== was.base_url) patch.base_url = url || null;
  if (el('conn-bypass').checked !== was.bypass_status_check) {
    patch.bypass_status_check = el('conn-bypass').checked;
  }
  const mode = el('conn-pp').value;
  if (!source?.post_processing_forced && mode !== was.post_processing) patch.post_processing = mode;
  const template = el('conn-template').value.trim();
  if (source?.api === 'text' && template !== was.instruct_template) {
    patch.text = {instruct_template: template || null};
  }
  const key = el('conn-key').value.trim();
  if (key) patch.api_key = key;
  const password = el('conn-proxy-password').value.trim();
  if (password) patch.proxy_password = password;
  const typed = typedModel();
  if (typed && !manual.includes(typed) && !(current.models || []).includes(typed)) {
    patch.models = [...manual, typed];
  }
  return patch;
}

