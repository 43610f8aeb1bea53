// The small pure modules: request planning, brush steps, grid cells, keys, plain-language
// errors, rankings, recipes, the address bar's form, and the store.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { brushLadder, stepBrush } from '../../../static/js/brush.js';
import { strokeStrength, tunedHint, unitsPerStroke } from '../../../static/js/brushpanel.js';
import { explain } from '../../../static/js/errors.js';
import { poolRange, touchedCells } from '../../../static/js/grid.js';
import { decodeHash, encodeHash, parseImage } from '../../../static/js/hashstate.js';
import { isTextField, shortcutFor } from '../../../static/js/keys.js';
import { chainPlan, longestKnownPrefix } from '../../../static/js/plan.js';
import { strokeRanking } from '../../../static/js/ranking.js';
import { parseRecipe, requestJson } from '../../../static/js/recipe.js';
import { createStore } from '../../../static/js/state.js';

test('a long stack goes as a chain of at most 64 strokes per request', () => {
  const groups = Array.from({ length: 150 }, (_, i) => ({ start: i, end: i + 1 }));
  const plan = chainPlan(groups, 0, 64);
  assert.deepEqual(plan.map((r) => [r.base, r.groups[0].start, r.groups.length]), [[0, 0, 64], [64, 64, 64], [128, 128, 22]]);
  // From a known edit of the first 149 strokes: one request with the last.
  const tail = chainPlan(groups.slice(149), 149, 64);
  assert.deepEqual(tail.map((r) => [r.base, r.groups.length]), [[149, 1]]);
  // Everything known: one request without strokes.
  assert.deepEqual(chainPlan([], 150, 64), [{ base: 150, groups: [] }]);
  // An empty stack is one plain request.
  assert.deepEqual(chainPlan([], 0, 64), [{ base: 0, groups: [] }]);
});

test('the longest known prefix is found from the end', () => {
  const keys = ['0', 'a', 'b', 'c'];
  assert.equal(longestKnownPrefix(keys, (k) => k === 'a' || k === 'b'), 2);
  assert.equal(longestKnownPrefix(keys, () => false), 0);
});

test('[ and ] step the brush evenly both ways', () => {
  const ladder = brushLadder(32);
  assert.deepEqual(ladder, [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32]);
  for (const size of ladder) {
    if (size < 32) assert.equal(stepBrush(stepBrush(size, 1, 1, 32), -1, 1, 32), size, `up then down from ${size}`);
    if (size > 1) assert.equal(stepBrush(stepBrush(size, -1, 1, 32), 1, 1, 32), size, `down then up from ${size}`);
  }
  assert.equal(stepBrush(9, 1, 1, 32), 10);
  assert.equal(stepBrush(9, -1, 1, 32), 8);
  assert.equal(stepBrush(32, 1, 1, 32), 32);
  assert.equal(stepBrush(1, -1, 1, 32), 1);
  assert.equal(brushLadder(128).at(-1), 128);
});

test('grid cells follow adaptive max pooling', () => {
  assert.deepEqual(poolRange(0, 64, 8), [0, 8]);
  assert.deepEqual(poolRange(1, 10, 4), [2, 5]); // overlapping windows when sizes don't divide
  const painted = (x, y) => x === 8 && y === 17;
  assert.deepEqual(touchedCells(64, 64, painted, [8, 8]), [[2, 1]]);
  assert.deepEqual(touchedCells(10, 10, (x, y) => x === 2 && y === 0, [4, 4]), [[0, 0], [0, 1]]);
  assert.deepEqual(touchedCells(64, 64, () => false, [8, 8]), []);
});

test('shortcuts never act in text fields except undo, redo and leaving the field', () => {
  const key = (k, extra = {}) => ({ key: k, ctrlKey: false, metaKey: false, shiftKey: false, altKey: false, repeat: false, ...extra });
  assert.equal(shortcutFor(key('e'), { inField: true }), null);
  assert.deepEqual(shortcutFor(key('e')), { action: 'mode', mode: 'remove' });
  assert.deepEqual(shortcutFor(key('z', { ctrlKey: true }), { inField: true }), { action: 'undo' });
  assert.deepEqual(shortcutFor(key('Z', { ctrlKey: true, shiftKey: true })), { action: 'redo' });
  assert.deepEqual(shortcutFor(key('Escape'), { inField: true }), { action: 'leave-field' });
  assert.deepEqual(shortcutFor(key('0'), { concepts: 10 }), { action: 'concept', index: 9 });
  assert.equal(shortcutFor(key('0'), { concepts: 9 }), null);
  assert.deepEqual(shortcutFor(key('1'), { concepts: 10 }), { action: 'concept', index: 0 });
  assert.equal(shortcutFor(key('s', { ctrlKey: true }), { inField: true }), null);
  assert.equal(shortcutFor(key('r', { ctrlKey: true })), null);
  assert.ok(isTextField({ tagName: 'INPUT', type: 'text' }));
  assert.ok(!isTextField({ tagName: 'INPUT', type: 'range' }));
});

test('server errors read in plain language', () => {
  const units = explain({ status: 400, detail: 'strokes[2].units: must be 1..=256' }, { strokeNumber: (i) => i + 5, layer: 'layer4' });
  assert.match(units.title, /Stroke 7/);
  assert.match(units.message, /between 1 and 256 units on layer4/);
  assert.doesNotMatch(units.message, /1\.\.=/);
  const concept = explain({ status: 400, detail: 'strokes[0].concept: unknown concept `lava` at layer4; known: tree, sky' }, { layer: 'layer4' });
  assert.match(concept.message, /“lava”.*It knows: tree, sky/);
  assert.match(explain({ status: 400, detail: 'strokes: at most 64 strokes per request, got 65' }).message, /at most 64/);
  assert.match(explain({ status: 0 }).title, /Cannot reach/);
  assert.match(explain({ status: 503 }).title, /busy/);
  assert.equal(explain({ name: 'AbortError' }), null);
});

test('the units panel names the ranking the server says it takes', () => {
  const scores = (order, n = 6) => {
    const s = Array(n).fill(0);
    order.forEach((unit, rank) => { s[unit] = -(1 - rank / 10); });
    return s;
  };
  const concept = {
    name: 'tree',
    units: [{ unit: 3, iou: 0.1 }, { unit: 1, iou: 0.3 }],
    remove_units: [4, 0],
    draw_ranking: 'tree-causal-draw',
    remove_ranking: 'tree-iou',
  };
  const rankings = [
    { name: 'tree-iou', metric: 'iou', scores: scores([4, 0, 1, 3]) },
    { name: 'tree-causal-draw', metric: 'causal-draw', scores: scores([3, 1]) },
  ];
  const draw = strokeRanking(concept, 'draw', rankings);
  assert.equal(draw.name, 'tree-causal-draw');
  assert.equal(draw.metric, 'causal-draw');
  assert.deepEqual(draw.units.map((u) => u.unit), [3, 1]);
  assert.ok(draw.units[0].score >= draw.units[1].score, 'scores decrease');
  const remove = strokeRanking(concept, 'remove', rankings);
  assert.equal(remove.name, 'tree-iou');
  assert.deepEqual(remove.units.map((u) => u.unit), [4, 0]);
  // An optimized intervention's learned weights, in the server's order.
  const learned = [0, -1, 0, -1, -0.5, -0.01];
  const withAce = [...rankings, { name: 'tree-ace-draw', metric: 'ace-draw', scores: learned }];
  const drawAce = strokeRanking({ ...concept, draw_ranking: 'tree-ace-draw', units: [1, 3, 4].map((unit) => ({ unit, iou: 0 })) }, 'draw', withAce);
  assert.equal(drawAce.name, 'tree-ace-draw');
  assert.deepEqual(drawAce.units.map((u) => u.score), [1, 1, 0.5]);
  // A ranking the server names but the rankings do not list: the order, unscored.
  const unlisted = strokeRanking({ ...concept, remove_ranking: 'tree-causal-remove' }, 'remove', rankings);
  assert.equal(unlisted.name, null);
  assert.deepEqual(unlisted.units, [{ unit: 4, score: null }, { unit: 0, score: null }]);
});

test('a recipe is the paint request, with 64-bit seeds exact', () => {
  const body = { project: 'demo', layer: 'layer4', strokes: [{ concept: 'tree', mode: 'draw', mask: 'data:image/png;base64,AA', units: 20, strength: 1 }] };
  const text = requestJson(body, 'seed:18446744073709551615', 2);
  assert.match(text, /"seed": 18446744073709551615,/);
  const recipe = parseRecipe(text);
  assert.equal(recipe.image, 'seed:18446744073709551615');
  assert.equal(recipe.strokes.length, 1);
  assert.equal(parseRecipe(requestJson(body, 'id:42')).image, 'id:42');
  assert.deepEqual([recipe.strokes[0].units, recipe.strokes[0].strength], [20, 1]);
  // Left out: null, for the importer to fill in with the concept's tuned setting.
  const bare = parseRecipe('{"strokes": [{"concept": "tree", "mode": "draw", "mask": "data:image/png;base64,AA"}]}');
  assert.deepEqual([bare.strokes[0].units, bare.strokes[0].strength], [null, null]);
  assert.throws(() => parseRecipe('{"strokes": [{"concept": "tree", "mode": "draw", "mask": "data:image/png;base64,AA", "units": 0}]}'), /unit count/);
  assert.throws(() => parseRecipe('nope'), /not JSON/);
  assert.throws(() => parseRecipe('{"strokes": [{"concept": "tree", "mode": "paint", "mask": "data:image/png;base64,AA"}]}'), /Stroke 1's mode/);
  assert.throws(() => parseRecipe('{"project": "demo"}'), /no "strokes"/);
});

test('the address bar form carries ids, seeds and strokes', () => {
  const stroke = Object.freeze({ concept: 'tree', mode: 'draw', units: 20, strength: 1, size: 4, points: [[1, 2]] });
  const hash = encodeHash({ project: 'demo', layer: 'layer4', image: 'seed:99', strokes: [stroke] });
  assert.equal(hash, '#project=demo&layer=layer4&seed=99&strokes=tree:d:20:1:4:1,2');
  const decoded = decodeHash(hash);
  assert.equal(decoded.image, 'seed:99');
  assert.deepEqual(decoded.strokes, [stroke]);
  assert.equal(decodeHash('#id=99999999').badImage, 'id 99999999');
  assert.equal(parseImage('id:007'), 'id:7');
  assert.equal(parseImage('seed:18446744073709551616'), null);
});

test('the store tells subscribers which keys changed', () => {
  const store = createStore({ a: 1, b: 2 });
  const heard = [];
  const stop = store.subscribe((state, changed) => heard.push([state.a, [...changed]]));
  store.set({ a: 1 });
  store.set({ a: 3, b: 2 });
  stop();
  store.set({ a: 4 });
  assert.deepEqual(heard, [[3, ['a']]]);
  assert.equal(store.get().a, 4);
});

test('a cached answer reads as cached, not as 0 ms and 0% recomputed', async () => {
  const { statusLine } = await import('../../../static/js/render.js');
  assert.equal(statusLine({ cached: 'client' }, 3), 'Shown from the editor\'s cache');
  assert.equal(statusLine({ cached: null, requests: 1, timing: { recomputed: 0, forward_ms: 0 } }, 12), 'Rendered in 12 ms (from the server\'s cache)');
  assert.equal(statusLine({ cached: null, requests: 1, timing: { recomputed: 0.25, forward_ms: 40.2 } }, 80), 'Rendered in 80 ms (model 40 ms, 25% of the image recomputed)');
  assert.equal(statusLine({ cached: null, requests: 3, timing: { recomputed: 1, forward_ms: 90 } }, 300), 'Rendered in 300 ms in 3 requests (model 90 ms)');
});

test('a link naming what the server lacks says so and shows what it can', async () => {
  const { resolveLink } = await import('../../../static/js/links.js');
  const { decodeHash } = await import('../../../static/js/hashstate.js');
  const projects = [{
    name: 'demo',
    default_layer: 'layer4',
    layers: [{ name: 'layer4', concepts: [{ name: 'tree' }] }, { name: 'layer3', concepts: [{ name: 'sky' }] }],
  }];
  const unknown = resolveLink(decodeHash('#project=church&layer=layer9&id=5&strokes=tree:d:20:1:4:1,2;lava:d:20:1:4:1,2;bad'), projects);
  assert.equal(unknown.project, 'demo');
  assert.equal(unknown.layer, 'layer4');
  assert.equal(unknown.image, 'id:5');
  assert.deepEqual(unknown.strokes.map((s) => s.concept), ['tree']);
  assert.equal(unknown.notes.length, 4);
  assert.match(unknown.notes.join('\n'), /project “church”, which this server doesn't have/);
  assert.match(unknown.notes.join('\n'), /no layer “layer9”/);
  assert.match(unknown.notes.join('\n'), /paint lava, which layer4 has no units for/);
  assert.match(unknown.notes.join('\n'), /1 stroke\(s\) in the link could not be read/);
  // A link without a layer keeps the layer shown now; without an image, the image.
  const keep = resolveLink(decodeHash('#project=demo'), projects, { project: 'demo', layer: 'layer3', image: 'seed:9' });
  assert.deepEqual([keep.layer, keep.image, keep.notes], ['layer3', 'seed:9', []]);
});

test('the Tuned preset paints with the concept\'s tuned units and intensity, per mode', () => {
  const layer = { units: 256 };
  const tree = {
    name: 'tree',
    draw_default: { units: 40, strength: 1.5, tuned: true },
    remove_default: { units: 160, strength: 1, tuned: true },
  };
  const state = (over) => ({ layer, mode: 'draw', unitsChoice: 'tuned', customUnits: '30', strength: 2.5, ...over });
  assert.equal(unitsPerStroke(state(), tree), 40);
  assert.equal(strokeStrength(state(), tree), 1.5);
  assert.equal(unitsPerStroke(state({ mode: 'remove' }), tree), 160);
  // A preset or a custom count is the user's, and so is the slider's intensity.
  assert.equal(unitsPerStroke(state({ unitsChoice: '40' }), tree), 40);
  assert.equal(strokeStrength(state({ unitsChoice: '40' }), tree), 2.5);
  assert.equal(unitsPerStroke(state({ unitsChoice: 'custom', customUnits: '999' }), tree), 256);
  // No concept info (yet): the plain defaults.
  assert.equal(unitsPerStroke(state(), null), 20);
  assert.equal(strokeStrength(state(), null), 1);
  // A tuned count larger than the layer is clamped to it.
  assert.equal(unitsPerStroke(state({ layer: { units: 32 }, mode: 'remove' }), tree), 32);
  // The hint says what the chosen mode paints with, and whether that mode was tuned.
  assert.equal(tunedHint(state(), tree), 'Tuned: tree draws with 40 units at 1.5×.');
  const half = { ...tree, remove_default: { units: 16, strength: 1, tuned: false } };
  assert.equal(tunedHint(state({ mode: 'remove' }), half), 'Not tuned here: tree removes with 16 units, the plain default.');
  assert.equal(tunedHint(state({ unitsChoice: '20' }), tree), '');
});
