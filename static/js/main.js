// The GANPaint editor: wires the controls, the painting surface and the server together.
//
// The state is (project, layer, image id, stroke stack). The server is stateless, so
// every change resends the whole stack to /api/v1/paint; an AbortController cancels the
// request a newer change makes obsolete, and rendered images are cached by state, so
// undo and redo to a state seen before are instant and exact.

import * as api from './api.js';
import { decodeHash, encodeHash } from './hashstate.js';
import { StrokeHistory } from './history.js';
import { conceptColor, describe, maskDataUrl, simplify, stackKey, toRequest } from './strokes.js';
import { Surface } from './surface.js';
import { Busy, setStatus, toast } from './ui.js';

const $ = (id) => document.getElementById(id);

const GALLERY_PAGE = 12;
const MAX_ID = 2 ** 20; // the server's largest image id
const CACHE_LIMIT = 300; // rendered images kept (about 10 kB each at 64²)

const app = {
  projects: [],
  project: null, // ProjectInfo from /api/v1/projects
  layer: null, // LayerInfo
  id: 0,
  concept: null, // name
  mode: 'draw',
  size: 8,
  strength: 1,
  history: new StrokeHistory(),
  cache: new Map(), // imageKey → {image, units}
  shown: { key: null, strokes: [] }, // what #image shows
  current: null, // the PNG data URL on screen
  inflight: null, // {controller, key}
  original: null, // {controller, key}
  galleryStart: 0,
  galleryController: null,
  inspected: null, // unit number whose heatmap shows
  featureCache: new Map(), // imageKey|layer → [C][H][W]
  levels: new Map(), // project|layer → Promise<number[]>
  unitImages: new Map(), // project|layer → Promise<Map<unit, url>>
};

let surface;
let busy;

// ---- state helpers --------------------------------------------------------------------

function resolution() {
  return app.project ? app.project.resolution : 64;
}

function imageKey(strokes) {
  const base = `${app.project.name}|${app.id}`;
  return strokes.length ? `${base}|${app.layer.name}|${stackKey(strokes)}` : base;
}

function remember(key, value) {
  app.cache.delete(key);
  app.cache.set(key, value);
  while (app.cache.size > CACHE_LIMIT) app.cache.delete(app.cache.keys().next().value);
}

function unitsPerStroke() {
  const choice = document.querySelector('input[name=units]:checked').value;
  if (choice !== 'custom') return Number(choice);
  const input = $('units-custom');
  const max = app.layer ? app.layer.units : 512;
  const value = Math.round(Number(input.value));
  return Math.min(max, Math.max(1, Number.isFinite(value) ? value : 20));
}

function conceptInfo(name = app.concept) {
  return app.layer?.concepts.find((c) => c.name === name) || null;
}

function syncHash() {
  if (!app.project) return;
  const hash = encodeHash({
    project: app.project.name,
    layer: app.layer.name,
    id: app.id,
    strokes: app.history.strokes,
  });
  if (location.hash !== hash) history.replaceState(null, '', hash);
}

// ---- rendering ------------------------------------------------------------------------

/** A test hook, never set in normal use: sabotage the next N paint requests' concept. */
function applyTestHook(request) {
  const hooks = window.__ganpaintTest;
  if (!hooks || !(hooks.badConcept > 0) || !request.length) return;
  hooks.badConcept -= 1;
  request[request.length - 1] = { ...request[request.length - 1], concept: '__no_such_concept__' };
}

/** Brings the screen in line with the history's present state. */
async function render() {
  const strokes = app.history.strokes;
  const key = imageKey(strokes);
  syncHash();
  updateHistoryControls();
  surface.setPending(strokes.filter((s) => !app.shown.strokes.includes(s)));

  if (app.inflight && app.inflight.key !== key) {
    app.inflight.controller.abort();
    app.inflight = null;
  }
  if (app.shown.key === key) {
    surface.setPending([]);
    return;
  }
  const cached = app.cache.get(key);
  if (cached) {
    await show(key, strokes, cached.image);
    return;
  }
  if (app.inflight) return; // already asked for this very state

  const controller = new AbortController();
  app.inflight = { controller, key };
  const done = busy.begin();
  const started = performance.now();
  try {
    const request = strokes.map((s) => toRequest(s, resolution()));
    applyTestHook(request);
    const result = await api.paint(app.project.name, app.layer.name, app.id, request, controller.signal);
    remember(key, { image: result.image, units: result.units });
    if (app.inflight?.controller !== controller) return;
    app.inflight = null;
    await show(key, strokes, result.image);
    const total = Math.round(performance.now() - started);
    const model = Math.round(result.timing.forward_ms);
    const share = result.timing.recomputed;
    const partial = share < 1 ? `, ${Math.round(share * 100)}% of the image recomputed` : '';
    setStatus(`Rendered in ${total} ms (model ${model} ms${partial})`);
  } catch (error) {
    if (error.name === 'AbortError') return;
    if (app.inflight?.controller === controller) app.inflight = null;
    renderFailed(error, strokes);
  } finally {
    done();
  }
}

function renderFailed(error, strokes) {
  const detail = error.detail || error.message;
  if (error.isClientError) {
    // The server refused this stack: forget the change that made it, keep what works.
    toast(detail, { title: 'The server could not paint that stroke' });
    if (app.history.strokes === strokes) app.history.discard();
    render();
  } else {
    toast(detail, {
      title: error.status === 503 ? 'The server is busy' : 'Rendering failed',
      action: { label: 'Retry', run: render },
    });
    surface.setPending([]);
  }
  setStatus('');
}

async function show(key, strokes, image) {
  if (!(await surface.showImage(image))) return;
  app.shown = { key, strokes };
  app.current = image;
  surface.setPending(app.history.strokes.filter((s) => !strokes.includes(s)));
  const stage = $('stage');
  stage.dataset.renders = String(Number(stage.dataset.renders) + 1);
  stage.dataset.imageKey = key;
  $('image').setAttribute('aria-label', strokes.length
    ? `Image ${app.id} with ${strokes.length} stroke${strokes.length > 1 ? 's' : ''}`
    : `Image ${app.id}, unedited`);
  if (!strokes.length) surface.showOriginal(image);
  if (app.inspected !== null) showHeatmap(app.inspected);
}

/** The unedited image, for compare and split; fetched apart from the edit requests. */
async function loadOriginal() {
  const key = imageKey([]);
  app.original?.controller.abort();
  app.original = null;
  const cached = app.cache.get(key);
  if (cached) {
    surface.showOriginal(cached.image);
    return;
  }
  if (!app.history.strokes.length) return; // render() fetches it as the image itself
  const controller = new AbortController();
  app.original = { controller, key };
  try {
    const result = await api.paint(app.project.name, app.layer.name, app.id, [], controller.signal);
    remember(key, { image: result.image, units: [] });
    if (imageKey([]) === key) surface.showOriginal(result.image);
  } catch (error) {
    if (error.name !== 'AbortError') toast(error.detail || error.message, { title: 'Could not load the original image' });
  }
}

// ---- controls -------------------------------------------------------------------------

function fillSelect(select, names, selected) {
  select.replaceChildren(...names.map((name) => new Option(name, name, false, name === selected)));
}

function buildPalette() {
  const palette = $('palette');
  const concepts = app.layer.concepts;
  if (!concepts.some((c) => c.name === app.concept)) {
    app.concept = (concepts.find((c) => c.name === 'tree') || concepts[0])?.name || null;
  }
  palette.replaceChildren(...concepts.map((concept, index) => {
    const label = document.createElement('label');
    label.className = 'chip';
    const input = document.createElement('input');
    input.type = 'radio';
    input.name = 'concept';
    input.value = concept.name;
    input.checked = concept.name === app.concept;
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = conceptColor(concept.name);
    const name = document.createElement('span');
    name.className = 'chip-name';
    name.textContent = concept.name;
    label.append(input, swatch, name);
    if (index < 9) {
      const key = document.createElement('kbd');
      key.textContent = String(index + 1);
      key.setAttribute('aria-hidden', 'true');
      label.append(key);
    }
    return label;
  }));
  $('palette-empty').hidden = concepts.length > 0;
  buildUnits();
}

function selectConcept(name) {
  app.concept = name;
  const input = [...document.querySelectorAll('input[name=concept]')].find((i) => i.value === name);
  if (input) input.checked = true;
  clearHeatmap();
  buildUnits();
  surface.refreshCursor();
}

function setMode(mode) {
  app.mode = mode;
  document.querySelector(`input[name=mode][value=${mode}]`).checked = true;
  $('strength').disabled = mode === 'remove';
  surface.refreshCursor();
}

function setBrushSize(size) {
  const input = $('brush-size');
  const clamped = Math.min(Number(input.max), Math.max(Number(input.min), Math.round(size)));
  app.size = clamped;
  input.value = String(clamped);
  $('brush-size-value').textContent = `${clamped} px`;
  surface.refreshCursor();
}

function setStrength(value) {
  app.strength = Math.round(value * 10) / 10;
  $('strength').value = String(app.strength);
  $('strength-value').textContent = `${app.strength.toFixed(1)}×`;
}

function updateHistoryControls() {
  const strokes = app.history.strokes;
  $('undo').disabled = !app.history.canUndo;
  $('redo').disabled = !app.history.canRedo;
  $('reset').disabled = strokes.length === 0;
  $('history-count').textContent = strokes.length ? `(${strokes.length})` : '';
  $('history-empty').hidden = strokes.length > 0;
  const list = $('history');
  list.replaceChildren(...strokes.map((stroke, index) => {
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
      app.history.remove(index);
      render();
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
  if (app.history.undo()) render();
}

function redo() {
  if (app.history.redo()) render();
}

function addStroke(points) {
  if (!app.concept) return;
  const stroke = Object.freeze({
    concept: app.concept,
    mode: app.mode,
    units: unitsPerStroke(),
    strength: app.strength,
    size: app.size,
    points: simplify(points),
  });
  app.history.add(stroke);
  render();
}

// ---- samples --------------------------------------------------------------------------

function setImage(id, { strokes = [] } = {}) {
  app.id = id;
  $('image-id').value = String(id);
  app.history.reset(strokes);
  clearHeatmap();
  if (id < app.galleryStart || id >= app.galleryStart + GALLERY_PAGE) {
    app.galleryStart = Math.floor(id / GALLERY_PAGE) * GALLERY_PAGE;
    loadGallery();
  } else {
    markGallery();
  }
  loadOriginal();
  render();
}

function markGallery() {
  for (const button of $('gallery').querySelectorAll('button')) {
    button.setAttribute('aria-pressed', String(Number(button.dataset.id) === app.id));
  }
}

async function loadGallery() {
  const start = app.galleryStart;
  const ids = Array.from({ length: GALLERY_PAGE }, (_, i) => start + i).filter((id) => id <= MAX_ID);
  $('gallery-range').textContent = `ids ${ids[0]}–${ids[ids.length - 1]}`;
  $('gallery-prev').disabled = start === 0;
  $('gallery-next').disabled = start + GALLERY_PAGE > MAX_ID;
  const gallery = $('gallery');
  gallery.replaceChildren(...ids.map((id) => {
    const item = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'thumb';
    button.dataset.id = String(id);
    button.setAttribute('aria-label', `Image ${id}`);
    button.addEventListener('click', () => {
      if (id !== app.id) setImage(id);
    });
    const img = document.createElement('img');
    img.alt = '';
    img.width = img.height = 64;
    button.append(img);
    item.append(button);
    return item;
  }));
  markGallery();
  app.galleryController?.abort();
  const controller = new AbortController();
  app.galleryController = controller;
  const missing = ids.filter((id) => !app.cache.has(`${app.project.name}|${id}`));
  try {
    if (missing.length) {
      const images = await api.generate(app.project.name, missing, controller.signal);
      missing.forEach((id, i) => remember(`${app.project.name}|${id}`, { image: images[i], units: [] }));
    }
    if (app.galleryController !== controller) return;
    for (const button of gallery.querySelectorAll('button')) {
      const entry = app.cache.get(`${app.project.name}|${button.dataset.id}`);
      if (entry) button.querySelector('img').src = entry.image;
    }
  } catch (error) {
    if (error.name !== 'AbortError') toast(error.detail || error.message, { title: 'Could not load the samples' });
  }
}

function randomImage() {
  let id = app.id;
  while (id === app.id) id = Math.floor(Math.random() * (MAX_ID + 1));
  setImage(id);
}

// ---- projects and layers --------------------------------------------------------------

function selectProject(name, { layer, id, strokes = [] } = {}) {
  app.project = app.projects.find((p) => p.name === name) || app.projects[0];
  fillSelect($('project'), app.projects.map((p) => p.name), app.project.name);
  surface.setResolution(app.project.resolution);
  const max = Math.max(2, Math.floor(app.project.resolution / 2));
  $('brush-size').max = String(max);
  setBrushSize(Math.min(max, app.size || Math.round(app.project.resolution / 8)));
  selectLayer(layer || app.project.default_layer, { id, strokes, reload: true });
}

function selectLayer(name, { id = app.id, strokes = [], reload = false } = {}) {
  app.layer = app.project.layers.find((l) => l.name === name)
    || app.project.layers.find((l) => l.name === app.project.default_layer)
    || app.project.layers[0];
  fillSelect($('layer'), app.project.layers.map((l) => l.name), app.layer.name);
  $('units-custom').max = String(app.layer.units);
  buildPalette();
  const known = strokes.filter((s) => conceptInfo(s.concept));
  if (known.length < strokes.length) {
    toast(`${strokes.length - known.length} stroke(s) in the link name concepts ${app.layer.name} doesn't have; they were left out.`, { kind: 'info' });
  }
  if (reload) app.galleryStart = -GALLERY_PAGE; // force the gallery to refill
  setImage(id, { strokes: known });
}

// ---- inspect units --------------------------------------------------------------------

function cachedPerLayer(map, fetcher) {
  const key = `${app.project.name}|${app.layer.name}`;
  if (!map.has(key)) {
    const promise = fetcher(app.project.name, app.layer.name);
    promise.catch(() => map.delete(key));
    map.set(key, promise);
  }
  return map.get(key);
}

function buildUnits() {
  const concept = conceptInfo();
  $('units-concept').textContent = concept ? concept.name : '—';
  const list = $('units');
  if (!concept) {
    list.replaceChildren();
    return;
  }
  const edited = unitsPerStroke();
  const best = Math.max(0, ...concept.units.map((u) => u.iou)) || 1;
  list.replaceChildren(...concept.units.map(({ unit, iou }, rank) => {
    const item = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = `unit${rank < edited ? ' edited' : ''}`;
    button.dataset.unit = String(unit);
    button.setAttribute('aria-pressed', String(app.inspected === unit));
    button.title = `Show where unit ${unit} fires${rank < edited ? ' (a stroke edits this unit)' : ''}`;
    const name = document.createElement('span');
    name.className = 'unit-name';
    name.innerHTML = '<span class="visually-hidden">Unit </span>';
    name.append(`#${unit}`);
    const bar = document.createElement('span');
    bar.className = 'unit-bar';
    bar.setAttribute('aria-hidden', 'true');
    bar.style.setProperty('--fill', `${Math.max(2, (iou / best) * 100)}%`);
    const value = document.createElement('span');
    value.className = 'unit-iou';
    value.innerHTML = '<span class="visually-hidden">, IoU </span>';
    value.append(iou.toFixed(3));
    button.append(name, bar, value);
    button.addEventListener('click', () => {
      if (app.inspected === unit) clearHeatmap();
      else inspectUnit(unit);
    });
    item.append(button);
    return item;
  }));
}

function markUnits() {
  for (const button of $('units').querySelectorAll('button')) {
    button.setAttribute('aria-pressed', String(Number(button.dataset.unit) === app.inspected));
  }
}

async function inspectUnit(unit) {
  app.inspected = unit;
  markUnits();
  const figure = $('unit-detail');
  figure.hidden = false;
  $('unit-caption').textContent = `Unit ${unit} of ${app.layer.name}: the images where it fires most.`;
  const image = $('unit-image');
  image.removeAttribute('src');
  image.alt = `Top activating images for unit ${unit}`;
  cachedPerLayer(app.unitImages, api.unitImages)
    .then((urls) => {
      if (app.inspected === unit && urls.get(unit)) image.src = urls.get(unit);
    })
    .catch(() => { figure.hidden = true; });
  await showHeatmap(unit);
}

/** Gandissect interventions equal to the stroke stack, so the heatmap shows the edit. */
async function interventionsFor(strokes, key) {
  if (!strokes.length) return [];
  const levels = await cachedPerLayer(app.levels, api.levels);
  const used = app.cache.get(key)?.units;
  return strokes.map((stroke, i) => {
    const info = conceptInfo(stroke.concept);
    const ranked = stroke.mode === 'remove' ? info.remove_units : info.units.map((u) => u.unit);
    const units = used?.[i] || ranked.slice(0, stroke.units);
    return {
      ablations: units.map((unit) => ({
        layer: app.layer.name,
        unit,
        alpha: 1,
        value: stroke.mode === 'draw' ? stroke.strength * levels[unit] : 0,
      })),
      mask: { shape: [], bitbounds: [], bitstring: maskDataUrl(stroke, resolution()) },
      maskpooling: 'max',
    };
  });
}

async function showHeatmap(unit) {
  const { key, strokes } = app.shown;
  const cacheKey = `${key}|${app.layer.name}`;
  const done = busy.begin();
  try {
    let maps = app.featureCache.get(cacheKey);
    if (!maps) {
      const interventions = await interventionsFor(strokes, key);
      maps = await api.featuremaps(app.project.name, app.layer.name, app.id, interventions);
      app.featureCache.set(cacheKey, maps);
      if (app.featureCache.size > 20) app.featureCache.delete(app.featureCache.keys().next().value);
    }
    if (app.inspected !== unit || app.shown.key !== key) return;
    surface.showHeatmap(maps[unit]);
    const badge = $('heatmap-badge');
    badge.textContent = `Unit ${unit} · ${app.layer.name} activation`;
    badge.hidden = false;
  } catch (error) {
    toast(error.detail || error.message, { title: `Could not load unit ${unit}'s activation` });
    clearHeatmap();
  } finally {
    done();
  }
}

function clearHeatmap() {
  if (app.inspected === null) return false;
  app.inspected = null;
  surface.showHeatmap(null);
  $('heatmap-badge').hidden = true;
  $('unit-detail').hidden = true;
  markUnits();
  return true;
}

// ---- compare and export ---------------------------------------------------------------

function setCompare(on) {
  surface.setCompare(on);
  $('compare').setAttribute('aria-pressed', String(on));
}

async function download() {
  if (!app.current) return;
  const blob = await (await fetch(app.current)).blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  const edited = app.history.strokes.length ? '-edited' : '';
  link.download = `ganpaint-${app.project.name}-${app.id}${edited}.png`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---- keyboard -------------------------------------------------------------------------

function isTyping(target) {
  if (!(target instanceof Element)) return false;
  if (target.closest('select, textarea')) return true;
  const input = target.closest('input');
  return Boolean(input) && !['radio', 'range', 'checkbox', 'button'].includes(input.type);
}

function onKeyDown(event) {
  if ($('help').open) return; // the dialog handles Esc itself
  const mod = event.ctrlKey || event.metaKey;
  const key = event.key.toLowerCase();
  if (isTyping(event.target) && event.key !== 'Escape') return;
  if (mod && key === 'z') {
    event.preventDefault();
    if (event.shiftKey) redo();
    else undo();
  } else if (mod && key === 'y') {
    event.preventDefault();
    redo();
  } else if (mod && key === 's') {
    event.preventDefault();
    download();
  } else if (mod || event.altKey) {
    // Leave the browser's own shortcuts alone.
  } else if (event.key === '?') {
    openHelp();
  } else if (key === 'd') {
    setMode('draw');
  } else if (key === 'e') {
    setMode('remove');
  } else if (event.key === '[') {
    setBrushSize(app.size - Math.max(1, Math.round(app.size / 6)));
  } else if (event.key === ']') {
    setBrushSize(app.size + Math.max(1, Math.round(app.size / 6)));
  } else if (/^[1-9]$/.test(event.key)) {
    const concept = app.layer?.concepts[Number(event.key) - 1];
    if (concept) selectConcept(concept.name);
  } else if (key === 'c') {
    if (!event.repeat) setCompare(true);
  } else if (key === 'n') {
    randomImage();
  } else if (event.key === 'Escape') {
    if (!surface.cancelStroke()) clearHeatmap();
  }
}

function openHelp() {
  const dialog = $('help');
  if (!dialog.open) dialog.showModal();
}

// ---- start ----------------------------------------------------------------------------

function wireControls() {
  $('project').addEventListener('change', (e) => selectProject(e.target.value, { id: app.id }));
  $('layer').addEventListener('change', (e) => selectLayer(e.target.value));
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
      buildUnits();
    });
  }
  $('units-custom').addEventListener('input', buildUnits);
  $('brush-size').addEventListener('input', (e) => setBrushSize(Number(e.target.value)));
  $('strength').addEventListener('input', (e) => setStrength(Number(e.target.value)));
  $('undo').addEventListener('click', undo);
  $('redo').addEventListener('click', redo);
  $('reset').addEventListener('click', () => {
    app.history.clear();
    render();
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
  $('download').addEventListener('click', download);
  $('id-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const id = Math.round(Number($('image-id').value));
    if (!Number.isFinite(id) || id < 0 || id > MAX_ID) {
      toast(`Image ids run from 0 to ${MAX_ID}.`, { kind: 'info' });
      return;
    }
    if (id !== app.id) setImage(id);
  });
  $('image-id').max = String(MAX_ID);
  $('random').addEventListener('click', randomImage);
  $('gallery-prev').addEventListener('click', () => {
    app.galleryStart = Math.max(0, app.galleryStart - GALLERY_PAGE);
    loadGallery();
  });
  $('gallery-next').addEventListener('click', () => {
    app.galleryStart += GALLERY_PAGE;
    loadGallery();
  });
  $('help-button').addEventListener('click', openHelp);
  document.addEventListener('keydown', onKeyDown);
  document.addEventListener('keyup', (e) => {
    if (e.key.toLowerCase() === 'c') setCompare(false);
  });
  window.addEventListener('blur', () => setCompare(false));
  window.addEventListener('hashchange', applyHash);
}

/** Follows a link (or an edited address bar) to the state it names. */
function applyHash() {
  const wanted = decodeHash(location.hash);
  if (wanted.dropped) toast(`${wanted.dropped} stroke(s) in the link could not be read.`, { kind: 'info' });
  const projectName = wanted.project && app.projects.some((p) => p.name === wanted.project)
    ? wanted.project : app.projects[0].name;
  const id = wanted.id ?? 0;
  if (!app.project || projectName !== app.project.name) {
    selectProject(projectName, { layer: wanted.layer, id, strokes: wanted.strokes });
  } else if (wanted.layer && wanted.layer !== app.layer.name) {
    selectLayer(wanted.layer, { id, strokes: wanted.strokes });
  } else if (id !== app.id) {
    setImage(id, { strokes: wanted.strokes.filter((s) => conceptInfo(s.concept)) });
  } else if (stackKey(wanted.strokes) !== stackKey(app.history.strokes)) {
    app.history.push(wanted.strokes.filter((s) => conceptInfo(s.concept)));
    render();
  }
}

async function start() {
  busy = new Busy($('stage'), $('progress'));
  surface = new Surface($('stage'), {
    brush: () => ({ concept: app.concept, mode: app.mode, size: app.size }),
    onStroke: addStroke,
  });
  wireControls();
  setMode('draw');
  setStrength(1);
  const done = busy.begin();
  try {
    app.projects = await api.projects();
  } catch (error) {
    toast(error.detail || error.message, { title: 'Could not load the projects', action: { label: 'Reload', run: () => location.reload() } });
    return;
  } finally {
    done();
  }
  if (!app.projects.length) {
    toast('The server has no projects. Run `ganpaint dissect` first.', { title: 'Nothing to paint' });
    return;
  }
  app.size = 0;
  applyHash();
  document.body.dataset.ready = 'true';
}

start();
