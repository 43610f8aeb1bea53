// The edit lives in the URL hash — `#project=demo&layer=layer4&id=12&strokes=…`, or
// `seed=7` or `image=upload-…` (a picture someone uploaded) instead of `id` — so a link
// reproduces it. Strokes use the compact form in strokes.js. Pure: no DOM.

import { decodeStroke, encodeStroke } from './strokes.js';

/** Largest GAN Dissection image id, and the largest seed (the API takes any u64). */
export const MAX_ID = 2 ** 20;
export const MAX_SEED = 2n ** 64n - 1n;

/** The name the server gives an uploaded picture. */
export const UPLOAD_NAME = /^upload-[0-9a-f]{32}$/;

/**
 * An image is `"id:<n>"` (GAN Dissection's image n), `"seed:<n>"` (any 64-bit seed, kept
 * as decimal text: seeds go beyond what a JS number holds exactly) or
 * `"image:upload-<32 hex>"` (an uploaded picture, by the name the server gave it). The
 * part before the colon is the paint request's field, and the address bar's.
 */
export function parseImage(text) {
  const upload = /^image:(.*)$/.exec(text || '');
  if (upload) return UPLOAD_NAME.test(upload[1]) ? `image:${upload[1]}` : null;
  const match = /^(id|seed):(\d{1,20})$/.exec(text || '');
  if (!match) return null;
  const digits = match[2].replace(/^0+(?=\d)/, '');
  if (match[1] === 'id') return Number(digits) <= MAX_ID ? `id:${digits}` : null;
  return BigInt(digits) <= MAX_SEED ? `seed:${digits}` : null;
}

/** `{kind: 'id'|'seed'|'image', value: string}` of an image string. */
export function imageParts(image) {
  const [kind, value] = image.split(':');
  return { kind, value };
}

/** True for an uploaded picture. */
export function isUpload(image) {
  return imageParts(image).kind === 'image';
}

export function describeImage(image) {
  const { kind, value } = imageParts(image);
  if (kind === 'image') return 'Your uploaded picture';
  return kind === 'id' ? `Image ${value}` : `Seed ${value}`;
}

export function encodeHash({ project, layer, image, strokes }) {
  const { kind, value } = imageParts(image);
  const parts = [
    `project=${encodeURIComponent(project)}`,
    `layer=${encodeURIComponent(layer)}`,
    `${kind}=${value}`,
  ];
  if (strokes.length) parts.push(`strokes=${strokes.map(encodeStroke).join(';')}`);
  return `#${parts.join('&')}`;
}

/**
 * `{project?, layer?, image?, strokes, dropped, badImage}`: what the hash names;
 * `dropped` counts strokes too malformed to read, `badImage` is an id or seed out of range
 * (or an upload's name that is not one).
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
    } else if (key === 'id' || key === 'seed' || key === 'image') {
      const image = parseImage(`${key}:${value}`);
      if (image) state.image = image;
      else state.badImage = `${key} ${value}`;
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
