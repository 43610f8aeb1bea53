// Saving and loading: PNG at the model's resolution or upscaled, the edit as the paint
// API's JSON, the edit sequence as an animated GIF; and reading an edit's masks back.

import { encodeGif } from './gif.js';
import { encodeRuns } from './strokes.js';

/** Offers `blob` as a download named `name`. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function decode(url) {
  const image = new Image();
  image.src = url;
  await image.decode();
  return image;
}

/** The PNG data URL's bytes, as they are (the model's resolution). */
export async function pngBlob(url) {
  return (await fetch(url)).blob();
}

/** The image scaled `scale`× as a PNG, smoothly or as crisp squares. */
export async function upscaledPng(url, scale, smooth) {
  const image = await decode(url);
  const canvas = document.createElement('canvas');
  canvas.width = image.naturalWidth * scale;
  canvas.height = image.naturalHeight * scale;
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = smooth;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('the browser could not encode the PNG'))), 'image/png');
  });
}

/** `{width, height, rgba}` of an image URL. */
export async function decodeRgba(url) {
  const image = await decode(url);
  const canvas = document.createElement('canvas');
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(image, 0, 0);
  const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
  return { width: canvas.width, height: canvas.height, rgba: data };
}

/**
 * A PNG mask data URL as the exact bitmap the server reads: painted where alpha > 0
 * (a PNG without alpha decodes opaque, so every pixel counts, as on the server).
 */
export async function maskFromDataUrl(url) {
  const { width, height, rgba } = await decodeRgba(url);
  return { width, height, runs: encodeRuns(width * height, (i) => rgba[i * 4 + 3] > 0) };
}

/** An animated GIF of image URLs (all one size). */
export async function gifBlob(urls) {
  const frames = [];
  let size = null;
  for (const url of urls) {
    const { width, height, rgba } = await decodeRgba(url);
    size = size || [width, height];
    frames.push({ rgba });
  }
  return new Blob([encodeGif(frames, size[0], size[1])], { type: 'image/gif' });
}
