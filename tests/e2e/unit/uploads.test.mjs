// Painting on your own picture, the pure parts: reading the upload's event stream in
// whatever chunks it arrives, what a file is, how progress and quality read, the list of
// uploads this browser keeps, the layers an upload paints at, and an upload in the
// address bar, the edit history and the exported edit.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { explain, explainUpload, UPLOAD_GONE } from '../../../static/js/errors.js';
import { decodeHash, describeImage, encodeHash, isUpload, parseImage } from '../../../static/js/hashstate.js';
import { EditHistory, imageKey, splitKey } from '../../../static/js/history.js';
import { resolveLink } from '../../../static/js/links.js';
import { parseRecipe, requestJson } from '../../../static/js/recipe.js';
import { createSseParser } from '../../../static/js/sse.js';
import {
  findUpload, firstPaintLayer, layerAllowed, layerFor, progressText, qualityText, rememberUpload, resizeText, sniffImageType,
  uploadRecord, uploadsOf, validRecords,
} from '../../../static/js/uploads.js';

const NAME = `upload-${'0123456789abcdef'.repeat(2)}`;
const OTHER = `upload-${'f'.repeat(32)}`;

/** Every event a parser reads from `chunks`, in order. */
function readAll(chunks) {
  const parser = createSseParser();
  const events = [];
  for (const chunk of chunks) events.push(...parser.push(chunk));
  events.push(...parser.end());
  return events;
}

const STREAM = [
  ': the server keeps the connection open\n',
  'event: progress\n',
  'data: {"image":"upload-1","stage":"optimize","step":12,"steps":150,"fraction":0.08}\n',
  '\n',
  'event: done\r\n',
  'data: {"image":"upload-1",\r\n',
  'data: "psnr_db":33.4}\r\n',
  '\r\n',
].join('');

test('the event stream reads the same whatever its chunks, down to one character', () => {
  const whole = readAll([STREAM]);
  assert.deepEqual(whole.map((e) => e.event), ['progress', 'done']);
  assert.equal(JSON.parse(whole[0].data).step, 12);
  // Data lines join with a newline; the JSON survives it.
  assert.equal(whole[1].data, '{"image":"upload-1",\n"psnr_db":33.4}');
  assert.equal(JSON.parse(whole[1].data).psnr_db, 33.4);
  for (const size of [1, 2, 3, 5, 7, 64]) {
    const chunks = [];
    for (let i = 0; i < STREAM.length; i += size) chunks.push(STREAM.slice(i, i + size));
    assert.deepEqual(readAll(chunks), whole, `chunks of ${size}`);
  }
});

test('a CR at the end of one chunk and its LF at the start of the next end one line', () => {
  const events = readAll(['data: a\r', '\ndata: b\r', '\n\r', '\n']);
  assert.deepEqual(events.map((e) => e.data), ['a\nb']);
  // A lone CR ends a line too.
  assert.deepEqual(readAll(['data: x\r\rdata: y\n\n']).map((e) => e.data), ['x', 'y']);
});

test('events are named or "message", comments and unknown fields are skipped, a cut-off event is dropped', () => {
  const events = readAll(['retry: 100\nid: 7\ndata:no space\n\n', 'event: error\ndata: {"error":"internal"}\nfoo: bar\n\n', 'event: done\ndata: {"partial"']);
  assert.deepEqual(events, [
    { event: 'message', data: 'no space', id: '7' },
    { event: 'error', data: '{"error":"internal"}', id: '7' },
  ]);
  // A blank line with no data dispatches nothing, and the name does not leak on.
  assert.deepEqual(readAll(['event: progress\n\ndata: 1\n\n']), [{ event: 'message', data: '1', id: '' }]);
});

test('a file is a PNG or a JPEG by its first bytes, not by its name', () => {
  assert.equal(sniffImageType(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0])), 'image/png');
  assert.equal(sniffImageType(new Uint8Array([0xff, 0xd8, 0xff, 0xe0])), 'image/jpeg');
  assert.equal(sniffImageType(new TextEncoder().encode('hello, not a picture')), null);
  assert.equal(sniffImageType(new Uint8Array([0x89, 0x50])), null);
  assert.equal(sniffImageType(new Uint8Array([])), null);
});

test('progress reads as the stage in words and step/steps, the bar clamped', () => {
  assert.deepEqual(progressText({ stage: 'optimize', step: 12, steps: 150, fraction: 0.08 }), { label: 'Fitting the picture…', steps: '12/150', fraction: 0.08 });
  assert.deepEqual(progressText({ stage: 'adapt', step: 3, steps: 40 }), { label: 'Adapting the generator…', steps: '3/40', fraction: 0.075 });
  assert.deepEqual(progressText({ stage: 'queued' }), { label: 'Waiting for the server…', steps: '', fraction: null });
  assert.equal(progressText({ stage: 'encode', step: 0, steps: 1, fraction: 0 }).label, 'Reading the picture…');
  assert.deepEqual(progressText({ stage: 'upload' }), { label: 'Sending the picture…', steps: '', fraction: null });
  assert.equal(progressText({ stage: 'optimize', fraction: 1.7 }).fraction, 1);
  assert.equal(progressText({ stage: 'something new' }).label, 'Fitting the picture…');
});

test('the reconstruction reads in dB, and a crop or resize is said', () => {
  assert.equal(qualityText({ psnr_db: 33.4567 }), 'Reconstruction 33.5 dB PSNR');
  assert.equal(qualityText({}), '');
  assert.equal(resizeText({ width: 640, height: 480, resolution: 64 }), 'Cropped to a square and resized from 640×480 to 64×64.');
  assert.equal(resizeText({ width: 200, height: 200, resolution: 64 }), 'Resized from 200×200 to 64×64.');
  assert.equal(resizeText({ width: 64, height: 64, resolution: 64 }), '');
  assert.equal(resizeText({}), '');
});

test('the uploads list keeps the newest first, once per picture and project, and at most its limit', () => {
  const answer = { image: NAME, project: 'demo', layer: 'layer4', width: 640, height: 480, resolution: 64, psnr_db: 30.1, psnr: {}, timing: {}, stored: true };
  const first = uploadRecord(answer, 'garden.jpg', 1000);
  assert.deepEqual(first, { image: NAME, project: 'demo', layer: 'layer4', width: 640, height: 480, resolution: 64, psnr_db: 30.1, added: 1000, name: 'garden.jpg' });
  let records = rememberUpload([], first);
  records = rememberUpload(records, uploadRecord({ ...answer, image: OTHER }, 'street.png', 2000));
  assert.deepEqual(records.map((r) => r.image), [OTHER, NAME]);
  // The same picture again comes first, keeping its file name when the new one has none.
  records = rememberUpload(records, uploadRecord(answer, '', 3000));
  assert.deepEqual(records.map((r) => [r.image, r.name, r.added]), [[NAME, 'garden.jpg', 3000], [OTHER, 'street.png', 2000]]);
  // Another project's copy of the same picture is another record.
  records = rememberUpload(records, uploadRecord({ ...answer, project: 'church' }, 'garden.jpg', 4000));
  assert.equal(records.length, 3);
  assert.deepEqual(uploadsOf(records, 'demo').map((r) => r.image), [NAME, OTHER]);
  assert.equal(findUpload(records, 'church', NAME).added, 4000);
  assert.equal(findUpload(records, 'church', OTHER), null);
  const many = Array.from({ length: 30 }, (_, i) => uploadRecord({ ...answer, image: `upload-${String(i).padStart(32, '0')}` }, '', i));
  const capped = many.reduce((list, record) => rememberUpload(list, record, 24), []);
  assert.equal(capped.length, 24);
  assert.equal(capped[0].added, 29);
  // What storage held is checked, record by record.
  assert.deepEqual(validRecords('nonsense'), []);
  assert.deepEqual(validRecords([null, { image: 'upload-x', project: 'demo', layer: 'l' }, first]), [first]);
});

test('an upload paints at the layer it was fitted at or a later one', () => {
  const layers = [{ name: 'layer1' }, { name: 'layer4' }, { name: 'layer7' }];
  assert.ok(!layerAllowed(layers, 'layer4', 'layer1'));
  assert.ok(layerAllowed(layers, 'layer4', 'layer4'));
  assert.ok(layerAllowed(layers, 'layer4', 'layer7'));
  assert.ok(layerAllowed(layers, 'layer9', 'layer1'), 'an unknown layer is left to the server');
  assert.equal(layerFor(layers, 'layer4', 'layer1'), 'layer4');
  assert.equal(layerFor(layers, 'layer4', 'layer7'), 'layer7');
});

test('an upload the server fitted a z to paints from its first layer on', () => {
  const layers = [{ name: 'layer1' }, { name: 'layer4' }, { name: 'layer7' }];
  const answer = { image: NAME, project: 'demo', layer: 'layer4', paint_from: 'layer1', width: 64, height: 64, resolution: 64, psnr_db: 30 };
  const record = uploadRecord(answer, '', 5);
  assert.equal(record.paint_from, 'layer1');
  assert.equal(firstPaintLayer(record), 'layer1');
  assert.ok(layerAllowed(layers, firstPaintLayer(record), 'layer1'));
  assert.equal(layerFor(layers, firstPaintLayer(record), 'layer1'), 'layer1');
  // Without a z (an older server, or an encoder without a z head): from its layer on.
  const older = uploadRecord({ ...answer, paint_from: undefined }, '', 5);
  assert.ok(!('paint_from' in older));
  assert.equal(firstPaintLayer(older), 'layer4');
  assert.ok(!layerAllowed(layers, firstPaintLayer(older), 'layer1'));
  // An answer without it replaces a record that had it (a server that fits no z now).
  const records = rememberUpload(rememberUpload([], record), older);
  assert.equal(records.length, 1);
  assert.equal(firstPaintLayer(records[0]), 'layer4');
});

test('the address bar carries an upload as image=, and refuses what is not an upload\'s name', () => {
  const stroke = Object.freeze({ concept: 'tree', mode: 'draw', units: 20, strength: 1, size: 4, points: [[1, 2]] });
  const image = `image:${NAME}`;
  assert.equal(parseImage(image), image);
  assert.ok(isUpload(image));
  assert.ok(!isUpload('id:3'));
  assert.equal(describeImage(image), 'Your uploaded picture');
  const hash = encodeHash({ project: 'demo', layer: 'layer4', image, strokes: [stroke] });
  assert.equal(hash, `#project=demo&layer=layer4&image=${NAME}&strokes=tree:d:20:1:4:1,2`);
  const decoded = decodeHash(hash);
  assert.equal(decoded.image, image);
  assert.deepEqual(decoded.strokes, [stroke]);
  for (const bad of ['upload-123', `upload-${'A'.repeat(32)}`, '../etc', `${NAME}0`, 'id:3']) {
    assert.equal(parseImage(`image:${bad}`), null, bad);
    assert.equal(decodeHash(`#image=${bad}`).image, undefined, bad);
  }
  const projects = [{ name: 'demo', default_layer: 'layer4', layers: [{ name: 'layer4', concepts: [{ name: 'tree' }] }] }];
  const link = resolveLink(decodeHash('#image=upload-nope'), projects);
  assert.equal(link.image, 'id:0');
  assert.match(link.notes.join('\n'), /image “upload-nope” is not the name of an uploaded picture/);
  assert.equal(resolveLink(decodeHash(hash), projects).image, image);
});

test('each upload keeps its own strokes in the history, and its key splits back', () => {
  const upload = imageKey('demo', 'layer4', `image:${NAME}`);
  const sample = imageKey('demo', 'layer4', 'id:3');
  assert.deepEqual(splitKey(upload), { project: 'demo', layer: 'layer4', image: `image:${NAME}` });
  const stroke = (x) => Object.freeze({ concept: 'tree', mode: 'draw', units: 20, strength: 1, size: 4, points: [[x, 1], [x + 2, 3]] });
  const history = new EditHistory(sample);
  history.add(stroke(1));
  history.switchTo(upload);
  history.add(stroke(5));
  history.add(stroke(9));
  const restored = EditHistory.fromJSON(JSON.parse(JSON.stringify(history.toJSON())));
  assert.equal(restored.key, upload);
  assert.equal(restored.strokes.length, 2);
  assert.equal(restored.stackOf(sample).length, 1);
  restored.undo();
  restored.undo();
  assert.equal(restored.key, upload);
  assert.equal(restored.strokes.length, 0);
  restored.undo();
  assert.equal(restored.key, sample);
});

test('an edit of an upload exports with "image" and imports back', () => {
  const body = { project: 'demo', layer: 'layer4', strokes: [{ concept: 'tree', mode: 'draw', mask: 'data:image/png;base64,AA', units: 20, strength: 1 }] };
  const text = requestJson(body, `image:${NAME}`, 2);
  const json = JSON.parse(text);
  assert.deepEqual(Object.keys(json), ['project', 'layer', 'image', 'strokes']);
  assert.equal(json.image, NAME);
  assert.equal(parseRecipe(text).image, `image:${NAME}`);
  assert.throws(() => parseRecipe('{"image": "cat.png", "strokes": []}'), /not the name of an uploaded picture/);
  assert.throws(() => parseRecipe('{"image": 7, "strokes": []}'), /not the name of an uploaded picture/);
});

test('refusals read in plain words with the server\'s detail, and a gone upload says to upload again', () => {
  // The server's words (as it answers them), then what to do.
  const notImage = explainUpload({ status: 400, detail: 'image: the file is not a picture this server reads; upload a PNG or JPEG' });
  assert.equal(notImage.message, 'The file is not a picture this server reads; upload a PNG or JPEG.');
  const large = explainUpload({ status: 413, detail: 'body: Content-Length 9000000 is above the limit of 8388608 bytes' });
  assert.equal(large.title, 'The picture is too large');
  assert.equal(large.message, 'The file is 9.0 MB; the server takes at most 8.4 MB. Send a smaller file (a JPEG, or fewer pixels).');
  assert.match(explainUpload({ status: 413, detail: 'body: too large' }).message, /^Body: too large\. Send a smaller file/);
  assert.equal(explainUpload({ status: 400, detail: 'image: animated' }).message, 'Animated. Upload a PNG or JPEG picture.');
  assert.match(explainUpload({ status: 503, detail: 'inversion queue full' }).title, /busy/);
  assert.match(explainUpload({ status: 503, detail: 'image: the inversion was cancelled' }).title, /cancelled/);
  assert.match(explainUpload({ status: 500, detail: 'internal' }).title, /could not fit/);
  assert.equal(explainUpload({ name: 'AbortError' }), null);
  const gone = explain({ status: 404, detail: `image: ${NAME} is not stored` });
  assert.equal(gone.message, UPLOAD_GONE);
  assert.equal(UPLOAD_GONE, 'This uploaded picture is no longer stored on the server; upload it again.');
  const layer = explain({ status: 400, detail: 'layer: before the inverted layer4' }, { uploadLayer: 'layer4' });
  assert.match(layer.message, /fitted at layer4: paint it there or at a later layer/);
  assert.equal(explain({ status: 400, detail: 'layer: unknown' }).title, 'Unknown layer');
  // Without a record of the upload, the server's words name the layer.
  const told = explain({ status: 400, detail: `layer: ${NAME} was inverted at layer4; paint it at layer4 or a later layer, not layer1` });
  assert.equal(told.message, 'It was fitted at layer4: paint it there or at a later layer.');
});
