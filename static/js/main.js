// The GANPaint editor: wiring. The pieces live in their own modules — the edit history
// (history.js), rendering (render.js, plan.js), the painting surface (surface.js), the
// palette, units panel, gallery, keys, exports — and this file connects them to the page
// and to each other.
//
// What is edited is `edits` (an EditHistory): the present state names the image
// (project|layer|image) and its strokes. Everything on screen follows it: `present()`
// brings the controls, the address bar and the image in line after each change.
//
// An image is a sample (an id or a seed) or a picture the person uploaded
// (`image:upload-…`, see uploader.js and uploads.js): once the server has fitted it, it
// paints, undoes, links and exports like a sample.

import * as api from './api.js';
import { stepBrush } from './brush.js';
import { explain } from './errors.js';
import { Gallery, PictureShelf } from './gallery.js';
import { decodeHash, describeImage, encodeHash, imageParts, isUpload, MAX_ID, parseImage } from './hashstate.js';
import { EditHistory, imageKey, sameStrokes, splitKey } from './history.js';
import { Inspector } from './inspect.js';
import { installKeys, isTextField } from './keys.js';
import { resolveLink } from './links.js';
import { bindBrushPanel, clampSize, strokeStrength, unitsPerStroke } from './brushpanel.js';
import { buildPalette } from './palette.js';
import { strokeRanking } from './ranking.js';
import { Renderer, statusLine, TooManyStrokes } from './render.js';
import { shareActions, upscale } from './share.js';
import { createStore } from './state.js';
import * as storage from './storage.js';
import { renderStrokeList } from './strokelist.js';
import { simplify } from './strokes.js';
import { Surface } from './surface.js';
import { Busy, setStatus, toast } from './ui.js';
import { Uploader } from './uploader.js';
import {
  findUpload, firstPaintLayer, layerAllowed, layerFor, qualityText, rememberUpload, resizeText, uploadRecord, uploadsOf, validRecords,
} from './uploads.js';
import { renderUnits } from './units.js';

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
  unitsChoice: 'tuned',
  customUnits: '30',
  inspected: null, // the unit whose heatmap shows
  rankings: null, // the layer's rankings from /api/rankings
  pixelated: false,
});
const renderer = new Renderer();
let edits = null; // EditHistory
let surface;
let busy;
let gallery;
let shelf; // PictureShelf: the pictures this browser uploaded
let uploader;
let uploads = []; // records of this browser's uploads (uploads.js), newest first
let fittedNote = null; // {image, text}: how the fitting went, said with the next render
let shown = { key: null, strokes: [] }; // what #image shows
let current = null; // the PNG data URL on screen
let inflight = null; // {controller, key}
let originalRequest = null;
let inspector;
let share;
const perLayerCache = new Map(); // kind|project|layer → Promise
let restoredStacks = new Map();

// ---- small helpers --------------------------------------------------------------------

const state = () => store.get();
const resolution = () => state().project?.resolution || 64;
const conceptInfo = (name = state().concept) => state().layer?.concepts.find((c) => c.name === name) || null;

/** Tells the user what went wrong, plainly; `rendering`: the image could not be rendered. */
function showError(error, { title, rendering = false } = {}) {
  const plain = explain(error, {
    strokeNumber: (i) => error.strokeNumbers?.[i] ?? i + 1,
    layer: state().layer?.name,
    uploadLayer: uploadShown()?.layer,
  });
  if (!plain) return null;
  toast(plain.message, { title: title || plain.title, action: error.status >= 500 || error.status === 0 || error.status === 503 ? { label: 'Retry', run: render } : undefined });
  if (rendering) setStatus(`Not rendered: ${plain.title.charAt(0).toLowerCase()}${plain.title.slice(1)}`);
  return plain;
}

/** `fetcher(project, layer)`, once per project and layer (failures are retried). */
function perLayer(kind, fetcher) {
  const key = `${kind}|${state().project.name}|${state().layer.name}`;
  if (!perLayerCache.has(key)) {
    const promise = fetcher(state().project.name, state().layer.name);
    promise.catch(() => perLayerCache.delete(key));
    perLayerCache.set(key, promise);
  }
  return perLayerCache.get(key);
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
    store.set({ size: clampSize(Math.min(max, s.size || Math.round(project.resolution / 8))) });
    for (const el of document.querySelectorAll('.export-res')) el.textContent = `${project.resolution}×${project.resolution}`;
    const scale = upscale(project.resolution);
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
    inspector.clear();
    showGone(false);
    moved = true;
  }
  syncImageFields();
  gallery.follow(state().project.name, image);
  showShelf();
  showUploadInfo();
  syncLayerOptions();
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
    const line = statusLine(result, Math.round(performance.now() - started));
    if (fittedNote?.image === image) setStatus(`${fittedNote.text}. ${line}`);
    else setStatus(line);
    fittedNote = null;
  } catch (error) {
    if (error.name === 'AbortError') return;
    if (inflight?.controller === controller) inflight = null;
    renderFailed(error, strokes);
  } finally {
    done();
  }
}

function renderFailed(error, strokes) {
  if ((error.status === 404 || error.status === 409) && isUpload(state().image)) {
    // The server does not have the picture (yet, or any more). The strokes are the
    // person's: keep them (here and in this browser's storage).
    surface.setPending([]);
    uploadMissing(state().image);
    return;
  }
  const plain = showError(error, { rendering: true });
  const refused = plain && error.status >= 400 && error.status < 500 && error.status !== 408;
  // A server too old to continue from a flattened edit can't render this many strokes,
  // but they are the user's work: keep them (Export keeps them too), don't discard them.
  if (refused && !(error instanceof TooManyStrokes) && edits.strokes === strokes) {
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
  showGone(false);
  if (isUpload(state().image) && !uploadShown()) showUploadInfo();
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
  if (state().inspected !== null) inspector.show(state().inspected);
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
    if (error.name === 'AbortError') return;
    if ((error.status === 404 || error.status === 409) && isUpload(image)) return; // the render says so
    showError(error, { title: 'Could not load the original image' });
  }
}

// ---- brush ----------------------------------------------------------------------------

/** What follows a change of the brush settings, wherever it came from. */
function onBrushChange(changed) {
  if (changed.has('concept')) inspector.clear();
  if (['concept', 'mode', 'unitsChoice', 'customUnits', 'layer', 'rankings'].some((key) => changed.has(key))) updateUnits();
  if (['concept', 'mode', 'size'].some((key) => changed.has(key))) surface.refreshCursor();
}

function addStroke(points) {
  const s = state();
  if (!s.concept) return;
  hideHint();
  edits.add(Object.freeze({
    concept: s.concept,
    mode: s.mode,
    units: unitsPerStroke(s, conceptInfo()),
    strength: strokeStrength(s, conceptInfo()),
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
  renderStrokeList($('history'), strokes, {
    onDelete: (index) => {
      edits.remove(index);
      present();
    },
    onHighlight: (stroke) => surface.highlight(stroke),
  });
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

/** The layer's rankings, for naming the units panel's order (the store's subscriber redraws it). */
async function loadRankings() {
  const layer = state().layer;
  let rankings;
  try {
    rankings = await perLayer('rankings', api.rankings);
  } catch {
    rankings = []; // the panel still lists the server's order, unnamed
  }
  if (state().layer === layer) store.set({ rankings });
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
      count: unitsPerStroke(s, concept),
      inspected: s.inspected,
      heatmaps: !isUpload(s.image),
      onPick: (unit) => inspector.toggle(unit),
    },
  );
}

// ---- your own pictures ----------------------------------------------------------------

/** The record of the upload shown (or `image`), or null: not an upload, or not known here. */
function uploadShown(image = state().image) {
  if (!image || !isUpload(image) || !state().project) return null;
  return findUpload(uploads, state().project.name, imageParts(image).value);
}

function remember(record) {
  uploads = rememberUpload(uploads, record);
  storage.saveUploads(uploads);
  showShelf();
}

function showShelf() {
  const { kind, value } = imageParts(state().image);
  shelf.show(uploadsOf(uploads, state().project.name), kind === 'image' ? value : null);
}

/** A picture the server has fitted: remember it, and show it (a step of the history). */
function onFitted(answer, file) {
  const project = state().projects.find((p) => p.name === answer.project) || state().project;
  remember(uploadRecord(answer, file.name));
  shelf.markGone(answer.image, false);
  const total = answer.timing?.total_ms;
  const text = answer.stored === false
    ? 'This picture was uploaded before: the server kept its fit'
    : `Fitted your picture${Number.isFinite(total) ? ` in ${(total / 1000).toFixed(1)} s` : ''}`;
  fittedNote = { image: `image:${answer.image}`, text };
  setStatus(text);
  const shownLayer = project.name === state().project.name ? state().layer.name : project.default_layer;
  openUpload(answer.image, project.name, layerFor(project.layers, firstPaintLayer(answer), shownLayer));
}

/** Shows upload `name` ('upload-…'), even when it is shown already but was gone. */
function openUpload(name, project, layer) {
  hideHint();
  focusCanvas();
  if (edits.switchTo(imageKey(project, layer, `image:${name}`))) {
    present();
  } else {
    // The same picture, uploaded again after the server lost it: render it anew.
    showGone(false);
    present();
    loadOriginal();
  }
}

const askedAbout = new Set();

/** The upload's quality and size under the image; asks the server when not known here. */
function showUploadInfo() {
  const box = $('upload-info');
  const image = state().image;
  box.hidden = !isUpload(image);
  if (box.hidden) return;
  const record = uploadShown();
  $('upload-name').textContent = record?.name ? `Your picture ${record.name}` : 'Your uploaded picture';
  $('upload-quality').textContent = record ? qualityText(record) : '';
  $('upload-resized').textContent = record ? resizeText(record) : '';
  const { value } = imageParts(image);
  if (record || askedAbout.has(value)) return;
  // A link from someone else, or a picture uploaded in another browser.
  askedAbout.add(value);
  api.uploadInfo(value)
    .then((info) => {
      if (info.status !== 'done') {
        askedAbout.delete(value); // still being fitted: ask again once it renders
        return;
      }
      remember(uploadRecord(info));
      if (state().image === image) {
        showUploadInfo();
        syncLayerOptions();
      }
    })
    .catch(() => askedAbout.delete(value)); // 404: the render says so
}

/**
 * An upload paints at the layer it was fitted at or a later one (from its first layer on
 * when the server fitted a z to it): the others are disabled.
 */
function syncLayerOptions() {
  const record = uploadShown();
  for (const option of $('layer').options) {
    const refused = Boolean(record) && !layerAllowed(state().project.layers, firstPaintLayer(record), option.value);
    option.disabled = refused;
    option.title = refused ? `This picture was fitted at ${record.layer}: it paints there or at a later layer` : '';
  }
}

/**
 * The server answered 409 or 404 for upload `image`: it is still being fitted (a link opened
 * meanwhile: wait, then render), or gone (say so; uploading it again brings it back).
 */
async function uploadMissing(image) {
  let info = null;
  let waited = false;
  for (;;) {
    try {
      info = await api.uploadInfo(imageParts(image).value);
    } catch {
      info = null; // 404: not stored
    }
    if (state().image !== image) return;
    if (info?.status !== 'running') break;
    setStatus(`The server is still fitting this picture (${Math.round((info.progress?.fraction || 0) * 100)}%)…`);
    await new Promise((resolve) => { setTimeout(resolve, 1000); });
    if (state().image !== image) return;
    waited = true;
  }
  if (waited && info?.status === 'done') {
    render();
    loadOriginal();
  } else {
    uploadGone();
  }
}

/** The server no longer has the upload shown: say so over the canvas. */
function uploadGone() {
  shelf.markGone(imageParts(state().image).value);
  showGone(true);
  setStatus('Not rendered: the uploaded picture is no longer stored');
}

function showGone(on) {
  $('upload-gone').hidden = !on;
  if (on) $('stage').dataset.gone = 'true';
  else delete $('stage').dataset.gone;
}

// ---- compare --------------------------------------------------------------------------

function setCompare(on) {
  surface.setCompare(on);
  $('compare').setAttribute('aria-pressed', String(on));
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
  const current = edits ? splitKey(edits.key) : {};
  const link = resolveLink(decodeHash(location.hash), state().projects, current);
  for (const note of link.notes) toast(note, { kind: 'info', title: 'About this link', timeout: 10000 });
  // A bare address (no hash) opens where this browser left off.
  if (initial && !location.hash && edits) {
    present({ browser: 'replace' });
    return;
  }
  const key = imageKey(link.project, link.layer, link.image);
  if (!edits) {
    edits = new EditHistory(key, link.strokes);
    for (const [k, v] of restoredStacks) if (k !== key) edits.stacks.set(k, v);
  } else if (key !== edits.key || !sameStrokes(link.strokes, edits.strokes)) {
    edits.switchTo(key, link.strokes);
  }
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
    // An upload belongs to the project it was fitted in; another project starts on a sample.
    goTo(isUpload(state().image) ? 'id:0' : state().image, { project: project.name, layer: project.default_layer });
  });
  $('layer').addEventListener('change', (e) => goTo(state().image, { layer: e.target.value }));
  bindBrushPanel(store, () => conceptInfo());
  store.subscribe((_, changed) => onBrushChange(changed));
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
  $('download').addEventListener('click', share.downloadPng);
  const menu = $('export-menu');
  const closeMenu = () => { menu.open = false; };
  $('export-png').addEventListener('click', () => { closeMenu(); share.downloadPng(); });
  $('export-png-large').addEventListener('click', () => { closeMenu(); share.downloadLargePng(); });
  $('export-json').addEventListener('click', () => { closeMenu(); share.exportJson(); });
  $('export-gif').addEventListener('click', () => { closeMenu(); share.exportGif(); });
  $('import-json').addEventListener('click', () => { closeMenu(); $('import-file').click(); });
  $('import-file').addEventListener('change', (e) => {
    const [file] = e.target.files;
    e.target.value = '';
    if (file) share.importJson(file);
  });
  document.addEventListener('pointerdown', (e) => {
    if (menu.open && !menu.contains(e.target)) closeMenu();
  });
  $('copy-link').addEventListener('click', share.copyLink);

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
  $('upload').addEventListener('click', () => uploader.choose());
  $('upload-again').addEventListener('click', () => uploader.choose());
  $('help-button').addEventListener('click', openHelp);
  $('first-hint-close').addEventListener('click', () => {
    hideHint();
    focusCanvas();
  });
  installKeys({
    undo,
    redo,
    download: share.downloadPng,
    help: openHelp,
    mode: ({ mode }) => store.set({ mode }),
    brush: ({ direction }) => store.set({ size: stepBrush(state().size, direction, Number($('brush-size').min), Number($('brush-size').max)) }),
    concept: ({ index }) => store.set({ concept: state().layer.concepts[index].name }),
    compare: ({ on }) => setCompare(on),
    random: randomImage,
    escape: () => {
      if (!surface.cancelStroke() && !inspector.clear()) uploader.cancel();
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
  inspector = new Inspector({
    store,
    renderer,
    surface,
    busy,
    shown: () => shown,
    conceptInfo,
    resolution,
    perLayer,
    showError,
    toast,
  });
  share = shareActions({
    store,
    edits: () => edits,
    renderer,
    busy,
    current: () => current,
    resolution,
    present,
    showError,
  });
  gallery = new Gallery(
    { list: $('gallery'), range: $('gallery-range'), prev: $('gallery-prev'), next: $('gallery-next') },
    { onPick: (id) => goTo(`id:${id}`), onError: (error) => showError(error, { title: 'Could not load the samples' }) },
  );
  shelf = new PictureShelf(
    { box: $('my-pictures'), list: $('uploads') },
    { onPick: (record) => openUpload(record.image, state().project.name, layerFor(state().project.layers, firstPaintLayer(record), state().layer.name)) },
  );
  uploads = validRecords(storage.loadUploads());
  uploader = new Uploader({ project: () => state().project?.name || null, onFitted });
  const prefs = storage.loadPrefs();
  $('pixelated').checked = Boolean(prefs.pixelated);
  store.set({ pixelated: Boolean(prefs.pixelated) });
  surface.setPixelated(Boolean(prefs.pixelated));
  $('first-hint').hidden = Boolean(prefs.hintSeen);
  wireControls();
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
  $('upload').disabled = false;
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
