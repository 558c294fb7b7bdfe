// Server-sent events read from a fetch() body (EventSource cannot send an
// Authorization header, nor POST): one {event, data} per blank-line-ended block.

/** Yield each event of the text/event-stream *body*; comments are skipped. */
export async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let name = '';
  let data = [];
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += value;
      // A chunk may end between the \r and \n of one line ending: keep a lone \r back.
      const cut = buffer.endsWith('\r') ? buffer.length - 1 : buffer.length;
      const lines = buffer.slice(0, cut).split(/\r\n|\r|\n/);
      buffer = lines.pop() + buffer.slice(cut);
      for (const line of lines) {
        if (line === '') {
          if (data.length) yield {event: name || 'message', data: data.join('\n')};
          name = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? '' : line.slice(colon + 1);
        if (text.startsWith(' ')) text = text.slice(1);
        if (field === 'data') data.push(text);
        else if (field === 'event') name = text;
      }
    }
    if (data.length) yield {event: name || 'message', data: data.join('\n')};
  } finally {
    reader.cancel().catch(() => {});
  }
}
