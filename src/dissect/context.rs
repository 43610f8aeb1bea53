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
//! A side that was never seen beside the concept (it always touches the picture's edge
//! there) is left out of the average, as is a strip outside the picture.
//!
//! **The region for an image** is the best one among the regions the concept covers less
//! than half of ([`MAX_SHARE`]), each score weighed by the room left to draw (1 − the
//! concept's share of the region): grass onto a path that has some at its edges, not onto
//! a lawn. None when the concept covers half of every region, when no region scores above
//! 0, or when the profile's images never showed the concept.

use tch::Tensor;

use super::causal::{cell_of, Region, REGION_CELLS};
use super::collect::{latents, segment_images};
use super::DissectError;
use crate::model::ProgGan;
use crate::segment::Segmenter;

/// The images a profile is counted from, by default: ids `CONTEXT_FIRST_ID..` (a
/// dissection's own, apart from those evaluated or learned on), `CONTEXT_SAMPLES` of them.
pub const CONTEXT_SAMPLES: u64 = 200;
pub const CONTEXT_FIRST_ID: u64 = 0;

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
    /// The largest mean of `cells` over a region: the place where the concept is most usual.
    most: f64,
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
        let cells: Vec<f64> = cell_hits
            .iter()
            .zip(&cell_pixels)
            .map(|(&hit, &all)| hit as f64 / all.max(1) as f64)
            .collect();
        let most = all_regions(grid)
            .map(|r| region_mean(&cells, grid, r))
            .fold(0.0, f64::max);
        ContextProfile {
            class,
            sides,
            pixels,
            cells,
            grid,
            most,
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
    /// when no side's strip lies in the image or was ever seen beside the concept.
    pub fn score(
        &self,
        labels: &[i64],
        size: (i64, i64),
        grid: (i64, i64),
        region: Region,
    ) -> Option<f64> {
        self.score_cells(
            &CellCounts::new(labels, size, grid, self.sides[0].len()),
            region,
        )
    }

    fn score_cells(&self, cells: &CellCounts, region: Region) -> Option<f64> {
        debug_assert_eq!(cells.grid, self.grid, "the profile's grid");
        let mut sum = 0.0;
        let mut sides = 0;
        for (side, expected) in self.sides.iter().enumerate() {
            // A side never seen beside the concept (it lies at the picture's edge) says
            // nothing about a region.
            if expected.iter().all(|&p| p == 0.0) {
                continue;
            }
            let (mut pixels, mut matching) = (0u64, 0.0);
            for (cy, cx) in strip_cells(region, side, cells.grid) {
                let cell = cells.cell(cy, cx);
                pixels += cells.pixels[cell];
                for (class, &p) in expected.iter().enumerate() {
                    matching += p * cells.count(cell, class) as f64;
                }
            }
            if pixels > 0 {
                sum += matching / pixels as f64;
                sides += 1;
            }
        }
        (sides > 0).then(|| sum / f64::from(sides) * self.position(region))
    }

    /// How usual the concept is at `region`'s place: its mean share there over the
    /// profile's images, relative to the place where it is most usual (0 to 1).
    pub fn position(&self, region: Region) -> f64 {
        if self.most == 0.0 {
            0.0
        } else {
            region_mean(&self.cells, self.grid, region) / self.most
        }
    }

    /// The best region of one label map among those the concept covers less than
    /// [`MAX_SHARE`] of, by score × (1 − the concept's share of it), with that product;
    /// `None` when there is no such region, when none scores above 0, or when the profile
    /// never saw the concept (so knows nothing of where it fits).
    pub fn best_region(
        &self,
        labels: &[i64],
        size: (i64, i64),
        grid: (i64, i64),
    ) -> Option<(Region, f64)> {
        if self.pixels == 0 {
            return None;
        }
        let cells = CellCounts::new(labels, size, grid, self.sides[0].len());
        let mut best: Option<(Region, f64)> = None;
        for region in all_regions(grid) {
            let share = cells.share(region, self.class);
            if share >= MAX_SHARE {
                continue;
            }
            let Some(score) = self.score_cells(&cells, region) else {
                continue;
            };
            let score = score * (1.0 - share);
            if score > 0.0 && best.is_none_or(|(_, s)| score > s) {
                best = Some((region, score));
            }
        }
        best
    }
}

/// Every 3×3-cell region of a grid (one when the grid is smaller), row by row.
pub(crate) fn all_regions(grid: (i64, i64)) -> impl Iterator<Item = Region> {
    (0..=(grid.0 - REGION_CELLS).max(0))
        .flat_map(move |y| (0..=(grid.1 - REGION_CELLS).max(0)).map(move |x| Region { y, x }))
}

/// The mean of per-cell values over a region's cells.
fn region_mean(cells: &[f64], grid: (i64, i64), region: Region) -> f64 {
    let mut sum = 0.0;
    let mut n = 0u32;
    for cy in region.y..(region.y + REGION_CELLS).min(grid.0) {
        for cx in region.x..(region.x + REGION_CELLS).min(grid.1) {
            sum += cells[(cy * grid.1 + cx) as usize];
            n += 1;
        }
    }
    sum / f64::from(n.max(1))
}

/// One label map counted per grid cell: its pixels, and its pixels of each class. Counted
/// once, it answers a class's share of any region without rescanning the pixels.
pub(crate) struct CellCounts {
    grid: (i64, i64),
    classes: usize,
    /// `[cell · classes + class]`.
    counts: Vec<u64>,
    /// `[cell]`.
    pixels: Vec<u64>,
}

impl CellCounts {
    /// Counts `labels` (`[h, w]` flattened, `size` = `(h, w)`) on `grid`; labels outside
    /// `0..classes` count as pixels of no class.
    pub(crate) fn new(
        labels: &[i64],
        size: (i64, i64),
        grid: (i64, i64),
        classes: usize,
    ) -> CellCounts {
        let (h, w) = size;
        let cells = (grid.0 * grid.1) as usize;
        let mut counts = vec![0u64; cells * classes];
        let mut pixels = vec![0u64; cells];
        for y in 0..h {
            let cy = cell_of(y, h, grid.0);
            for x in 0..w {
                let cell = (cy * grid.1 + cell_of(x, w, grid.1)) as usize;
                pixels[cell] += 1;
                if let Ok(class) = usize::try_from(labels[(y * w + x) as usize]) {
                    if class < classes {
                        counts[cell * classes + class] += 1;
                    }
                }
            }
        }
        CellCounts {
            grid,
            classes,
            counts,
            pixels,
        }
    }

    /// `class`'s share of `region`'s pixels (the cells it covers in the grid); 0 for a class
    /// not counted or a region with no pixels.
    pub(crate) fn share(&self, region: Region, class: i64) -> f64 {
        let Ok(class) = usize::try_from(class) else {
            return 0.0;
        };
        let (mut inside, mut hits) = (0u64, 0u64);
        for cy in region.y..(region.y + REGION_CELLS).min(self.grid.0) {
            for cx in region.x..(region.x + REGION_CELLS).min(self.grid.1) {
                let cell = self.cell(cy, cx);
                inside += self.pixels[cell];
                hits += self.count(cell, class);
            }
        }
        hits as f64 / inside.max(1) as f64
    }

    fn cell(&self, cy: i64, cx: i64) -> usize {
        (cy * self.grid.1 + cx) as usize
    }

    fn count(&self, cell: usize, class: usize) -> u64 {
        if class < self.classes {
            self.counts[cell * self.classes + class]
        } else {
            0
        }
    }
}

/// The cells of a region's strip on `side` (above, below, left, right: the row or column of
/// cells just outside it, over its span) that lie in the grid.
fn strip_cells(region: Region, side: usize, grid: (i64, i64)) -> Vec<(i64, i64)> {
    let span = |start: i64, limit: i64| start..(start + REGION_CELLS).min(limit);
    let (row, column) = match side {
        0 => (Some(region.y - 1), None),
        1 => (Some(region.y + REGION_CELLS), None),
        2 => (None, Some(region.x - 1)),
        _ => (None, Some(region.x + REGION_CELLS)),
    };
    match (row, column) {
        (Some(cy), _) if (0..grid.0).contains(&cy) => {
            span(region.x, grid.1).map(|cx| (cy, cx)).collect()
        }
        (_, Some(cx)) if (0..grid.1).contains(&cx) => {
            span(region.y, grid.0).map(|cy| (cy, cx)).collect()
        }
        _ => Vec::new(),
    }
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
    fn a_region_share_counts_the_pixels_its_stroke_covers() {
        // A 20×20 label map on an 8×8 grid (cells of 2 or 3 pixels): class (x + 2y) % 4.
        let (h, w) = (20i64, 20i64);
        let map: Vec<i64> = (0..h * w).map(|i| (i % w + 2 * (i / w)) % 4).collect();
        let cells = CellCounts::new(&map, (h, w), (8, 8), 3);
        for region in all_regions((8, 8)) {
            // The stroke's own pixels, as the edit and the scoring mark them.
            let zones = super::super::causal::zones(region, (8, 8), (h, w));
            for class in 0..5i64 {
                let (mut inside, mut hits) = (0u64, 0u64);
                for (&zone, &l) in zones.iter().zip(&map) {
                    if zone == 1 {
                        inside += 1;
                        hits += u64::from(l == class);
                    }
                }
                // Class 3 is not counted, class 4 never occurs: both have no share.
                let want = if class < 3 {
                    hits as f64 / inside as f64
                } else {
                    0.0
                };
                assert_eq!(cells.share(region, class), want, "{region:?} class {class}");
            }
        }
        assert_eq!(all_regions((8, 8)).count(), 36);
        assert_eq!(cells.share(Region { y: 0, x: 0 }, -1), 0.0);
    }

    #[test]
    fn strips_are_the_cells_just_outside_the_region() {
        let r = Region { y: 2, x: 2 };
        assert_eq!(strip_cells(r, 0, (8, 8)), vec![(1, 2), (1, 3), (1, 4)]);
        assert_eq!(strip_cells(r, 1, (8, 8)), vec![(5, 2), (5, 3), (5, 4)]);
        assert_eq!(strip_cells(r, 2, (8, 8)), vec![(2, 1), (3, 1), (4, 1)]);
        assert_eq!(strip_cells(r, 3, (8, 8)), vec![(2, 5), (3, 5), (4, 5)]);
        // At the picture's edges there is none.
        let corner = Region { y: 0, x: 5 };
        assert!(strip_cells(corner, 0, (8, 8)).is_empty());
        assert!(strip_cells(corner, 3, (8, 8)).is_empty());
        assert_eq!(strip_cells(corner, 1, (8, 8)), vec![(3, 5), (3, 6), (3, 7)]);
    }
}
