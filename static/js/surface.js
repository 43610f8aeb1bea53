// The painting surface: the image canvases stacked in #stage and the pointer handling.
//
//   #image     the current result, at the generator's resolution (smoothly scaled, or
//              crisp squares with the Pixelated toggle)
//   #original  the unedited image, clipped by the split slider or shown while comparing
//   #heatmap   one unit's activation on the layer grid, smoothly scaled, over the image
//   #overlay   screen-resolution canvas: the stroke being painted, strokes waiting for
//              their render, the hovered history entry, and the cells of the edited
//              layer's grid the brush would change; it receives the pointer events
//
// Pointer events cover mouse, pen and touch alike. Points are kept in image pixels.

import { touchedCells } from './grid.js';
import { conceptColor, rasterize, tracePath } from './strokes.js';

export class Surface {
  /**
   * `brush()` answers the current `{concept, mode, size}`; `onStroke(points)` gets each
   * finished stroke's polyline in image pixels; `grid()` the edited layer's `[rows, cols]`.
   */
  constructor(stage, { brush, onStroke, grid, onStart }) {
    this.stage = stage;
    this.brushSettings = brush;
    this.onStroke = onStroke;
    this.onStart = onStart || (() => {});
    this.grid = grid;
    this.hover = null; // [x, y] in image pixels while the pointer is over the image
    this.image = stage.querySelector('#image');
    this.original = stage.querySelector('#original');
    this.heatmap = stage.querySelector('#heatmap');
    this.overlay = stage.querySelector('#overlay');
    this.brushCursor = stage.querySelector('#brush');
    this.splitLine = stage.querySelector('#split-line');
    this.compareBadge = stage.querySelector('#compare-badge');
    this.editedBadge = stage.querySelector('#edited-badge');
    this.resolution = this.image.width;
    this.active = null; // {pointerId, points}
    this.pending = []; // strokes painted but not rendered yet
    this.highlighted = null;
    this.comparing = false;
    this.splitPercent = 0;
    this.lastPointer = null;
    this.tokens = new Map();

    this.overlay.style.touchAction = 'none';
    this.overlay.addEventListener('pointerdown', (e) => this.pointerDown(e));
    this.overlay.addEventListener('pointermove', (e) => this.pointerMove(e));
    this.overlay.addEventListener('pointerup', (e) => this.pointerUp(e));
    this.overlay.addEventListener('pointercancel', (e) => this.pointerCancel(e));
    this.overlay.addEventListener('pointerleave', (e) => {
      if (e.pointerType !== 'touch' && !this.active) {
        this.brushCursor.hidden = true;
        this.hover = null;
        this.redraw();
      }
    });
    this.overlay.addEventListener('contextmenu', (e) => e.preventDefault());
    new ResizeObserver(() => this.resizeOverlay()).observe(this.overlay);
    this.resizeOverlay();
    this.applyCompare();
  }

  setResolution(resolution) {
    if (resolution === this.resolution) return;
    this.resolution = resolution;
    this.image.width = this.image.height = resolution;
    this.original.width = this.original.height = resolution;
    this.redraw();
  }

  /**
   * Draws a PNG data URL onto a canvas pixel for pixel; resolves `true` once shown, or
   * `false` when a later call for the same canvas overtook it while decoding.
   */
  async drawTo(canvas, url) {
    const token = (this.tokens.get(canvas) || 0) + 1;
    this.tokens.set(canvas, token);
    const bitmap = new Image();
    bitmap.src = url;
    await bitmap.decode();
    if (this.tokens.get(canvas) !== token) return false;
    if (bitmap.naturalWidth !== canvas.width || bitmap.naturalHeight !== canvas.height) {
      canvas.width = bitmap.naturalWidth;
      canvas.height = bitmap.naturalHeight;
    }
    const ctx = canvas.getContext('2d');
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(bitmap, 0, 0);
    return true;
  }

  showImage(url) {
    return this.drawTo(this.image, url);
  }

  showOriginal(url) {
    return this.drawTo(this.original, url);
  }

  /** Strokes shown on the overlay until their render arrives. */
  setPending(strokes) {
    this.pending = strokes;
    this.redraw();
  }

  /** Outlines one stroke's region (history hover), or none. */
  highlight(stroke) {
    this.highlighted = stroke;
    this.redraw();
  }

  setCompare(on) {
    this.comparing = on;
    this.applyCompare();
  }

  setSplit(percent) {
    this.splitPercent = percent;
    this.applyCompare();
  }

  applyCompare() {
    const shown = this.comparing ? 100 : this.splitPercent;
    this.original.style.clipPath = `inset(0 ${100 - shown}% 0 0)`;
    this.original.hidden = shown === 0;
    this.splitLine.hidden = this.comparing || shown === 0 || shown === 100;
    this.splitLine.style.left = `${shown}%`;
    this.compareBadge.hidden = shown === 0;
    this.editedBadge.hidden = this.comparing || shown === 0 || shown === 100;
    this.stage.classList.toggle('comparing', this.comparing);
  }

  /** Shows `grid` (`[H][W]` of 0..255) as a heatmap over the image, or hides it. */
  showHeatmap(grid) {
    this.stage.classList.toggle('inspecting', Boolean(grid));
    if (!grid) {
      this.heatmap.hidden = true;
      return;
    }
    const h = grid.length;
    const w = grid[0].length;
    this.heatmap.width = w;
    this.heatmap.height = h;
    const ctx = this.heatmap.getContext('2d');
    const pixels = ctx.createImageData(w, h);
    for (let y = 0; y < h; y += 1) {
      for (let x = 0; x < w; x += 1) {
        // Values are the activation's quantile over the dissection (255 = its maximum):
        // show the top 40 %, clear where the unit is quiet, through red and orange to pale
        // yellow where it fires hardest.
        const v = Math.max(0, grid[y][x] / 255 - 0.6) / 0.4;
        const i = (y * w + x) * 4;
        pixels.data[i] = 255;
        pixels.data[i + 1] = Math.round(40 + 210 * v);
        pixels.data[i + 2] = Math.round(150 * v * v);
        pixels.data[i + 3] = Math.round(235 * Math.min(1, v * 1.2) ** 1.5);
      }
    }
    ctx.putImageData(pixels, 0, 0);
    this.heatmap.hidden = false;
  }

  // ---- pointer handling -------------------------------------------------------------

  toImage(event) {
    const rect = this.overlay.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) / rect.width) * this.resolution,
      ((event.clientY - rect.top) / rect.height) * this.resolution,
    ];
  }

  pointerDown(event) {
    if (this.active) return; // a second finger: keep the first stroke
    if (event.pointerType === 'mouse' && event.button !== 0) return;
    const settings = this.brushSettings();
    if (!settings.concept) return;
    event.preventDefault();
    this.onStart();
    this.overlay.setPointerCapture?.(event.pointerId);
    this.active = { pointerId: event.pointerId, points: [this.toImage(event)] };
    this.stage.classList.add('painting');
    this.moveCursor(event);
    this.redraw();
  }

  pointerMove(event) {
    this.moveCursor(event);
    if (!this.active && event.pointerType !== 'touch') {
      this.hover = this.toImage(event);
      this.redraw();
    }
    if (!this.active || event.pointerId !== this.active.pointerId) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of events.length ? events : [event]) this.active.points.push(this.toImage(e));
    this.redraw();
  }

  pointerUp(event) {
    if (!this.active || event.pointerId !== this.active.pointerId) return;
    this.active.points.push(this.toImage(event));
    const { points } = this.active;
    this.active = null;
    this.stage.classList.remove('painting');
    if (event.pointerType === 'touch') {
      this.brushCursor.hidden = true;
      this.hover = null;
    }
    const inside = points.filter(([x, y]) => x >= -8 && y >= -8
      && x <= this.resolution + 8 && y <= this.resolution + 8);
    if (inside.length) this.onStroke(inside);
    this.redraw();
  }

  pointerCancel(event) {
    if (this.active && event.pointerId === this.active.pointerId) this.cancelStroke();
  }

  /** Drops the stroke in progress (Esc, or the browser took the pointer). */
  cancelStroke() {
    if (!this.active) return false;
    this.active = null;
    this.stage.classList.remove('painting');
    this.redraw();
    return true;
  }

  moveCursor(event) {
    this.lastPointer = event;
    const settings = this.brushSettings();
    const rect = this.overlay.getBoundingClientRect();
    const diameter = (settings.size / this.resolution) * rect.width;
    const cursor = this.brushCursor;
    cursor.style.width = cursor.style.height = `${diameter}px`;
    cursor.style.transform = `translate(${event.clientX - rect.left - diameter / 2}px, ${event.clientY - rect.top - diameter / 2}px)`;
    cursor.style.borderColor = settings.concept ? conceptColor(settings.concept) : '#fff';
    cursor.classList.toggle('remove', settings.mode === 'remove');
    cursor.hidden = false;
  }

  /** Keeps the cursor's size in step with the brush slider. */
  refreshCursor() {
    if (this.lastPointer && !this.brushCursor.hidden) this.moveCursor(this.lastPointer);
    this.redraw();
  }

  /** Smooth scaling (the default) or crisp squares. */
  setPixelated(on) {
    this.stage.classList.toggle('pixelated', on);
  }

  /**
   * The grid cells the stroke in progress, or else a dab of the brush under the
   * pointer, would change: `{cells, painting}`, or null.
   */
  previewCells() {
    const settings = this.brushSettings();
    const grid = this.grid();
    if (!settings.concept || !grid) return null;
    const points = this.active ? this.active.points : this.hover ? [this.hover] : null;
    if (!points) return null;
    const canvas = rasterize({ points, size: settings.size }, this.resolution);
    const alpha = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const inside = points.some(([x, y]) => x >= 0 && y >= 0 && x < this.resolution && y < this.resolution);
    const cells = inside ? touchedCells(canvas.width, canvas.height, (x, y) => alpha[(y * canvas.width + x) * 4 + 3] > 0, grid) : [];
    return { cells, painting: Boolean(this.active) };
  }

  // ---- overlay drawing --------------------------------------------------------------

  resizeOverlay() {
    const rect = this.overlay.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(rect.width * ratio));
    const height = Math.max(1, Math.round(rect.height * ratio));
    if (this.overlay.width !== width || this.overlay.height !== height) {
      this.overlay.width = width;
      this.overlay.height = height;
      this.redraw();
    }
  }

  redraw() {
    const ctx = this.overlay.getContext('2d');
    const { width, height } = this.overlay;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const scale = width / this.resolution;
    ctx.setTransform(scale, 0, 0, height / this.resolution, 0, 0);
    if (this.highlighted?.mask) {
      this.paintStroke(ctx, this.highlighted, 0.7);
    } else if (this.highlighted) {
      // A white ring around the stroke's region, its inside tinted with its colour.
      const ring = (2 * (window.devicePixelRatio || 1)) / scale;
      const { points, size } = this.highlighted;
      ctx.save();
      ctx.fillStyle = ctx.strokeStyle = 'rgba(255,255,255,0.95)';
      tracePath(ctx, points, size + 2 * ring);
      ctx.globalCompositeOperation = 'destination-out';
      ctx.fillStyle = ctx.strokeStyle = '#000';
      tracePath(ctx, points, size);
      ctx.restore();
      this.paintStroke(ctx, this.highlighted, 0.4);
    }
    for (const stroke of this.pending) this.paintStroke(ctx, stroke, 0.45);
    const preview = this.previewCells();
    this.stage.dataset.previewCells = preview ? preview.cells.map(([r, c]) => `${r},${c}`).join(' ') : '';
    if (preview) this.paintCells(ctx, preview);
    if (this.active) {
      const settings = this.brushSettings();
      this.paintStroke(ctx, { ...settings, points: this.active.points }, 0.6);
    }
  }

  /** Shades and outlines the grid cells a stroke changes. */
  paintCells(ctx, { cells, painting }) {
    const [rows, cols] = this.grid();
    const settings = this.brushSettings();
    ctx.save();
    const line = (1.5 * (window.devicePixelRatio || 1) * this.resolution) / this.overlay.width;
    ctx.lineWidth = line;
    ctx.strokeStyle = conceptColor(settings.concept);
    ctx.fillStyle = painting ? 'rgba(255,255,255,0.16)' : 'rgba(255,255,255,0.07)';
    for (const [r, c] of cells) {
      const x0 = (Math.floor((c * this.resolution) / cols));
      const x1 = (Math.ceil(((c + 1) * this.resolution) / cols));
      const y0 = (Math.floor((r * this.resolution) / rows));
      const y1 = (Math.ceil(((r + 1) * this.resolution) / rows));
      ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
      ctx.setLineDash(painting ? [] : [line * 3, line * 2]);
      ctx.strokeRect(x0 + line / 2, y0 + line / 2, x1 - x0 - line, y1 - y0 - line);
    }
    ctx.restore();
  }

  paintStroke(ctx, stroke, alpha) {
    ctx.save();
    ctx.globalAlpha = alpha;
    const color = conceptColor(stroke.concept);
    // Remove strokes are hatched, so they read as "take away" rather than "add".
    const paint = stroke.mode === 'remove' ? hatch(ctx, color, this.resolution / this.overlay.width) : color;
    ctx.strokeStyle = ctx.fillStyle = paint;
    if (stroke.mask) {
      // An imported bitmap: its painted pixels, in the stroke's colour.
      const tinted = rasterize(stroke, this.resolution);
      const tctx = tinted.getContext('2d');
      tctx.globalCompositeOperation = 'source-in';
      tctx.fillStyle = color;
      tctx.fillRect(0, 0, tinted.width, tinted.height);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(tinted, 0, 0, this.resolution, this.resolution);
    } else {
      tracePath(ctx, stroke.points, stroke.size);
    }
    ctx.restore();
  }
}

const tiles = new Map();

/** A diagonal-hatch pattern in `color`, about 10 device pixels per tile. */
function hatch(ctx, color, unitsPerDevicePixel) {
  if (!tiles.has(color)) {
    const tile = document.createElement('canvas');
    tile.width = tile.height = 10;
    const t = tile.getContext('2d');
    t.fillStyle = 'rgba(0,0,0,0.6)';
    t.fillRect(0, 0, 10, 10);
    t.strokeStyle = color;
    t.lineWidth = 3;
    t.beginPath();
    for (const offset of [-10, 0, 10]) {
      t.moveTo(offset - 1, 11);
      t.lineTo(offset + 11, -1);
    }
    t.stroke();
    tiles.set(color, tile);
  }
  const pattern = ctx.createPattern(tiles.get(color), 'repeat');
  pattern.setTransform(new DOMMatrix().scale(unitsPerDevicePixel));
  return pattern;
}
