// The Brush panel: concept, mode, brush size, units per stroke and intensity. The
// controls write to the store; a subscription reflects the store back into the controls,
// so keys, links and the controls themselves all go through one path.

import { markPalette } from './palette.js';

const $ = (id) => document.getElementById(id);

/**
 * What a stroke of `concept` (a ConceptInfo from /api/v1/projects, or null) in the state's
 * mode paints with under the "Tuned" preset: the server's `draw_default` or
 * `remove_default` (the project's tuned setting, else 20 units at 1×).
 */
export function tunedSetting(state, concept) {
  const setting = concept && (state.mode === 'remove' ? concept.remove_default : concept.draw_default);
  return setting || { units: 20, strength: 1, tuned: false };
}

/** Units a stroke edits: the tuned count, the chosen preset, or the custom count, clamped to the layer. */
export function unitsPerStroke(state, concept = null) {
  const max = state.layer ? state.layer.units : 512;
  if (state.unitsChoice === 'tuned') return Math.min(max, tunedSetting(state, concept).units);
  if (state.unitsChoice !== 'custom') return Math.min(max, Number(state.unitsChoice));
  const value = Math.round(Number(state.customUnits));
  return Math.min(max, Math.max(1, Number.isFinite(value) ? value : 20));
}

/** A draw's intensity: the concept's tuned one under the "Tuned" preset, else the slider's. */
export function strokeStrength(state, concept = null) {
  if (state.unitsChoice !== 'tuned') return state.strength;
  const setting = concept && concept.draw_default;
  return setting ? setting.strength : 1;
}

/** The line under the presets that says what "Tuned" paints with, in the chosen mode. */
export function tunedHint(state, concept) {
  if (state.unitsChoice !== 'tuned' || !concept) return '';
  const setting = tunedSetting(state, concept);
  const what = state.mode === 'remove'
    ? `removes with ${setting.units} units`
    : `draws with ${setting.units} units at ${setting.strength.toFixed(1)}×`;
  return setting.tuned
    ? `Tuned: ${concept.name} ${what}.`
    : `Not tuned here: ${concept.name} ${what}, the plain default.`;
}

/** Clamps a brush size to the slider's range. */
export function clampSize(size) {
  const input = $('brush-size');
  return Math.min(Number(input.max), Math.max(Number(input.min), Math.round(size)));
}

/** `conceptInfo()`: the chosen concept's ConceptInfo, or null. */
export function bindBrushPanel(store, conceptInfo) {
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
    if (['strength', 'unitsChoice', 'concept', 'mode', 'layer'].some((key) => changed.has(key))) {
      // Under "Tuned" the slider shows the concept's tuned intensity and is not the user's to move.
      const strength = strokeStrength(state, conceptInfo());
      $('strength').value = String(strength);
      $('strength-value').textContent = `${strength.toFixed(1)}×`;
      $('strength').disabled = state.mode === 'remove' || state.unitsChoice === 'tuned';
      $('units-tuned').textContent = tunedHint(state, conceptInfo());
    }
  };
  store.subscribe(reflect);
  reflect(store.get(), new Set(['concept', 'mode', 'unitsChoice', 'size', 'strength', 'layer']));
}
