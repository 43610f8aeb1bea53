// Painting on your own picture, the parts without a page: what kind of file it is, how
// the fitting's progress and the reconstruction's quality read, the list of pictures
// this browser uploaded, and the layers an upload can be painted at. Pure: no DOM.
//
// The server inverts an upload at one layer (`layer` in its answer): it fits latents
// there and adapts the generator after it, so the picture can be painted at that layer
// or a later one, never an earlier one.

import { UPLOAD_NAME } from './hashstate.js';

/** How many uploads the gallery remembers (the oldest go first). */
export const UPLOADS_KEPT = 24;

/** 'image/png', 'image/jpeg', or null: what the file's first bytes say it is. */
export function sniffImageType(bytes) {
  const png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (bytes.length >= png.length && png.every((b, i) => bytes[i] === b)) return 'image/png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg';
  return null;
}

const STAGES = {
  upload: 'Sending the picture…',
  queued: 'Waiting for the server…',
  encode: 'Reading the picture…',
  optimize: 'Fitting the picture…',
  adapt: 'Adapting the generator…',
};

/**
 * `{label, steps, fraction}` for a progress event (`{stage, step, steps, fraction}`):
 * the stage in words, "step/steps" when counted, and the bar's fill (null: unknown).
 */
export function progressText({ stage, step, steps, fraction } = {}) {
  const label = STAGES[stage] || 'Fitting the picture…';
  const counted = Number.isFinite(step) && Number.isFinite(steps) && steps > 0;
  let fill = Number.isFinite(fraction) ? fraction : counted ? step / steps : null;
  if (fill !== null) fill = Math.min(1, Math.max(0, fill));
  return { label, steps: counted ? `${step}/${steps}` : '', fraction: fill };
}

/** "Reconstruction 33.4 dB PSNR", or '' when the answer has no figure. */
export function qualityText(answer) {
  const db = answer?.psnr_db;
  return Number.isFinite(db) ? `Reconstruction ${db.toFixed(1)} dB PSNR` : '';
}

/**
 * What the server did to fit the picture to the model, in words, or '' when it was taken
 * as it was: a picture that is not square is centre-cropped, and one of another size is
 * resized to the model's resolution.
 */
export function resizeText({ width, height, resolution } = {}) {
  if (![width, height, resolution].every(Number.isFinite)) return '';
  const side = `${resolution}×${resolution}`;
  if (width !== height) return `Cropped to a square and resized from ${width}×${height} to ${side}.`;
  if (width !== resolution) return `Resized from ${width}×${height} to ${side}.`;
  return '';
}

/**
 * The record the gallery keeps of an upload answer: its name, project and layer (and
 * `paint_from`, the first layer it paints at, when the server fitted a z), the figures the
 * editor shows, and the file's name (`fileName`, optional).
 */
export function uploadRecord(answer, fileName = '', now = Date.now()) {
  const record = {
    image: answer.image,
    project: answer.project,
    layer: answer.layer,
    width: answer.width,
    height: answer.height,
    resolution: answer.resolution,
    psnr_db: answer.psnr_db,
    added: now,
  };
  if (typeof answer.paint_from === 'string') record.paint_from = answer.paint_from;
  if (fileName) record.name = fileName;
  return record;
}

/**
 * `records` with `record` first (replacing the same picture in the same project, and
 * keeping the file name it had if the new record has none), at most `limit` of them.
 */
export function rememberUpload(records, record, limit = UPLOADS_KEPT) {
  const same = (r) => r.image === record.image && r.project === record.project;
  const before = records.find(same);
  const merged = { ...before, ...record };
  if (!record.name && before?.name) merged.name = before.name;
  // What the server says now of the layers it paints from, not what it said before.
  if (!('paint_from' in record)) delete merged.paint_from;
  return [merged, ...records.filter((r) => !same(r))].slice(0, limit);
}

/** The records of `project`'s uploads, newest first. */
export function uploadsOf(records, project) {
  return records.filter((r) => r.project === project);
}

/** The record of upload `image` ('upload-…') in `project`, or null. */
export function findUpload(records, project, image) {
  return records.find((r) => r.project === project && r.image === image) || null;
}

/** Only well-formed records, from whatever localStorage held. */
export function validRecords(data) {
  if (!Array.isArray(data)) return [];
  return data.filter((r) => r && typeof r === 'object' && typeof r.image === 'string'
    && UPLOAD_NAME.test(r.image) && typeof r.project === 'string' && typeof r.layer === 'string');
}

/**
 * Whether `layer` can paint an upload inverted at `uploadLayer`, given the project's
 * layers in order (`[{name}]`): that layer or a later one. An unknown layer is allowed
 * (the server has the last word).
 */
export function layerAllowed(layers, uploadLayer, layer) {
  const names = layers.map((l) => l.name);
  const first = names.indexOf(uploadLayer);
  const at = names.indexOf(layer);
  return first < 0 || at < 0 || at >= first;
}

/**
 * The first layer an upload record paints at: `paint_from` when the server fitted a z to
 * it (an earlier layer's edit is carried through that z), else the layer it was fitted at.
 */
export function firstPaintLayer(record) {
  return record.paint_from || record.layer;
}

/** The layer to paint an upload at: the one shown now when allowed, else the upload's. */
export function layerFor(layers, uploadLayer, current) {
  return layerAllowed(layers, uploadLayer, current) ? current : uploadLayer;
}
