// An animated GIF encoder (GIF89a, LZW), small enough to read: frames of RGBA pixels,
// each quantised to its own palette of at most 256 colours (exact when the frame has no
// more; median cut otherwise), looping forever. Pure: no DOM.

/** Growable byte buffer. */
class Bytes {
  constructor() {
    this.data = new Uint8Array(1 << 16);
    this.length = 0;
  }

  byte(b) {
    if (this.length === this.data.length) {
      const bigger = new Uint8Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = b;
  }

  bytes(list) {
    for (const b of list) this.byte(b);
  }

  short(v) {
    this.byte(v & 0xff);
    this.byte((v >> 8) & 0xff);
  }

  text(s) {
    for (const ch of s) this.byte(ch.charCodeAt(0));
  }

  result() {
    return this.data.slice(0, this.length);
  }
}

/**
 * A palette (`[[r, g, b], …]`, at most 256, a power of two in length) and each pixel's
 * index into it, for `rgba` (`Uint8Array`/`Uint8ClampedArray`, alpha ignored).
 */
export function quantize(rgba) {
  const count = rgba.length / 4;
  const colors = new Map();
  for (let i = 0; i < count; i += 1) {
    const c = (rgba[i * 4] << 16) | (rgba[i * 4 + 1] << 8) | rgba[i * 4 + 2];
    colors.set(c, (colors.get(c) || 0) + 1);
  }
  let palette;
  if (colors.size <= 256) {
    palette = [...colors.keys()].map((c) => [c >> 16, (c >> 8) & 0xff, c & 0xff]);
  } else {
    palette = medianCut([...colors.entries()], 256);
  }
  const lookup = new Map();
  const indices = new Uint8Array(count);
  for (let i = 0; i < count; i += 1) {
    const c = (rgba[i * 4] << 16) | (rgba[i * 4 + 1] << 8) | rgba[i * 4 + 2];
    let index = lookup.get(c);
    if (index === undefined) {
      index = nearest(palette, c >> 16, (c >> 8) & 0xff, c & 0xff);
      lookup.set(c, index);
    }
    indices[i] = index;
  }
  let size = 2;
  while (size < palette.length) size *= 2;
  while (palette.length < size) palette.push([0, 0, 0]);
  return { palette, indices };
}

function nearest(palette, r, g, b) {
  let best = 0;
  let bestDistance = Infinity;
  palette.forEach(([pr, pg, pb], i) => {
    const d = (pr - r) ** 2 + (pg - g) ** 2 + (pb - b) ** 2;
    if (d < bestDistance) {
      bestDistance = d;
      best = i;
    }
  });
  return best;
}

/**
 * Median cut over `[[color, count], …]` into at most `target` boxes, each its weighted
 * mean. The box split next is the one whose widest channel range, weighted by its pixel
 * count, is largest: big boxes of many pixels go first.
 */
function medianCut(entries, target) {
  const channel = (c, k) => (k === 0 ? c >> 16 : k === 1 ? (c >> 8) & 0xff : c & 0xff);
  const boxes = [entries];
  while (boxes.length < target) {
    let widest = -1;
    let widestRange = 0;
    let widestChannel = 0;
    boxes.forEach((box, i) => {
      if (box.length < 2) return;
      const pixels = box.reduce((sum, [, n]) => sum + n, 0);
      for (let k = 0; k < 3; k += 1) {
        let lo = 255;
        let hi = 0;
        for (const [c] of box) {
          const v = channel(c, k);
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
        if ((hi - lo) * pixels > widestRange) {
          widestRange = (hi - lo) * pixels;
          widest = i;
          widestChannel = k;
        }
      }
    });
    if (widest < 0) break;
    const box = boxes[widest].sort((a, b) => channel(a[0], widestChannel) - channel(b[0], widestChannel));
    const total = box.reduce((sum, [, n]) => sum + n, 0);
    let seen = 0;
    let cut = 1;
    for (; cut < box.length - 1; cut += 1) {
      seen += box[cut - 1][1];
      if (seen * 2 >= total) break;
    }
    boxes.splice(widest, 1, box.slice(0, cut), box.slice(cut));
  }
  return boxes.map((box) => {
    const total = box.reduce((sum, [, n]) => sum + n, 0);
    return [0, 1, 2].map((k) => Math.round(box.reduce((sum, [c, n]) => sum + channel(c, k) * n, 0) / total));
  });
}

/** GIF's variable-width LZW of `indices` with `minCodeSize`-bit symbols, as data sub-blocks. */
export function lzwEncode(indices, minCodeSize, out) {
  const clear = 1 << minCodeSize;
  const end = clear + 1;
  let codeSize = minCodeSize + 1;
  let next = end + 1;
  let dictionary = new Map();
  let bitBuffer = 0;
  let bitCount = 0;
  const block = [];
  const flushBlock = () => {
    out.byte(block.length);
    out.bytes(block);
    block.length = 0;
  };
  const emit = (code) => {
    bitBuffer |= code << bitCount;
    bitCount += codeSize;
    while (bitCount >= 8) {
      block.push(bitBuffer & 0xff);
      if (block.length === 255) flushBlock();
      bitBuffer >>>= 8;
      bitCount -= 8;
    }
  };
  emit(clear);
  let prefix = indices.length ? indices[0] : -1;
  for (let i = 1; i < indices.length; i += 1) {
    const symbol = indices[i];
    const key = prefix * 4096 + symbol;
    const known = dictionary.get(key);
    if (known !== undefined) {
      prefix = known;
      continue;
    }
    emit(prefix);
    if (next < 4096) {
      dictionary.set(key, next);
      next += 1;
      // The decoder widens its codes one code later than the encoder adds the entry.
      if (next > (1 << codeSize) && codeSize < 12) codeSize += 1;
    } else {
      emit(clear);
      dictionary = new Map();
      codeSize = minCodeSize + 1;
      next = end + 1;
    }
    prefix = symbol;
  }
  if (prefix >= 0) emit(prefix);
  emit(end);
  if (bitCount > 0) block.push(bitBuffer & 0xff);
  if (block.length) flushBlock();
  out.byte(0); // block terminator
}

/**
 * Encodes frames (`[{rgba}]`, each `width`×`height`) as a looping animated GIF, each
 * frame shown for `delayMs` (the last for `lastDelayMs`). Returns the file's bytes.
 */
export function encodeGif(frames, width, height, { delayMs = 500, lastDelayMs = 1500 } = {}) {
  if (!frames.length) throw new Error('a GIF needs at least one frame');
  const out = new Bytes();
  out.text('GIF89a');
  out.short(width);
  out.short(height);
  out.bytes([0x00, 0, 0]); // no global colour table
  // NETSCAPE2.0: loop forever.
  out.bytes([0x21, 0xff, 0x0b]);
  out.text('NETSCAPE2.0');
  out.bytes([0x03, 0x01, 0x00, 0x00, 0x00]);
  frames.forEach((frame, i) => {
    if (frame.rgba.length !== width * height * 4) throw new Error(`frame ${i} is not ${width}×${height}`);
    const { palette, indices } = quantize(frame.rgba);
    const bits = Math.max(1, Math.log2(palette.length));
    const delay = Math.round((i === frames.length - 1 ? lastDelayMs : delayMs) / 10);
    out.bytes([0x21, 0xf9, 0x04, 0x04]); // graphic control: dispose "do not dispose"
    out.short(delay);
    out.bytes([0x00, 0x00]);
    out.byte(0x2c); // image descriptor
    out.short(0);
    out.short(0);
    out.short(width);
    out.short(height);
    out.byte(0x80 | (bits - 1)); // local colour table
    for (const [r, g, b] of palette) out.bytes([r, g, b]);
    out.byte(Math.max(2, bits)); // LZW minimum code size
    lzwEncode(indices, Math.max(2, bits), out);
  });
  out.byte(0x3b);
  return out.result();
}
