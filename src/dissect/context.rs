//! Where a concept fits: brush regions chosen by what surrounds them.
//!
//! GAN Dissection found that a generator draws an object only where its context allows
//! one (§4.4 of the paper: a door goes into a building, not into the sky). A dome drawn
//! on a lawn is not a dome the generator can make, so random brush regions measure (and
//! teach an optimized intervention) mostly what cannot happen. This module chooses, per
//! image, the region a person would brush the concept into.
//!
//! **The profile.** From the label maps of a set of generated images, for each of the
//! four sides (above, below, left, right) the distribution of the classes found one grid
//! cell beyond each pixel of the concept (pixels of the concept itself are not counted):
//! what lies under a dome, beside a tree, above grass.
//!
//! It also holds where in the picture the concept usually is: its mean share of each grid
//! cell over those images.
//!
//! **The score of a region** (3×3 cells) in one image is, per side whose strip (the row
//! or column of 3 cells just outside the region) lies in the image, the chance that a
//! pixel of the strip has the class the profile expects there
//! (`Σ_class P_side(class) · share_strip(class)`), averaged over those sides, times how
//! usual the concept is at the region's place (its mean share there, relative to the place
//! where it is most usual): grass beside a path, but on the ground rather than in the sky.
//!
//! **The region for an image** is the best one among the regions the concept covers less
//! than half of ([`MAX_SHARE`]), each score weighed by the room left to draw (1 − the
//! concept's share of the region): grass onto a path that has some at its edges, not onto
//! a lawn. None when the concept covers half of every region.

use tch::Tensor;

use super::causal::{cell_of, Region, REGION_CELLS};
use super::collect::{latents, segment_images};
use super::DissectError;
use crate::model::ProgGan;
use crate::segment::Segmenter;

/// A region the concept covers this share of, or more, is not drawn into.
pub const MAX_SHARE: f64 = 0.5;

/// The four sides, as (cell offset y, cell offset x): above, below, left, right.
const SIDES: [(i64, i64); 4] = [(-1, 0), (1, 0), (0, -1), (0, 1)];

/// What surrounds one concept, per side.
#[derive(Clone, Debug, PartialEq)]
pub struct ContextProfile {
    pub class: i64,
    /// `[side][class]`: the share of each class one cell beyond the concept, per side
    /// (each sums to 1, or is all 0 when the concept was never seen with that side in view).
    pub sides: [Vec<f64>; 4],
    /// The concept's pixels the profile was counted from.
    pub pixels: u64,
    /// `[cy · grid width + cx]`: the concept's mean share of each grid cell over the images.
    pub cells: Vec<f64>,
    /// The grid the cells are of.
    pub grid: (i64, i64),
}

impl ContextProfile {
    /// Counts the profile of `class` from label maps (`maps`, each `size` = `[h, w]`
    /// flattened), with `classes` classes, on a `grid` of cells.
    pub fn learn(
        maps: &[&[i64]],
        size: (i64, i64),
        grid: (i64, i64),
        class: i64,
        classes: usize,
    ) -> ContextProfile {
        let (h, w) = size;
        // One cell, in pixels.
        let (dy, dx) = ((h / grid.0).max(1), (w / grid.1).max(1));
        let mut counts: [Vec<u64>; 4] = std::array::from_fn(|_| vec![0u64; classes]);
        let mut pixels = 0u64;
        let n_cells = (grid.0 * grid.1) as usize;
        let mut cell_pixels = vec![0u64; n_cells];
        let mut cell_hits = vec![0u64; n_cells];
        for map in maps {
            for y in 0..h {
                let cy = cell_of(y, h, grid.0);
                for x in 0..w {
                    let cell = (cy * grid.1 + cell_of(x, w, grid.1)) as usize;
                    cell_pixels[cell] += 1;
                    if map[(y * w + x) as usize] != class {
                        continue;
                    }
                    cell_hits[cell] += 1;
                    pixels += 1;
                    for (side, (oy, ox)) in SIDES.iter().enumerate() {
                        let (ny, nx) = (y + oy * dy, x + ox * dx);
                        if ny < 0 || ny >= h || nx < 0 || nx >= w {
                            continue;
                        }
                        let other = map[(ny * w + nx) as usize];
                        if other != class && (0..classes as i64).contains(&other) {
                            counts[side][other as usize] += 1;
                        }
                    }
                }
            }
        }
        let sides = counts.map(|c| {
            let total: u64 = c.iter().sum();
            c.iter()
                .map(|&n| {
                    if total == 0 {
                        0.0
                    } else {
                        n as f64 / total as f64
                    }
                })
                .collect()
        });
        let cells = cell_hits
            .iter()
            .zip(&cell_pixels)
            .map(|(&hit, &all)| hit as f64 / all.max(1) as f64)
            .collect();
        ContextProfile {
            class,
            sides,
            pixels,
            cells,
            grid,
        }
    }

    /// Renders and segments images `ids` and counts the profile of each of `classes_wanted`
    /// from them.
    pub fn from_samples(
        generator: &ProgGan,
        segmenter: &dyn Segmenter,
        layer: &str,
        classes_wanted: &[i64],
        ids: &[u64],
        batch: usize,
    ) -> Result<Vec<ContextProfile>, DissectError> {
        let _guard = tch::no_grad_guard();
        let (_, gh, gw) = generator.layer_shape(layer)?;
        let classes = segmenter.labels().len();
        let mut all = Vec::new();
        let mut size = (0, 0);
        for chunk in ids.chunks(batch.max(1)) {
            let z = latents(generator, chunk)?;
            let image = generator.forward(&z)?;
            let seg: Tensor = segment_images(segmenter, &image, generator.device())?;
            let s = seg.size();
            size = (s[1], s[2]);
            all.extend(super::stats::to_i64_vec(&seg)?);
        }
        let per = (size.0 * size.1).max(1) as usize;
        let maps: Vec<&[i64]> = all.chunks(per).collect();
        Ok(classes_wanted
            .iter()
            .map(|&class| Self::learn(&maps, size, (gh, gw), class, classes))
            .collect())
    }

    /// How well `region` fits the profile in one label map (see the module's text); `None`
    /// when no side's strip lies in the image.
    pub fn score(
        &self,
        labels: &[i64],
        size: (i64, i64),
        grid: (i64, i64),
        region: Region,
    ) -> Option<f64> {
        let (h, w) = size;
        let mut strips = [(); 4].map(|_| (0u64, 0.0f64));
        for y in 0..h {
            let cy = cell_of(y, h, grid.0);
            for x in 0..w {
                let cx = cell_of(x, w, grid.1);
                let Some(side) = strip_side(region, cy, cx) else {
                    continue;
                };
                let l = labels[(y * w + x) as usize];
                let expected = usize::try_from(l)
                    .ok()
                    .and_then(|l| self.sides[side].get(l))
                    .copied()
                    .unwrap_or(0.0);
                strips[side].0 += 1;
                strips[side].1 += expected;
            }
        }
        let seen: Vec<f64> = strips
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, sum)| sum / *n as f64)
            .collect();
        (!seen.is_empty())
            .then(|| seen.iter().sum::<f64>() / seen.len() as f64 * self.position(region))
    }

    /// How usual the concept is at `region`'s place: its mean share there over the
    /// profile's images, relative to the place where it is most usual (0 to 1; 1 for every
    /// place when the concept was never seen).
    pub fn position(&self, region: Region) -> f64 {
        let (gh, gw) = self.grid;
        let mean = |r: Region| {
            let mut sum = 0.0;
            let mut n = 0;
            for cy in r.y..(r.y + REGION_CELLS).min(gh) {
                for cx in r.x..(r.x + REGION_CELLS).min(gw) {
                    sum += self.cells[(cy * gw + cx) as usize];
                    n += 1;
                }
            }
            sum / f64::from(n.max(1))
        };
        let most = (0..=(gh - REGION_CELLS).max(0))
            .flat_map(|y| (0..=(gw - REGION_CELLS).max(0)).map(move |x| Region { y, x }))
            .map(mean)
            .fold(0.0, f64::max);
        if most == 0.0 {
            1.0
        } else {
            mean(region) / most
        }
    }

    /// The best region of one label map among those the concept covers less than
    /// [`MAX_SHARE`] of, by score × (1 − the concept's share of it), with that product;
    /// `None` when there is no such region.
    pub fn best_region(
        &self,
        labels: &[i64],
        size: (i64, i64),
        grid: (i64, i64),
    ) -> Option<(Region, f64)> {
        let (h, w) = size;
        let mut best: Option<(Region, f64)> = None;
        for ry in 0..=(grid.0 - REGION_CELLS).max(0) {
            for rx in 0..=(grid.1 - REGION_CELLS).max(0) {
                let region = Region { y: ry, x: rx };
                let (mut inside, mut hits) = (0u64, 0u64);
                for y in 0..h {
                    let cy = cell_of(y, h, grid.0);
                    if cy < ry || cy >= ry + REGION_CELLS {
                        continue;
                    }
                    for x in 0..w {
                        let cx = cell_of(x, w, grid.1);
                        if cx >= rx && cx < rx + REGION_CELLS {
                            inside += 1;
                            hits += u64::from(labels[(y * w + x) as usize] == self.class);
                        }
                    }
                }
                let share = hits as f64 / inside.max(1) as f64;
                if share >= MAX_SHARE {
                    continue;
                }
                let Some(score) = self.score(labels, size, grid, region) else {
                    continue;
                };
                let score = score * (1.0 - share);
                if best.is_none_or(|(_, s)| score > s) {
                    best = Some((region, score));
                }
            }
        }
        best
    }
}

/// Which side's strip cell `(cy, cx)` is in, if any: the row of cells just above or below
/// the region, or the column just left or right of it, over the region's span.
fn strip_side(region: Region, cy: i64, cx: i64) -> Option<usize> {
    let within = |c: i64, start: i64| c >= start && c < start + REGION_CELLS;
    if within(cx, region.x) {
        if cy == region.y - 1 {
            return Some(0);
        }
        if cy == region.y + REGION_CELLS {
            return Some(1);
        }
    }
    if within(cy, region.y) {
        if cx == region.x - 1 {
            return Some(2);
        }
        if cx == region.x + REGION_CELLS {
            return Some(3);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An 8×8 map of classes 0 (sky), 1 (building) and 2 (dome): a building filling rows
    /// 5..8 between columns `left..left+3`, a dome on it in rows 3..5 when `dome`.
    fn scene(left: i64, dome: bool) -> Vec<i64> {
        let mut map = vec![0i64; 64];
        for y in 5..8 {
            for x in left..left + 3 {
                map[(y * 8 + x) as usize] = 1;
            }
        }
        if dome {
            for y in 3..5 {
                for x in left..left + 3 {
                    map[(y * 8 + x) as usize] = 2;
                }
            }
        }
        map
    }

    #[test]
    fn the_profile_counts_what_lies_one_cell_beyond_the_concept() {
        let map = scene(2, true);
        let profile = ContextProfile::learn(&[&map], (8, 8), (8, 8), 2, 3);
        assert_eq!(profile.pixels, 6);
        // Above the dome: sky only. Below: the lower row of the dome sees the building, the
        // upper row sees the dome itself (not counted).
        assert_eq!(profile.sides[0], vec![1.0, 0.0, 0.0]);
        assert_eq!(profile.sides[1], vec![0.0, 1.0, 0.0]);
        // Left and right: sky.
        assert_eq!(profile.sides[2], vec![1.0, 0.0, 0.0]);
        assert_eq!(profile.sides[3], vec![1.0, 0.0, 0.0]);
        // Where it is: rows 3 and 4, columns 2..5.
        for (cell, &share) in profile.cells.iter().enumerate() {
            let (cy, cx) = (cell / 8, cell % 8);
            let dome = (3..5).contains(&cy) && (2..5).contains(&cx);
            assert_eq!(share, if dome { 1.0 } else { 0.0 }, "cell {cy},{cx}");
        }
    }

    /// A profile of domes on buildings at every column (so at every place along a row).
    fn domes_everywhere() -> ContextProfile {
        let scenes: Vec<Vec<i64>> = (0..6).map(|left| scene(left, true)).collect();
        let maps: Vec<&[i64]> = scenes.iter().map(|m| m.as_slice()).collect();
        ContextProfile::learn(&maps, (8, 8), (8, 8), 2, 3)
    }

    #[test]
    fn the_best_region_for_a_dome_is_on_top_of_the_building() {
        let profile = domes_everywhere();
        // Another image: a building at columns 3..6 and no dome.
        let map = scene(3, false);
        let (region, score) = profile.best_region(&map, (8, 8), (8, 8)).unwrap();
        assert_eq!(region, Region { y: 2, x: 3 });
        assert!((score - 1.0).abs() < 1e-12, "{score}");
        // At the left edge, with sky below where a dome has a building: two sides of the
        // three in the picture fit, at a place (columns 0..3) that held 6/9 of the domes
        // the most usual place did.
        let beside = profile
            .score(&map, (8, 8), (8, 8), Region { y: 2, x: 0 })
            .unwrap();
        assert!((beside - 2.0 / 3.0 * 6.0 / 9.0).abs() < 1e-12, "{beside}");
        // High in the sky, where no dome ever was.
        let high = profile
            .score(&map, (8, 8), (8, 8), Region { y: 0, x: 3 })
            .unwrap();
        assert_eq!(high, 0.0);
    }

    #[test]
    fn regions_mostly_holding_the_concept_are_not_chosen() {
        let profile = domes_everywhere();
        let map = scene(2, true);
        let (region, _) = profile.best_region(&map, (8, 8), (8, 8)).unwrap();
        // The regions holding half of it or more (two dome rows and two or three of its
        // columns) are not drawn into.
        let rows = (region.y.max(3)..(region.y + 3).min(5)).count();
        let columns = (region.x.max(2)..(region.x + 3).min(5)).count();
        assert!(rows * columns < 5, "{region:?}");
        // A map that is all dome leaves no region.
        let all = vec![2i64; 64];
        assert_eq!(profile.best_region(&all, (8, 8), (8, 8)), None);
    }

    #[test]
    fn strips_are_the_cells_just_outside_the_region() {
        let r = Region { y: 2, x: 2 };
        assert_eq!(strip_side(r, 1, 3), Some(0));
        assert_eq!(strip_side(r, 5, 4), Some(1));
        assert_eq!(strip_side(r, 3, 1), Some(2));
        assert_eq!(strip_side(r, 2, 5), Some(3));
        assert_eq!(strip_side(r, 1, 1), None); // a corner
        assert_eq!(strip_side(r, 3, 3), None); // inside
        assert_eq!(strip_side(r, 0, 3), None); // two cells away
    }
}
