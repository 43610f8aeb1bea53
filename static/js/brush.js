// Brush sizes: `[` and `]` walk a fixed ladder, so one step up and one step down always
// come back to where they started. Pure: no DOM.

/** 1 px steps up to 8, then 2 px to 16, 4 px to 32, 8 px beyond. */
export function brushLadder(max) {
  const sizes = [];
  for (let size = 1; size <= max;) {
    sizes.push(size);
    size += size < 8 ? 1 : size < 16 ? 2 : size < 32 ? 4 : 8;
  }
  if (sizes[sizes.length - 1] !== max) sizes.push(max);
  return sizes;
}

/** The next size on the ladder above (`direction` 1) or below (-1) `size`. */
export function stepBrush(size, direction, min, max) {
  const ladder = brushLadder(max).filter((s) => s >= min);
  if (direction > 0) return ladder.find((s) => s > size) ?? max;
  return [...ladder].reverse().find((s) => s < size) ?? min;
}
