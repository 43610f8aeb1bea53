// Which cells of the edited layer's grid a mask touches. The server max-pools a mask to
// the grid with adaptive pooling (torch's `adaptive_max_pool2d`): output cell i covers
// input rows floor(i·H/h) … ceil((i+1)·H/h) − 1, so a painted pixel on a boundary may
// light two cells. Pure: no DOM.

/** Input index range `[start, end)` of adaptive pooling's output cell `i` of `out`. */
export function poolRange(i, size, out) {
  return [Math.floor((i * size) / out), Math.ceil(((i + 1) * size) / out)];
}

/**
 * `[[row, col], …]` of the grid cells (`grid = [rows, cols]`) that hold a painted pixel
 * of a `width`×`height` mask (`painted(x, y)`).
 */
export function touchedCells(width, height, painted, grid) {
  const [rows, cols] = grid;
  const cells = [];
  for (let r = 0; r < rows; r += 1) {
    const [y0, y1] = poolRange(r, height, rows);
    for (let c = 0; c < cols; c += 1) {
      const [x0, x1] = poolRange(c, width, cols);
      let hit = false;
      for (let y = y0; y < y1 && !hit; y += 1) {
        for (let x = x0; x < x1; x += 1) {
          if (painted(x, y)) {
            hit = true;
            break;
          }
        }
      }
      if (hit) cells.push([r, c]);
    }
  }
  return cells;
}
