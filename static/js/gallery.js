// The samples gallery: pages of GAN Dissection ids with thumbnails; and the shelf of the
// pictures this browser uploaded, so the person can go back to them.

import * as api from './api.js';
import { MAX_ID } from './hashstate.js';
import { Lru } from './render.js';

export const GALLERY_PAGE = 12;

export class Gallery {
  /** `onPick(id)` when a thumbnail is clicked; `onError(error)` when thumbnails fail. */
  constructor({ list, range, prev, next }, { onPick, onError }) {
    this.list = list;
    this.range = range;
    this.prev = prev;
    this.next = next;
    this.onPick = onPick;
    this.onError = onError;
    this.start = -1;
    this.project = null;
    this.current = null; // the image shown ('id:<n>' or 'seed:<n>')
    this.thumbs = new Lru(240);
    this.controller = null;
    prev.addEventListener('click', () => this.load(this.project, Math.max(0, this.start - GALLERY_PAGE)));
    next.addEventListener('click', () => this.load(this.project, this.start + GALLERY_PAGE));
  }

  /** Shows the page holding `image` (an id), or keeps the page for a seed. */
  follow(project, image) {
    this.current = image;
    const [kind, value] = image.split(':');
    const id = kind === 'id' ? Number(value) : null;
    const start = id === null ? Math.max(0, this.start) : Math.floor(id / GALLERY_PAGE) * GALLERY_PAGE;
    if (project !== this.project || start !== this.start) this.load(project, start);
    else this.mark();
  }

  mark() {
    for (const button of this.list.querySelectorAll('button')) {
      button.setAttribute('aria-pressed', String(`id:${button.dataset.id}` === this.current));
    }
  }

  async load(project, start) {
    this.project = project;
    this.start = start;
    const ids = Array.from({ length: GALLERY_PAGE }, (_, i) => start + i).filter((id) => id <= MAX_ID);
    this.range.textContent = `ids ${ids[0]}–${ids[ids.length - 1]}`;
    this.prev.disabled = start === 0;
    this.next.disabled = start + GALLERY_PAGE > MAX_ID;
    this.list.replaceChildren(...ids.map((id) => {
      const item = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'thumb';
      button.dataset.id = String(id);
      button.setAttribute('aria-label', `Image ${id}`);
      button.addEventListener('click', () => this.onPick(id));
      const img = document.createElement('img');
      img.alt = '';
      img.width = img.height = 64;
      button.append(img);
      item.append(button);
      return item;
    }));
    this.mark();
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    const missing = ids.filter((id) => !this.thumbs.has(`${project}|${id}`));
    try {
      if (missing.length) {
        const images = await api.generate(project, missing, controller.signal);
        missing.forEach((id, i) => this.thumbs.set(`${project}|${id}`, images[i]));
      }
      if (this.controller !== controller) return;
      for (const button of this.list.querySelectorAll('button')) {
        const url = this.thumbs.get(`${project}|${button.dataset.id}`);
        if (url) button.querySelector('img').src = url;
      }
    } catch (error) {
      if (error.name !== 'AbortError') this.onError(error);
    }
  }
}

/**
 * The pictures this browser uploaded to the project shown, newest first, each as its
 * picture at the model's resolution. A picture the server no longer stores stays on the
 * shelf, marked: its strokes are still here, and uploading it again brings it back.
 */
export class PictureShelf {
  /** `onPick(record)` when a thumbnail is clicked. */
  constructor({ box, list }, { onPick }) {
    this.box = box;
    this.list = list;
    this.onPick = onPick;
    this.gone = new Set(); // upload names the server answered 404 for
  }

  /** Shows `records` (from uploads.js, this project's), marking `current` ('upload-…' or null). */
  show(records, current) {
    this.box.hidden = records.length === 0;
    const kept = new Map([...this.list.querySelectorAll('button')].map((b) => [b.dataset.image, b]));
    this.list.replaceChildren(...records.map((record) => {
      const item = document.createElement('li');
      const button = kept.get(record.image) || this.thumb(record);
      this.describe(button, record);
      item.append(button);
      return item;
    }));
    this.mark(current);
  }

  thumb(record) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'thumb';
    button.dataset.image = record.image;
    button.addEventListener('click', () => this.onPick(button.record));
    const img = document.createElement('img');
    img.alt = '';
    img.width = img.height = 64;
    img.addEventListener('error', () => this.markGone(record.image));
    img.src = api.pictureUrl(record.image);
    button.append(img);
    return button;
  }

  describe(button, record) {
    button.record = record;
    const name = record.name ? `Your picture ${record.name}` : 'Your uploaded picture';
    const gone = this.gone.has(record.image);
    button.classList.toggle('gone', gone);
    button.setAttribute('aria-label', gone ? `${name} (no longer stored on the server)` : name);
    button.title = gone ? `${name}: no longer stored on the server; upload it again` : name;
  }

  mark(current) {
    for (const button of this.list.querySelectorAll('button')) {
      button.setAttribute('aria-pressed', String(button.dataset.image === current));
    }
  }

  /** The server no longer has `image` (or has it again: `gone` false). */
  markGone(image, gone = true) {
    const was = this.gone.has(image);
    if (gone === was) return;
    if (gone) this.gone.add(image);
    else this.gone.delete(image);
    for (const button of this.list.querySelectorAll('button')) {
      if (button.dataset.image !== image) continue;
      this.describe(button, button.record);
      // Back on the server: load the thumbnail that failed.
      if (!gone) button.querySelector('img').src = `${api.pictureUrl(image)}?again=${Date.now()}`;
    }
  }
}
