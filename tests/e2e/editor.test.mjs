// The editor's promises, one browser test each: nothing the user made is lost (image
// switches, Back/Forward, reloads, fields and shortcuts, long edits past the server's
// strokes-per-request limit), it shows what a stroke will change and why, and edits can
// be shared and exported. Each test opens its own browser profile, as a new user would.

import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, test } from 'node:test';

import {
  BASE_URL, collectErrors, decodeInPage, gifFrames, openBrowser, openEditor, paintWithMouse,
  pickThumbnail, readImage, renderCount, screenshot, waitForRender, waitForShown,
} from './helpers.mjs';

const REFERENCE_URL = process.env.GANPAINT_E2E_REFERENCE_URL;

let info;

before(async () => {
  const projects = await (await fetch(`${BASE_URL}/api/v1/projects`)).json();
  const project = projects[0];
  const layer = project.layers.find((l) => l.name === project.default_layer);
  info = { project, layer, resolution: project.resolution };
});

/** A page in a fresh profile; `close()` checks it logged no errors. */
async function freshPage(options = {}, { allow = [] } = {}) {
  const browser = await openBrowser(options);
  const page = browser.context.pages()[0] || await browser.context.newPage();
  const errors = collectErrors(page);
  return {
    browser,
    page,
    errors,
    async close() {
      await browser.close();
      assert.deepEqual(errors.filter((e) => !allow.some((pattern) => pattern.test(e))), []);
    },
  };
}

/** A short stroke at (fx, fy) (fractions of the image side). */
const at = (fx, fy, dx = 0.1) => [[fx * info.resolution, fy * info.resolution], [(fx + dx) * info.resolution, (fy + 0.02) * info.resolution]];

const historyCount = (page) => page.locator('#history li').count();

describe('never lose work', () => {
  test('strokes survive a switch to another image and come back; Undo walks back over the switch', async () => {
    const { page, close } = await freshPage();
    try {
      await openEditor(page, '#id=40');
      await paintWithMouse(page, at(0.2, 0.2));
      await paintWithMouse(page, at(0.5, 0.5));
      await paintWithMouse(page, at(0.3, 0.7));
      const painted = await readImage(page);

      await pickThumbnail(page, 41);
      await waitForShown(page, 'id:41', 0);
      assert.ok(await page.locator('#undo').isEnabled(), 'Undo is disabled after switching images');
      await paintWithMouse(page, at(0.6, 0.3));
      const painted41 = await readImage(page);

      // Coming back restores the strokes and the very same pixels.
      await pickThumbnail(page, 40);
      await waitForShown(page, 'id:40', 3);
      assert.deepEqual((await readImage(page)).data, painted.data);

      // A random image is a step too; Undo comes back with the strokes.
      await page.locator('#stage').focus();
      await page.keyboard.press('n');
      await page.waitForFunction(() => document.getElementById('stage').dataset.image !== 'id:40');
      assert.equal(await historyCount(page), 0);
      await page.keyboard.press('Control+z');
      await waitForShown(page, 'id:40', 3);
      await page.keyboard.press('Control+z'); // back over the switch from 41
      await waitForShown(page, 'id:41', 1);
      assert.deepEqual((await readImage(page)).data, painted41.data);
      await page.keyboard.press('Control+z');
      await waitForShown(page, 'id:41', 0);
      await page.keyboard.press('Control+Shift+z');
      await waitForShown(page, 'id:41', 1);
    } finally {
      await close();
    }
  });

  test('Back and Forward move between the images with their strokes, inside the app', async () => {
    const { page, close } = await freshPage();
    try {
      await openEditor(page, '#id=40');
      await paintWithMouse(page, at(0.2, 0.2));
      await paintWithMouse(page, at(0.5, 0.6));
      await page.locator('#image-id').fill('42');
      await page.locator('#image-id').press('Enter');
      await waitForShown(page, 'id:42', 0);
      await paintWithMouse(page, at(0.4, 0.4));
      await page.goBack();
      await waitForShown(page, 'id:40', 2);
      assert.match(page.url(), /#project=.*&id=40&strokes=/);
      await page.goForward();
      await waitForShown(page, 'id:42', 1);
      await page.goBack();
      await waitForShown(page, 'id:40', 2);
      assert.ok(page.url().startsWith(BASE_URL), 'Back left the app');
    } finally {
      await close();
    }
  });

  test('after Enter in Image id the canvas has focus: Ctrl+Z undoes the stroke and E switches mode', async () => {
    const { page, close } = await freshPage();
    try {
      await openEditor(page, '#id=40');
      await page.locator('#image-id').fill('42');
      await page.locator('#image-id').press('Enter');
      await waitForShown(page, 'id:42', 0);
      assert.equal(await page.evaluate(() => document.activeElement.id), 'stage');
      await paintWithMouse(page, at(0.3, 0.3));
      const count = await renderCount(page);
      await page.keyboard.press('Control+z');
      await waitForRender(page, count);
      assert.equal(await historyCount(page), 0, 'Ctrl+Z did not undo the stroke');
      assert.equal(await page.locator('#image-id').inputValue(), '42');
      await page.keyboard.press('e');
      assert.ok(await page.locator('input[name=mode][value=remove]').isChecked());
      assert.equal(await page.locator('#image-id').inputValue(), '42');

      // In the field, letters are not shortcuts and do not land there; Ctrl+Z undoes the
      // edit (not the field's text); Escape leaves the field.
      await page.keyboard.press('d');
      await paintWithMouse(page, at(0.5, 0.5));
      await page.locator('#image-id').click();
      await page.keyboard.press('e');
      assert.equal(await page.locator('#image-id').inputValue(), '42');
      assert.ok(await page.locator('input[name=mode][value=draw]').isChecked(), 'E acted while typing');
      const before = await renderCount(page);
      await page.keyboard.press('Control+z');
      await waitForRender(page, before);
      assert.equal(await historyCount(page), 0);
      assert.equal(await page.locator('#image-id').inputValue(), '42');
      await page.keyboard.press('Escape');
      assert.equal(await page.evaluate(() => document.activeElement.id), 'stage');
    } finally {
      await close();
    }
  });

  test('every image\'s strokes and the undo history survive a reload', async () => {
    const { page, close } = await freshPage();
    try {
      await openEditor(page, '#id=40');
      await paintWithMouse(page, at(0.2, 0.2));
      await paintWithMouse(page, at(0.6, 0.6));
      const painted40 = await readImage(page);
      await pickThumbnail(page, 43);
      await waitForShown(page, 'id:43', 0);
      await paintWithMouse(page, at(0.4, 0.3));
      await page.reload();
      await page.waitForSelector('body[data-ready=true]');
      await waitForShown(page, 'id:43', 1);
      await pickThumbnail(page, 40);
      await waitForShown(page, 'id:40', 2);
      assert.deepEqual((await readImage(page)).data, painted40.data);
      // A bare address opens where this browser left off.
      await page.goto('/');
      await page.waitForSelector('body[data-ready=true]');
      await waitForShown(page, 'id:40', 2);
      // And the timeline survived: Undo goes back over the switch to 43.
      await page.locator('#undo').click();
      await waitForShown(page, 'id:43', 1);
    } finally {
      await close();
    }
  });

  test('500 strokes render, equal to the same strokes applied in one request, and painting goes on', async () => {
    assert.ok(REFERENCE_URL, 'GANPAINT_E2E_REFERENCE_URL is not set: run through scripts/e2e.sh');
    const { page, close } = await freshPage();
    try {
      // 500 strokes whose settings change from one to the next, so none merge: the
      // server takes 64 per request.
      const concepts = info.layer.concepts.map((c) => c.name).slice(0, 4);
      const strokes = [];
      for (let i = 0; i < 500; i += 1) {
        const concept = concepts[i % concepts.length];
        const mode = i % 3 === 2 ? 'r' : 'd';
        const x = ((i * 37) % 90) / 100 * info.resolution;
        const y = ((i * 53) % 90) / 100 * info.resolution;
        const size = 2 + (i % 5);
        strokes.push(`${concept}:${mode}:${10 + (i % 3) * 5}:1:${size}:${x},${y},${x + 4},${y + 3}`);
      }
      await openEditor(page, `#id=7&strokes=${strokes.join(';')}`);
      await waitForShown(page, 'id:7', 500, 90000);
      const shown = await readImage(page);

      // The edit as the paint API's JSON, sent whole to a server without the limit.
      await page.locator('#export-menu summary').click();
      const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#export-json').click()]);
      const recipe = JSON.parse(await readFile(await download.path(), 'utf8'));
      assert.equal(recipe.strokes.length, 500);
      const response = await fetch(`${REFERENCE_URL}/api/v1/paint`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(recipe),
      });
      assert.equal(response.status, 200, await response.clone().text());
      const reference = await decodeInPage(page, (await response.json()).image);
      assert.deepEqual(shown.data, reference, 'the 500-stroke render differs from applying the strokes in one request');

      // The 501st stroke works, and undo brings back the 500-stroke image exactly.
      await paintWithMouse(page, at(0.1, 0.8));
      await waitForShown(page, 'id:7', 501);
      assert.doesNotMatch(await page.locator('#status').innerText(), /^Not rendered/);
      await page.locator('#undo').click();
      await waitForShown(page, 'id:7', 500);
      assert.deepEqual((await readImage(page)).data, shown.data);
    } finally {
      await close();
    }
  });
  test('on a server without flattened edits, same-settings strokes merge exactly, and a longer edit keeps its strokes', async () => {
    const { page, close } = await freshPage({}, { allow: [] });
    try {
      // An older server: paint answers carry no `edit`, so requests cannot be chained.
      await page.route('**/api/v1/paint', async (route) => {
        let response;
        try {
          response = await route.fetch();
        } catch {
          return; // the page navigated away, or closed, while this request was in flight
        }
        const body = await response.json();
        delete body.edit;
        await route.fulfill({ response, json: body }).catch(() => {});
      });
      // 70 strokes with one setting merge into one stroke over the union of their masks.
      const concept = info.layer.concepts[0].name;
      const strokes = Array.from({ length: 70 }, (_, i) => {
        const x = ((i * 29) % 60) / 64 * info.resolution;
        const y = ((i * 17) % 60) / 64 * info.resolution;
        return `${concept}:d:20:1:3:${x},${y},${x + 2},${y + 1}`;
      });
      await openEditor(page, `#id=12&strokes=${strokes.join(';')}`);
      await waitForShown(page, 'id:12', 70, 60000);
      const shown = await readImage(page);
      await page.locator('#export-menu summary').click();
      const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#export-json').click()]);
      const recipe = JSON.parse(await readFile(await download.path(), 'utf8'));
      const response = await fetch(`${REFERENCE_URL}/api/v1/paint`, {
        method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(recipe),
      });
      assert.deepEqual(shown.data, await decodeInPage(page, (await response.json()).image), 'merged strokes differ from the strokes one by one');

      // 70 strokes that alternate settings cannot go in one request: the editor says so
      // plainly and keeps every stroke.
      const other = info.layer.concepts[1].name;
      const mixed = strokes.map((text, i) => (i % 2 ? text.replace(`${concept}:`, `${other}:`) : text));
      await page.goto(`/#id=13&strokes=${mixed.join(';')}`);
      await page.waitForSelector('body[data-ready=true]');
      const toast = page.locator('.toast-error', { hasText: 'Too many strokes' });
      await toast.waitFor();
      assert.match(await toast.innerText(), /at most 64 strokes at a time/);
      assert.match(await page.locator('#status').innerText(), /^Not rendered: too many strokes/);
      assert.equal(await historyCount(page), 70);
      assert.match(page.url(), /strokes=/);
    } finally {
      await page.unrouteAll({ behavior: 'ignoreErrors' });
      await close();
    }
  });
});

describe('show what will happen, and why', () => {
  test('while painting, the overlay marks the grid cells the stroke will change', async () => {
    const { page, close } = await freshPage({ viewport: { width: 1440, height: 900 } });
    try {
      await openEditor(page, '#id=3');
      const [rows, cols] = info.layer.grid;
      const r = info.resolution;
      const box = await page.locator('#overlay').boundingBox();
      const toPage = ([x, y]) => [box.x + (x / r) * box.width, box.y + (y / r) * box.height];
      // Hovering previews the cells one dab would change.
      await page.mouse.move(...toPage([r * 0.55, r * 0.55]));
      const hover = await page.locator('#stage').getAttribute('data-preview-cells');
      assert.ok(hover.split(' ').includes(`${Math.floor(0.55 * rows)},${Math.floor(0.55 * cols)}`), `hover preview ${hover}`);
      // A stroke from the top left cell to the right along one row.
      const y = r * (0.5 / rows);
      await page.mouse.move(...toPage([r * (0.5 / cols), y]));
      await page.mouse.down();
      await page.mouse.move(...toPage([r * (2.5 / cols), y]), { steps: 6 });
      const cells = (await page.locator('#stage').getAttribute('data-preview-cells')).split(' ');
      for (const c of [0, 1, 2]) assert.ok(cells.includes(`0,${c}`), `cell 0,${c} not marked: ${cells}`);
      assert.ok(!cells.includes(`${rows - 1},${cols - 1}`), 'a far cell is marked');
      await screenshot(page, '10-cells-preview');
      const count = await renderCount(page);
      await page.mouse.up();
      await waitForRender(page, count);
    } finally {
      await close();
    }
  });

  test('the units panel lists the ranking a stroke really uses, and follows the mode', async () => {
    const { page, close } = await freshPage();
    try {
      await openEditor(page, '#id=3');
      const rankings = (await (await fetch(`${BASE_URL}/api/rankings?project=${info.project.name}&layer=${info.layer.name}`)).json()).res;
      const concept = info.layer.concepts.find((c) => c.name === 'tree') || info.layer.concepts[0];
      await page.locator(`input[name=concept][value="${concept.name}"]`).check();
      const panel = async () => page.locator('#units button').evaluateAll((buttons) => buttons.map((b) => ({
        unit: Number(b.dataset.unit), score: b.dataset.score === undefined ? null : Number(b.dataset.score), edited: b.classList.contains('edited'),
      })));
      const check = async (mode, order) => {
        const rows = await panel();
        assert.deepEqual(rows.map((row) => row.unit), order, `${mode}: not the units a ${mode} stroke takes`);
        // The "Tuned" preset (the default) edits the concept's tuned count for the mode.
        const tuned = mode === 'draw' ? concept.draw_default : concept.remove_default;
        assert.equal(rows.filter((row) => row.edited).length, Math.min(tuned.units, order.length));
        assert.ok(rows.slice(0, tuned.units).every((row) => row.edited));
        const hint = await page.locator('#units-tuned').innerText();
        assert.ok(hint.includes(concept.name), `the Tuned hint names no concept: ${hint}`);
        assert.ok(hint.includes(`${tuned.units} units`), `the Tuned hint does not say ${tuned.units} units: ${hint}`);
        assert.equal(hint.startsWith('Tuned:'), tuned.tuned, `the hint says tuned or not wrongly: ${hint}`);
        const name = await page.locator('#units').getAttribute('data-ranking');
        const ranking = rankings.find((x) => x.name === name);
        assert.ok(ranking, `${mode}: the panel names no ranking the server has (${name})`);
        rows.forEach((row) => assert.equal(row.score, -ranking.scores[row.unit]));
        for (let i = 1; i < rows.length; i += 1) assert.ok(rows[i].score <= rows[i - 1].score, `${mode}: scores do not decrease`);
        assert.match(await page.locator('#units-ranking').innerText(), new RegExp(`Ranked by ${name}`));
        assert.equal(await page.locator('#units-mode').innerText(), mode);
        return name;
      };
      const drawName = await check('draw', concept.units.map((u) => u.unit));
      await page.locator('#stage').focus();
      await page.keyboard.press('e');
      const removeName = await check('remove', concept.remove_units);
      // The ranking strokes really take: learned weights, else causal effects, else IoU.
      const expected = (mode) => [`${concept.name}-ace-${mode}`, `${concept.name}-causal-${mode}`]
        .find((name) => rankings.some((x) => x.name === name));
      if (expected('draw')) assert.equal(drawName, expected('draw'));
      if (expected('remove')) assert.equal(removeName, expected('remove'));
      await screenshot(page, '11-units-remove');
    } finally {
      await close();
    }
  });

  test('keys pick every concept (1–9, 0), [ and ] step the brush evenly, and a cached answer says so', async () => {
    const { page, close } = await freshPage();
    try {
      await openEditor(page, '#id=3');
      await page.locator('#stage').focus();
      const concepts = info.layer.concepts.map((c) => c.name);
      for (const [index, name] of concepts.slice(0, 10).entries()) {
        await page.keyboard.press(index === 9 ? '0' : String(index + 1));
        assert.equal(await page.locator('input[name=concept]:checked').getAttribute('value'), name);
      }
      // The selected chip is marked even without focus.
      const outline = await page.locator('.chip:has(input:checked)').evaluate((chip) => getComputedStyle(chip).outlineStyle);
      assert.equal(outline, 'solid');
      await page.keyboard.press('1');
      const start = Number(await page.locator('#brush-size').inputValue());
      const sizes = [start];
      for (let i = 0; i < 4; i += 1) {
        await page.keyboard.press(']');
        sizes.push(Number(await page.locator('#brush-size').inputValue()));
      }
      for (let i = 0; i < 4; i += 1) {
        await page.keyboard.press('[');
        sizes.push(Number(await page.locator('#brush-size').inputValue()));
      }
      assert.deepEqual(sizes.slice(4), [...sizes.slice(0, 5)].reverse(), `brush sizes ${sizes}`);

      await paintWithMouse(page, at(0.3, 0.3));
      await page.locator('#undo').click();
      await waitForShown(page, 'id:3', 0);
      // The same stroke again: the server kept its render.
      await page.locator('#redo').click();
      await waitForShown(page, 'id:3', 1);
      assert.match(await page.locator('#status').innerText(), /from (the editor's|the server's) cache/);
      assert.doesNotMatch(await page.locator('#status').innerText(), /0% of the image/);
    } finally {
      await close();
    }
  });

  test('a first visit shows a hint over the canvas; a link to an unknown project says so', async () => {
    const { page, close } = await freshPage();
    try {
      await openEditor(page, '#project=nosuchproject&id=5');
      assert.ok(await page.locator('#first-hint').isVisible());
      const note = page.locator('.toast', { hasText: 'nosuchproject' });
      await note.waitFor();
      assert.match(await note.innerText(), /names project “nosuchproject”, which this server doesn't have/);
      assert.equal(await page.locator('#stage').getAttribute('data-image'), 'id:5');
      await paintWithMouse(page, at(0.3, 0.3));
      assert.ok(await page.locator('#first-hint').isHidden(), 'the hint stays after the first stroke');
      await page.reload();
      await page.waitForSelector('body[data-ready=true]');
      assert.ok(await page.locator('#first-hint').isHidden(), 'the hint came back after a reload');
    } finally {
      await close();
    }
  });
});

describe('look and share', () => {
  test('a seed shows its own image, and Copy link shares the edit', async () => {
    const { browser, page, close } = await freshPage();
    try {
      await browser.context.grantPermissions(['clipboard-read', 'clipboard-write']);
      await openEditor(page, '#id=3');
      const byId = await readImage(page);
      await page.locator('#seed').fill('123456789012345');
      await page.locator('#seed').press('Enter');
      await waitForShown(page, 'seed:123456789012345', 0);
      assert.notDeepEqual((await readImage(page)).data, byId.data);
      assert.match(page.url(), /&seed=123456789012345/);
      await paintWithMouse(page, at(0.4, 0.4));
      const painted = await readImage(page);
      await page.locator('#copy-link').click();
      await page.locator('.toast', { hasText: 'Link copied' }).waitFor();
      const link = await page.evaluate(() => navigator.clipboard.readText());
      assert.equal(link, page.url());
      const other = await browser.context.newPage();
      await other.goto(link);
      await other.waitForSelector('body[data-ready=true]');
      await waitForShown(other, 'seed:123456789012345', 1);
      assert.deepEqual((await readImage(other)).data, painted.data);
      await other.close();
    } finally {
      await close();
    }
  });

  test('an edit exported as JSON imports back to the same pixels', async () => {
    const { page, close } = await freshPage();
    let file;
    let painted;
    try {
      await openEditor(page, '#id=5');
      await paintWithMouse(page, at(0.2, 0.3));
      await page.keyboard.press('e');
      await paintWithMouse(page, at(0.5, 0.5));
      await page.keyboard.press('d');
      await page.keyboard.press('2');
      await paintWithMouse(page, at(0.3, 0.7));
      painted = await readImage(page);
      await page.locator('#export-menu summary').click();
      const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#export-json').click()]);
      assert.match(download.suggestedFilename(), /^ganpaint-.+-5-edited\.json$/);
      file = await download.path();
      const recipe = JSON.parse(await readFile(file, 'utf8'));
      assert.deepEqual(Object.keys(recipe), ['project', 'layer', 'id', 'strokes']);
      assert.equal(recipe.id, 5);
      assert.deepEqual(recipe.strokes.map((s) => s.mode), ['draw', 'remove', 'draw']);
      // It is what the native API takes.
      const response = await fetch(`${BASE_URL}/api/v1/paint`, {
        method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(recipe),
      });
      assert.equal(response.status, 200);
      assert.deepEqual(await decodeInPage(page, (await response.json()).image), painted.data);
      // Keep the file: the browser's downloads go with its profile.
      const copy = path.join(await mkdtemp(path.join(tmpdir(), 'ganpaint-recipe-')), 'edit.json');
      await copyFile(file, copy);
      file = copy;
    } finally {
      await close();
    }
    // A new user, on another image, imports it.
    const second = await freshPage();
    try {
      await openEditor(second.page, '#id=9');
      await second.page.locator('#import-file').setInputFiles(file);
      await waitForShown(second.page, 'id:5', 3);
      assert.deepEqual((await readImage(second.page)).data, painted.data);
      assert.match(await second.page.locator('#history li').first().innerText(), /mask/);
      // Undo goes back to where the import started.
      await second.page.locator('#undo').click();
      await waitForShown(second.page, 'id:9', 0);
    } finally {
      await second.close();
    }
  });

  test('PNG at the model\'s resolution or upscaled, and an animated GIF with one frame per stroke', async () => {
    const { page, close } = await freshPage();
    try {
      await openEditor(page, '#id=11');
      await paintWithMouse(page, at(0.2, 0.3));
      await paintWithMouse(page, at(0.5, 0.5));
      await page.keyboard.press('e');
      await paintWithMouse(page, at(0.3, 0.6));
      await page.locator('#export-menu summary').click();
      assert.match(await page.locator('#export-png-large').innerText(), /upscaled/);
      const [large] = await Promise.all([page.waitForEvent('download'), page.locator('#export-png-large').click()]);
      assert.match(large.suggestedFilename(), /-upscaled-x\d+\.png$/);
      const bytes = await readFile(await large.path());
      const scale = Math.max(2, Math.round(512 / info.resolution));
      assert.equal(bytes.readUInt32BE(16), info.resolution * scale);

      await page.locator('#export-menu summary').click();
      const [gif] = await Promise.all([page.waitForEvent('download', { timeout: 60000 }), page.locator('#export-gif').click()]);
      assert.match(gif.suggestedFilename(), /\.gif$/);
      const frames = gifFrames(await readFile(await gif.path()));
      assert.deepEqual(frames, { width: info.resolution, height: info.resolution, frames: 4, loops: true });
      assert.match(await page.locator('#status').innerText(), /4 frames: the image, then one per stroke/);
    } finally {
      await close();
    }
  });

  test('screenshots at 1440×900 and on a 390×844 phone, with no sideways scrolling', async () => {
    const desktop = await freshPage({ viewport: { width: 1440, height: 900 } });
    try {
      await openEditor(desktop.page, '#id=3');
      await desktop.page.waitForFunction(() => [...document.querySelectorAll('#gallery img')].every((img) => img.complete && img.naturalWidth > 0));
      await screenshot(desktop.page, '12-desktop-1440-first-visit');
      await paintWithMouse(desktop.page, at(0.2, 0.25, 0.3));
      await desktop.page.mouse.move(5, 5);
      await screenshot(desktop.page, '13-desktop-1440-painted');
      assert.ok(await desktop.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));
      // Toasts stay clear of the toolbar under the image.
      await desktop.page.goto('/#project=nosuchproject&id=3');
      await desktop.page.locator('.toast').first().waitFor();
      const toast = await desktop.page.locator('#toasts').boundingBox();
      const toolbar = await desktop.page.locator('.toolbar').boundingBox();
      assert.ok(toast.y + toast.height <= toolbar.y || toast.x >= toolbar.x + toolbar.width, 'a toast covers the toolbar');
    } finally {
      await desktop.close();
    }
    const phone = await freshPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    try {
      await openEditor(phone.page, '#id=3');
      await screenshot(phone.page, '14-phone-390');
      assert.ok(await phone.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), 'the phone layout scrolls sideways');
      await phone.page.locator('#export-menu summary').click();
      await screenshot(phone.page, '15-phone-390-export-menu');
      assert.ok(await phone.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth));
      const menu = await phone.page.locator('.menu-items').boundingBox();
      assert.ok(menu.x >= 0 && menu.x + menu.width <= 390, 'the export menu runs off the phone screen');
    } finally {
      await phone.close();
    }
  });
});
