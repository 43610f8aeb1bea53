// Strokes: what a person painted, kept as data rather than pixels.
//
// A stroke is `{concept, mode: 'draw'|'remove', units, strength, size, points}` with the
// polyline `points` (`[[x, y], …]`) and the brush `size` (diameter) in image pixels, or,
// for a stroke imported from an edit's JSON, `{concept, mode, units, strength, mask}`
// with the exact bitmap `mask = {width, height, runs}` (run lengths, row-major,
// alternating unpainted and painted, starting with unpainted). Masks are rasterised
// when needed, so a stroke is small enough to live in the URL and independent of the
// screen it was painted on. Strokes are never mutated: history snapshots share them.
//
// Everything here but `rasterize`/`maskDataUrl`/`unionDataUrl` is pure (no DOM), so
// node's test runner covers it.

/** Colours for the concepts GANPaint users know; others get a hue from their name. */
const CONCEPT_COLORS = {
  tree: '#3f9b4a',
  grass: '#8fd14f',
  sky: '#5aa9e6',
  cloud: '#e8eef5',
  dome: '#e0b040',
  door: '#a8743f',
  brick: '#c4573a',
  window: '#62d0e0',
  roof: '#8c3b4a',
  path: '#d8c08a',
  water: '#2f6fd0',
  mountain: '#8a7f9a',
  building: '#b0a090',
};

export function conceptColor(name) {
  if (CONCEPT_COLORS[name]) return CONCEPT_COLORS[name];
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 60% 55%)`;
}

/**
 * Drops points closer than `minStep` image pixels to the last kept one (the last point
 * is always kept), and rounds to half pixels: the URL stays short and the mask is the same.
 */
export function simplify(points, minStep = 0.75) {
  const round = (v) => Math.round(v * 2) / 2;
  const kept = [];
  for (const [x, y] of points) {
    const point = [round(x), round(y)];
    const last = kept[kept.length - 1];
    if (!last || Math.hypot(point[0] - last[0], point[1] - last[1]) >= minStep) kept.push(point);
  }
  const final = points[points.length - 1];
  if (final && kept.length > 1) {
    const point = [round(final[0]), round(final[1])];
    const last = kept[kept.length - 1];
    if (point[0] !== last[0] || point[1] !== last[1]) kept.push(point);
  }
  return kept;
}

/** Strokes the polyline (round caps and joins) onto a 2D context in its coordinates. */
export function tracePath(ctx, points, size) {
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  ctx.lineWidth = size;
  if (points.length === 1) {
    ctx.beginPath();
    ctx.arc(points[0][0], points[0][1], size / 2, 0, Math.PI * 2);
    ctx.fill();
    return;
  }
  ctx.beginPath();
  ctx.moveTo(points[0][0], points[0][1]);
  for (const [x, y] of points.slice(1)) ctx.lineTo(x, y);
  ctx.stroke();
}

// ---- bitmap masks (run-length encoded) -----------------------------------------------

/** Run lengths of a painted-flag array (`painted(i)` for i < count), unpainted first. */
export function encodeRuns(count, painted) {
  const runs = [];
  let state = false;
  let length = 0;
  for (let i = 0; i < count; i += 1) {
    const p = Boolean(painted(i));
    if (p !== state) {
      runs.push(length);
      state = p;
      length = 0;
    }
    length += 1;
  }
  runs.push(length);
  return runs;
}

/** The painted flags (`Uint8Array` of 0/1, length width·height) of a run-length mask. */
export function decodeRuns({ width, height, runs }) {
  const flags = new Uint8Array(width * height);
  let offset = 0;
  runs.forEach((length, i) => {
    if (i % 2) flags.fill(1, offset, Math.min(flags.length, offset + length));
    offset += length;
  });
  return flags;
}

/** The stroke's mask size: its own bitmap's, or the image's for a brush stroke. */
export function maskSize(stroke, resolution) {
  return stroke.mask ? [stroke.mask.width, stroke.mask.height] : [resolution, resolution];
}

/** Thresholds canvas alpha at half coverage (what the server sees as painted). */
function thresholdAlpha(alpha) {
  let painted = 0;
  for (let i = 3; i < alpha.length; i += 4) {
    alpha[i] = alpha[i] >= 128 ? 255 : 0;
    if (alpha[i]) painted += 1;
  }
  return painted;
}

/**
 * The stroke's mask as a canvas (image pixels for a brush stroke, the bitmap's own size
 * for an imported one): alpha 255 where painted, 0 elsewhere. Anti-aliased edges are
 * thresholded at half coverage so the server (alpha > 0 = painted) sees the region a
 * person sees; a stroke thinner than a pixel still marks its pixels.
 */
export function rasterize(stroke, resolution) {
  const [width, height] = maskSize(stroke, resolution);
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const pixels = ctx.createImageData(width, height);
  if (stroke.mask) {
    const flags = decodeRuns(stroke.mask);
    for (let i = 0; i < flags.length; i += 1) pixels.data[i * 4 + 3] = flags[i] ? 255 : 0;
    ctx.putImageData(pixels, 0, 0);
    return canvas;
  }
  ctx.fillStyle = ctx.strokeStyle = '#000';
  tracePath(ctx, stroke.points, stroke.size);
  const drawn = ctx.getImageData(0, 0, width, height);
  if (!thresholdAlpha(drawn.data)) {
    for (const [x, y] of stroke.points) {
      const px = Math.min(width - 1, Math.max(0, Math.floor(x)));
      const py = Math.min(height - 1, Math.max(0, Math.floor(y)));
      drawn.data[(py * width + px) * 4 + 3] = 255;
    }
  }
  ctx.putImageData(drawn, 0, 0);
  return canvas;
}

const maskUrls = new WeakMap();

/** The stroke's mask as a PNG data URL (cached per stroke: strokes are immutable). */
export function maskDataUrl(stroke, resolution) {
  let byResolution = maskUrls.get(stroke);
  if (!byResolution) maskUrls.set(stroke, (byResolution = new Map()));
  if (!byResolution.has(resolution)) {
    byResolution.set(resolution, rasterize(stroke, resolution).toDataURL('image/png'));
  }
  return byResolution.get(resolution);
}

// ---- merging strokes with the same settings ------------------------------------------

/**
 * Two strokes merge exactly when they edit the same units to the same values (same
 * concept, mode, units, strength) and their masks have the same size: the server pools
 * each mask with a max to the layer grid and composites with alpha 0 or 1, so one
 * stroke over the union of their masks gives the same edit as one after the other.
 */
export function settingsKey(stroke, resolution) {
  const [w, h] = maskSize(stroke, resolution);
  return `${stroke.concept}|${stroke.mode}|${stroke.units}|${stroke.mode === 'draw' ? stroke.strength : 0}|${w}x${h}`;
}

/** Runs of consecutive strokes that merge: `[{start, end}]` covering `strokes` in order. */
export function groupStrokes(strokes, resolution) {
  const groups = [];
  let previous = null;
  strokes.forEach((stroke, index) => {
    const key = settingsKey(stroke, resolution);
    if (groups.length && key === previous) groups[groups.length - 1].end = index + 1;
    else groups.push({ start: index, end: index + 1 });
    previous = key;
  });
  return groups;
}

const unionUrls = new Map();

/** The union of several strokes' masks (same size) as a PNG data URL. */
export function unionDataUrl(strokes, resolution) {
  if (strokes.length === 1) return maskDataUrl(strokes[0], resolution);
  const key = `${resolution}|${strokes.map(encodeStroke).join(';')}`;
  if (!unionUrls.has(key)) {
    const [width, height] = maskSize(strokes[0], resolution);
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext('2d');
    // Alpha is 0 or 255 in each mask, so drawing them over each other is their union.
    for (const stroke of strokes) ctx.drawImage(rasterize(stroke, resolution), 0, 0);
    unionUrls.set(key, canvas.toDataURL('image/png'));
    while (unionUrls.size > 200) unionUrls.delete(unionUrls.keys().next().value);
  }
  return unionUrls.get(key);
}

/** A group of merged strokes as `/api/v1/paint` takes one stroke. */
export function toRequest(strokes, resolution) {
  const [first] = strokes;
  return {
    concept: first.concept,
    mode: first.mode,
    mask: unionDataUrl(strokes, resolution),
    units: first.units,
    strength: first.strength,
  };
}

/** A short description for lists and screen readers: "tree · draw · 8 px · 20 units". */
export function describe(stroke) {
  const shape = stroke.mask ? `${stroke.mask.width}×${stroke.mask.height} mask` : `${stroke.size} px`;
  const parts = [stroke.concept, stroke.mode, shape, `${stroke.units} units`];
  if (stroke.mode === 'draw' && stroke.strength !== 1) parts.push(`${stroke.strength}×`);
  return parts.join(' · ');
}

// ---- keys for caches -----------------------------------------------------------------

const encoded = new WeakMap();

function encodedOf(stroke) {
  if (!encoded.has(stroke)) encoded.set(stroke, encodeStroke(stroke));
  return encoded.get(stroke);
}

/** A key that identifies a stroke stack (for comparing stacks). */
export function stackKey(strokes) {
  return strokes.map(encodedOf).join(';');
}

/**
 * `keys[k]` identifies `strokes.slice(0, k)` (k = 0…n): the count and a 64-bit hash of
 * the strokes' text, computed in one pass, so long stacks key their prefixes cheaply.
 */
export function prefixKeys(strokes) {
  let a = 0x811c9dc5;
  let b = 0x01000193;
  const keys = ['0'];
  strokes.forEach((stroke, index) => {
    const text = `${encodedOf(stroke)};`;
    for (let i = 0; i < text.length; i += 1) {
      const c = text.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193) >>> 0;
      b = Math.imul(b ^ c, 0x5bd1e995) >>> 0;
      b = (b ^ (b >>> 15)) >>> 0;
    }
    keys.push(`${index + 1}:${a.toString(36)}${b.toString(36)}`);
  });
  return keys;
}

// URL form: `concept:mode:units:strength:size:x,y,x,y…` for a brush stroke and
// `concept:mode:units:strength:mWxH:runs` (runs in base 36, joined by `.`) for a bitmap,
// strokes joined by `;`. The separators are characters encodeURIComponent escapes, so
// any concept name is safe.
const MODES = { draw: 'd', remove: 'r' };

export function encodeStroke(stroke) {
  const head = [encodeURIComponent(stroke.concept), MODES[stroke.mode], stroke.units, stroke.strength];
  if (stroke.mask) {
    const { width, height, runs } = stroke.mask;
    return [...head, `m${width}x${height}`, runs.map((n) => n.toString(36)).join('.')].join(':');
  }
  const coords = stroke.points.map(([x, y]) => `${x},${y}`).join(',');
  return [...head, stroke.size, coords].join(':');
}

/** Parses one stroke, or returns null when it is malformed. */
export function decodeStroke(text) {
  const fields = text.split(':');
  if (fields.length !== 6) return null;
  const [concept, mode, units, strength, size, data] = fields;
  const stroke = {
    concept: safeDecode(concept),
    mode: mode === 'r' ? 'remove' : mode === 'd' ? 'draw' : null,
    units: /^\d+$/.test(units) ? Number(units) : NaN,
    strength: Number(strength),
  };
  if (!stroke.concept || !stroke.mode || !(stroke.units > 0) || !Number.isFinite(stroke.strength)
    || strength === '') {
    return null;
  }
  const bitmap = /^m(\d+)x(\d+)$/.exec(size);
  if (bitmap) {
    const width = Number(bitmap[1]);
    const height = Number(bitmap[2]);
    if (!(width > 0 && height > 0 && width * height <= 4096 * 4096) || !data) return null;
    const runs = data.split('.').map((n) => (/^[0-9a-z]+$/.test(n) ? Number.parseInt(n, 36) : NaN));
    if (runs.some((n) => !Number.isFinite(n))) return null;
    if (runs.reduce((sum, n) => sum + n, 0) !== width * height) return null;
    return Object.freeze({ ...stroke, mask: Object.freeze({ width, height, runs: Object.freeze(runs) }) });
  }
  const numbers = data.split(',').map((n) => (n === '' ? NaN : Number(n)));
  if (numbers.length < 2 || numbers.length % 2 || numbers.some((n) => !Number.isFinite(n))) return null;
  const points = [];
  for (let i = 0; i < numbers.length; i += 2) points.push([numbers[i], numbers[i + 1]]);
  stroke.size = Number(size);
  stroke.points = points;
  if (!(stroke.size > 0)) return null;
  return Object.freeze(stroke);
}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}
