// The inspector: what chatgate would send upstream for the playground's last message
// (POST /api/preview; the server masks every key), with the post-processing and memory
// steps, the messages before and after them, and the template of text backends.
import { api } from './api.js';
import { byId, h, json } from './dom.js';
import { DOORS, openaiBody } from './doors.js';
import { lastRequest } from './playground.js';
import { alertError, announce, clearAlert } from './status.js';

let stale = true;

function section(title, ...content) {
  return h('section', {class: 'inspect'}, h('h3', {}, title), ...content);
}

function facts(pairs) {
  const list = h('dl', {class: 'facts'});
  for (const [name, value] of pairs) {
    if (value === undefined || value === null || value === '') continue;
    list.append(h('dt', {}, name), h('dd', {}, String(value)));
  }
  return list;
}

function pre(value, label) {
  return h('pre', {class: 'code', tabindex: 0, 'aria-label': label},
    typeof value === 'string' ? value : json(value));
}

// One message a line: the conversation reads down the page, each message exact.
function messagesText(messages) {
  if (!Array.isArray(messages)) return json(messages);
  return messages.map((m) => JSON.stringify(m)).join('\n');
}

function headersTable(headers) {
  return h('table', {class: 'data'},
    h('caption', {class: 'visually-hidden'}, 'Upstream request headers'),
    h('thead', {}, h('tr', {},
      h('th', {scope: 'col'}, 'Header'), h('th', {scope: 'col'}, 'Value'))),
    h('tbody', {}, ...Object.entries(headers || {}).map(([name, value]) =>
      h('tr', {}, h('th', {scope: 'row', class: 'mono'}, name), h('td', {class: 'mono'}, value)))));
}

function steps(answer, sent) {
  const pp = answer.post_processing || {};
  const memory = answer.memory_strategy;
  // The server's own before/after, when it gives them; else what the page sent, and the
  // messages of the upstream body (already translated for the backend).
  const before = answer.messages_before ?? sent.messages;
  const after = answer.messages_after ?? answer.body?.messages ?? null;
  const fromServer = answer.messages_before !== undefined;
  return [
    section('Prompt post-processing', facts([
      ['Mode', pp.mode], ['Set by', pp.set_by],
      ['Forced by the source', pp.forced || (pp.forced === null ? 'no' : undefined)],
    ])),
    section('Memory strategy', memory ? facts([
      ['Strategy', memory.name], ['Keep last', memory.k ?? memory.params?.k],
      ['Messages dropped', Array.isArray(memory.dropped_messages)
        ? memory.dropped_messages.length : memory.dropped_messages],
    ]) : h('p', {}, 'None asked for: every message is kept.')),
    section('Messages before and after',
      h('div', {class: 'columns'},
        h('div', {class: 'column'}, h('h4', {}, fromServer ? 'Before (as received)'
          : 'Before (as the page sent them)'), pre(messagesText(before), 'Messages before')),
        h('div', {class: 'column'}, h('h4', {}, fromServer ? 'After (as sent on)'
          : 'After (in the upstream body)'),
          after === null ? h('p', {}, 'This backend takes one prompt text: see the template.')
            : pre(messagesText(after), 'Messages after')))),
  ];
}

function template(prompt) {
  if (!prompt) return [];
  return [section('Template', facts([
    ['Template', prompt.template], ['Why', prompt.why], ['Context size', prompt.context_size],
    ['Estimated prompt tokens', prompt.estimated_tokens], ['Messages cut', prompt.messages_cut],
    ['Stop strings', (prompt.stop || []).map((s) => JSON.stringify(s)).join(', ')],
    ['Note', prompt.note],
  ]), h('h4', {}, 'Prompt text'), pre(prompt.text || '', 'Prompt text'))];
}

function render(answer, sent, door) {
  const dropped = answer.dropped_params || [];
  byId('inspect-out').replaceChildren(
    door !== 'openai' ? h('p', {class: 'help'}, `The last message went through the
      ${DOORS[door].label} door, which reads its own shape into this same request.`) : '',
    section('Upstream request', facts([
      ['Connection', answer.connection], ['Source', answer.source],
      ['Method', answer.method], ['URL', answer.url],
      ['Streamed', answer.stream === undefined ? undefined : answer.stream ? 'yes' : 'no'],
      ['Sent', answer.sent_times ? `${answer.sent_times} times` : undefined],
      ['Parameters dropped', dropped.length ? dropped.join(', ') : undefined],
    ])),
    section('Headers', headersTable(answer.headers)),
    ...steps(answer, sent),
    ...template(answer.prompt),
    section('Body', pre(answer.body ?? null, 'Upstream request body')),
  );
}

/** Ask for the preview of the last playground message and show it. */
export async function inspect() {
  const last = lastRequest();
  byId('inspect-empty').hidden = last !== null;
  if (last === null) return;
  clearAlert();
  const sent = openaiBody(last.request);
  try {
    const answer = await api('/api/preview', {method: 'POST', body: sent});
    render(answer, sent, last.door);
    stale = false;
    announce('Preview ready.');
  } catch (error) {
    byId('inspect-out').replaceChildren(h('p', {class: 'field-error'},
      `The preview was refused: ${error.message}`));
    alertError(error);
  }
}

/** The inspector tab was shown: preview again if a message went since. */
export function inspectorShown() {
  if (stale) inspect();
}

/** Build the panel. */
export function setupInspector() {
  byId('inspect-run').addEventListener('click', inspect);
  document.addEventListener('chatgate:sent', () => { stale = true; });
}
