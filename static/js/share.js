// Sharing and saving an edit: PNG downloads, the edit as the paint API's JSON (and back),
// the animated GIF of the edit sequence, and Copy link.

import * as exporter from './exporter.js';
import { imageParts } from './hashstate.js';
import { imageKey, splitKey } from './history.js';
import { parseRecipe, requestJson } from './recipe.js';
import { toRequest } from './strokes.js';
import { setStatus, toast } from './ui.js';

/**
 * The actions of the PNG button and the Export menu. `app`: `{store, edits(), renderer,
 * busy, current(), resolution(), present(), showError(error, options)}`.
 */
export function shareActions(app) {
  const baseName = () => {
    const { kind, value } = imageParts(app.store.get().image);
    const edited = app.edits().strokes.length ? '-edited' : '';
    const name = { seed: `seed${value}`, image: value.slice(0, 'upload-'.length + 8) }[kind] ?? value;
    return `ganpaint-${app.store.get().project.name}-${name}${edited}`;
  };

  async function downloadPng() {
    if (!app.current()) return;
    exporter.saveBlob(await exporter.pngBlob(app.current()), `${baseName()}.png`);
  }

  async function downloadLargePng() {
    if (!app.current()) return;
    const scale = upscale(app.resolution());
    const blob = await exporter.upscaledPng(app.current(), scale, !app.store.get().pixelated);
    exporter.saveBlob(blob, `${baseName()}-upscaled-x${scale}.png`);
  }

  function exportJson() {
    const edits = app.edits();
    const { project, layer, image } = splitKey(edits.key);
    const body = { project, layer, strokes: edits.strokes.map((stroke) => toRequest([stroke], app.resolution())) };
    const text = `${requestJson(body, image, 2)}\n`;
    exporter.saveBlob(new Blob([text], { type: 'application/json' }), `${baseName()}.json`);
    if (edits.strokes.length > 64) {
      toast('The file lists every stroke. The server paints at most 64 per request, so replaying it with curl needs the editor (or a split into parts); importing it here works.', { kind: 'info', title: 'Saved the edit' });
    }
  }

  /** The unedited image, then one frame per stroke, each rendered by the server. */
  async function exportGif() {
    const { strokes, key } = app.edits();
    const { project, layer, image } = splitKey(key);
    const done = app.busy.begin();
    try {
      const urls = [];
      for (let k = 0; k <= strokes.length; k += 1) {
        setStatus(`Making the animation: frame ${k + 1} of ${strokes.length + 1}`);
        const result = await app.renderer.render({ project, layer, image, strokes: strokes.slice(0, k), resolution: app.resolution() });
        urls.push(result.image);
      }
      exporter.saveBlob(await exporter.gifBlob(urls), `${baseName()}.gif`);
      setStatus(`Saved an animation of ${urls.length} frames: the image, then one per stroke`);
    } catch (error) {
      app.showError(error, { title: 'Could not make the animation' });
    } finally {
      done();
    }
  }

  async function importJson(file) {
    const fail = (message) => toast(message, { title: `Could not import ${file.name}` });
    let recipe;
    try {
      recipe = parseRecipe(await file.text());
    } catch (error) {
      fail(error.message);
      return;
    }
    const s = app.store.get();
    const project = s.projects.find((p) => p.name === (recipe.project ?? s.project.name));
    if (!project) {
      fail(`It is for project “${recipe.project}”, which this server doesn't have (it has ${s.projects.map((p) => p.name).join(', ')}).`);
      return;
    }
    const layer = project.layers.find((l) => l.name === (recipe.layer ?? project.default_layer));
    if (!layer) {
      fail(`It edits layer “${recipe.layer}”, which ${project.name} doesn't have.`);
      return;
    }
    const unknown = [...new Set(recipe.strokes.map((st) => st.concept).filter((c) => !layer.concepts.some((k) => k.name === c)))];
    if (unknown.length) {
      fail(`It paints ${unknown.map((c) => `“${c}”`).join(', ')}, which ${layer.name} has no units for.`);
      return;
    }
    const strokes = [];
    try {
      for (const stroke of recipe.strokes) {
        const mask = Object.freeze(await exporter.maskFromDataUrl(stroke.mask));
        // What the file leaves out is what the server would paint with: the concept's tuned setting.
        const concept = layer.concepts.find((k) => k.name === stroke.concept);
        const tuned = stroke.mode === 'remove' ? concept.remove_default : concept.draw_default;
        const units = stroke.units ?? tuned?.units ?? 20;
        const strength = stroke.strength ?? concept.draw_default?.strength ?? 1;
        strokes.push(Object.freeze({ concept: stroke.concept, mode: stroke.mode, units, strength, mask }));
      }
    } catch {
      fail('One of its masks is not a PNG image the browser can read.');
      return;
    }
    if (app.edits().switchTo(imageKey(project.name, layer.name, recipe.image ?? s.image), strokes)) app.present();
    toast(`${strokes.length} stroke${strokes.length === 1 ? '' : 's'} from ${file.name}. Undo goes back to what was here.`, { kind: 'info', title: 'Imported the edit' });
  }

  async function copyLink() {
    const link = location.href;
    try {
      await navigator.clipboard.writeText(link);
      toast('Paste it anywhere: it opens this image with these strokes.', { kind: 'info', title: 'Link copied' });
    } catch {
      toast(link, { kind: 'info', title: 'Copy this link (the browser did not allow copying it for you)', timeout: 20000 });
    }
  }

  return { downloadPng, downloadLargePng, exportJson, exportGif, importJson, copyLink };
}

/** The factor the upscaled PNG uses: about 512 px a side. */
export function upscale(resolution) {
  return Math.max(2, Math.round(512 / resolution));
}
