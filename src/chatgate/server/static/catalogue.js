// What the connection form is built from: the sources (GET /api/sources) and the
// prompt post-processing modes, from least to most restrictive.
import { api } from './api.js';
import { h } from './dom.js';

export const POST_PROCESSING = [
  ['none', 'None', 'Messages go as they are, unless the API strictly needs otherwise.'],
  ['merge', 'Merge consecutive roles', 'Messages of the same role in a row become one.'],
  ['merge-tools', 'Merge consecutive roles, keep tools', 'As Merge, keeping tool calls.'],
  ['semi-strict', 'Semi-strict', 'Merge roles, and at most one system message, first.'],
  ['semi-strict-tools', 'Semi-strict, keep tools', 'As Semi-strict, keeping tool calls.'],
  ['strict', 'Strict', 'Semi-strict, and a user message first (a placeholder if none).'],
  ['strict-tools', 'Strict, keep tools', 'As Strict, keeping tool calls.'],
  ['single', 'Single user message', 'Everything merged into one user message.'],
];

// Used only when the server's catalogue does not list its instruct templates.
const KNOWN_TEMPLATES = [
  'alpaca', 'chatml', 'command-r', 'deepseek-v2.5', 'gemma2', 'glm4', 'llama2', 'llama3',
  'mistral-v1', 'mistral-v2v3', 'mistral-v3-tekken', 'mistral-v7', 'mistral-v7-tekken',
  'phi3', 'vicuna',
];

let cached = null;

/** The catalogue: {sources: [...], instruct_templates: [...]}, fetched once. */
export async function catalogue() {
  if (cached === null) {
    const answer = await api('/api/sources');
    cached = {
      sources: answer.sources || [],
      templates: answer.instruct_templates || KNOWN_TEMPLATES,
    };
  }
  return cached;
}

/** The source row for *id*. */
export async function sourceById(id) {
  return (await catalogue()).sources.find((source) => source.id === id) || null;
}

/** <option>s of the post-processing modes; *blank* adds "the default" first. */
export function modeOptions(select, blank) {
  select.replaceChildren(
    ...(blank ? [h('option', {value: ''}, blank)] : []),
    ...POST_PROCESSING.map(([value, label]) => h('option', {value}, label)),
  );
}

/** The one-line description of a mode. */
export function modeHelp(mode) {
  const found = POST_PROCESSING.find(([value]) => value === mode);
  return found ? found[2] : '';
}
