// The Strokes panel: the present stack, oldest first; hovering or focusing an entry
// outlines its region on the image, and each can be deleted.

import { conceptColor, describe } from './strokes.js';

/** Fills `list` with `strokes`; `onDelete(index)`, `onHighlight(stroke | null)`. */
export function renderStrokeList(list, strokes, { onDelete, onHighlight }) {
  list.replaceChildren(...strokes.map((stroke, index) => {
    const item = document.createElement('li');
    item.className = 'history-item';
    item.tabIndex = 0;
    item.setAttribute('aria-label', `Stroke ${index + 1}: ${describe(stroke)}`);
    const swatch = document.createElement('span');
    swatch.className = `swatch${stroke.mode === 'remove' ? ' swatch-remove' : ''}`;
    swatch.style.setProperty('--swatch', conceptColor(stroke.concept));
    const text = document.createElement('span');
    text.className = 'history-text';
    text.textContent = describe(stroke);
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'icon-button small';
    remove.setAttribute('aria-label', `Delete stroke ${index + 1} (${stroke.concept}, ${stroke.mode})`);
    remove.title = 'Delete this stroke';
    remove.innerHTML = '<svg aria-hidden="true" viewBox="0 0 24 24" width="16" height="16"><path d="M6 6l12 12M18 6 6 18" stroke="currentColor" stroke-width="2" stroke-linecap="round"/></svg>';
    remove.addEventListener('click', () => {
      onHighlight(null);
      onDelete(index);
    });
    const on = () => onHighlight(stroke);
    const off = () => onHighlight(null);
    item.addEventListener('pointerenter', on);
    item.addEventListener('pointerleave', off);
    item.addEventListener('focusin', on);
    item.addEventListener('focusout', off);
    item.addEventListener('keydown', (event) => {
      if (event.key === 'Delete' || event.key === 'Backspace') {
        event.preventDefault();
        remove.click();
      }
    });
    item.append(swatch, text, remove);
    return item;
  }));
}
