// The samples gallery: pages of GAN Dissection ids with thumbnails.

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
