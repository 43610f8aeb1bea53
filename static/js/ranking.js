// Which ranking a stroke's units come from, for the units panel. The projects API lists,
// per concept, the units a draw stroke takes (`units`) and a remove stroke takes
// (`remove_units`), in order; the dissection's rankings (`/api/rankings`: `{name,
// metric, scores}`, score = −value per unit, lower is better) say why. The server takes
// the learned weights of `<concept>-ace-<mode>` (an optimized intervention) when the
// dissection has them, else `<concept>-causal-<mode>`, else `<concept>-iou`; the panel
// names whichever ranking orders the units as the server does. Pure: no DOM.

/** What a ranking's metric measures, for people. */
export function metricLabel(metric, mode) {
  if (metric === 'iou') return 'IoU with the concept';
  if (metric === 'causal-draw') return 'causal effect: share of a region that becomes the concept when the unit is drawn';
  if (metric === 'causal-remove') return 'causal effect: share of the concept a region loses when the unit is removed';
  if (metric === 'ace-draw') return 'learned weight: how far a draw stroke moves the unit to its level (optimized with the others)';
  if (metric === 'ace-remove') return 'learned weight: how far a remove stroke moves the unit to 0 (optimized with the others)';
  return `${metric} (${mode})`;
}

/**
 * `{name, metric, units: [{unit, score}]}`: the units `concept` takes in `mode`, in the
 * server's order, scored by the ranking that gives that order (`score = −scores[unit]`),
 * or `name: null` and no scores when no ranking does.
 */
export function strokeRanking(concept, mode, rankings) {
  const order = mode === 'remove' ? concept.remove_units : concept.units.map((u) => u.unit);
  const candidates = [`${concept.name}-ace-${mode}`, `${concept.name}-causal-${mode}`, `${concept.name}-iou`];
  for (const name of candidates) {
    const ranking = rankings.find((r) => r.name === name);
    if (!ranking || !Array.isArray(ranking.scores)) continue;
    if (orderedBy(order, ranking.scores)) {
      return {
        name,
        metric: ranking.metric,
        units: order.map((unit) => ({ unit, score: -ranking.scores[unit] })),
      };
    }
  }
  if (mode === 'draw') {
    // No ranking list to check against: the draw units carry their IoU.
    return { name: null, metric: null, units: concept.units.map(({ unit }) => ({ unit, score: null })) };
  }
  return { name: null, metric: null, units: order.map((unit) => ({ unit, score: null })) };
}

/** True when `order` is best first under `scores` (ties in any order). */
function orderedBy(order, scores) {
  for (let i = 1; i < order.length; i += 1) {
    const a = scores[order[i - 1]];
    const b = scores[order[i]];
    if (!Number.isFinite(a) || !Number.isFinite(b) || a > b) return false;
  }
  if (!order.length) return false;
  // And they are its top units: nothing left out scores better than the last one in.
  const listed = new Set(order);
  const last = scores[order[order.length - 1]];
  return scores.every((score, unit) => listed.has(unit) || !(score < last));
}
