// The GANPaint editor: wiring. The pieces live in their own modules — the edit history
// (history.js), rendering (render.js, plan.js), the painting surface (surface.js), the
// palette, units panel, gallery, keys, exports — and this file connects them to the page
// and to each other.
//
// What is edited is `edits` (an EditHistory): the present state names the image
// (project|layer|image) and its strokes. Everything on screen follows it: `present()`
// brings the controls, the address bar and the image in line after each change.

import * as api from './api.js';
import { stepBrush } from './brush.js';
import { explain } from './errors.js';
import * as exporter from './exporter.js';
import { Gallery } from './gallery.js';
import { decodeHash, describeImage, encodeHash, imageParts, MAX_ID, parseImage } from './hashstate.js';
import { EditHistory, imageKey, sameStrokes, splitKey } from './history.js';
import { installKeys, isTextField } from './keys.js';
import { buildPalette, markPalette } from './palette.js';
import { strokeRanking } from './ranking.js';
import { requestJson, parseRecipe } from './recipe.js';
import { Renderer } from './render.js';
import { createStore } from './state.js';
import * as storage from './storage.js';
import { conceptColor, describe, groupStrokes, maskDataUrl, simplify, toRequest, unionDataUrl } from './strokes.js';
import { Surface } from './surface.js';
import { Busy, setStatus, toast } from './ui.js';
import { markUnits, renderUnits } from './units.js';

const $ = (id) => document.getElementById(id);

const store = createStore({
  projects: [],
  project: null, // ProjectInfo from /api/v1/projects
  layer: null, // LayerInfo
  image: 'id:0',
  concept: null,
  mode: 'draw',
  size: 0,
  strength: 1,
  inspected: null, // the unit whose heatmap shows
  rankings: null, // the layer's rankings from /api/rankings
  pixelated: false,
});
const renderer = new Renderer();
let edits = null; // EditHistory
let surface;
let busy;
let gallery;
let shown = { key: null, strokes: [] }; // what #image shows
let current = null; // the PNG data URL on screen
let inflight = null; // {controller, key}
let originalRequest = null;
const featureCache = new Map();
const levelsCache = new Map();
const unitImagesCache = new Map();
const rankingsCache = new Map();
let restoredStacks = new Map();

// ---- small helpers --------------------------------------------------------------------

const state = () => store.get();
const resolution = () => state().project?.resolution || 64;
const conceptInfo = (name = state().concept) => state().layer?.concepts.find((c) => c.name === name) || null;

function unitsPerStroke() {
  const choice = document.querySelector('input[name=units]:checked').value;
  if (choice !== 'custom') return Number(choice);
  const max = state().layer ? state().layer.units : 512;
  const value = Math.round(Number($('units-custom').value));
  return Math.min(max, Math.max(1, Number.isFinite(value) ? value : 20));
}

function showError(error, { strokes, title } = {}) {
  const plain = explain(error, {
    strokeNumber: (i) => error.strokeNumbers?.[i] ?? i + 1,
    layer: state().layer?.name,
  });
  if (!plain) return null;
  toast(plain.message, { title: title || plain.title, action: error.status >= 500 || error.status === 0 || error.status === 503 ? { label: 'Retry', run: render } : undefined });
  setStatus(`Not rendered: ${plain.title.toLowerCase()}`);
  return plain;
}

function cachedPerLayer(map, fetcher) {
  const key = `${state().project.name}|${state().layer.name}`;
  if (!map.has(key)) {
    const promise = fetcher(state().project.name, state().layer.name);
    promise.catch(() => map.delete(key));
    map.set(key, promise);
  }
  return map.get(key);
}

// ---- the present state ----------------------------------------------------------------

let lastHash = null;

/** The address bar follows the edit: a new entry when the image changes, else replaced. */
function syncHash(mode) {
  const { project, layer, image } = splitKey(edits.key);
  const hash = encodeHash({ project, layer, image, strokes: edits.strokes });
  lastHash = hash;
  if (location.hash === hash) return;
  if (mode === 'push') history.pushState(null, '', hash);
  else history.replaceState(null, '', hash);
}

let saveWarned = false;
let saveTimer = null;

/** Saves the history soon (a burst of strokes saves once), and at once when the page goes. */
function persist() {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(saveNow, 250);
}

function saveNow() {
  clearTimeout(saveTimer);
  saveTimer = null;
  if (!edits) return;
  const result = storage.saveHistory(edits);
  if (result === 'failed' && !saveWarned) {
    saveWarned = true;
    toast('This browser\'s storage is full, so the strokes will not survive a reload. Export the edit as JSON to keep it.', { title: 'Could not save the edit' });
  }
}

/**
 * Brings everything in line with `edits`' present state. `browser`: 'auto' (a new
 * address-bar entry when the image changed, so Back returns to the image before; else
 * the entry is rewritten) or 'replace' (the address bar named this state: Back, Forward,
 * a followed link).
 */
function present({ browser = 'auto' } = {}) {
  const { project, layer, image } = splitKey(edits.key);
  const moved = showLocation(project, layer, image);
  syncHash(browser === 'auto' && moved ? 'push' : 'replace');
  updateHistoryControls();
  persist();
  render();
}

/** Selects project, layer and image; true when any of them changed. */
function showLocation(projectName, layerName, image) {
  const s = state();
  let moved = false;
  if (!s.project || s.project.name !== projectName) {
    const project = s.projects.find((p) => p.name === projectName);
    store.set({ project });
    $('project').value = project.name;
    surface.setResolution(project.resolution);
    const max = Math.max(2, Math.floor(project.resolution / 2));
    $('brush-size').max = String(max);
    setBrushSize(Math.min(max, s.size || Math.round(project.resolution / 8)));
    for (const el of document.querySelectorAll('.export-res')) el.textContent = `${project.resolution}×${project.resolution}`;
    const scale = Math.max(2, Math.round(512 / project.resolution));
    for (const el of document.querySelectorAll('.export-scale')) el.textContent = String(scale);
    for (const el of document.querySelectorAll('.export-large')) el.textContent = `${project.resolution * scale}×${project.resolution * scale}`;
    moved = true;
  }
  if (moved || state().layer.name !== layerName) {
    const layer = state().project.layers.find((l) => l.name === layerName);
    store.set({ layer, rankings: null });
    fillSelect($('layer'), state().project.layers.map((l) => l.name), layer.name);
    $('units-custom').max = String(layer.units);
    $('hint-grid').textContent = `${layer.name}'s ${layer.grid[0]}×${layer.grid[1]} grid`;
    const concepts = layer.concepts;
    if (!concepts.some((c) => c.name === state().concept)) {
      store.set({ concept: (concepts.find((c) => c.name === 'tree') || concepts[0])?.name || null });
    }
    buildPalette($('palette'), concepts, state().concept);
    $('palette-empty').hidden = concepts.length > 0;
    loadRankings();
    moved = true;
  }
  if (moved || state().image !== image) {
    store.set({ image });
    clearHeatmap();
    moved = true;
  }
  syncImageFields();
  gallery.follow(state().project.name, image);
  if (moved) loadOriginal();
  updateUnits();
  return moved;
}

function syncImageFields() {
  const { kind, value } = imageParts(state().image);
  if (document.activeElement !== $('image-id') || kind === 'id') $('image-id').value = kind === 'id' ? value : '';
  if (document.activeElement !== $('seed') || kind === 'seed') $('seed').value = kind === 'seed' ? value : '';
}

function fillSelect(select, names, selected) {
  select.replaceChildren(...names.map((name) => new Option(name, name, false, name === selected)));
}

/** Switches to another image (or layer, or project): a step in the history. */
function goTo(image, { project = state().project.name, layer = state().layer.name } = {}) {
  if (edits.switchTo(imageKey(project, layer, image))) present();
}

// ---- rendering ------------------------------------------------------------------------

function renderKey(strokes) {
  const { project, layer, image } = splitKey(edits.key);
  return renderer.keysFor(`${project}|${layer}|${image}`, strokes)[strokes.length];
}

/** Brings the image in line with the present state. */
async function render() {
  const strokes = edits.strokes;
  const key = renderKey(strokes);
  surface.setPending(strokes.filter((s) => !shown.strokes.includes(s)));
  if (inflight && inflight.key !== key) {
    inflight.controller.abort();
    inflight = null;
  }
  if (shown.key === key) {
    surface.setPending([]);
    return;
  }
  if (inflight) return; // already asked for this very state

  const { project, layer, image } = splitKey(edits.key);
  const controller = new AbortController();
  inflight = { controller, key };
  const done = busy.begin();
  const started = performance.now();
  try {
    const result = await renderer.render({ project, layer, image, strokes, resolution: resolution() }, controller.signal);
    if (inflight?.controller !== controller) return;
    inflight = null;
    await show(key, strokes, result.image);
    setStatus(statusLine(result, Math.round(performance.now() - started)));
  } catch (error) {
    if (error.name === 'AbortError') return;
    if (inflight?.controller === controller) inflight = null;
    renderFailed(error, strokes);
  } finally {
    done();
  }
}

function statusLine(result, total) {
  if (result.cached === 'client') return 'Shown from the editor\'s cache';
  const requests = result.requests > 1 ? ` in ${result.requests} requests` : '';
  if (result.timing.recomputed === 0) return `Rendered in ${total} ms${requests} (from the server's cache)`;
  const model = Math.round(result.timing.forward_ms);
  const share = result.timing.recomputed;
  const partial = share < 1 ? `, ${Math.round(share * 100)}% of the image recomputed` : '';
  return `Rendered in ${total} ms${requests} (model ${model} ms${partial})`;
}

function renderFailed(error, strokes) {
  const plain = showError(error);
  if (plain && error.status >= 400 && error.status < 500 && edits.strokes === strokes && error.status !== 408) {
    // The server refused this stack: forget the change that made it, keep what works.
    edits.discard();
    present();
  } else {
    surface.setPending([]);
  }
}

async function show(key, strokes, image) {
  if (!(await surface.showImage(image))) return;
  shown = { key, strokes };
  current = image;
  surface.setPending(edits.strokes.filter((s) => !strokes.includes(s)));
  const stage = $('stage');
  stage.dataset.renders = String(Number(stage.dataset.renders) + 1);
  stage.dataset.imageKey = key;
  stage.dataset.strokes = String(strokes.length);
  stage.dataset.image = splitKey(edits.key).image;
  $('image').setAttribute('aria-label', strokes.length
    ? `${describeImage(state().image)} with ${strokes.length} stroke${strokes.length > 1 ? 's' : ''}`
    : `${describeImage(state().image)}, unedited`);
  if (!strokes.length) surface.showOriginal(image);
  if (state().inspected !== null) showHeatmap(state().inspected);
}

/** The unedited image, for compare and split; fetched apart from the edit requests. */
async function loadOriginal() {
  const { project, layer, image } = splitKey(edits.key);
  const key = `${project}|${layer}|${image}`;
  originalRequest?.abort();
  originalRequest = null;
  const kept = renderer.cached(key, []);
  if (kept) {
    surface.showOriginal(kept.image);
    return;
  }
  if (!edits.strokes.length) return; // render() fetches it as the image itself
  const controller = new AbortController();
  originalRequest = controller;
  try {
    const result = await renderer.render({ project, layer, image, strokes: [], resolution: resolution() }, controller.signal);
    if (splitKey(edits.key).image === image) surface.showOriginal(result.image);
  } catch (error) {
    if (error.name !== 'AbortError') showError(error, { title: 'Could not load the original image' });
  }
}

// ---- brush ----------------------------------------------------------------------------

function selectConcept(name) {
  store.set({ concept: name });
  markPalette($('palette'), name);
  clearHeatmap();
  updateUnits();
  surface.refreshCursor();
}

function setMode(mode) {
  store.set({ mode });
  document.querySelector(`input[name=mode][value=${mode}]`).checked = true;
  $('strength').disabled = mode === 'remove';
  updateUnits();
  surface.refreshCursor();
}

function setBrushSize(size) {
  const input = $('brush-size');
  const clamped = Math.min(Number(input.max), Math.max(Number(input.min), Math.round(size)));
  store.set({ size: clamped });
  input.value = String(clamped);
  $('brush-size-value').textContent = `${clamped} px`;
  surface.refreshCursor();
}

function setStrength(value) {
  const strength = Math.round(value * 10) / 10;
  store.set({ strength });
  $('strength').value = String(strength);
  $('strength-value').textContent = `${strength.toFixed(1)}×`;
}

function addStroke(points) {
  const s = state();
  if (!s.concept) return;
  hideHint();
  edits.add(Object.freeze({
    concept: s.concept,
    mode: s.mode,
    units: unitsPerStroke(),
    strength: s.strength,
    size: s.size,
    points: simplify(points),
  }));
  present();
}

// ---- history --------------------------------------------------------------------------

function updateHistoryControls() {
  const strokes = edits.strokes;
  $('undo').disabled = !edits.canUndo;
  $('redo').disabled = !edits.canRedo;
  $('reset').disabled = strokes.length === 0;
  $('history-count').textContent = strokes.length ? `(${strokes.length})` : '';
  $('history-empty').hidden = strokes.length > 0;
  $('history').replaceChildren(...strokes.map((stroke, index) => {
    const item = document.createElement('li');
    item.className = 'history-item';
    item.tabIndex = 0;
    item.setAttribute('aria-label', `Stroke ${index + 1}: ${describe(stroke)}`);
    const swatch = document.createElement('span');
    swatch.className = `swatch${stroke.mode === 'remove' ? ' swatch-remove' : ''}`;
    swatch.style.setProperty('--swatch', conceptColor(stroke.concept));
    const text = document.createElement('span');
    text.className = 'history-text';
    text.textContent = describe(stroke);
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'icon-button small';
    remove.setAttribute('aria-label', `Delete stroke ${index + 1} (${stroke.concept}, ${stroke.mode})`);
    remove.title = 'Delete this stroke';
    remove.innerHTML = '<svg aria-hidden="true" viewBox="0 0 24 24" width="16" height="16"><path d="M6 6l12 12M18 6 6 18" stroke="currentColor" stroke-width="2" stroke-linecap="round"/></svg>';
    remove.addEventListener('click', () => {
      surface.highlight(null);
      edits.remove(index);
      present();
    });
    const on = () => surface.highlight(stroke);
    const off = () => surface.highlight(null);
    item.addEventListener('pointerenter', on);
    item.addEventListener('pointerleave', off);
    item.addEventListener('focusin', on);
    item.addEventListener('focusout', off);
    item.addEventListener('keydown', (event) => {
      if (event.key === 'Delete' || event.key === 'Backspace') {
        event.preventDefault();
        remove.click();
      }
    });
    item.append(swatch, text, remove);
    return item;
  }));
}

function undo() {
  if (edits.undo()) present();
  syncImageFields();
}

function redo() {
  if (edits.redo()) present();
  syncImageFields();
}

// ---- units and heatmaps ---------------------------------------------------------------

async function loadRankings() {
  const layer = state().layer;
  try {
    const rankings = await cachedPerLayer(rankingsCache, api.rankings);
    if (state().layer === layer) {
      store.set({ rankings });
      updateUnits();
    }
  } catch (error) {
    // Without the dissection's rankings the panel still lists the server's order.
    if (state().layer === layer) {
      store.set({ rankings: [] });
      updateUnits();
    }
  }
}

function updateUnits() {
  const s = state();
  const concept = conceptInfo();
  const ranking = concept && s.rankings ? strokeRanking(concept, s.mode, s.rankings) : null;
  renderUnits(
    { list: $('units'), heading: $('units-concept'), modeLabel: $('units-mode'), explanation: $('units-ranking') },
    {
      concept,
      mode: s.mode,
      ranking,
      count: unitsPerStroke(),
      inspected: s.inspected,
      onPick: (unit) => (state().inspected === unit ? clearHeatmap() : inspectUnit(unit)),
    },
  );
}

async function inspectUnit(unit) {
  store.set({ inspected: unit });
  markUnits($('units'), unit);
  const figure = $('unit-detail');
  figure.hidden = false;
  $('unit-caption').textContent = `Unit ${unit} of ${state().layer.name}: the images where it fires most.`;
  const image = $('unit-image');
  image.removeAttribute('src');
  image.alt = `Top activating images for unit ${unit}`;
  cachedPerLayer(unitImagesCache, api.unitImages)
    .then((urls) => {
      if (state().inspected === unit && urls.get(unit)) image.src = urls.get(unit);
    })
    .catch(() => { figure.hidden = true; });
  await showHeatmap(unit);
}

/** Gandissect interventions equal to the stroke stack (merged as for painting). */
async function interventionsFor(strokes) {
  if (!strokes.length) return [];
  const groups = groupStrokes(strokes, resolution());
  if (groups.length > 64) {
    const error = new Error(`Heatmaps can show an edit of up to 64 runs of strokes with the same settings; this one has ${groups.length}.`);
    error.plain = true;
    throw error;
  }
  const levels = await cachedPerLayer(levelsCache, api.levels);
  const { project, layer } = state();
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

async function showHeatmap(unit) {
  const { key, strokes } = shown;
  const cacheKey = key;
  const done = busy.begin();
  try {
    let maps = featureCache.get(cacheKey);
    if (!maps) {
      const interventions = await interventionsFor(strokes);
      maps = await api.featuremaps(state().project.name, state().layer.name, state().image, interventions);
      featureCache.set(cacheKey, maps);
      if (featureCache.size > 20) featureCache.delete(featureCache.keys().next().value);
    }
    if (state().inspected !== unit || shown.key !== key) return;
    surface.showHeatmap(maps[unit]);
    const badge = $('heatmap-badge');
    badge.textContent = `Unit ${unit} · ${state().layer.name} activation`;
    badge.hidden = false;
  } catch (error) {
    if (error.plain) toast(error.message, { title: `Could not show unit ${unit}'s activation` });
    else if (/^seed/.test(error.detail || '')) toast('Unit heatmaps work on image ids; this image comes from a seed.', { title: `Could not show unit ${unit}'s activation`, kind: 'info' });
    else showError(error, { title: `Could not show unit ${unit}'s activation` });
    clearHeatmap();
  } finally {
    done();
  }
}

function clearHeatmap() {
  if (state().inspected === null) return false;
  store.set({ inspected: null });
  surface.showHeatmap(null);
  $('heatmap-badge').hidden = true;
  $('unit-detail').hidden = true;
  markUnits($('units'), null);
  return true;
}

// ---- compare, export, import, share ---------------------------------------------------

function setCompare(on) {
  surface.setCompare(on);
  $('compare').setAttribute('aria-pressed', String(on));
}

function baseName() {
  const { kind, value } = imageParts(state().image);
  const edited = edits.strokes.length ? '-edited' : '';
  return `ganpaint-${state().project.name}-${kind === 'seed' ? `seed${value}` : value}${edited}`;
}

async function downloadPng() {
  if (!current) return;
  exporter.saveBlob(await exporter.pngBlob(current), `${baseName()}.png`);
}

async function downloadLargePng() {
  if (!current) return;
  const scale = Math.max(2, Math.round(512 / resolution()));
  const blob = await exporter.upscaledPng(current, scale, !state().pixelated);
  exporter.saveBlob(blob, `${baseName()}-upscaled-x${scale}.png`);
}

function exportJson() {
  const { project, layer, image } = splitKey(edits.key);
  const body = {
    project,
    layer,
    strokes: edits.strokes.map((stroke) => ({ ...toRequest([stroke], resolution()) })),
  };
  const text = `${requestJson(body, image, 2)}\n`;
  exporter.saveBlob(new Blob([text], { type: 'application/json' }), `${baseName()}.json`);
  if (edits.strokes.length > 64) {
    toast('The file lists every stroke. The server paints at most 64 per request, so replaying it with curl needs the editor (or a split into parts); importing it here works.', { kind: 'info', title: 'Saved the edit' });
  }
}

async function exportGif() {
  const strokes = edits.strokes;
  const { project, layer, image } = splitKey(edits.key);
  const done = busy.begin();
  try {
    const urls = [];
    for (let k = 0; k <= strokes.length; k += 1) {
      setStatus(`Making the animation: frame ${k + 1} of ${strokes.length + 1}`);
      const result = await renderer.render({ project, layer, image, strokes: strokes.slice(0, k), resolution: resolution() });
      urls.push(result.image);
    }
    exporter.saveBlob(await exporter.gifBlob(urls), `${baseName()}.gif`);
    setStatus(`Saved an animation of ${urls.length} frames: the image, then one per stroke`);
  } catch (error) {
    showError(error, { title: 'Could not make the animation' });
  } finally {
    done();
  }
}

async function importJson(file) {
  let recipe;
  try {
    recipe = parseRecipe(await file.text());
  } catch (error) {
    toast(error.message, { title: `Could not import ${file.name}` });
    return;
  }
  const s = state();
  const project = s.projects.find((p) => p.name === (recipe.project ?? s.project.name));
  if (!project) {
    toast(`It is for project “${recipe.project}”, which this server doesn't have (it has ${s.projects.map((p) => p.name).join(', ')}).`, { title: `Could not import ${file.name}` });
    return;
  }
  const layer = project.layers.find((l) => l.name === (recipe.layer ?? project.default_layer));
  if (!layer) {
    toast(`It edits layer “${recipe.layer}”, which ${project.name} doesn't have.`, { title: `Could not import ${file.name}` });
    return;
  }
  const unknown = [...new Set(recipe.strokes.map((st) => st.concept).filter((c) => !layer.concepts.some((k) => k.name === c)))];
  if (unknown.length) {
    toast(`It paints ${unknown.map((c) => `“${c}”`).join(', ')}, which ${layer.name} has no units for.`, { title: `Could not import ${file.name}` });
    return;
  }
  try {
    const strokes = [];
    for (const stroke of recipe.strokes) {
      const mask = await exporter.maskFromDataUrl(stroke.mask);
      strokes.push(Object.freeze({ concept: stroke.concept, mode: stroke.mode, units: stroke.units, strength: stroke.strength, mask: Object.freeze(mask) }));
    }
    const key = imageKey(project.name, layer.name, recipe.image ?? s.image);
    if (edits.switchTo(key, strokes)) present();
    toast(`${strokes.length} stroke${strokes.length === 1 ? '' : 's'} from ${file.name}. Undo goes back to what was here.`, { kind: 'info', title: 'Imported the edit' });
  } catch {
    toast('One of its masks is not a PNG image the browser can read.', { title: `Could not import ${file.name}` });
  }
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

// ---- first visit ----------------------------------------------------------------------

function hideHint() {
  if ($('first-hint').hidden) return;
  $('first-hint').hidden = true;
  storage.savePrefs({ hintSeen: true });
}

// ---- following links ------------------------------------------------------------------

/** Follows the address bar (a link, Back/Forward, an edited address) to the edit it names. */
function applyHash({ initial = false } = {}) {
  if (!initial && location.hash === lastHash) return;
  const wanted = decodeHash(location.hash);
  const s = state();
  const notes = [];
  if (wanted.dropped) notes.push(`${wanted.dropped} stroke(s) in the link could not be read and were left out.`);
  let project = wanted.project ? s.projects.find((p) => p.name === wanted.project) : null;
  if (wanted.project && !project) {
    project = s.project || s.projects[0];
    notes.push(`The link names project “${wanted.project}”, which this server doesn't have (it has ${s.projects.map((p) => p.name).join(', ')}). Showing ${project.name} instead.`);
  }
  project = project || s.project || s.projects[0];
  let layer = wanted.layer ? project.layers.find((l) => l.name === wanted.layer) : null;
  if (wanted.layer && !layer) notes.push(`Project ${project.name} has no layer “${wanted.layer}”; showing ${project.default_layer}.`);
  layer = layer || project.layers.find((l) => l.name === (s.project === project && s.layer ? s.layer.name : project.default_layer)) || project.layers[0];
  if (wanted.badImage) notes.push(`The link's ${wanted.badImage} is out of range (ids run from 0 to ${MAX_ID}, seeds up to 2⁶⁴ − 1).`);
  const image = wanted.image || (initial ? 'id:0' : s.image);
  const strokes = wanted.strokes.filter((st) => layer.concepts.some((c) => c.name === st.concept));
  if (strokes.length < wanted.strokes.length) {
    const names = [...new Set(wanted.strokes.filter((st) => !strokes.includes(st)).map((st) => st.concept))];
    notes.push(`${wanted.strokes.length - strokes.length} stroke(s) paint ${names.join(', ')}, which ${layer.name} has no units for; they were left out.`);
  }
  for (const note of notes) toast(note, { kind: 'info', title: 'About this link', timeout: 10000 });
  const key = imageKey(project.name, layer.name, image);
  // A bare address (no hash) opens where this browser left off.
  if (initial && !location.hash && edits) {
    present({ browser: 'replace' });
    return;
  }
  if (!edits) {
    edits = new EditHistory(key, strokes);
    for (const [k, v] of restoredStacks) if (k !== key) edits.stacks.set(k, v);
  }
  else if (key !== edits.key || !sameStrokes(strokes, edits.strokes)) edits.switchTo(key, strokes);
  // This address-bar entry is the one that named the state: rewrite it, don't add one.
  present({ browser: 'replace' });
}

// ---- start ----------------------------------------------------------------------------

/** Digits only in the id and seed fields; a shortcut's letter never lands there. */
function digitsOnly(input) {
  input.addEventListener('beforeinput', (event) => {
    if (event.data && /\D/.test(event.data)) event.preventDefault();
  });
  input.addEventListener('input', () => {
    const digits = input.value.replace(/\D/g, '');
    if (digits !== input.value) input.value = digits;
  });
}

function focusCanvas() {
  $('stage').focus({ preventScroll: true });
}

function wireControls() {
  $('project').addEventListener('change', (e) => {
    const project = state().projects.find((p) => p.name === e.target.value);
    goTo(state().image, { project: project.name, layer: project.default_layer });
  });
  $('layer').addEventListener('change', (e) => goTo(state().image, { layer: e.target.value }));
  $('palette').addEventListener('change', (e) => {
    if (e.target.name === 'concept') selectConcept(e.target.value);
  });
  for (const input of document.querySelectorAll('input[name=mode]')) {
    input.addEventListener('change', () => setMode(input.value));
  }
  for (const input of document.querySelectorAll('input[name=units]')) {
    input.addEventListener('change', () => {
      $('units-custom').disabled = input.value !== 'custom';
      $('units-custom').closest('label').hidden = input.value !== 'custom';
      if (input.value === 'custom') $('units-custom').focus();
      updateUnits();
    });
  }
  $('units-custom').addEventListener('input', updateUnits);
  $('brush-size').addEventListener('input', (e) => setBrushSize(Number(e.target.value)));
  $('strength').addEventListener('input', (e) => setStrength(Number(e.target.value)));
  $('undo').addEventListener('click', undo);
  $('redo').addEventListener('click', redo);
  $('reset').addEventListener('click', () => {
    if (edits.clear()) present();
  });
  const compare = $('compare');
  compare.addEventListener('pointerdown', (e) => {
    compare.setPointerCapture?.(e.pointerId);
    setCompare(true);
  });
  for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) {
    compare.addEventListener(type, () => setCompare(false));
  }
  compare.addEventListener('keydown', (e) => {
    if ((e.key === ' ' || e.key === 'Enter') && !e.repeat) {
      e.preventDefault();
      setCompare(true);
    }
  });
  compare.addEventListener('keyup', (e) => {
    if (e.key === ' ' || e.key === 'Enter') setCompare(false);
  });
  $('split').addEventListener('input', (e) => surface.setSplit(Number(e.target.value)));
  $('pixelated').addEventListener('change', (e) => {
    store.set({ pixelated: e.target.checked });
    surface.setPixelated(e.target.checked);
    storage.savePrefs({ pixelated: e.target.checked });
  });
  $('download').addEventListener('click', downloadPng);
  const menu = $('export-menu');
  const closeMenu = () => { menu.open = false; };
  $('export-png').addEventListener('click', () => { closeMenu(); downloadPng(); });
  $('export-png-large').addEventListener('click', () => { closeMenu(); downloadLargePng(); });
  $('export-json').addEventListener('click', () => { closeMenu(); exportJson(); });
  $('export-gif').addEventListener('click', () => { closeMenu(); exportGif(); });
  $('import-json').addEventListener('click', () => { closeMenu(); $('import-file').click(); });
  $('import-file').addEventListener('change', (e) => {
    const [file] = e.target.files;
    e.target.value = '';
    if (file) importJson(file);
  });
  document.addEventListener('pointerdown', (e) => {
    if (menu.open && !menu.contains(e.target)) closeMenu();
  });
  $('copy-link').addEventListener('click', copyLink);

  digitsOnly($('image-id'));
  digitsOnly($('seed'));
  $('id-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const image = parseImage(`id:${$('image-id').value}`);
    if (!image) {
      toast(`Image ids run from 0 to ${MAX_ID}.`, { kind: 'info', title: 'No such image' });
      return;
    }
    focusCanvas();
    goTo(image);
  });
  $('seed-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const image = parseImage(`seed:${$('seed').value}`);
    if (!image) {
      toast('A seed is a whole number from 0 to 18446744073709551615.', { kind: 'info', title: 'Not a seed' });
      return;
    }
    focusCanvas();
    goTo(image);
  });
  $('random').addEventListener('click', randomImage);
  $('help-button').addEventListener('click', openHelp);
  $('first-hint-close').addEventListener('click', () => {
    hideHint();
    focusCanvas();
  });
  installKeys({
    undo,
    redo,
    download: downloadPng,
    help: openHelp,
    mode: ({ mode }) => setMode(mode),
    brush: ({ direction }) => setBrushSize(stepBrush(state().size, direction, Number($('brush-size').min), Number($('brush-size').max))),
    concept: ({ index }) => selectConcept(state().layer.concepts[index].name),
    compare: ({ on }) => setCompare(on),
    random: randomImage,
    escape: () => {
      if (!surface.cancelStroke()) clearHeatmap();
    },
    'leave-field': () => {
      syncImageFields();
      focusCanvas();
    },
  }, {
    blocked: () => $('help').open,
    concepts: () => state().layer?.concepts.length || 0,
  });
  window.addEventListener('blur', () => setCompare(false));
  window.addEventListener('popstate', () => applyHash());
  window.addEventListener('pagehide', saveNow);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'hidden') saveNow();
  });
}

function randomImage() {
  let id = null;
  while (id === null || `id:${id}` === state().image) id = Math.floor(Math.random() * (MAX_ID + 1));
  goTo(`id:${id}`);
}

function openHelp() {
  const dialog = $('help');
  if (!dialog.open) dialog.showModal();
}

async function start() {
  busy = new Busy($('stage'), $('progress'));
  surface = new Surface($('stage'), {
    brush: () => ({ concept: state().concept, mode: state().mode, size: state().size }),
    grid: () => state().layer?.grid || null,
    onStroke: addStroke,
    onStart: () => {
      if (isTextField(document.activeElement)) focusCanvas();
    },
  });
  gallery = new Gallery(
    { list: $('gallery'), range: $('gallery-range'), prev: $('gallery-prev'), next: $('gallery-next') },
    { onPick: (id) => goTo(`id:${id}`), onError: (error) => showError(error, { title: 'Could not load the samples' }) },
  );
  const prefs = storage.loadPrefs();
  $('pixelated').checked = Boolean(prefs.pixelated);
  store.set({ pixelated: Boolean(prefs.pixelated) });
  surface.setPixelated(Boolean(prefs.pixelated));
  $('first-hint').hidden = Boolean(prefs.hintSeen);
  wireControls();
  setMode('draw');
  setStrength(1);
  const done = busy.begin();
  let projects;
  try {
    projects = await api.projects();
  } catch (error) {
    toast(explain(error)?.message || String(error), { title: 'Could not load the projects', action: { label: 'Reload', run: () => location.reload() } });
    return;
  } finally {
    done();
  }
  if (!projects.length) {
    toast('The server has no projects. Run `ganpaint dissect` first.', { title: 'Nothing to paint' });
    return;
  }
  store.set({ projects });
  fillSelect($('project'), projects.map((p) => p.name), projects[0].name);
  // The history this browser kept, if it still fits this server's projects.
  const saved = EditHistory.fromJSON(storage.loadHistory());
  if (saved) {
    for (const key of [...saved.stacks.keys()]) if (!validKey(key)) saved.stacks.delete(key);
    if (saved.entries.every((entry) => validKey(entry.key))) {
      edits = saved;
    } else {
      // The server changed (a project or layer is gone): keep the stacks that still fit.
      const { stacks } = saved;
      edits = null;
      restoredStacks = stacks;
    }
  }
  applyHash({ initial: true });
  document.body.dataset.ready = 'true';
}

function validKey(key) {
  const { project, layer, image } = splitKey(key);
  const p = state().projects.find((x) => x.name === project);
  return Boolean(p && p.layers.some((l) => l.name === layer) && parseImage(image));
}

start();
