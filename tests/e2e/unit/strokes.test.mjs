// Strokes: the URL form (brush and bitmap strokes), run-length masks, merging runs of
// strokes with the same settings, and prefix keys.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  decodeRuns, decodeStroke, encodeRuns, encodeStroke, groupStrokes, prefixKeys, settingsKey, simplify, stackKey,
} from '../../../static/js/strokes.js';

const brush = { concept: 'tree', mode: 'draw', units: 20, strength: 1.5, size: 7, points: [[1, 2], [3.5, 4]] };

test('a brush stroke survives the URL form', () => {
  assert.deepEqual(decodeStroke(encodeStroke(brush)), brush);
});

test('a bitmap stroke survives the URL form with its exact pixels', () => {
  const flags = [0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 1];
  const mask = { width: 4, height: 3, runs: encodeRuns(flags.length, (i) => flags[i]) };
  const stroke = { concept: 'a b:c;d', mode: 'remove', units: 4, strength: 1, mask };
  const decoded = decodeStroke(encodeStroke(stroke));
  assert.equal(decoded.concept, 'a b:c;d');
  assert.equal(decoded.mode, 'remove');
  assert.deepEqual([...decodeRuns(decoded.mask)], flags);
});

test('run-length masks start unpainted and round-trip', () => {
  assert.deepEqual(encodeRuns(4, () => true), [0, 4]);
  assert.deepEqual(encodeRuns(3, () => false), [3]);
  const flags = Array.from({ length: 100 }, (_, i) => (i * 7) % 5 < 2);
  assert.deepEqual([...decodeRuns({ width: 10, height: 10, runs: encodeRuns(100, (i) => flags[i]) })], flags.map(Number));
});

test('malformed strokes are refused', () => {
  for (const text of ['', 'tree:d:20:1:7', 'tree:x:20:1:7:1,2', 'tree:d:0:1:7:1,2', 'tree:d:20::7:1,2',
    'tree:d:20:1:0:1,2', 'tree:d:20:1:7:1', 'tree:d:20:1:7:1,a', 'tree:d:20:1:m2x2:1.1', 'tree:d:20:1:m2x2:']) {
    assert.equal(decodeStroke(text), null, text);
  }
});

test('simplify keeps the ends and drops points closer than a step', () => {
  const kept = simplify([[0, 0], [0.2, 0.1], [5, 5], [5.2, 5.1]]);
  assert.deepEqual(kept[0], [0, 0]);
  assert.deepEqual(kept[kept.length - 1], [5, 5]);
});

test('only consecutive strokes with the same settings and mask size merge', () => {
  const s = (concept, extra = {}) => ({ ...brush, concept, ...extra });
  const strokes = [s('tree'), s('tree', { size: 3 }), s('grass'), s('tree'), s('tree', { strength: 2 }),
    s('tree', { strength: 2 }), s('tree', { strength: 2, mode: 'remove' })];
  assert.deepEqual(groupStrokes(strokes, 64), [
    { start: 0, end: 2 }, { start: 2, end: 3 }, { start: 3, end: 4 }, { start: 4, end: 6 }, { start: 6, end: 7 },
  ]);
  // Remove ignores strength: two removes with different strengths edit the same.
  assert.equal(settingsKey(s('tree', { mode: 'remove', strength: 1 }), 64), settingsKey(s('tree', { mode: 'remove', strength: 3 }), 64));
  // A bitmap of another size does not merge with a brush stroke.
  const bitmap = { concept: 'tree', mode: 'draw', units: 20, strength: 1.5, mask: { width: 32, height: 32, runs: [1024] } };
  assert.equal(groupStrokes([brush, bitmap], 64).length, 2);
});

test('prefix keys tell stacks apart and agree on shared prefixes', () => {
  const a = [brush, { ...brush, concept: 'grass' }];
  const b = [brush, { ...brush, concept: 'sky' }];
  const ka = prefixKeys(a);
  const kb = prefixKeys(b);
  assert.equal(ka.length, 3);
  assert.equal(ka[1], kb[1]);
  assert.notEqual(ka[2], kb[2]);
  assert.equal(prefixKeys([...a])[2], ka[2]);
  assert.equal(stackKey(a), `${encodeStroke(a[0])};${encodeStroke(a[1])}`);
});
