// The GIF encoder, checked by an independent decoder written here from the GIF89a spec:
// structure, frame count, and every frame's pixels.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { encodeGif, quantize } from '../../../static/js/gif.js';

/** Decodes a GIF: `{width, height, loops, frames: [{delay, rgb: number[]}]}`. */
function decodeGif(bytes) {
  let p = 0;
  const u8 = () => bytes[p++];
  const u16 = () => { const v = bytes[p] | (bytes[p + 1] << 8); p += 2; return v; };
  const text = (n) => { const s = String.fromCharCode(...bytes.slice(p, p + n)); p += n; return s; };
  assert.equal(text(6), 'GIF89a');
  const width = u16();
  const height = u16();
  const flags = u8();
  p += 2;
  let global = null;
  if (flags & 0x80) {
    const n = 2 << (flags & 7);
    global = [];
    for (let i = 0; i < n; i += 1) global.push([u8(), u8(), u8()]);
  }
  const frames = [];
  let loops = false;
  let delay = 0;
  const subBlocks = () => {
    const out = [];
    for (let n = u8(); n; n = u8()) { for (let i = 0; i < n; i += 1) out.push(u8()); }
    return out;
  };
  for (;;) {
    const kind = u8();
    if (kind === 0x3b) break;
    if (kind === 0x21) {
      const label = u8();
      const data = subBlocks();
      if (label === 0xf9) delay = data[1] | (data[2] << 8);
      if (label === 0xff && String.fromCharCode(...data.slice(0, 11)) === 'NETSCAPE2.0') loops = true;
      continue;
    }
    assert.equal(kind, 0x2c, `unexpected block 0x${kind.toString(16)} at ${p - 1}`);
    const [x, y, w, h] = [u16(), u16(), u16(), u16()];
    assert.deepEqual([x, y, w, h], [0, 0, width, height]);
    const f = u8();
    let palette = global;
    if (f & 0x80) {
      palette = [];
      for (let i = 0; i < 2 << (f & 7); i += 1) palette.push([u8(), u8(), u8()]);
    }
    const minCode = u8();
    const indices = lzwDecode(subBlocks(), minCode, w * h);
    frames.push({ delay, rgb: indices.flatMap((i) => palette[i]) });
  }
  return { width, height, loops, frames };
}

function lzwDecode(data, minCode, count) {
  const clear = 1 << minCode;
  const end = clear + 1;
  let size = minCode + 1;
  let table = [];
  const reset = () => {
    table = [];
    for (let i = 0; i < clear; i += 1) table.push([i]);
    table.push(null, null);
    size = minCode + 1;
  };
  reset();
  const out = [];
  let bit = 0;
  let previous = null;
  const read = () => {
    let code = 0;
    for (let i = 0; i < size; i += 1, bit += 1) code |= ((data[bit >> 3] >> (bit & 7)) & 1) << i;
    return code;
  };
  while (bit + size <= data.length * 8) {
    const code = read();
    if (code === clear) { reset(); previous = null; continue; }
    if (code === end) break;
    let entry;
    if (code < table.length && table[code]) entry = table[code];
    else if (code === table.length && previous) entry = [...previous, previous[0]];
    else throw new Error(`bad LZW code ${code}`);
    out.push(...entry);
    if (previous) table.push([...previous, entry[0]]);
    if (table.length === 1 << size && size < 12) size += 1;
    previous = entry;
  }
  assert.equal(out.length, count, 'the frame decodes to exactly its pixel count');
  return out;
}

function frame(width, height, color) {
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < width * height; i += 1) {
    const [r, g, b] = color(i % width, Math.floor(i / width));
    rgba.set([r, g, b, 255], i * 4);
  }
  return { rgba };
}

test('frames with few colours decode to exactly their pixels, one frame each, looping', () => {
  const frames = [
    frame(5, 3, () => [10, 20, 30]),
    frame(5, 3, (x, y) => (x + y) % 2 ? [255, 0, 0] : [0, 0, 255]),
    frame(5, 3, (x) => [x * 40, 100, 200]),
  ];
  const gif = decodeGif(encodeGif(frames, 5, 3, { delayMs: 400, lastDelayMs: 1000 }));
  assert.equal(gif.width, 5);
  assert.equal(gif.height, 3);
  assert.ok(gif.loops);
  assert.equal(gif.frames.length, 3);
  assert.deepEqual(gif.frames.map((f) => f.delay), [40, 40, 100]);
  gif.frames.forEach((decoded, i) => {
    const expected = [];
    for (let p = 0; p < 15; p += 1) expected.push(...frames[i].rgba.slice(p * 4, p * 4 + 3));
    assert.deepEqual(decoded.rgb, expected, `frame ${i}`);
  });
});

test('a large noisy frame exercises code widening and dictionary resets', () => {
  // 256 colours exactly (lossless), in a pattern long enough to fill the 4096-code table.
  let seed = 7;
  const random = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed >>> 24; };
  const values = Array.from({ length: 120 * 90 }, () => random());
  const f = frame(120, 90, (x, y) => { const v = values[y * 120 + x]; return [v, 255 - v, (v * 7) & 255]; });
  const gif = decodeGif(encodeGif([f], 120, 90));
  const expected = [];
  for (let p = 0; p < 120 * 90; p += 1) expected.push(...f.rgba.slice(p * 4, p * 4 + 3));
  assert.deepEqual(gif.frames[0].rgb, expected);
});

test('more than 256 colours are reduced to a palette close to the image', () => {
  const f = frame(64, 64, (x, y) => [x * 4, y * 4, (x + y) * 2]); // 4096 colours
  const { palette, indices } = quantize(f.rgba);
  assert.ok(palette.length <= 256);
  let error = 0;
  for (let i = 0; i < 64 * 64; i += 1) {
    const [r, g, b] = palette[indices[i]];
    error += Math.abs(r - f.rgba[i * 4]) + Math.abs(g - f.rgba[i * 4 + 1]) + Math.abs(b - f.rgba[i * 4 + 2]);
  }
  assert.ok(error / (64 * 64 * 3) < 8, `mean error per channel ${error / (64 * 64 * 3)}`);
  const gif = decodeGif(encodeGif([f, f], 64, 64));
  assert.equal(gif.frames.length, 2);
});

test('a frame of the wrong size is refused', () => {
  assert.throws(() => encodeGif([frame(2, 2, () => [0, 0, 0])], 3, 3), /not 3×3/);
  assert.throws(() => encodeGif([], 3, 3), /at least one frame/);
});
