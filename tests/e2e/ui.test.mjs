// The painting UI in a real browser (Debian's chromium via playwright-core), against a
// real server started by scripts/e2e.sh. Tests 1–7 run in order in one desktop session,
// as a person would use the editor, then on a phone. editor.test.mjs covers the rest.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';

import {
  BASE_URL, changeInsideOutside, collectErrors, decodeInPage, meanChange, openBrowser, openEditor,
  paintWithMouse, paintWithTouch, pngSize, readImage, renderCount, screenshot, waitForRender,
} from './helpers.mjs';

/** The project the editor opens by default, and the concept the tests paint. */
async function defaultProject() {
  const response = await fetch(`${BASE_URL}/api/v1/projects`);
  assert.equal(response.status, 200);
  const projects = await response.json();
  assert.ok(projects.length > 0, 'the server has no projects');
  const project = projects[0];
  const layer = project.layers.find((l) => l.name === project.default_layer);
  assert.ok(layer.concepts.length > 0, `layer ${layer.name} has no concepts to paint`);
  const concept = layer.concepts.find((c) => c.name === 'tree') || layer.concepts[0];
  return { project, layer, concept: concept.name };
}

// A stroke across the upper left of the image, in fractions of the image side.
const STROKE = [[0.2, 0.25], [0.3, 0.28], [0.42, 0.3], [0.5, 0.34]];

describe('GANPaint in a desktop browser', () => {
  let browser;
  let page;
  let errors;
  let info;
  let resolution;
  let original;
  let edited;
  let strokePoints;
  let brushSize;

  before(async () => {
    info = await defaultProject();
    resolution = info.project.resolution;
    strokePoints = STROKE.map(([x, y]) => [x * resolution, y * resolution]);
    browser = await openBrowser();
    page = browser.context.pages()[0] || await browser.context.newPage();
    errors = collectErrors(page);
  });

  after(async () => {
    await browser?.close();
  });

  test('1. the page loads with no console errors and the palette lists the concepts', async () => {
    await openEditor(page);
    const palette = await page.locator('input[name=concept]').evaluateAll((inputs) => inputs.map((i) => i.value));
    assert.deepEqual(palette, info.layer.concepts.map((c) => c.name));
    assert.equal(await page.locator('input[name=concept]:checked').getAttribute('value'), info.concept);
    // The image is large, smoothly scaled by default, crisp with the Pixelated toggle.
    const box = await page.locator('#image').boundingBox();
    assert.ok(box.width >= 512 && box.height >= 512, `image shown at ${box.width}×${box.height}`);
    assert.equal(await page.locator('#image').evaluate((c) => getComputedStyle(c).imageRendering), 'auto');
    await page.locator('#pixelated').check();
    assert.equal(await page.locator('#image').evaluate((c) => getComputedStyle(c).imageRendering), 'pixelated');
    await page.locator('#pixelated').uncheck();
    // The gallery fills with thumbnails.
    await page.waitForFunction(() => [...document.querySelectorAll('#gallery img')].every((img) => img.complete && img.naturalWidth > 0));
    original = await readImage(page);
    assert.equal(original.width, resolution);
    await screenshot(page, '01-loaded');
    // The help panel opens with ? and lists the shortcuts.
    await page.keyboard.press('?');
    await page.waitForSelector('#help[open]');
    assert.match(await page.locator('#help').innerText(), /Undo/);
    await screenshot(page, '02-help');
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => !document.getElementById('help').open);
    assert.deepEqual(errors, []);
  });

  test('2. a tree stroke changes the image, more inside the stroke than outside', async () => {
    await page.locator(`input[name=concept][value="${info.concept}"]`).check();
    brushSize = Number(await page.locator('#brush-size').inputValue());
    await paintWithMouse(page, strokePoints);
    edited = await readImage(page);
    assert.notEqual(edited.url, original.url, 'the image did not change');
    const change = changeInsideOutside(original, edited, strokePoints, brushSize);
    assert.ok(change.insideCount > 0);
    assert.ok(change.inside > change.outside,
      `mean change inside the stroke ${change.inside.toFixed(2)} is not above outside ${change.outside.toFixed(2)}`);
    assert.equal(await page.locator('#history li').count(), 1);
    assert.match(await page.locator('#history li').innerText(), new RegExp(`${info.concept} · draw · ${brushSize} px`));
    assert.match(await page.evaluate(() => location.hash), /strokes=/);
    await page.mouse.move(5, 5); // the brush cursor off the image for the screenshot
    await screenshot(page, '03-painted');
    // Hovering the history entry highlights its region.
    await page.locator('#history li').first().hover();
    await screenshot(page, '04-history-hover');
    await page.mouse.move(5, 5);
  });

  test('3. undo restores the original image bytes exactly; redo brings the edit back', async () => {
    let count = await renderCount(page);
    await page.keyboard.press('Control+z');
    await waitForRender(page, count);
    const undone = await readImage(page);
    assert.equal(undone.url, original.url);
    assert.deepEqual(undone.data, original.data);
    assert.equal(await page.locator('#history li').count(), 0);
    assert.ok(await page.locator('#redo').isEnabled());

    count = await renderCount(page);
    await page.locator('#redo').click();
    await waitForRender(page, count);
    const redone = await readImage(page);
    assert.deepEqual(redone.data, edited.data);

    // Shift+Ctrl+Z redoes too (after another undo).
    count = await renderCount(page);
    await page.locator('#undo').click();
    await waitForRender(page, count);
    count = await renderCount(page);
    await page.keyboard.press('Control+Shift+z');
    await waitForRender(page, count);
    assert.deepEqual((await readImage(page)).data, edited.data);
  });

  test('4. remove mode changes the image', async () => {
    const before = await readImage(page);
    await page.keyboard.press('e');
    assert.ok(await page.locator('input[name=mode][value=remove]').isChecked());
    await paintWithMouse(page, strokePoints);
    const removed = await readImage(page);
    assert.ok(meanChange(before, removed) > 0, 'removing did not change the image');
    assert.match(await page.locator('#history li').nth(1).innerText(), /remove/);
    // The status line reports the render, and how much of it the server recomputed when
    // it updated its kept render instead of starting over.
    assert.match(
      await page.locator('#status').innerText(),
      /^Rendered in \d+ ms \((model \d+ ms(, \d+% of the image recomputed)?|from the server's cache)\)$/,
    );
    await page.mouse.move(5, 5);
    await screenshot(page, '05-removed');
    await page.keyboard.press('d');
  });

  test('5. download gives a valid PNG of the result', async () => {
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('#download').click(),
    ]);
    assert.match(download.suggestedFilename(), /^ganpaint-.+-\d+-edited\.png$/);
    const bytes = await readFile(await download.path());
    const size = pngSize(bytes);
    assert.deepEqual(size, { width: resolution, height: resolution });
    // It decodes, and it is what the canvas shows.
    const decoded = await decodeInPage(page, `data:image/png;base64,${bytes.toString('base64')}`);
    assert.deepEqual(decoded, (await readImage(page)).data);
  });

  test('6. a server error shows a plain message and the UI keeps working', async () => {
    const strokesBefore = await page.locator('#history li').count();
    const imageBefore = await readImage(page);
    // On its way to the server, the next paint request's last stroke is changed to name a
    // concept the server doesn't know (as an outdated link or file might).
    let rewritten = false;
    await page.route('**/api/v1/paint', async (route) => {
      if (rewritten) return route.continue();
      rewritten = true;
      const body = JSON.parse(route.request().postData());
      body.strokes[body.strokes.length - 1].concept = 'lava';
      await route.continue({ postData: JSON.stringify(body) });
    });
    const response = page.waitForResponse((r) => r.url().endsWith('/api/v1/paint') && r.status() === 400);
    await paintWithMouse(page, [[0.6 * resolution, 0.7 * resolution], [0.8 * resolution, 0.75 * resolution]], { wait: false });
    await response;
    await page.unroute('**/api/v1/paint');
    const toast = page.locator('.toast-error');
    await toast.waitFor();
    const message = await toast.innerText();
    assert.match(message, new RegExp(`Stroke \\d+ paints a concept ${info.layer.name} has no units for`));
    assert.match(message, /“lava” is not among this layer's concepts/);
    assert.doesNotMatch(message, /strokes\[/);
    // The status line says what happened instead of going blank.
    assert.match(await page.locator('#status').innerText(), /^Not rendered: /);
    await page.waitForFunction((n) => document.querySelectorAll('#history li').length === n, strokesBefore);
    assert.deepEqual((await readImage(page)).data, imageBefore.data, 'the failed stroke changed the image');
    await screenshot(page, '06-error');
    // The next stroke works.
    await paintWithMouse(page, [[0.6 * resolution, 0.7 * resolution], [0.8 * resolution, 0.75 * resolution]]);
    assert.equal(await page.locator('#history li').count(), strokesBefore + 1);
    assert.ok(meanChange(imageBefore, await readImage(page)) > 0);
    await page.locator('.toast-close').first().click();
  });

  test('a newer stroke cancels the request in flight: the latest state wins', async () => {
    // Hold paint requests for a moment (they still reach the real server), so the second
    // stroke surely lands while the first is in flight.
    await page.route('**/api/v1/paint', async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await route.continue().catch(() => {});
    });
    const aborted = [];
    const onFailed = (request) => {
      if (request.url().endsWith('/api/v1/paint')) aborted.push(request.failure()?.errorText);
    };
    page.on('requestfailed', onFailed);
    try {
      const strokes = await page.locator('#history li').count();
      const count = await renderCount(page);
      await paintWithMouse(page, [[0.15 * resolution, 0.8 * resolution], [0.3 * resolution, 0.85 * resolution]], { wait: false });
      await page.waitForFunction(() => document.getElementById('stage').getAttribute('aria-busy') === 'true');
      await paintWithMouse(page, [[0.7 * resolution, 0.15 * resolution], [0.85 * resolution, 0.2 * resolution]], { wait: false });
      await waitForRender(page, count);
      assert.equal(await page.locator('#history li').count(), strokes + 2);
      assert.equal(await renderCount(page), count + 1, 'the intermediate state was shown');
      assert.deepEqual(aborted, ['net::ERR_ABORTED']);
    } finally {
      page.off('requestfailed', onFailed);
      await page.unroute('**/api/v1/paint');
    }
  });

  test('a copied link reproduces the edit', async () => {
    const hash = await page.evaluate(() => location.hash);
    const shown = await readImage(page);
    const other = await browser.context.newPage();
    const otherErrors = collectErrors(other);
    await openEditor(other, hash);
    await other.waitForFunction((n) => document.querySelectorAll('#history li').length === n,
      await page.locator('#history li').count());
    await other.waitForFunction((key) => document.getElementById('stage').dataset.imageKey === key,
      await page.evaluate(() => document.getElementById('stage').dataset.imageKey));
    assert.deepEqual((await readImage(other)).data, shown.data);
    assert.deepEqual(otherErrors, []);
    await other.close();
  });

  test('compare, split view and a unit heatmap', async () => {
    await page.locator('#split').fill('50');
    assert.ok(await page.locator('#original').isVisible());
    await screenshot(page, '07-split');
    await page.locator('#split').fill('0');
    // Holding the compare button shows the original.
    await page.locator('#compare').hover();
    await page.mouse.down();
    assert.ok(await page.locator('#compare-badge').isVisible());
    assert.equal(await page.locator('#original').evaluate((c) => c.style.clipPath), 'inset(0px 0% 0px 0px)');
    await page.mouse.up();
    assert.ok(await page.locator('#compare-badge').isHidden());
    // The top unit's heatmap.
    const unit = page.locator('#units button').first();
    await unit.click();
    await page.locator('#heatmap').waitFor({ state: 'visible' });
    assert.equal(await unit.getAttribute('aria-pressed'), 'true');
    const grid = info.layer.grid;
    assert.deepEqual(await page.locator('#heatmap').evaluate((c) => [c.height, c.width]), grid);
    await page.waitForFunction(() => document.getElementById('stage').getAttribute('aria-busy') === 'false');
    // The heatmap shows the edited image: the first unit a draw stroke takes fires at its
    // 0.99 level under the stroke drawn in test 6, and, when remove strokes take it too,
    // is off where test 4 removed it.
    const alphaAt = ([fx, fy]) => page.locator('#heatmap').evaluate((c, [x, y]) => c.getContext('2d')
      .getImageData(Math.floor(x * c.width), Math.floor(y * c.height), 1, 1).data[3], [fx, fy]);
    const drawnAlpha = await alphaAt([0.7, 0.72]);
    assert.ok(drawnAlpha > 180, 'the unit is not lit where a stroke drew it');
    const concept = info.layer.concepts.find((c) => c.name === info.concept);
    const shown = Number(await unit.getAttribute('data-unit'));
    assert.equal(shown, concept.units[0].unit, 'the list starts with the first unit a draw edits');
    if (concept.remove_units.slice(0, concept.remove_default.units).includes(shown)) {
      // Removal sets the unit to 0. The heatmap shows the unit's own quantile of a value, and
      // a unit that is mostly negative puts 0 around its 0.7-0.8 quantile, which shows
      // faintly; so the removed cell must be far dimmer than the drawn one, not blank.
      const removedAlpha = await alphaAt([0.3, 0.28]);
      assert.ok(removedAlpha < 0.6 * drawnAlpha, `the unit is lit where a stroke removed it (${removedAlpha} vs ${drawnAlpha})`);
    }
    await screenshot(page, '08-unit-heatmap');
    await page.keyboard.press('Escape');
    await page.locator('#heatmap').waitFor({ state: 'hidden' });
    assert.deepEqual(errors.filter((e) => !/status of 400/.test(e)), []);
  });

  test('deleting a stroke from the history re-renders without it; reset clears all', async () => {
    const strokes = await page.locator('#history li').count();
    const before = await readImage(page);
    let count = await renderCount(page);
    await page.getByRole('button', { name: /^Delete stroke 3 / }).click();
    await waitForRender(page, count);
    assert.equal(await page.locator('#history li').count(), strokes - 1);
    assert.ok(meanChange(before, await readImage(page)) > 0);
    count = await renderCount(page);
    await page.locator('#reset').click();
    await waitForRender(page, count);
    assert.equal(await page.locator('#history li').count(), 0);
    assert.deepEqual((await readImage(page)).data, original.data);
    count = await renderCount(page);
    await page.keyboard.press('Control+z');
    await waitForRender(page, count);
    assert.equal(await page.locator('#history li').count(), strokes - 1);
  });
});

describe('GANPaint on a touch phone', () => {
  test('7. painting with a finger changes the image', async () => {
    const info = await defaultProject();
    const resolution = info.project.resolution;
    const browser = await openBrowser({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    });
    try {
      const page = browser.context.pages()[0] || await browser.context.newPage();
      const errors = collectErrors(page);
      await openEditor(page, '#id=3');
      const before = await readImage(page);
      // The layout fits the phone: no sideways scrolling, the image spans the width.
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));
      const box = await page.locator('#image').boundingBox();
      assert.ok(box.width >= 340, `image is ${box.width} px wide on a 390 px phone`);
      await paintWithTouch(page, STROKE.map(([x, y]) => [x * resolution, y * resolution]));
      const after = await readImage(page);
      assert.ok(meanChange(before, after) > 0, 'the touch stroke did not change the image');
      assert.equal(await page.locator('#history li').count(), 1);
      await screenshot(page, '09-phone-touch');
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
});
