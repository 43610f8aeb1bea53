// Unit heatmaps: where one unit fires in the image on screen, edits included. The
// activation comes from the gandissect API's /featuremaps with interventions equal to
// the stroke stack (runs of same-settings strokes merged, as for painting). That API
// knows the dataset's images only: on an uploaded picture a unit shows the samples where
// it fires most, and says that its heatmap is not available.

import * as api from './api.js';
import { isUpload } from './hashstate.js';
import { groupStrokes, unionDataUrl } from './strokes.js';
import { markUnits } from './units.js';

const $ = (id) => document.getElementById(id);

export class Inspector {
  /**
   * `app`: `{store, renderer, surface, busy, shown(), conceptInfo(name), resolution(),
   * perLayer(kind, fetcher), showError(error, options), toast(message, options)}`.
   */
  constructor(app) {
    this.app = app;
    this.maps = new Map(); // shown image key → [C][H][W]
  }

  get inspected() {
    return this.app.store.get().inspected;
  }

  toggle(unit) {
    if (this.inspected === unit) this.clear();
    else this.inspect(unit);
  }

  async inspect(unit) {
    const { store, perLayer } = this.app;
    store.set({ inspected: unit });
    markUnits($('units'), unit);
    const figure = $('unit-detail');
    figure.hidden = false;
    $('unit-caption').textContent = isUpload(store.get().image)
      ? `Unit ${unit} of ${store.get().layer.name}: the images where it fires most. Where it fires in your uploaded picture is not available: heatmaps need one of the samples.`
      : `Unit ${unit} of ${store.get().layer.name}: the images where it fires most.`;
    const image = $('unit-image');
    image.removeAttribute('src');
    image.alt = `Top activating images for unit ${unit}`;
    perLayer('unitImages', api.unitImages)
      .then((urls) => {
        if (this.inspected === unit && urls.get(unit)) image.src = urls.get(unit);
      })
      .catch(() => { figure.hidden = true; });
    await this.show(unit);
  }

  /** Gandissect interventions equal to the stroke stack. */
  async interventions(strokes) {
    if (!strokes.length) return [];
    const { store, renderer, conceptInfo, resolution, perLayer } = this.app;
    const groups = groupStrokes(strokes, resolution());
    if (groups.length > 64) {
      const error = new Error(`Heatmaps can show an edit of up to 64 runs of strokes with the same settings; this one has ${groups.length}.`);
      error.plain = true;
      throw error;
    }
    const levels = await perLayer('levels', api.levels);
    const { project, layer } = store.get();
    return groups.map(({ start, end }) => {
      const stroke = strokes[start];
      const info = conceptInfo(stroke.concept);
      const ranked = stroke.mode === 'remove' ? info.remove_units : info.units.map((u) => u.unit);
      const units = renderer.unitsOf(project.name, layer.name, stroke) || ranked.slice(0, stroke.units);
      return {
        ablations: units.map((unit) => ({
          layer: layer.name,
          unit,
          alpha: 1,
          value: stroke.mode === 'draw' ? stroke.strength * levels[unit] : 0,
        })),
        mask: { shape: [], bitbounds: [], bitstring: unionDataUrl(strokes.slice(start, end), resolution()) },
        maskpooling: 'max',
      };
    });
  }

  /** Shows unit `unit`'s activation over the image on screen. */
  async show(unit) {
    const { store, surface, busy, shown, showError, toast } = this.app;
    if (isUpload(store.get().image)) return; // no heatmap: the caption says why
    const { key, strokes } = shown();
    const done = busy.begin();
    try {
      let maps = this.maps.get(key);
      if (!maps) {
        const { project, layer, image } = store.get();
        maps = await api.featuremaps(project.name, layer.name, image, await this.interventions(strokes));
        this.maps.set(key, maps);
        if (this.maps.size > 20) this.maps.delete(this.maps.keys().next().value);
      }
      if (this.inspected !== unit || shown().key !== key) return;
      surface.showHeatmap(maps[unit]);
      const badge = $('heatmap-badge');
      badge.textContent = `Unit ${unit} · ${store.get().layer.name} activation`;
      badge.hidden = false;
    } catch (error) {
      const title = `Could not show unit ${unit}'s activation`;
      if (error.plain) toast(error.message, { title });
      else if (/^seed/.test(error.detail || '')) toast('Unit heatmaps work on image ids; this image comes from a seed.', { title, kind: 'info' });
      else showError(error, { title });
      this.clear();
    } finally {
      done();
    }
  }

  /** Hides the heatmap; false when none showed. */
  clear() {
    if (this.inspected === null) return false;
    this.app.store.set({ inspected: null });
    this.app.surface.showHeatmap(null);
    $('heatmap-badge').hidden = true;
    $('unit-detail').hidden = true;
    markUnits($('units'), null);
    return true;
  }
}
