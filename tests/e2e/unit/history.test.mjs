// The edit history: per-image stacks, one timeline through strokes and image switches,
// and its localStorage form.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { EditHistory, imageKey, splitKey } from '../../../static/js/history.js';

const stroke = (concept, x) => Object.freeze({ concept, mode: 'draw', units: 20, strength: 1, size: 4, points: [[x, 1], [x + 2, 3]] });
const A = imageKey('demo', 'layer4', 'id:40');
const B = imageKey('demo', 'layer4', 'id:41');

test('keys split back into project, layer and image', () => {
  assert.deepEqual(splitKey(A), { project: 'demo', layer: 'layer4', image: 'id:40' });
  assert.deepEqual(splitKey(imageKey('a|b', 'l', 'seed:7')), { project: 'a|b', layer: 'l', image: 'seed:7' });
});

test('each image keeps its own strokes, and coming back restores them', () => {
  const history = new EditHistory(A);
  const [s1, s2, s3] = [stroke('tree', 1), stroke('grass', 2), stroke('sky', 3)];
  history.add(s1);
  history.add(s2);
  history.switchTo(B);
  assert.equal(history.key, B);
  assert.deepEqual(history.strokes, []);
  history.add(s3);
  history.switchTo(A);
  assert.deepEqual(history.strokes, [s1, s2]);
  history.switchTo(B);
  assert.deepEqual(history.strokes, [s3]);
});

test('undo steps back over an image switch, and redo forward again', () => {
  const history = new EditHistory(A);
  const s1 = stroke('tree', 1);
  history.add(s1);
  history.switchTo(B);
  assert.ok(history.canUndo);
  assert.equal(history.undo().key, A);
  assert.deepEqual(history.strokes, [s1]);
  assert.equal(history.undo().key, A);
  assert.deepEqual(history.strokes, []);
  assert.equal(history.undo(), null);
  history.redo();
  history.redo();
  assert.equal(history.key, B);
  assert.ok(!history.canRedo);
});

test('switching to the image already shown is no step', () => {
  const history = new EditHistory(A);
  assert.equal(history.switchTo(A), null);
  assert.ok(!history.canUndo);
});

test('discard forgets a refused state without leaving it to redo', () => {
  const history = new EditHistory(A);
  const s1 = stroke('tree', 1);
  history.add(s1);
  history.add(stroke('bad', 2));
  history.discard();
  assert.deepEqual(history.strokes, [s1]);
  assert.ok(!history.canRedo);
  assert.deepEqual(history.stackOf(A), [s1]);
});

test('the saved form restores the timeline, the position and every stack', () => {
  const history = new EditHistory(A);
  const [s1, s2, s3] = [stroke('tree', 1), stroke('grass', 2), stroke('sky', 3)];
  history.add(s1);
  history.add(s2);
  history.switchTo(B);
  history.add(s3);
  history.undo();
  const json = JSON.parse(JSON.stringify(history.toJSON()));
  assert.equal(json.strokes.length, 3, 'each stroke is stored once');
  const restored = EditHistory.fromJSON(json);
  assert.equal(restored.key, B);
  assert.deepEqual(restored.strokes, []);
  assert.ok(restored.canRedo);
  restored.redo();
  assert.equal(restored.strokes.length, 1);
  assert.equal(restored.strokes[0].concept, 'sky');
  restored.switchTo(A);
  assert.deepEqual(restored.strokes.map((s) => s.concept), ['tree', 'grass']);
});

test('a stroke added costs one number in the saved form', () => {
  const history = new EditHistory(A);
  for (let i = 0; i < 50; i += 1) history.add(stroke('tree', i));
  const json = history.toJSON();
  assert.ok(json.entries.slice(1).every((entry) => entry.length === 3), 'each state stores only its new stroke');
  const restored = EditHistory.fromJSON(JSON.parse(JSON.stringify(json)));
  assert.equal(restored.strokes.length, 50);
  restored.undo();
  assert.equal(restored.strokes.length, 49);
});

test('a trimmed save keeps the states nearest the present', () => {
  const history = new EditHistory(A);
  for (let i = 0; i < 10; i += 1) history.add(stroke('tree', i));
  const restored = EditHistory.fromJSON(history.toJSON(3));
  assert.equal(restored.entries.length, 3);
  assert.equal(restored.strokes.length, 10);
  assert.ok(!restored.canRedo);
  restored.undo();
  assert.equal(restored.strokes.length, 9);
});

test('malformed saves are refused, not half-read', () => {
  assert.equal(EditHistory.fromJSON(null), null);
  assert.equal(EditHistory.fromJSON({ version: 2 }), null);
  assert.equal(EditHistory.fromJSON({ version: 1, strokes: [], entries: [[A, 0, 0]], index: 0 }), null);
  assert.equal(EditHistory.fromJSON({ version: 1, strokes: [], entries: [[A, 0]], index: 1 }), null);
  assert.equal(EditHistory.fromJSON({ version: 1, strokes: [], entries: [[A, 1]], index: 0 }), null);
});
