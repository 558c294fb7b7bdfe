// The playground: a conversation with any model through the door chosen, streamed, with
// the sampler settings beside it and a Stop button (an AbortController on the fetch).
import { api } from './api.js';
import { modeOptions } from './catalogue.js';
import { byId, h } from './dom.js';
import { DOORS } from './doors.js';
import { clearFieldErrors, numberOf, showFieldError } from './fields.js';
import { readEvents } from './sse.js';
import { alertError, announce, clearAlert } from './status.js';

let history = [];
let controller = null;
let last = null; // {door, request}: the inspector previews it

/** The last request sent ({door, request}), or null. */
export function lastRequest() {
  return last;
}

function settings() {
  const form = byId('sampler-form');
  const number = (name) => numberOf(form.elements[name]);
  const stop = byId('s-stop').value.split('\n').map((s) => s.trim()).filter(Boolean);
  return {
    model: byId('chat-model').value,
    system: byId('chat-system').value.trim(),
    stream: byId('chat-stream').checked,
    temperature: number('temperature'),
    top_p: number('top_p'),
    top_k: number('top_k'),
    max_tokens: number('max_tokens'),
    frequency_penalty: number('frequency_penalty'),
    presence_penalty: number('presence_penalty'),
    seed: number('seed'),
    memory_k: number('memory_k'),
    stop,
    prompt_post_processing: byId('s-pp').value,
  };
}

function bubble(role, text) {
  const item = h('li', {class: `msg ${role}`},
    h('p', {class: 'who'}, role === 'user' ? 'You' : 'Model'),
    h('div', {class: 'text'}, text),
    h('p', {class: 'meta'}));
  byId('transcript').append(item);
  item.scrollIntoView({block: 'nearest'});
  return item;
}

function usageText(usage) {
  if (!usage || (usage.in === undefined && usage.out === undefined)) return '';
  return ` · tokens in ${usage.in ?? '?'}, out ${usage.out ?? '?'}`;
}

async function receive(door, response, item) {
  const out = item.querySelector('.text');
  const got = {text: '', usage: {}, first: null};
  const type = response.headers.get('content-type') || '';
  if (!type.includes('text/event-stream')) {
    const answer = door.reply(await response.json());
    got.text = answer.text;
    got.usage = answer.usage || {};
    out.textContent = answer.text;
    return got;
  }
  for await (const event of readEvents(response.body)) {
    const part = door.event(event);
    if (part.error) throw new Error(part.error);
    if (part.text) {
      got.first ??= performance.now();
      got.text += part.text;
      out.textContent = got.text;
    }
    if (part.usage) got.usage = {...got.usage, ...Object.fromEntries(
      Object.entries(part.usage).filter(([, v]) => v !== undefined))};
    if (part.done) break;
  }
  return got;
}

async function send(event) {
  event.preventDefault();
  const form = byId('chat-form');
  clearFieldErrors(form);
  clearAlert();
  const text = byId('chat-input').value.trim();
  if (!text) {
    showFieldError(form, 'message', 'Write a message first.');
    return;
  }
  const request = settings();
  if (!request.model) {
    alertError(new Error('no model to send to: add a connection, then Refresh models'));
    return;
  }
  const door = DOORS[byId('chat-door').value];
  history.push({role: 'user', content: text});
  request.messages = [...history];
  last = {door: byId('chat-door').value, request};
  document.dispatchEvent(new CustomEvent('chatgate:sent'));
  bubble('user', text);
  byId('chat-input').value = '';
  const item = bubble('assistant', '');
  item.setAttribute('aria-busy', 'true');
  controller = new AbortController();
  byId('chat-stop').disabled = false;
  // A disabled button drops the focus: move it on to the next thing to press.
  if (document.activeElement === byId('chat-send')) byId('chat-stop').focus();
  byId('chat-send').disabled = true;
  const started = performance.now();
  let got = {text: '', usage: {}, first: null};
  const meta = item.querySelector('.meta');
  try {
    const label = byId('chat-key-label').value.trim();
    const headers = {...door.headers, ...(label ? {'x-chatgate-key-label': label} : {})};
    const response = await api(door.path, {method: 'POST', body: door.body(request),
      signal: controller.signal, raw: true, headers});
    got = await receive(door, response, item);
    const ms = Math.round(performance.now() - started);
    const first = got.first ? ` (first token after ${Math.round(got.first - started)} ms)` : '';
    meta.textContent =
      `${door.label} · ${request.model} · ${ms} ms${first}${usageText(got.usage)}`;
    history.push({role: 'assistant', content: got.text});
    announce('Answer received.');
  } catch (error) {
    if (error.name === 'AbortError') {
      const partial = item.querySelector('.text').textContent;
      meta.textContent = `Stopped after ${Math.round(performance.now() - started)} ms.`;
      if (partial) history.push({role: 'assistant', content: partial});
      announce('Stopped.');
    } else {
      history.pop(); // the turn failed: it is not part of the conversation
      item.classList.add('error');
      meta.textContent = `Error: ${error.message}`;
      alertError(error);
    }
  } finally {
    item.setAttribute('aria-busy', 'false');
    controller = null;
    const focused = document.activeElement;
    byId('chat-stop').disabled = true;
    byId('chat-send').disabled = false;
    if (focused === byId('chat-stop') || focused === document.body) byId('chat-input').focus();
  }
}

/** Fill the model list from GET /v1/models (every connection's models). */
export async function loadModels() {
  const select = byId('chat-model');
  const was = select.value;
  const answer = await api('/v1/models');
  const ids = (answer.data || []).map((m) => m.id);
  select.replaceChildren(...(ids.length ? ids.map((id) => h('option', {value: id}, id))
    : [h('option', {value: ''}, 'No models: add a connection first')]));
  if (ids.includes(was)) select.value = was;
}

/** Build the panel. */
export async function setupPlayground() {
  const doors = byId('chat-door');
  doors.replaceChildren(...Object.entries(DOORS).map(
    ([id, door]) => h('option', {value: id}, door.label)));
  const showPath = () => {
    byId('chat-door-path').textContent = `POST ${DOORS[doors.value].path}`;
  };
  doors.addEventListener('change', showPath);
  showPath();
  modeOptions(byId('s-pp'), "The connection's setting");
  byId('chat-form').addEventListener('submit', send);
  byId('chat-input').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      byId('chat-form').requestSubmit();
    }
  });
  byId('chat-stop').addEventListener('click', () => controller?.abort());
  byId('chat-clear').addEventListener('click', () => {
    history = [];
    byId('transcript').replaceChildren();
    announce('Conversation cleared.');
  });
  byId('chat-models-refresh').addEventListener('click', () => loadModels().catch(alertError));
  document.addEventListener('chatgate:connections', () => loadModels().catch(alertError));
  await loadModels();
}
