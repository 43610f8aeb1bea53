// The server's APIs, as the UI uses them. Every call takes an optional AbortSignal and
// throws ApiError (with the server's `detail`, which names the offending field) on an
// HTTP error, or the fetch's AbortError when cancelled.

import { requestJson } from './recipe.js';

export class ApiError extends Error {
  constructor(status, kind, detail) {
    super(detail || kind || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.kind = kind;
    this.detail = detail;
  }

  /** 4xx: the request itself is wrong; resending it will not help. */
  get isClientError() {
    return this.status >= 400 && this.status < 500;
  }
}

async function call(path, { body, signal, method } = {}) {
  let response;
  const text = body === undefined || typeof body === 'string' ? body : JSON.stringify(body);
  try {
    response = await fetch(path, {
      method: method || (text === undefined ? 'GET' : 'POST'),
      headers: text === undefined
        ? { Accept: 'application/json' }
        : { Accept: 'application/json', 'Content-Type': 'application/json' },
      body: text,
      signal,
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, 'network', 'cannot reach the server');
  }
  if (!response.ok) {
    let kind = `HTTP ${response.status}`;
    let detail = response.statusText;
    try {
      const payload = await response.json();
      kind = payload.error || kind;
      detail = payload.detail || detail;
    } catch {
      // Not our JSON error body (a proxy, say): keep the status line.
    }
    throw new ApiError(response.status, kind, detail);
  }
  return response.json();
}

/** `[{name, resolution, default_layer, layers: [{name, units, grid, concepts}]}]` */
export function projects(signal) {
  return call('/api/v1/projects', { signal });
}

/** Unedited images by GAN Dissection id → PNG data URLs, in order. */
export async function generate(project, ids, signal) {
  const result = await call('/api/v1/generate', { body: { project, ids }, signal });
  return result.images;
}

/**
 * Renders `image` (`id:<n>` or `seed:<n>`) with `strokes` (`[{concept, mode, mask, units,
 * strength}]`, composed in order) on top of `baseEdit` (an `edit` an earlier answer
 * carried, or undefined) → `{image, units, timing, edit?}`; `edit` is the flattened
 * layer edit after the strokes, when the server offers it.
 */
export function paint({ project, layer, image, strokes, baseEdit }, signal) {
  const body = { project, layer, strokes };
  if (baseEdit !== undefined) body.base_edit = baseEdit;
  return call('/api/v1/paint', { body: requestJson(body, image), signal });
}

/** The dissection's rankings at `layer`: `[{name, metric, scores}]` (score = −value). */
export async function rankings(project, layer, signal) {
  const query = new URLSearchParams({ project, layer });
  const result = await call(`/api/rankings?${query}`, { signal });
  return result.res;
}

/** Each unit's 0.99-quantile level at `layer` (what a draw stroke sets a unit to). */
export async function levels(project, layer, signal) {
  const query = new URLSearchParams({ project, layer, quantiles: '0.99' });
  const result = await call(`/api/levels?${query}`, { signal });
  return result.res.map((row) => row[0]);
}

/** Per unit: `{unit, img}`, the URL of its top-activating images strip. */
export async function unitImages(project, layer, signal) {
  const query = new URLSearchParams({ project, layer });
  const result = await call(`/api/units?${query}`, { signal });
  return new Map(result.res.map((u) => [u.unit, u.img]));
}

/**
 * The activations of every unit of `layer` for image `id` under gandissect
 * `interventions`, quantile-normalised to 0..255: `[C][H][W]`.
 */
export async function featuremaps(project, layer, image, interventions, signal) {
  const [kind, value] = image.split(':');
  // The gandissect API takes ids only; a seed's image goes as its latent vector there,
  // which the UI does not compute, so heatmaps need an id.
  if (kind !== 'id') throw new ApiError(400, 'bad_request', 'seed: unit heatmaps need an image id, not a seed');
  const result = await call('/api/featuremaps', {
    body: { project, ids: [Number(value)], layers: [layer], interventions },
    signal,
  });
  return result.res[layer][0];
}
