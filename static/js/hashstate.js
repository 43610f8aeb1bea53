// The edit lives in the URL hash — `#project=demo&layer=layer4&id=12&strokes=…` — so a
// link reproduces it. Strokes use the compact form in strokes.js.

import { decodeStroke, encodeStroke } from './strokes.js';

export function encodeHash({ project, layer, id, strokes }) {
  const parts = [
    `project=${encodeURIComponent(project)}`,
    `layer=${encodeURIComponent(layer)}`,
    `id=${id}`,
  ];
  if (strokes.length) parts.push(`strokes=${strokes.map(encodeStroke).join(';')}`);
  return `#${parts.join('&')}`;
}

/**
 * `{project?, layer?, id?, strokes, dropped}`: what the hash names; `dropped` counts
 * strokes too malformed to read.
 */
export function decodeHash(hash) {
  const state = { strokes: [], dropped: 0 };
  for (const part of hash.replace(/^#/, '').split('&')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq);
    const value = part.slice(eq + 1);
    if (key === 'project' || key === 'layer') {
      try {
        state[key] = decodeURIComponent(value);
      } catch {
        // A mangled link: ignore the field, the defaults apply.
      }
    } else if (key === 'id' && /^\d+$/.test(value)) {
      state.id = Number(value);
    } else if (key === 'strokes' && value) {
      for (const text of value.split(';')) {
        const stroke = decodeStroke(text);
        if (stroke) state.strokes.push(stroke);
        else state.dropped += 1;
      }
    }
  }
  return state;
}
