// How a stroke stack becomes requests to /api/v1/paint, which takes at most `limit`
// strokes each. Consecutive strokes with the same settings go as one stroke over the
// union of their masks (exact: see strokes.js), and a long stack goes as a chain: each
// answer carries the flattened layer edit after its strokes (`edit`), and the next
// request sends it back as `base_edit` with the strokes after it. So the client never
// needs the server's stroke → units → levels rule. Pure: no DOM.

/**
 * The largest k ≥ 1 such that the edit after the first k strokes is known
 * (`has(keys[k])`), or 0. `keys[k]` identifies the first k strokes (strokes.prefixKeys).
 */
export function longestKnownPrefix(keys, has) {
  for (let k = keys.length - 1; k >= 1; k -= 1) {
    if (has(keys[k])) return k;
  }
  return 0;
}

/**
 * The requests that render strokes `base…n−1` given as merged `groups` (`[{start, end}]`,
 * absolute stroke indices, in order, covering `[base, n)`) on top of the known edit of
 * the first `base` strokes: `[{base, groups}]`, each with at most `limit` groups, where
 * `base` is how many strokes the request's `base_edit` holds (0: none). A request's
 * answer holds the edit the next one starts from.
 */
export function chainPlan(groups, base, limit) {
  if (!(limit >= 1)) throw new Error('limit must be at least 1');
  if (!groups.length) return [{ base, groups: [] }];
  const requests = [];
  for (let i = 0; i < groups.length; i += limit) {
    const chunk = groups.slice(i, i + limit);
    requests.push({ base: i === 0 ? base : chunk[0].start, groups: chunk });
  }
  return requests;
}
