// Server-sent events, read incrementally: the upload answers its progress as a stream
// (`event: progress`, then `event: done` or `event: error`), and `fetch` hands it over in
// chunks that can end anywhere: inside a line, between a CR and its LF. The parser
// follows the HTML standard's event-stream rules (data lines joined with newlines, a
// blank line dispatches, `:` starts a comment, an event cut off by the end of the stream
// is dropped). Pure: no DOM, no network.

/**
 * A parser: `push(text)` takes the next chunk of decoded text and returns the events it
 * completed, each `{event, data, id}` (`event` is 'message' unless named); `end()` says
 * the stream closed and returns nothing more (an unfinished event is dropped).
 */
export function createSseParser() {
  let buffer = '';
  let data = [];
  let event = '';
  let lastId = '';
  let sawData = false;
  let skipLf = false; // the last chunk ended in CR: a leading LF belongs to it

  function field(line, out) {
    if (line === '') {
      if (sawData) out.push({ event: event || 'message', data: data.join('\n'), id: lastId });
      data = [];
      event = '';
      sawData = false;
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'data') {
      data.push(value);
      sawData = true;
    } else if (name === 'event') {
      event = value;
    } else if (name === 'id' && !value.includes('\0')) {
      lastId = value;
    }
    // `retry` and unknown fields: nothing the editor needs.
  }

  return {
    push(text) {
      const out = [];
      if (skipLf && text.startsWith('\n')) text = text.slice(1);
      skipLf = false;
      buffer += text;
      let start = 0;
      for (let i = 0; i < buffer.length; i += 1) {
        const c = buffer[i];
        if (c !== '\n' && c !== '\r') continue;
        field(buffer.slice(start, i), out);
        if (c === '\r') {
          if (i + 1 === buffer.length) skipLf = true;
          else if (buffer[i + 1] === '\n') i += 1;
        }
        start = i + 1;
      }
      buffer = buffer.slice(start);
      return out;
    },
    end() {
      buffer = '';
      data = [];
      event = '';
      sawData = false;
      return [];
    },
  };
}
