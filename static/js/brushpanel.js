// The Brush panel: concept, mode, brush size, units per stroke and intensity. The
// controls write to the store; a subscription reflects the store back into the controls,
// so keys, links and the controls themselves all go through one path.

import { markPalette } from './palette.js';

const $ = (id) => document.getElementById(id);

/** Units a stroke edits: the chosen preset, or the custom count clamped to the layer. */
export function unitsPerStroke(state) {
  if (state.unitsChoice !== 'custom') return Number(state.unitsChoice);
  const max = state.layer ? state.layer.units : 512;
  const value = Math.round(Number(state.customUnits));
  return Math.min(max, Math.max(1, Number.isFinite(value) ? value : 20));
}

/** Clamps a brush size to the slider's range. */
export function clampSize(size) {
  const input = $('brush-size');
  return Math.min(Number(input.max), Math.max(Number(input.min), Math.round(size)));
}

export function bindBrushPanel(store) {
  $('palette').addEventListener('change', (e) => {
    if (e.target.name === 'concept') store.set({ concept: e.target.value });
  });
  for (const input of document.querySelectorAll('input[name=mode]')) {
    input.addEventListener('change', () => store.set({ mode: input.value }));
  }
  for (const input of document.querySelectorAll('input[name=units]')) {
    input.addEventListener('change', () => {
      store.set({ unitsChoice: input.value });
      if (input.value === 'custom') $('units-custom').focus();
    });
  }
  $('units-custom').addEventListener('input', (e) => store.set({ customUnits: e.target.value }));
  $('brush-size').addEventListener('input', (e) => store.set({ size: clampSize(Number(e.target.value)) }));
  $('strength').addEventListener('input', (e) => store.set({ strength: Math.round(Number(e.target.value) * 10) / 10 }));

  const reflect = (state, changed) => {
    if (changed.has('concept')) markPalette($('palette'), state.concept);
    if (changed.has('mode')) {
      document.querySelector(`input[name=mode][value=${state.mode}]`).checked = true;
      $('strength').disabled = state.mode === 'remove';
    }
    if (changed.has('unitsChoice')) {
      document.querySelector(`input[name=units][value="${state.unitsChoice}"]`).checked = true;
      $('units-custom').disabled = state.unitsChoice !== 'custom';
      $('units-custom').closest('label').hidden = state.unitsChoice !== 'custom';
    }
    if (changed.has('size')) {
      $('brush-size').value = String(state.size);
      $('brush-size-value').textContent = `${state.size} px`;
    }
    if (changed.has('strength')) {
      $('strength').value = String(state.strength);
      $('strength-value').textContent = `${state.strength.toFixed(1)}×`;
    }
  };
  store.subscribe(reflect);
  reflect(store.get(), new Set(['concept', 'mode', 'unitsChoice', 'size', 'strength']));
}
