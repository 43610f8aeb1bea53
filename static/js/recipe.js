// An edit as JSON: exactly the body `/api/v1/paint` takes (`{project, layer, id | seed |
// image, strokes: [{concept, mode, mask, units, strength}]}`), so a saved edit can be
// replayed with curl (up to the server's strokes-per-request limit) and imported back
// into the editor. Seeds are written as bare JSON integers, beyond 2⁵³ too; an uploaded
// picture as its name (`"image": "upload-…"`). Pure: no DOM.

import { imageParts, parseImage } from './hashstate.js';

/**
 * JSON text with the image's id or seed as a bare integer (exact for 64-bit seeds), or an
 * upload's name as a string.
 */
export function requestJson(body, image, indent) {
  const { kind, value } = imageParts(image);
  if (kind === 'image') return JSON.stringify({ project: body.project, layer: body.layer, image: value, ...rest(body) }, null, indent);
  const marker = '"__ganpaint_image__"';
  const text = JSON.stringify({ project: body.project, layer: body.layer, [kind]: '__ganpaint_image__', ...rest(body) }, null, indent);
  return text.replace(marker, value);
}

function rest(body) {
  const { project, layer, id, seed, image, ...others } = body;
  return others;
}

/**
 * Reads a recipe: `{project?, layer?, image? (id:…, seed:… or image:upload-…), strokes: [{concept, mode, mask, units,
 * strength}]}` with masks still as data URLs (decoding them needs a browser); a stroke's
 * `units` and `strength` are null when the file leaves them out. Throws an
 * Error with a plain message when the text is not one.
 */
export function parseRecipe(text) {
  // Keep ids and seeds exact: read them from the text before JSON.parse rounds them.
  const seedText = /"seed"\s*:\s*(\d+)/.exec(text)?.[1];
  const idText = /"id"\s*:\s*(\d+)/.exec(text)?.[1];
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    throw new Error('The file is not JSON.');
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw new Error('The file is not an edit: it should be a JSON object.');
  if (!Array.isArray(data.strokes)) throw new Error('The file is not an edit: it has no "strokes" list.');
  const recipe = { strokes: [] };
  if (typeof data.project === 'string') recipe.project = data.project;
  if (typeof data.layer === 'string') recipe.layer = data.layer;
  if (data.image !== undefined) {
    recipe.image = typeof data.image === 'string' ? parseImage(`image:${data.image}`) : null;
    if (!recipe.image) throw new Error('The edit\'s image is not the name of an uploaded picture (upload-, then 32 hex digits).');
  } else if (data.seed !== undefined) {
    recipe.image = parseImage(`seed:${seedText ?? data.seed}`);
    if (!recipe.image) throw new Error('The edit\'s seed is not a whole number from 0 to 2⁶⁴ − 1.');
  } else if (data.id !== undefined) {
    recipe.image = parseImage(`id:${idText ?? data.id}`);
    if (!recipe.image) throw new Error('The edit\'s image id is out of range.');
  }
  data.strokes.forEach((stroke, i) => {
    const where = `Stroke ${i + 1}`;
    if (!stroke || typeof stroke !== 'object') throw new Error(`${where} is not an object.`);
    if (typeof stroke.concept !== 'string' || !stroke.concept) throw new Error(`${where} names no concept.`);
    if (stroke.mode !== 'draw' && stroke.mode !== 'remove') throw new Error(`${where}'s mode is neither "draw" nor "remove".`);
    if (typeof stroke.mask !== 'string' || !stroke.mask.startsWith('data:image/png;base64,')) {
      throw new Error(`${where}'s mask is not a PNG data URL.`);
    }
    // Left out, as in the paint request: the concept's tuned setting (`null` here; the
    // importer fills it in from the layer's concepts, as the server would).
    const units = stroke.units ?? null;
    if (units !== null && (!Number.isInteger(units) || units < 1)) throw new Error(`${where}'s unit count is not a whole number above 0.`);
    const strength = stroke.strength ?? null;
    if (strength !== null && (typeof strength !== 'number' || !Number.isFinite(strength) || strength < 0 || strength > 10)) {
      throw new Error(`${where}'s intensity is not between 0 and 10.`);
    }
    recipe.strokes.push({ concept: stroke.concept, mode: stroke.mode, mask: stroke.mask, units, strength });
  });
  return recipe;
}
