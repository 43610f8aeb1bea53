// Strokes: what a person painted, kept as data rather than pixels.
//
// A stroke is `{concept, mode: 'draw'|'remove', units, strength, size, points}` with the
// polyline `points` (`[[x, y], …]`) and the brush `size` (diameter) in image pixels. Its
// mask is rasterised from the polyline when needed, so a stroke is small enough to live
// in the URL and independent of the screen it was painted on. Strokes are never mutated:
// history snapshots share them.

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

/**
 * The stroke's mask at `resolution`² (image pixels): alpha 255 where painted, 0 elsewhere.
 * Anti-aliased edges are thresholded at half coverage so the server (alpha > 0 = painted)
 * sees the region a person sees; a stroke thinner than a pixel still marks its pixels.
 */
export function rasterize(stroke, resolution) {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = resolution;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.fillStyle = ctx.strokeStyle = '#000';
  tracePath(ctx, stroke.points, stroke.size);
  const pixels = ctx.getImageData(0, 0, resolution, resolution);
  const alpha = pixels.data;
  let painted = 0;
  for (let i = 3; i < alpha.length; i += 4) {
    alpha[i] = alpha[i] >= 128 ? 255 : 0;
    if (alpha[i]) painted += 1;
  }
  if (!painted) {
    for (const [x, y] of stroke.points) {
      const px = Math.min(resolution - 1, Math.max(0, Math.floor(x)));
      const py = Math.min(resolution - 1, Math.max(0, Math.floor(y)));
      alpha[(py * resolution + px) * 4 + 3] = 255;
    }
  }
  ctx.putImageData(pixels, 0, 0);
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

/** The stroke as `/api/v1/paint` takes it. */
export function toRequest(stroke, resolution) {
  return {
    concept: stroke.concept,
    mode: stroke.mode,
    mask: maskDataUrl(stroke, resolution),
    units: stroke.units,
    strength: stroke.strength,
  };
}

/** A short description for lists and screen readers: "tree · draw · 8 px · 20 units". */
export function describe(stroke) {
  const parts = [stroke.concept, stroke.mode, `${stroke.size} px`, `${stroke.units} units`];
  if (stroke.mode === 'draw' && stroke.strength !== 1) parts.push(`${stroke.strength}×`);
  return parts.join(' · ');
}

/** A key that identifies a stroke stack (for caching rendered images). */
export function stackKey(strokes) {
  return strokes.map(encodeStroke).join(';');
}

// URL form: `concept:mode:units:strength:size:x,y,x,y…`, strokes joined by `;`. The
// separators are characters encodeURIComponent escapes, so any concept name is safe.
const MODES = { draw: 'd', remove: 'r' };

export function encodeStroke(stroke) {
  const coords = stroke.points.map(([x, y]) => `${x},${y}`).join(',');
  return [
    encodeURIComponent(stroke.concept),
    MODES[stroke.mode],
    stroke.units,
    stroke.strength,
    stroke.size,
    coords,
  ].join(':');
}

/** Parses one stroke, or returns null when it is malformed. */
export function decodeStroke(text) {
  const fields = text.split(':');
  if (fields.length !== 6) return null;
  const [concept, mode, units, strength, size, coords] = fields;
  const numbers = coords.split(',').map(Number);
  if (numbers.length < 2 || numbers.length % 2 || numbers.some((n) => !Number.isFinite(n))) return null;
  const points = [];
  for (let i = 0; i < numbers.length; i += 2) points.push([numbers[i], numbers[i + 1]]);
  const stroke = {
    concept: safeDecode(concept),
    mode: mode === 'r' ? 'remove' : mode === 'd' ? 'draw' : null,
    units: Number.parseInt(units, 10),
    strength: Number(strength),
    size: Number(size),
    points,
  };
  if (!stroke.concept || !stroke.mode || !(stroke.units > 0) || !Number.isFinite(stroke.strength)
    || !(stroke.size > 0)) {
    return null;
  }
  return Object.freeze(stroke);
}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}
