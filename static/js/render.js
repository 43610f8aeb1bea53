// Rendering a stroke stack: the server is stateless, so every change sends the stack
// (see plan.js for how a long one goes as a chain of requests). Rendered images and the
// flattened edits the server returns are kept by stack, so undo and redo to a state
// seen before are instant and exact, and the next stroke sends only itself on top of
// the last edit.

import * as api from './api.js';
import { chainPlan, longestKnownPrefix } from './plan.js';
import { groupStrokes, prefixKeys, toRequest } from './strokes.js';

/** A least-recently-used map. */
export class Lru {
  constructor(limit) {
    this.limit = limit;
    this.map = new Map();
  }

  has(key) {
    return this.map.has(key);
  }

  get(key) {
    if (!this.map.has(key)) return undefined;
    const value = this.map.get(key);
    this.map.delete(key);
    this.map.set(key, value);
    return value;
  }

  set(key, value) {
    this.map.delete(key);
    this.map.set(key, value);
    while (this.map.size > this.limit) this.map.delete(this.map.keys().next().value);
  }

  clear() {
    this.map.clear();
  }
}

/** Thrown when the stack needs more strokes per request than the server takes. */
export class TooManyStrokes extends Error {
  constructor(groups, limit) {
    super(`strokes: at most ${limit} strokes per request`);
    this.name = 'TooManyStrokes';
    this.status = 400;
    this.detail = this.message;
    this.groups = groups;
  }
}

export class Renderer {
  /** `limit`: strokes per request the server takes (its `--max-strokes`, 64 by default). */
  constructor({ limit = 64 } = {}) {
    this.limit = limit;
    this.images = new Lru(400); // project|layer|image|prefix key → {image, units}
    this.edits = new Lru(48); // same keys → the server's flattened edit
    this.unitsBySettings = new Map(); // project|layer|concept|mode|count → units
    this.flattens = null; // does the server answer `edit`? null until it has answered
  }

  /** `keys[k]` for the first k strokes of `strokes` under `base` (project|layer|image). */
  keysFor(base, strokes) {
    return prefixKeys(strokes).map((key) => `${base}|${key}`);
  }

  cached(base, strokes) {
    return this.images.get(this.keysFor(base, strokes)[strokes.length]) || null;
  }

  /**
   * Renders `strokes` on `image` → `{image, units, timing, cached, requests}`: `cached` is
   * 'client' when the image was kept here; `units[i]` are the units stroke i edited.
   * `onRequest()` is told about each request sent.
   */
  async render({ project, layer, image, strokes, resolution }, signal) {
    const base = `${project}|${layer}|${image}`;
    const keys = this.keysFor(base, strokes);
    const n = strokes.length;
    const kept = this.images.get(keys[n]);
    if (kept) return { ...kept, cached: 'client', requests: 0 };

    let known = this.flattens === false ? 0 : longestKnownPrefix(keys, (key) => this.edits.has(key));
    let retried = false;
    for (;;) {
      const groups = groupStrokes(strokes.slice(known), resolution)
        .map(({ start, end }) => ({ start: start + known, end: end + known }));
      if (this.flattens === false && groups.length > this.limit) throw new TooManyStrokes(groups.length, this.limit);
      const plan = chainPlan(groups, known, this.limit);
      try {
        let result;
        for (const [step, request] of plan.entries()) {
          if (step > 0 && this.flattens === false) throw new TooManyStrokes(groups.length, this.limit);
          try {
            result = await api.paint({
              project,
              layer,
              image,
              strokes: request.groups.map((g) => toRequest(strokes.slice(g.start, g.end), resolution)),
              baseEdit: request.base ? this.edits.get(keys[request.base]) : undefined,
            }, signal);
          } catch (error) {
            // Errors name request strokes (`strokes[i]`): say which of the person's they are.
            error.strokeNumbers = request.groups.map((g) => g.start + 1);
            throw error;
          }
          const end = request.groups.length ? request.groups[request.groups.length - 1].end : request.base;
          request.groups.forEach((g, i) => {
            this.unitsBySettings.set(this.unitsKey(project, layer, strokes[g.start]), result.units[i]);
          });
          if (result.edit !== undefined && result.edit !== null) {
            this.flattens = true;
            this.edits.set(keys[end], result.edit);
          } else {
            this.flattens = false;
          }
          const units = strokes.slice(0, end).map((s) => this.unitsBySettings.get(this.unitsKey(project, layer, s)) || null);
          this.images.set(keys[end], { image: result.image, units });
        }
        const shown = this.images.get(keys[n]);
        return { ...shown, timing: result.timing, cached: null, requests: plan.length };
      } catch (error) {
        // An edit the server no longer takes (say, it was restarted with another model):
        // forget the kept edits and send the strokes in full, once.
        const stale = error.status === 400 && /^base_edit/.test(error.detail || '');
        if (!stale || retried) throw error;
        retried = true;
        this.edits.clear();
        known = 0;
      }
    }
  }

  unitsKey(project, layer, stroke) {
    return `${project}|${layer}|${stroke.concept}|${stroke.mode}|${stroke.units}`;
  }

  /** Units stroke `stroke` edits, once a render has told (null before). */
  unitsOf(project, layer, stroke) {
    return this.unitsBySettings.get(this.unitsKey(project, layer, stroke)) || null;
  }
}

/**
 * The status line after a render (`result` from Renderer.render, `total` ms as the user
 * waited): an answer the server had kept says so, rather than "model 0 ms, 0% recomputed".
 */
export function statusLine(result, total) {
  if (result.cached === 'client') return 'Shown from the editor\'s cache';
  const requests = result.requests > 1 ? ` in ${result.requests} requests` : '';
  if (result.timing.recomputed === 0) return `Rendered in ${total} ms${requests} (from the server's cache)`;
  const model = Math.round(result.timing.forward_ms);
  const share = result.timing.recomputed;
  const partial = share < 1 ? `, ${Math.round(share * 100)}% of the image recomputed` : '';
  return `Rendered in ${total} ms${requests} (model ${model} ms${partial})`;
}
