// The concept palette: one chip per concept the layer can paint, keys 1–9 then 0.

import { conceptColor } from './strokes.js';

/** The key that picks the concept at `index`, or null past the tenth. */
export function conceptKey(index) {
  if (index < 9) return String(index + 1);
  return index === 9 ? '0' : null;
}

/** Fills `container` with radio chips for `concepts`, `selected` checked. */
export function buildPalette(container, concepts, selected) {
  container.replaceChildren(...concepts.map((concept, index) => {
    const label = document.createElement('label');
    label.className = 'chip';
    const input = document.createElement('input');
    input.type = 'radio';
    input.name = 'concept';
    input.value = concept.name;
    input.checked = concept.name === selected;
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = conceptColor(concept.name);
    const name = document.createElement('span');
    name.className = 'chip-name';
    name.textContent = concept.name;
    label.append(input, swatch, name);
    const key = conceptKey(index);
    if (key) {
      const kbd = document.createElement('kbd');
      kbd.textContent = key;
      kbd.setAttribute('aria-hidden', 'true');
      label.append(kbd);
      input.setAttribute('aria-keyshortcuts', key);
    }
    return label;
  }));
}

export function markPalette(container, selected) {
  for (const input of container.querySelectorAll('input[name=concept]')) input.checked = input.value === selected;
}
