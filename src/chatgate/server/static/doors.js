// The front doors the playground speaks, each in its own shape: the request body, the
// stream's events, and the whole answer, read into {text, reasoning, usage, error, done}.

const SAMPLERS = ['temperature', 'top_p', 'top_k', 'max_tokens', 'frequency_penalty',
  'presence_penalty', 'seed'];

/** The OpenAI Chat Completions body of the playground's request *req* (also what the
 * inspector previews: POST /api/preview reads this shape). */
export function openaiBody(req) {
  const system = req.system ? [{role: 'system', content: req.system}] : [];
  const body = {model: req.model, messages: [...system, ...req.messages], stream: req.stream};
  if (req.stream) body.stream_options = {include_usage: true};
  for (const name of SAMPLERS) if (req[name] !== undefined) body[name] = req[name];
  if (req.stop.length) body.stop = req.stop;
  if (req.memory_k !== undefined) body.memory_strategy = {name: 'last_k', k: req.memory_k};
  if (req.prompt_post_processing) body.prompt_post_processing = req.prompt_post_processing;
  return body;
}

function anthropicBody(req) {
  // Claude's API requires max_tokens; it has no seed nor penalties to send.
  const body = {model: req.model, max_tokens: req.max_tokens ?? 1024, messages: req.messages,
    stream: req.stream};
  if (req.system) body.system = req.system;
  for (const name of ['temperature', 'top_p', 'top_k']) {
    if (req[name] !== undefined) body[name] = req[name];
  }
  if (req.stop.length) body.stop_sequences = req.stop;
  return body;
}

function parse(data) {
  try {
    return JSON.parse(data);
  } catch {
    return null;
  }
}

function openaiUsage(usage) {
  return usage ? {in: usage.prompt_tokens, out: usage.completion_tokens} : null;
}

function openaiEvent({event, data}) {
  if (data === '[DONE]') return {done: true};
  const chunk = parse(data);
  if (chunk === null) return {};
  if (event === 'error' || chunk.error || chunk.detail) {
    const error = chunk.error ?? chunk.detail;
    return {error: typeof error === 'string' ? error : error?.message || 'the stream failed'};
  }
  const delta = chunk.choices?.[0]?.delta || {};
  return {
    text: delta.content || '',
    reasoning: delta.reasoning_content || delta.reasoning || '',
    usage: openaiUsage(chunk.usage),
  };
}

function openaiReply(answer) {
  const message = answer.choices?.[0]?.message || {};
  return {text: message.content || '', reasoning: message.reasoning_content || '',
    usage: openaiUsage(answer.usage)};
}

function anthropicEvent({data}) {
  const item = parse(data);
  if (item === null) return {};
  switch (item.type) {
    case 'content_block_delta':
      return item.delta?.type === 'thinking_delta' ? {reasoning: item.delta.thinking || ''}
        : {text: item.delta?.text || ''};
    case 'message_start':
      return {usage: {in: item.message?.usage?.input_tokens}};
    case 'message_delta':
      return {usage: {out: item.usage?.output_tokens}};
    case 'message_stop':
      return {done: true};
    case 'error':
      return {error: item.error?.message || 'the stream failed'};
    default:
      return {};
  }
}

function anthropicReply(answer) {
  const blocks = answer.content || [];
  return {
    text: blocks.filter((b) => b.type === 'text').map((b) => b.text).join(''),
    reasoning: blocks.filter((b) => b.type === 'thinking').map((b) => b.thinking).join(''),
    usage: answer.usage ? {in: answer.usage.input_tokens, out: answer.usage.output_tokens} : null,
  };
}

export const DOORS = {
  openai: {label: 'OpenAI Chat Completions', path: '/v1/chat/completions',
    body: openaiBody, event: openaiEvent, reply: openaiReply},
  // SGP v4: the OpenAI shape with memory_strategy; its streams end without [DONE] and
  // report an error as `event: error` with {"detail"}.
  sgp: {label: 'SGP v4 (Scale)', path: '/v4/beta/chat/completions',
    body: openaiBody, event: openaiEvent, reply: openaiReply},
  anthropic: {label: 'Anthropic Messages', path: '/v1/messages',
    headers: {'anthropic-version': '2023-06-01'},
    body: anthropicBody, event: anthropicEvent, reply: anthropicReply},
};
