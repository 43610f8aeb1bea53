// Which ranking a stroke's units come from, for the units panel. The projects API lists,
// per concept, the units a draw stroke takes (`units`) and a remove stroke takes
// (`remove_units`), in order, and the name of the ranking that order comes from
// (`draw_ranking`, `remove_ranking`: the server's rule, served so that the editor keeps
// no copy of it); the dissection's rankings (`/api/rankings`: `{name, metric, scores}`,
// score = −value per unit, lower is better) give each unit's score. Pure: no DOM.

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
 * server's order, scored by the ranking the server names for that mode (`score =
 * −scores[unit]`), or `name: null` and no scores when the server names none or the
 * rankings do not list it.
 */
export function strokeRanking(concept, mode, rankings) {
  const order = mode === 'remove' ? concept.remove_units : concept.units.map((u) => u.unit);
  const name = mode === 'remove' ? concept.remove_ranking : concept.draw_ranking;
  const ranking = name ? rankings.find((r) => r.name === name) : null;
  if (ranking && Array.isArray(ranking.scores)) {
    return {
      name,
      metric: ranking.metric,
      units: order.map((unit) => ({ unit, score: -ranking.scores[unit] })),
    };
  }
  return { name: null, metric: null, units: order.map((unit) => ({ unit, score: null })) };
}
