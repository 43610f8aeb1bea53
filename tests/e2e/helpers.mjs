// Shared helpers for the browser tests: launching Debian's chromium through
// playwright-core, painting with a mouse or a finger, and reading the image canvas.

import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const BASE_URL = process.env.GANPAINT_E2E_URL;
export const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');
const CHROMIUM = process.env.GANPAINT_E2E_CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

if (!BASE_URL) {
  throw new Error('GANPAINT_E2E_URL is not set: run the browser tests through scripts/e2e.sh, which starts the server');
}

/**
 * A browser with a fresh profile in a temporary folder. `options` are playwright context
 * options (viewport, hasTouch…). Returns `{context, close}`.
 */
export async function openBrowser(options = {}) {
  const profile = await mkdtemp(path.join(tmpdir(), 'ganpaint-e2e-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    baseURL: BASE_URL,
    acceptDownloads: true,
    colorScheme: 'dark',
    viewport: { width: 1280, height: 800 },
    ...options,
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** Console errors and uncaught exceptions a page reports, as strings. */
export function collectErrors(page) {
  const errors = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  return errors;
}

export async function screenshot(page, name) {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

/** Opens the editor and waits for the first image. */
export async function openEditor(page, hash = '') {
  await page.goto(`/${hash}`);
  await page.waitForSelector('body[data-ready=true]');
  await page.waitForFunction(() => Number(document.getElementById('stage').dataset.renders) >= 1
    && document.getElementById('stage').getAttribute('aria-busy') === 'false');
}

export function renderCount(page) {
  return page.evaluate(() => Number(document.getElementById('stage').dataset.renders));
}

/** Waits until an image newer than render number `after` is on screen and nothing is pending. */
export async function waitForRender(page, after) {
  await page.waitForFunction((n) => {
    const stage = document.getElementById('stage');
    return Number(stage.dataset.renders) > n && stage.getAttribute('aria-busy') === 'false';
  }, after, { timeout: 20000 });
}

/** The image canvas: `{width, height, data: number[] (RGBA), url}`. */
export function readImage(page) {
  return page.evaluate(() => {
    const canvas = document.getElementById('image');
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    return { width: canvas.width, height: canvas.height, data: Array.from(pixels.data), url: canvas.toDataURL('image/png') };
  });
}

/** Image pixels → page coordinates of the painting surface. */
export async function imageToPage(page, points) {
  const box = await page.locator('#overlay').boundingBox();
  const resolution = await page.evaluate(() => document.getElementById('image').width);
  return points.map(([x, y]) => [box.x + (x / resolution) * box.width, box.y + (y / resolution) * box.height]);
}

/** Drags the mouse along `points` (image pixels) and waits for the render it causes. */
export async function paintWithMouse(page, points, { wait = true } = {}) {
  const before = await renderCount(page);
  const path = await imageToPage(page, points);
  await page.mouse.move(...path[0]);
  await page.mouse.down();
  for (const point of path.slice(1)) await page.mouse.move(...point, { steps: 4 });
  await page.mouse.up();
  if (wait) await waitForRender(page, before);
}

/** The same with a finger: raw touch events through the DevTools protocol. */
export async function paintWithTouch(page, points) {
  const before = await renderCount(page);
  const path = await imageToPage(page, points);
  const cdp = await page.context().newCDPSession(page);
  const touch = ([x, y]) => [{ x, y, id: 1, radiusX: 4, radiusY: 4, force: 1 }];
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: touch(path[0]) });
  for (let i = 1; i < path.length; i += 1) {
    const [x0, y0] = path[i - 1];
    const [x1, y1] = path[i];
    for (let step = 1; step <= 4; step += 1) {
      const t = step / 4;
      await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: touch([x0 + (x1 - x0) * t, y0 + (y1 - y0) * t]) });
    }
  }
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  await cdp.detach();
  await waitForRender(page, before);
}

/** Distance from point p to segment ab. */
function segmentDistance([px, py], [ax, ay], [bx, by]) {
  const dx = bx - ax;
  const dy = by - ay;
  const length2 = dx * dx + dy * dy;
  const t = length2 ? Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / length2)) : 0;
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

/**
 * Mean absolute RGB change per pixel inside and outside the region a brush of `size`
 * (diameter, image pixels) covers along `points`.
 */
export function changeInsideOutside(before, after, points, size) {
  let inside = 0;
  let insideCount = 0;
  let outside = 0;
  let outsideCount = 0;
  for (let y = 0; y < before.height; y += 1) {
    for (let x = 0; x < before.width; x += 1) {
      const centre = [x + 0.5, y + 0.5];
      let distance = Infinity;
      for (let i = 0; i < points.length; i += 1) {
        distance = Math.min(distance, segmentDistance(centre, points[i], points[Math.min(i + 1, points.length - 1)]));
      }
      const offset = (y * before.width + x) * 4;
      let change = 0;
      for (let c = 0; c < 3; c += 1) change += Math.abs(after.data[offset + c] - before.data[offset + c]);
      if (distance <= size / 2) {
        inside += change;
        insideCount += 1;
      } else {
        outside += change;
        outsideCount += 1;
      }
    }
  }
  return { inside: inside / Math.max(1, insideCount), outside: outside / Math.max(1, outsideCount), insideCount };
}

export function meanChange(before, after) {
  let total = 0;
  for (let i = 0; i < before.data.length; i += 4) {
    for (let c = 0; c < 3; c += 1) total += Math.abs(after.data[i + c] - before.data[i + c]);
  }
  return total / (before.width * before.height);
}

/** Width and height from a PNG's IHDR, after checking the signature and chunk type. */
export function pngSize(bytes) {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (!signature.every((b, i) => bytes[i] === b)) throw new Error('not a PNG: bad signature');
  if (bytes.toString('latin1', 12, 16) !== 'IHDR') throw new Error('not a PNG: no IHDR first');
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

/** Waits until the editor shows `image` ('id:40', 'seed:7') with `strokes` strokes, rendered. */
export async function waitForShown(page, image, strokes, timeout = 30000) {
  await page.waitForFunction(([wantImage, wantStrokes]) => {
    const stage = document.getElementById('stage');
    return stage.dataset.image === wantImage && Number(stage.dataset.strokes) === wantStrokes
      && stage.getAttribute('aria-busy') === 'false'
      && document.querySelectorAll('#history li').length === wantStrokes;
  }, [image, strokes], { timeout });
}

/** Frame count, size and loop flag of a GIF file, walking its blocks (GIF89a). */
export function gifFrames(bytes) {
  if (bytes.toString('latin1', 0, 6) !== 'GIF89a') throw new Error('not a GIF89a');
  const width = bytes.readUInt16LE(6);
  const height = bytes.readUInt16LE(8);
  let p = 13;
  if (bytes[10] & 0x80) p += 3 * (2 << (bytes[10] & 7));
  const skipSubBlocks = () => {
    while (bytes[p] !== 0) p += bytes[p] + 1;
    p += 1;
  };
  let frames = 0;
  let loops = false;
  for (;;) {
    const kind = bytes[p++];
    if (kind === 0x3b) break;
    if (kind === 0x21) {
      const label = bytes[p++];
      if (label === 0xff && bytes.toString('latin1', p + 1, p + 12) === 'NETSCAPE2.0') loops = true;
      skipSubBlocks();
    } else if (kind === 0x2c) {
      frames += 1;
      const flags = bytes[p + 8];
      p += 9;
      if (flags & 0x80) p += 3 * (2 << (flags & 7));
      p += 1; // LZW minimum code size
      skipSubBlocks();
    } else {
      throw new Error(`unexpected GIF block 0x${kind.toString(16)} at ${p - 1}`);
    }
  }
  return { width, height, frames, loops };
}

/** Pixels (RGBA array) of a PNG data URL, decoded by the page. */
export function decodeInPage(page, url) {
  return page.evaluate(async (src) => {
    const image = new Image();
    image.src = src;
    await image.decode();
    const canvas = document.createElement('canvas');
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(image, 0, 0);
    return Array.from(ctx.getImageData(0, 0, canvas.width, canvas.height).data);
  }, url);
}

/** Clicks a gallery thumbnail, paging the gallery to it first. */
export async function pickThumbnail(page, id) {
  await page.locator(`#gallery button[data-id="${id}"]`).click();
}
