// Server errors in plain language. The server's `detail` names the field
// (`strokes[3].units: must be 1..=256`); a person wants to know what went wrong in the
// editor's terms and what to do. Pure: no DOM.

const STROKE_FIELD = /^strokes\[(\d+)\]\.(\w+): (.*)$/s;

/** What the editor says when an uploaded picture is gone from the server. */
export const UPLOAD_GONE = 'This uploaded picture is no longer stored on the server; upload it again.';

/**
 * `{title, message}` for an error thrown by api.js (`status`, `detail`), given how the
 * request's strokes map back to the person's strokes (`strokeNumber(i)`: the 1-based
 * number of the first stroke in request stroke i), the layer's name and, for an uploaded
 * picture, the layer it was fitted at (`uploadLayer`).
 */
export function explain(error, { strokeNumber = (i) => i + 1, layer = 'this layer', uploadLayer } = {}) {
  const detail = String(error.detail || error.message || '');
  if (error.name === 'AbortError') return null;
  if (error.status === 404 && /^image/.test(detail)) return { title: 'The picture is gone', message: UPLOAD_GONE };
  if (error.status === 0) {
    return { title: 'Cannot reach the server', message: 'Check that `ganpaint serve` is still running, then retry.' };
  }
  if (error.status === 503) {
    return { title: 'The server is busy', message: 'Too many edits are waiting. Retry in a moment.' };
  }
  if (error.status === 504 || error.status === 408) {
    return { title: 'The server took too long', message: 'The render timed out. Retry, or use fewer strokes.' };
  }
  if (error.status === 413) {
    return { title: 'This edit is too large to send', message: 'The request is over the server\'s size limit. Reset some strokes, or start from fewer.' };
  }
  if (error.status >= 500) {
    return { title: 'The server failed to render', message: 'Something went wrong on the server (its log has the cause). Retry.' };
  }
  const field = STROKE_FIELD.exec(detail);
  if (field) {
    const n = strokeNumber(Number(field[1]));
    const [, , name, rest] = field;
    if (name === 'units') {
      const max = /1\.\.=(\d+)/.exec(rest);
      return {
        title: `Stroke ${n} asks for a unit count the layer doesn't have`,
        message: max ? `A stroke edits between 1 and ${max[1]} units on ${layer}. Choose a count in that range.` : rest,
      };
    }
    if (name === 'concept') {
      const concept = /unknown concept `([^`]*)`/.exec(rest);
      const known = /known: (.*)$/.exec(rest);
      return {
        title: `Stroke ${n} paints a concept ${layer} has no units for`,
        message: `${concept ? `“${concept[1]}” is not among this layer's concepts` : rest}.${known ? ` It knows: ${known[1]}.` : ''}`,
      };
    }
    if (name === 'strength') {
      return { title: `Stroke ${n} has an intensity out of range`, message: 'Intensity runs from 0 to 10 times a unit\'s usual level.' };
    }
    if (name === 'mask') {
      return { title: `Stroke ${n}'s shape could not be read`, message: 'Its mask is not a PNG image the server can decode. Delete the stroke and paint it again.' };
    }
    if (name === 'mode') {
      return { title: `Stroke ${n} has an unknown mode`, message: 'A stroke either draws or removes.' };
    }
  }
  if (/^strokes: at most (\d+)/.test(detail)) {
    const max = /at most (\d+)/.exec(detail)[1];
    return { title: 'Too many strokes for one request', message: `The server paints at most ${max} strokes at a time, and this one cannot continue from an earlier part of the edit. Update the server, or undo some strokes.` };
  }
  if (/^base_edit/.test(detail)) {
    return { title: 'The server no longer accepts an earlier part of this edit', message: 'The editor will resend the strokes in full.' };
  }
  if (/^project/.test(detail)) return { title: 'Unknown project', message: 'The server has no project by that name. Pick one from the Project menu.' };
  const fittedAt = uploadLayer || /^layer: .*inverted at (\S+?);/.exec(detail)?.[1];
  if (/^layer/.test(detail) && fittedAt) {
    return { title: 'This picture cannot be painted at this layer', message: `It was fitted at ${fittedAt}: paint it there or at a later layer.` };
  }
  if (/^layer/.test(detail)) return { title: 'Unknown layer', message: 'This project has no layer by that name. Pick one from the Layer menu.' };
  if (/^image/.test(detail)) return { title: 'No such uploaded picture', message: 'The server knows no uploaded picture by this name. Upload the picture again.' };
  if (/^(id|seed)/.test(detail)) {
    const max = /above (\d+)/.exec(detail);
    return { title: 'No such image', message: max ? `Image ids run from 0 to ${max[1]}.` : 'Give an image id or a seed (a whole number).' };
  }
  return { title: 'The server refused the edit', message: detail || `HTTP ${error.status}` };
}

/**
 * `{title, message}` for an upload the server refused or could not finish (an error from
 * api.upload): the server's own words about the picture, and what to do.
 */
export function explainUpload(error) {
  if (error.name === 'AbortError') return null;
  const detail = String(error.detail || error.message || '');
  const words = detail.replace(/^image: /, '');
  const sentence = words ? `${words.charAt(0).toUpperCase()}${words.slice(1)}${/[.!?]$/.test(words) ? '' : '.'}` : '';
  if (error.status === 0) return { title: 'The upload stopped', message: `${sentence} Check that the server is running, then upload again.` };
  if (/cancelled/.test(detail)) return { title: 'The fitting was cancelled', message: `${sentence} Upload the picture again.` };
  if (error.status === 503) return { title: 'The server is busy', message: 'Too many pictures are waiting to be fitted. Upload again in a moment.' };
  if (error.status === 413) {
    const sizes = /(\d+) is above the limit of (\d+) bytes/.exec(detail);
    const mb = (bytes) => `${(Number(bytes) / 1e6).toFixed(1)} MB`;
    const said = sizes ? `The file is ${mb(sizes[1])}; the server takes at most ${mb(sizes[2])}.` : sentence;
    return { title: 'The picture is too large', message: `${said} Send a smaller file (a JPEG, or fewer pixels).` };
  }
  if (error.status === 415) return { title: 'Not a picture the server takes', message: `${sentence} Upload a PNG or JPEG.` };
  if (error.status >= 500) return { title: 'The server could not fit the picture', message: 'Something went wrong on the server (its log has the cause). Upload again.' };
  if (/^project/.test(detail)) return { title: 'Unknown project', message: 'The server has no project by that name. Pick one from the Project menu.' };
  if (/^image/.test(detail)) {
    // The server's reason often says what to do already.
    return { title: 'Could not use this picture', message: /upload/i.test(words) ? sentence : `${sentence} Upload a PNG or JPEG picture.` };
  }
  return { title: 'The server refused the picture', message: sentence || `HTTP ${error.status}` };
}
