// The units panel: the units a stroke of the chosen concept edits in the chosen mode, in
// the order the server takes them, with the ranking that orders them named and its
// score; the first `count` (the ones a stroke edits) are highlighted.

import { metricLabel } from './ranking.js';

/**
 * Shows `ranking` (from ranking.strokeRanking) for `concept` in `mode`; `count` units are
 * edited; `inspected` is the unit whose heatmap shows; `onPick(unit)` on click;
 * `heatmaps`: whether the image shown can have them (an uploaded picture cannot).
 */
export function renderUnits({ list, heading, modeLabel, explanation }, { concept, mode, ranking, count, inspected, onPick, heatmaps = true }) {
  heading.textContent = concept ? concept.name : '—';
  modeLabel.textContent = mode;
  if (!concept || !ranking) {
    list.replaceChildren();
    explanation.textContent = '';
    return;
  }
  const scored = ranking.units.some((u) => u.score !== null);
  const click = heatmaps
    ? (ranking.name ? 'Click a unit to see where it fires in the current image.' : 'Click a unit to see where it fires.')
    : 'Click a unit to see the samples where it fires most (where it fires in an uploaded picture cannot be shown).';
  explanation.textContent = ranking.name
    ? `Ranked by ${ranking.name} (${metricLabel(ranking.metric, mode)}), best first. A stroke edits the first ${count}, highlighted. ${click}`
    : `In the order the server takes them. A stroke edits the first ${count}, highlighted. ${click}`;
  list.dataset.ranking = ranking.name || '';
  list.dataset.mode = mode;
  const best = Math.max(0, ...ranking.units.map((u) => u.score ?? 0)) || 1;
  list.replaceChildren(...ranking.units.map(({ unit, score }, rank) => {
    const item = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    const edited = rank < count;
    button.className = `unit${edited ? ' edited' : ''}`;
    button.dataset.unit = String(unit);
    if (score !== null) button.dataset.score = String(score);
    button.setAttribute('aria-pressed', String(inspected === unit));
    button.title = `Show where unit ${unit} fires${edited ? ` (a ${mode} stroke edits this unit)` : ''}`;
    const name = document.createElement('span');
    name.className = 'unit-name';
    name.innerHTML = '<span class="visually-hidden">Unit </span>';
    name.append(`#${unit}`);
    const bar = document.createElement('span');
    bar.className = 'unit-bar';
    bar.setAttribute('aria-hidden', 'true');
    bar.style.setProperty('--fill', `${scored ? Math.max(2, (Math.max(0, score) / best) * 100) : 0}%`);
    const value = document.createElement('span');
    value.className = 'unit-iou';
    if (scored) {
      value.innerHTML = '<span class="visually-hidden">, score </span>';
      value.append(score.toFixed(3));
    }
    button.append(name, bar, value);
    button.addEventListener('click', () => onPick(unit));
    item.append(button);
    return item;
  }));
}

export function markUnits(list, inspected) {
  for (const button of list.querySelectorAll('button')) {
    button.setAttribute('aria-pressed', String(Number(button.dataset.unit) === inspected));
  }
}
