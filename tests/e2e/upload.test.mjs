// Painting on your own picture, in a real browser against the real server: upload with
// the button's file picker, by dropping a file on the canvas and by pasting; the
// fitting's progress; the reconstruction's quality; then strokes, undo, compare, reload,
// Back and Forward, export and the gallery, as for a sample; and a cancelled upload, a
// file that is no picture, and a picture the server no longer has.
//
// Fitting a picture takes the demo model a few seconds, so the tests upload one picture
// (uploading it again is answered at once: the server keeps its fit) and a second one
// only to cancel it.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { before, describe, test } from 'node:test';

import {
  BASE_URL, changeInsideOutside, collectErrors, decodeInPage, gifFrames, openBrowser, openEditor, paintWithMouse,
  pngSize, readImage, renderCount, screenshot, waitForRender, waitForShown,
} from './helpers.mjs';

let info;
let picture; // a 96×64 PNG: a sample in the middle 64 columns, grey bands either side
let otherPicture; // another, for the cancelled upload

/** `page`'s stage: the image shown and whether anything is pending. */
const stage = (page) => page.evaluate(() => {
  const s = document.getElementById('stage');
  return { image: s.dataset.image, busy: s.getAttribute('aria-busy'), uploading: s.dataset.uploading || null };
});

/**
 * A 96×64 PNG whose centre square is the sample of `seed`: the server crops it to that
 * square, so the picture it fits is the sample (a scene the generator can draw).
 */
async function makePicture(page, seed, band) {
  const response = await fetch(`${BASE_URL}/api/v1/generate`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ project: info.project.name, seeds: [seed] }),
  });
  assert.equal(response.status, 200);
  const [sample] = (await response.json()).images;
  const base64 = await page.evaluate(async ([src, fill]) => {
    const image = new Image();
    image.src = src;
    await image.decode();
    const canvas = new OffscreenCanvas(image.naturalWidth * 1.5, image.naturalHeight);
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = fill;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(image, image.naturalWidth / 4, 0);
    const bytes = new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer());
    let text = '';
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text);
  }, [sample, band]);
  return Buffer.from(base64, 'base64');
}

before(async () => {
  const projects = await (await fetch(`${BASE_URL}/api/v1/projects`)).json();
  const project = projects[0];
  const layer = project.layers.find((l) => l.name === project.default_layer);
  info = { project, layer, resolution: project.resolution };
  const browser = await openBrowser();
  try {
    const page = browser.context.pages()[0] || await browser.context.newPage();
    await page.goto('/healthz');
    picture = await makePicture(page, 20241, '#808080');
    otherPicture = await makePicture(page, 777, '#303030');
  } finally {
    await browser.close();
  }
  assert.deepEqual(pngSize(picture), { width: info.resolution * 1.5, height: info.resolution });
});

/** A page in a fresh profile; `close()` checks it logged no errors but the allowed ones. */
async function freshPage({ allow = [] } = {}) {
  const browser = await openBrowser();
  const page = browser.context.pages()[0] || await browser.context.newPage();
  const errors = collectErrors(page);
  return {
    browser,
    page,
    async close() {
      await browser.close();
      assert.deepEqual(errors.filter((e) => !allow.some((pattern) => pattern.test(e))), []);
    },
  };
}

/** Remembers every text the upload's progress showed, and whether its panel showed. */
async function watchProgress(page) {
  await page.evaluate(() => {
    window.progressSeen = { visible: false, stages: [], steps: [] };
    const panel = document.getElementById('upload-progress');
    const note = () => {
      if (!panel.hidden) window.progressSeen.visible = true;
      const stageText = document.getElementById('upload-stage').textContent;
      const stepsText = document.getElementById('upload-steps').textContent;
      if (window.progressSeen.stages.at(-1) !== stageText) window.progressSeen.stages.push(stageText);
      if (stepsText) window.progressSeen.steps.push(stepsText);
    };
    new MutationObserver(note).observe(panel, { attributes: true, childList: true, subtree: true, characterData: true });
  });
}

/** Waits until an upload is shown, rendered, with `strokes` strokes; returns its image ('image:upload-…'). */
async function waitForUploadShown(page, strokes = 0) {
  await page.waitForFunction((want) => {
    const s = document.getElementById('stage');
    return /^image:upload-[0-9a-f]{32}$/.test(s.dataset.image || '') && Number(s.dataset.strokes) === want
      && s.getAttribute('aria-busy') === 'false' && !s.dataset.uploading;
  }, strokes, { timeout: 60000 });
  return (await stage(page)).image;
}

/** The upload's picture at the model's resolution, as the server stores it: RGBA. */
async function storedPicture(page, image) {
  const name = image.replace(/^image:/, '');
  const response = await fetch(`${BASE_URL}/api/v1/images/${name}/picture.png`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /^image\/png/);
  const bytes = Buffer.from(await response.arrayBuffer());
  assert.deepEqual(pngSize(bytes), { width: info.resolution, height: info.resolution });
  return decodeInPage(page, `data:image/png;base64,${bytes.toString('base64')}`);
}

/** Hands `bytes` to the page as a File named `name`, then runs `how` ('drop' or 'paste') with it. */
function giveFile(page, bytes, name, how) {
  return page.evaluate(([base64, fileName, kind]) => {
    const binary = atob(base64);
    const data = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) data[i] = binary.charCodeAt(i);
    const transfer = new DataTransfer();
    transfer.items.add(new File([data], fileName, { type: 'image/png' }));
    if (kind === 'paste') {
      document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: transfer, bubbles: true, cancelable: true }));
      return null;
    }
    const target = document.getElementById('overlay');
    target.dispatchEvent(new DragEvent('dragenter', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    target.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    const highlighted = !document.getElementById('drop-hint').hidden && document.getElementById('stage').classList.contains('dropping');
    const accepted = !target.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    return { highlighted, accepted, after: !document.getElementById('drop-hint').hidden };
  }, [bytes.toString('base64'), name, how]);
}

/** A short stroke at (fx, fy), in fractions of the image side. */
const at = (fx, fy, dx = 0.25) => [[fx * info.resolution, fy * info.resolution], [(fx + dx) * info.resolution, (fy + 0.04) * info.resolution]];

describe('painting on your own picture', () => {
  let uploaded; // 'image:upload-…'

  test('upload with the button: progress while fitting, the quality, then strokes, undo, compare and reload as on a sample', async () => {
    const { page, close } = await freshPage();
    try {
      await openEditor(page, '#id=3');
      const sample = await readImage(page);
      const paints = [];
      page.on('request', (request) => {
        if (request.url().endsWith('/api/v1/paint')) paints.push(request.postDataJSON());
      });
      await watchProgress(page);
      await page.locator('#upload-file').setInputFiles({ name: 'garden.png', mimeType: 'image/png', buffer: picture });
      uploaded = await waitForUploadShown(page);
      const seen = await page.evaluate(() => window.progressSeen);
      assert.ok(seen.visible, 'the progress never showed');
      assert.ok(seen.stages.includes('Fitting the picture…'), `stages shown: ${seen.stages.join(', ')}`);
      assert.ok(seen.steps.some((text) => /^\d+\/\d+$/.test(text)), `steps shown: ${seen.steps.join(', ')}`);
      assert.ok(await page.locator('#upload-progress').isHidden());

      // The quality, and what was done to fit the picture to the model.
      assert.match(await page.locator('#upload-quality').innerText(), /^Reconstruction \d+\.\d dB PSNR$/);
      assert.equal(await page.locator('#upload-resized').innerText(),
        `Cropped to a square and resized from ${info.resolution * 1.5}×${info.resolution} to ${info.resolution}×${info.resolution}.`);
      assert.match(await page.locator('#upload-name').innerText(), /garden\.png/);
      assert.match(await page.locator('#status').innerText(), /^Fitted your picture in \d+\.\d s\. /);

      // The canvas shows the picture, the address bar names it, the gallery keeps it.
      const name = uploaded.replace(/^image:/, '');
      const unedited = await readImage(page);
      assert.deepEqual(unedited.data, await storedPicture(page, uploaded));
      assert.notDeepEqual(unedited.data, sample.data);
      assert.match(page.url(), new RegExp(`#project=${info.project.name}&layer=${info.layer.name}&image=${name}$`));
      assert.equal(await page.locator(`#uploads button[data-image="${name}"]`).getAttribute('aria-pressed'), 'true');
      assert.ok(await page.locator('#my-pictures').isVisible());
      assert.ok(paints.every((body) => body.image === name && body.id === undefined && body.seed === undefined), JSON.stringify(paints.map((b) => Object.keys(b))));
      await screenshot(page, '20-upload-fitted');

      // A stroke changes the picture under it, and the request names the upload.
      await page.locator(`input[name=concept][value="${(info.layer.concepts.find((c) => c.name === 'tree') || info.layer.concepts[0]).name}"]`).check();
      const size = Number(await page.locator('#brush-size').inputValue());
      const points = at(0.3, 0.55);
      paints.length = 0;
      await paintWithMouse(page, points);
      const painted = await readImage(page);
      const change = changeInsideOutside(unedited, painted, points, size);
      assert.ok(change.inside > change.outside, `change inside ${change.inside.toFixed(2)}, outside ${change.outside.toFixed(2)}`);
      assert.ok(paints.length >= 1);
      for (const body of paints) {
        assert.equal(body.image, name);
        assert.equal(body.id, undefined);
        assert.equal(body.seed, undefined);
      }
      assert.match(page.url(), new RegExp(`&image=${name}&strokes=`));
      await screenshot(page, '21-upload-painted');

      // Hold C: the unedited picture.
      await page.locator('#stage').focus();
      await page.keyboard.down('c');
      assert.ok(await page.locator('#original').isVisible());
      const original = await page.evaluate(() => {
        const canvas = document.getElementById('original');
        return Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data);
      });
      await page.keyboard.up('c');
      assert.deepEqual(original, unedited.data);

      // Undo: the picture again, to the pixel; redo: the stroke.
      let count = await renderCount(page);
      await page.locator('#undo').click();
      await waitForRender(page, count);
      assert.deepEqual((await readImage(page)).data, unedited.data);
      count = await renderCount(page);
      await page.locator('#redo').click();
      await waitForRender(page, count);
      assert.deepEqual((await readImage(page)).data, painted.data);

      // Heatmaps are for samples: a unit shows its top images and says so, no error.
      await page.locator('#units button').first().click();
      await page.locator('#unit-detail').waitFor();
      assert.match(await page.locator('#unit-caption').innerText(), /not available/);
      assert.ok(await page.locator('#heatmap').isHidden());
      assert.equal(await page.locator('.toast-error').count(), 0);

      // A reload keeps the picture and its stroke.
      await page.reload();
      await page.waitForSelector('body[data-ready=true]');
      await waitForShown(page, uploaded, 1);
      assert.deepEqual((await readImage(page)).data, painted.data);
      assert.match(await page.locator('#upload-quality').innerText(), /^Reconstruction \d+\.\d dB PSNR$/);

      // Back goes to the sample before, Forward to the picture with its stroke.
      await page.goBack();
      await waitForShown(page, 'id:3', 0);
      assert.ok(await page.locator('#upload-info').isHidden());
      await page.goForward();
      await waitForShown(page, uploaded, 1);
      // The gallery thumbnail brings it back from another image too.
      await page.locator('#gallery button[data-id="4"]').click();
      await waitForShown(page, 'id:4', 0);
      await page.locator(`#uploads button[data-image="${name}"]`).click();
      await waitForShown(page, uploaded, 1);
      assert.deepEqual((await readImage(page)).data, painted.data);

      // The server fitted a z with the picture (`paint_from`), so every layer is offered,
      // the ones before the fitted layer too: a stroke at the first layer is carried to the
      // fitted one through z and changes the picture; back at the fitted layer, its stroke
      // is still there.
      const layers = info.project.layers.map((l) => l.name);
      const disabled = await page.locator('#layer option').evaluateAll((options) => options.filter((o) => o.disabled).map((o) => o.value));
      assert.deepEqual(disabled, []);
      const first = layers[0];
      if (first !== info.layer.name) {
        await page.locator('#layer').selectOption(first);
        await waitForShown(page, uploaded, 0);
        assert.deepEqual((await readImage(page)).data, unedited.data);
        paints.length = 0;
        await paintWithMouse(page, at(0.3, 0.55));
        await waitForShown(page, uploaded, 1);
        assert.notDeepEqual((await readImage(page)).data, unedited.data);
        assert.ok(paints.length >= 1 && paints.every((body) => body.layer === first && body.image === name), JSON.stringify(paints.map((b) => [b.layer, b.image])));
        assert.equal(await page.locator('.toast-error').count(), 0);
        await page.locator('#layer').selectOption(info.layer.name);
        await waitForShown(page, uploaded, 1);
        assert.deepEqual((await readImage(page)).data, painted.data);
      }
    } finally {
      await close();
    }
  });

  test('an upload\'s edit exports as JSON with "image", as a PNG and as a GIF, and imports back', async () => {
    assert.ok(uploaded, 'the first test did not upload');
    const name = uploaded.replace(/^image:/, '');
    const { page, close } = await freshPage();
    try {
      await openEditor(page, `#image=${name}`);
      await waitForShown(page, uploaded, 0);
      await paintWithMouse(page, at(0.5, 0.3));
      const painted = await readImage(page);

      await page.locator('#export-menu summary').click();
      const [json] = await Promise.all([page.waitForEvent('download'), page.locator('#export-json').click()]);
      assert.match(json.suggestedFilename(), /^ganpaint-.+-upload-[0-9a-f]{8}-edited\.json$/);
      const file = await json.path();
      const recipe = JSON.parse(await readFile(file, 'utf8'));
      assert.deepEqual(Object.keys(recipe), ['project', 'layer', 'image', 'strokes']);
      assert.equal(recipe.image, name);
      const response = await fetch(`${BASE_URL}/api/v1/paint`, {
        method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(recipe),
      });
      assert.equal(response.status, 200, await response.clone().text());
      assert.deepEqual(await decodeInPage(page, (await response.json()).image), painted.data);

      const [png] = await Promise.all([page.waitForEvent('download'), page.locator('#download').click()]);
      assert.deepEqual(pngSize(await readFile(await png.path())), { width: info.resolution, height: info.resolution });
      await page.locator('#export-menu summary').click();
      const [gif] = await Promise.all([page.waitForEvent('download', { timeout: 60000 }), page.locator('#export-gif').click()]);
      assert.deepEqual(gifFrames(await readFile(await gif.path())), { width: info.resolution, height: info.resolution, frames: 2, loops: true });

      // Imported on a sample, it comes back to the picture with its stroke.
      await page.locator('#gallery button[data-id="5"]').click();
      await waitForShown(page, 'id:5', 0);
      await page.locator('#import-file').setInputFiles(file);
      await waitForShown(page, uploaded, 1);
      assert.deepEqual((await readImage(page)).data, painted.data);
    } finally {
      await close();
    }
  });

  test('a picture dropped on the canvas, or pasted, is uploaded; the same picture again is answered at once', async () => {
    assert.ok(uploaded, 'the first test did not upload');
    const { page, close } = await freshPage();
    try {
      await openEditor(page, '#id=6');
      const dropped = await giveFile(page, picture, 'dropped.png', 'drop');
      assert.deepEqual(dropped, { highlighted: true, accepted: true, after: false });
      assert.equal(await waitForUploadShown(page), uploaded);
      assert.match(await page.locator('#status').innerText(), /^This picture was uploaded before: the server kept its fit/);
      assert.match(await page.locator('#upload-quality').innerText(), /^Reconstruction \d+\.\d dB PSNR$/);
      await screenshot(page, '22-upload-dropped');

      await page.locator('#gallery button[data-id="6"]').click();
      await waitForShown(page, 'id:6', 0);
      await giveFile(page, picture, 'pasted.png', 'paste');
      assert.equal(await waitForUploadShown(page), uploaded);
      // One record per picture on the shelf.
      assert.equal(await page.locator('#uploads button').count(), 1);
    } finally {
      await close();
    }
  });

  test('Cancel stops the upload: the progress goes, the image stays, and the server forgets it', async () => {
    const { page, close } = await freshPage();
    try {
      await openEditor(page, '#id=8');
      const before = await readImage(page);
      const hash = await page.evaluate(() => location.hash);
      await page.locator('#upload-file').setInputFiles({ name: 'street.png', mimeType: 'image/png', buffer: otherPicture });
      await page.locator('#upload-progress').waitFor();
      await page.waitForFunction(() => document.getElementById('upload-stage').textContent === 'Fitting the picture…');
      await screenshot(page, '23-upload-progress');
      const progressed = await page.evaluate(() => document.getElementById('stage').dataset.uploading);
      assert.equal(progressed, 'optimize');
      const name = await page.locator('#upload-progress').getAttribute('data-image');
      assert.match(name, /^upload-[0-9a-f]{32}$/);
      await page.locator('#upload-cancel').click();
      assert.ok(await page.locator('#upload-progress').isHidden());
      assert.equal(await page.locator('#status').innerText(), 'Upload cancelled');
      // Nothing switched: the sample, its address, its pixels.
      const now = await stage(page);
      assert.equal(now.image, 'id:8');
      assert.equal(now.uploading, null);
      assert.equal(await page.evaluate(() => location.hash), hash);
      assert.deepEqual((await readImage(page)).data, before.data);
      assert.equal(await page.locator('#uploads button').count(), 0);
      assert.equal(await page.locator('.toast-error').count(), 0);
      // Closing the connection cancelled the fitting: the server does not keep the picture.
      let status;
      for (let tries = 0; tries < 100; tries += 1) {
        status = (await fetch(`${BASE_URL}/api/v1/images/${name}`)).status;
        if (status === 404) break;
        await new Promise((resolve) => { setTimeout(resolve, 100); });
      }
      assert.equal(status, 404, `the server still has ${name} after the upload was cancelled`);
    } finally {
      await close();
    }
  });

  test('a file that is no picture shows the server\'s reason, and nothing switches', async () => {
    const { page, close } = await freshPage({ allow: [/Failed to load resource: the server responded with a status of 4\d\d/] });
    try {
      await openEditor(page, '#id=9');
      const notes = Buffer.from('these are my notes, not a picture\n');
      await page.locator('#upload-file').setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: notes });
      const toast = page.locator('.toast-error');
      await toast.waitFor();
      // The server's reason, in its words.
      const refusal = await fetch(`${BASE_URL}/api/v1/images?project=${info.project.name}`, {
        method: 'POST', headers: { 'Content-Type': 'image/png' }, body: notes,
      });
      assert.equal(refusal.status, 400);
      const { detail } = await refusal.json();
      assert.match(detail, /^image: /);
      assert.ok((await toast.innerText()).toLowerCase().includes(detail.replace(/^image: /, '').toLowerCase()), `${await toast.innerText()} does not give the server's reason: ${detail}`);
      assert.ok(await page.locator('#upload-progress').isHidden());
      assert.match(await page.locator('#status').innerText(), /^Not uploaded/);
      assert.equal((await stage(page)).image, 'id:9');
    } finally {
      await close();
    }
  });

  test('a picture the server no longer has says so plainly, and its strokes are kept', async () => {
    const gone = `upload-${'0badc0de'.repeat(4)}`;
    const { page, close } = await freshPage({ allow: [/Failed to load resource: the server responded with a status of 404/] });
    try {
      const strokes = `${info.layer.concepts[0].name}:d:20:1:4:10,10,20,12`;
      await page.goto(`/#project=${info.project.name}&layer=${info.layer.name}&image=${gone}&strokes=${strokes}`);
      await page.waitForSelector('body[data-ready=true]');
      const notice = page.locator('#upload-gone');
      await notice.waitFor();
      assert.match(await notice.innerText(), /This uploaded picture is no longer stored on the server; upload it again\./);
      assert.match(await page.locator('#status').innerText(), /no longer stored/);
      assert.equal(await page.locator('#history li').count(), 1);
      assert.match(page.url(), /strokes=/);
      await page.waitForFunction(() => JSON.parse(localStorage.getItem('ganpaint.history.v1') || 'null')?.entries
        .some(([key, , ...strokes]) => key.endsWith('|image:upload-0badc0de0badc0de0badc0de0badc0de') && strokes.length === 1));
      await screenshot(page, '24-upload-gone');
      // Elsewhere, it goes away; Back brings it (and its strokes) back.
      await page.locator('#gallery button[data-id="2"]').click();
      await waitForShown(page, 'id:2', 0);
      assert.ok(await notice.isHidden());
      await page.goBack();
      await notice.waitFor();
      assert.equal(await page.locator('#history li').count(), 1);
    } finally {
      await close();
    }
  });
});
