//! The causal check behind `ganpaint eval-edits`: does painting a concept's top units
//! draw (or remove) that concept, there and only there?
//!
//! For each sample (image ids `first_id..first_id + samples`) a 3×3-cell region of the
//! layer grid is drawn at random (a deterministic generator seeded by `seed`; the same
//! regions for every concept). The stroke mask is that region at image resolution, and
//! the edit goes through [`crate::edit::intervention_planes`] (the per-stroke planes that
//! [`crate::edit::paint_planes`] composes) and [`render_edited`], exactly as the server
//! paints. For each concept:
//!
//! - **draw**: the concept's units ([`ProjectLayer::stroke_edits`]: the top `units` by
//!   IoU or causal effect, or an optimized intervention's weighted units) are set to
//!   `strength ×` their level at `quantile` (0.99) inside the region (with alpha = the
//!   learned weight, for an optimized intervention). `draw_gain` is the mean over samples of
//!   (share after − share before), where share is the fraction of the region's
//!   segmentation pixels labeled as the concept.
//! - **remove**: the same units are set to 0 inside the region, on the samples where the
//!   concept is **present** in the region before, i.e. covers at least
//!   [`PRESENT_SHARE`] (5%) of it. `remove_cut` is the mean over those samples of
//!   (before − after) / before; it is `null` when no sample has the concept.
//! - **where**: with [`DrawRegions::Context`], each concept is drawn, per sample, into
//!   the region where it fits best ([`super::context`]: a dome on top of a building, not
//!   on a lawn) instead of the random one; samples where it covers half of every region
//!   are not drawn. Removes keep the random regions.
//! - **far pixels** are segmentation pixels whose grid cell is more than 2 cells from the
//!   region (Chebyshev distance). `far_change` is the fraction of far pixels whose class
//!   changed, over all draw and remove edits together.
//!
//! Segmentation pixels map to grid cells by their centres:
//! `cell = ⌊(2p + 1)·H / 2h⌋`.

use std::collections::BTreeMap;

use serde::Serialize;
use tch::Tensor;

use super::collect::{latents, segment_images};
use super::context::ContextProfile;
use super::DissectError;
use crate::edit::{
    intervention_planes, render_edited, EditPlanes, Pooling, Route, StrokeMode, UnitEdit,
};
use crate::model::{latent::RandomState, ProgGan};
use crate::project::{ProjectLayer, UnitChoice};
use crate::segment::Segmenter;

/// The region's side, in cells.
pub const REGION_CELLS: i64 = 3;
/// Pixels farther than this many cells from the region are "far".
pub const FAR_CELLS: i64 = 2;
/// A concept is present in a region when it covers at least this share of it.
pub const PRESENT_SHARE: f64 = 0.05;

/// One concept's strokes, resolved.
struct Plan {
    concept: String,
    class: i64,
    strength: f32,
    draw: Vec<UnitEdit>,
    remove: Vec<UnitEdit>,
}

/// What to measure.
pub struct EditEval<'a> {
    pub generator: &'a ProgGan,
    pub segmenter: &'a dyn Segmenter,
    pub layer: &'a ProjectLayer,
    pub concepts: Vec<String>,
    pub samples: u64,
    pub first_id: u64,
    /// Units per stroke; `None`: each concept and mode's own count, as a stroke that gives
    /// none paints ([`ProjectLayer::stroke_default`]: the tuned one, else 20 or all of a
    /// smaller layer's).
    pub units: Option<usize>,
    pub quantile: f64,
    /// Draw strength; `None`: each concept's own, as for `units`.
    pub strength: Option<f32>,
    /// Whether to remove too (a tuning of draw strengths leaves removal out).
    pub remove: bool,
    pub seed: u64,
    pub batch: usize,
    /// Which units paint (see [`ProjectLayer::stroke_edits`]): by IoU, by causal effect,
    /// or with learned weights ([`super::optimize`]).
    pub choice: UnitChoice,
    /// Where draws are brushed (removes always use the random regions).
    pub draw_regions: DrawRegions<'a>,
}

/// Where a draw is brushed.
#[derive(Clone, Copy, Debug, Default)]
pub enum DrawRegions<'a> {
    /// A random region per sample, the same for every concept.
    #[default]
    Random,
    /// Per concept and sample, the region where the concept fits best by its profile
    /// ([`super::context`]; one per concept's class). A sample where the concept leaves no
    /// such region (it covers half of every region, or none fits) is not drawn.
    Context(&'a [ContextProfile]),
}

/// One concept's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ConceptEffect {
    pub draw_gain: f64,
    pub remove_cut: Option<f64>,
    pub far_change: f64,
    /// Samples drawn on: all of them with random regions; with context regions, those
    /// where the concept left a region to draw into.
    pub samples: u64,
    /// Samples where the concept was present, so removed.
    pub remove_samples: u64,
    #[serde(skip)]
    pub draw_before: f64,
    #[serde(skip)]
    pub draw_after: f64,
    #[serde(skip)]
    pub remove_before: f64,
    #[serde(skip)]
    pub remove_after: f64,
    #[serde(skip)]
    pub far_change_draw: f64,
    #[serde(skip)]
    pub far_change_remove: f64,
    /// Far pixels the draws (removes) were measured on: none when the region leaves no
    /// pixel more than [`FAR_CELLS`] cells away (a 3×3-cell region on a 4×4 grid).
    #[serde(skip)]
    pub far_pixels_draw: u64,
    #[serde(skip)]
    pub far_pixels_remove: u64,
    /// The units a draw edits.
    #[serde(skip)]
    pub units: Vec<i64>,
    /// How many units a draw edits.
    pub draw_units: usize,
    /// How many units a remove edits.
    pub remove_units: usize,
    /// The draw strength.
    pub strength: f32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EditReport {
    pub concepts: BTreeMap<String, ConceptEffect>,
}

/// A region's top-left cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub y: i64,
    pub x: i64,
}

/// The regions for `samples` samples on an `h × w` grid, deterministic in `seed`.
pub fn regions(samples: u64, grid: (i64, i64), seed: u64) -> Vec<Region> {
    let mut rng = RandomState::from_seed(seed);
    let span = |side: i64| (side - REGION_CELLS + 1).max(1) as u32;
    (0..samples)
        .map(|_| {
            let y = (rng.next_u32() % span(grid.0)) as i64;
            let x = (rng.next_u32() % span(grid.1)) as i64;
            Region { y, x }
        })
        .collect()
}

/// The cell of pixel `p` of `pixels` when `cells` cells span them.
pub(crate) fn cell_of(p: i64, pixels: i64, cells: i64) -> i64 {
    ((2 * p + 1) * cells) / (2 * pixels)
}

/// Chebyshev distance, in cells, from cell `(cy, cx)` to the region.
fn distance(region: Region, cy: i64, cx: i64) -> i64 {
    let along = |c: i64, start: i64| {
        if c < start {
            start - c
        } else {
            (c - (start + REGION_CELLS - 1)).max(0)
        }
    };
    along(cy, region.y).max(along(cx, region.x))
}

/// Per pixel of an `h × w` map: 1 inside the region, 2 far from it, 0 otherwise.
pub(crate) fn zones(region: Region, grid: (i64, i64), size: (i64, i64)) -> Vec<u8> {
    let (h, w) = size;
    let mut out = Vec::with_capacity((h * w) as usize);
    for y in 0..h {
        let cy = cell_of(y, h, grid.0);
        for x in 0..w {
            let d = distance(region, cy, cell_of(x, w, grid.1));
            out.push(if d == 0 {
                1
            } else if d > FAR_CELLS {
                2
            } else {
                0
            });
        }
    }
    out
}

/// The stroke mask `[R, R]` (1 inside the region) at image resolution.
fn stroke_mask(region: Region, grid: (i64, i64), side: i64) -> Result<Tensor, DissectError> {
    let values: Vec<f32> = zones(region, grid, (side, side))
        .into_iter()
        .map(|z| f32::from(u8::from(z == 1)))
        .collect();
    Ok(Tensor::f_from_slice(&values)?.f_view([side, side])?)
}

#[derive(Default)]
struct Tally {
    draw_samples: u64,
    draw_before: f64,
    draw_after: f64,
    remove_samples: u64,
    remove_before: f64,
    remove_after: f64,
    remove_cut: f64,
    far_draw: (u64, u64),
    far_remove: (u64, u64),
}

impl Tally {
    /// One sample drawn on: its region's share before and after, and its far changes.
    fn add_draw(&mut self, map: &SampleMaps, after: &[i64], class: i64) {
        self.draw_samples += 1;
        self.draw_before += map.share(map.before, class);
        self.draw_after += map.share(after, class);
        let (changed, far) = map.far_changes(after);
        self.far_draw.0 += changed;
        self.far_draw.1 += far;
    }
}

/// Region share of `class` and far-pixel changes for one sample.
struct SampleMaps<'a> {
    zones: &'a [u8],
    before: &'a [i64],
}

impl SampleMaps<'_> {
    fn share(&self, labels: &[i64], class: i64) -> f64 {
        let (mut inside, mut hits) = (0u64, 0u64);
        for (&z, &l) in self.zones.iter().zip(labels) {
            if z == 1 {
                inside += 1;
                hits += u64::from(l == class);
            }
        }
        if inside == 0 {
            0.0
        } else {
            hits as f64 / inside as f64
        }
    }

    /// (far pixels whose class changed, far pixels).
    fn far_changes(&self, after: &[i64]) -> (u64, u64) {
        let mut changed = 0;
        let mut far = 0;
        for ((&z, &b), &a) in self.zones.iter().zip(self.before).zip(after) {
            if z == 2 {
                far += 1;
                changed += u64::from(a != b);
            }
        }
        (changed, far)
    }
}

impl EditEval<'_> {
    /// Edits `features` (`[n, C, H, W]`) with `edits` under one stroke mask per sample
    /// (max-pooled to the grid, as the server pools a stroke) and segments the result.
    fn paint_and_segment(
        &self,
        features: &Tensor,
        edits: &[UnitEdit],
        masks: &[&Tensor],
    ) -> Result<Vec<i64>, DissectError> {
        let device = self.generator.device();
        let layer = self.layer.layer.as_str();
        let shape = self.generator.layer_shape(layer)?;
        let mut alphas = Vec::with_capacity(masks.len());
        let mut values = Vec::with_capacity(masks.len());
        for mask in masks {
            let planes =
                intervention_planes(layer, shape, edits, Some(mask), Pooling::Max, device)?;
            alphas.push(planes.alpha);
            values.push(planes.value);
        }
        let planes = EditPlanes {
            alpha: Tensor::f_stack(&alphas, 0)?,
            value: Tensor::f_stack(&values, 0)?,
        };
        let image = render_edited(self.generator, layer, features, &planes, Route::Full)?.images;
        super::stats::to_i64_vec(&segment_images(self.segmenter, &image, device)?)
    }

    pub fn run(&self, progress: &mut dyn FnMut(u64)) -> Result<EditReport, DissectError> {
        let _guard = tch::no_grad_guard();
        let layer = self.layer.layer.as_str();
        let (_, gh, gw) = self.generator.layer_shape(layer)?;
        let grid = (gh, gw);
        let side = self.generator.resolution();
        let labels = self.segmenter.labels();
        let mut plans = Vec::new();
        for concept in &self.concepts {
            let class = labels.iter().position(|l| l == concept).ok_or_else(|| {
                DissectError::Settings(format!(
                    "concept `{concept}` is not one of the segmenter's labels ({})",
                    labels.join(", ")
                ))
            })? as i64;
            let strength = self.strength.unwrap_or(
                self.layer
                    .stroke_default(concept, StrokeMode::Draw)
                    .strength,
            );
            let edits = |mode: StrokeMode| {
                let units = self
                    .units
                    .unwrap_or(self.layer.stroke_default(concept, mode).units);
                self.layer
                    .stroke_edits(concept, mode, units, strength, self.quantile, self.choice)
            };
            plans.push(Plan {
                concept: concept.clone(),
                class,
                strength,
                draw: edits(StrokeMode::Draw)?,
                remove: edits(StrokeMode::Remove)?,
            });
        }
        let profiles: Vec<Option<&ContextProfile>> = plans
            .iter()
            .map(|plan| match self.draw_regions {
                DrawRegions::Random => Ok(None),
                DrawRegions::Context(all) => all
                    .iter()
                    .find(|p| p.class == plan.class)
                    .map(Some)
                    .ok_or_else(|| {
                        DissectError::Settings(format!("no context profile for `{}`", plan.concept))
                    }),
            })
            .collect::<Result<_, _>>()?;
        let all_regions = regions(self.samples, grid, self.seed);
        let mut tallies: Vec<Tally> = plans.iter().map(|_| Tally::default()).collect();
        let ids: Vec<u64> = (0..self.samples).map(|j| self.first_id + j).collect();
        for (batch_index, chunk) in ids.chunks(self.batch.max(1)).enumerate() {
            let offset = batch_index * self.batch.max(1);
            let regions = &all_regions[offset..offset + chunk.len()];
            let z = latents(self.generator, chunk)?;
            let features = self.generator.features(&z, layer)?;
            let image = self.generator.forward_from(layer, &features)?;
            let seg = segment_images(self.segmenter, &image, self.generator.device())?;
            let seg_size = seg.size();
            let (sh, sw) = (seg_size[1], seg_size[2]);
            let per = (sh * sw) as usize;
            let before = super::stats::to_i64_vec(&seg)?;
            let zone_maps: Vec<Vec<u8>> =
                regions.iter().map(|&r| zones(r, grid, (sh, sw))).collect();
            let masks: Vec<Tensor> = regions
                .iter()
                .map(|&r| stroke_mask(r, grid, side))
                .collect::<Result<_, _>>()?;
            let maps: Vec<SampleMaps> = (0..chunk.len())
                .map(|i| SampleMaps {
                    zones: &zone_maps[i],
                    before: &before[i * per..(i + 1) * per],
                })
                .collect();
            for (c, (plan, tally)) in plans.iter().zip(&mut tallies).enumerate() {
                let class = &plan.class;
                // Draw, on every sample (random regions) or where the concept fits.
                match profiles[c] {
                    None => {
                        let all: Vec<&Tensor> = masks.iter().collect();
                        let after = self.paint_and_segment(&features, &plan.draw, &all)?;
                        for (i, map) in maps.iter().enumerate() {
                            tally.add_draw(map, &after[i * per..(i + 1) * per], *class);
                        }
                    }
                    Some(profile) => {
                        let fits: Vec<(usize, Region)> = (0..chunk.len())
                            .filter_map(|i| {
                                let map = &before[i * per..(i + 1) * per];
                                profile
                                    .best_region(map, (sh, sw), grid)
                                    .map(|(region, _)| (i, region))
                            })
                            .collect();
                        if !fits.is_empty() {
                            let index = Tensor::f_from_slice(
                                &fits.iter().map(|&(i, _)| i as i64).collect::<Vec<_>>(),
                            )?
                            .f_to_device(features.device())?;
                            let subset = features.f_index_select(0, &index)?;
                            let fit_zones: Vec<Vec<u8>> = fits
                                .iter()
                                .map(|&(_, r)| zones(r, grid, (sh, sw)))
                                .collect();
                            let fit_masks: Vec<Tensor> = fits
                                .iter()
                                .map(|&(_, r)| stroke_mask(r, grid, side))
                                .collect::<Result<_, _>>()?;
                            let after = self.paint_and_segment(
                                &subset,
                                &plan.draw,
                                &fit_masks.iter().collect::<Vec<_>>(),
                            )?;
                            for (k, &(i, _)) in fits.iter().enumerate() {
                                let map = SampleMaps {
                                    zones: &fit_zones[k],
                                    before: &before[i * per..(i + 1) * per],
                                };
                                tally.add_draw(&map, &after[k * per..(k + 1) * per], *class);
                            }
                        }
                    }
                }
                // Remove, where the concept is present.
                let present: Vec<usize> = (0..chunk.len())
                    .filter(|&i| maps[i].share(maps[i].before, *class) >= PRESENT_SHARE)
                    .collect();
                if present.is_empty() || !self.remove {
                    continue;
                }
                let index =
                    Tensor::f_from_slice(&present.iter().map(|&i| i as i64).collect::<Vec<_>>())?
                        .f_to_device(features.device())?;
                let subset = features.f_index_select(0, &index)?;
                let present_masks: Vec<&Tensor> = present.iter().map(|&i| &masks[i]).collect();
                let after = self.paint_and_segment(&subset, &plan.remove, &present_masks)?;
                for (k, &i) in present.iter().enumerate() {
                    let map = &maps[i];
                    let after_i = &after[k * per..(k + 1) * per];
                    let (b, a) = (map.share(map.before, *class), map.share(after_i, *class));
                    tally.remove_samples += 1;
                    tally.remove_before += b;
                    tally.remove_after += a;
                    tally.remove_cut += (b - a) / b;
                    let (changed, far) = map.far_changes(after_i);
                    tally.far_remove.0 += changed;
                    tally.far_remove.1 += far;
                }
            }
            progress(chunk.len() as u64);
        }
        let ratio = |(a, b): (u64, u64)| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let concepts = plans
            .into_iter()
            .zip(tallies)
            .map(|(plan, t)| {
                let units = plan.draw.iter().map(|e| e.unit).collect();
                let n = t.draw_samples.max(1) as f64;
                let r = t.remove_samples.max(1) as f64;
                let effect = ConceptEffect {
                    draw_gain: (t.draw_after - t.draw_before) / n,
                    remove_cut: (t.remove_samples > 0).then(|| t.remove_cut / r),
                    far_change: ratio((
                        t.far_draw.0 + t.far_remove.0,
                        t.far_draw.1 + t.far_remove.1,
                    )),
                    samples: t.draw_samples,
                    remove_samples: t.remove_samples,
                    draw_before: t.draw_before / n,
                    draw_after: t.draw_after / n,
                    remove_before: t.remove_before / r,
                    remove_after: t.remove_after / r,
                    far_change_draw: ratio(t.far_draw),
                    far_change_remove: ratio(t.far_remove),
                    far_pixels_draw: t.far_draw.1,
                    far_pixels_remove: t.far_remove.1,
                    units,
                    draw_units: plan.draw.len(),
                    remove_units: plan.remove.len(),
                    strength: plan.strength,
                };
                (plan.concept, effect)
            })
            .collect();
        Ok(EditReport { concepts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn regions_fit_the_grid_and_are_deterministic() {
        let a = regions(200, (8, 8), 3);
        assert_eq!(a, regions(200, (8, 8), 3));
        assert_ne!(a, regions(200, (8, 8), 4));
        assert!(a
            .iter()
            .all(|r| (0..=5).contains(&r.y) && (0..=5).contains(&r.x)));
        // Every position is used.
        assert!(a.iter().any(|r| r.y == 0) && a.iter().any(|r| r.y == 5));
    }

    #[test]
    fn zones_mark_region_and_far_cells_by_chebyshev_distance() {
        // An 8×8 grid drawn at 16×16 pixels; region at cells (0..3, 0..3).
        let z = zones(Region { y: 0, x: 0 }, (8, 8), (16, 16));
        let at = |cy: usize, cx: usize| z[(cy * 2) * 16 + cx * 2];
        assert_eq!(at(0, 0), 1);
        assert_eq!(at(2, 2), 1);
        assert_eq!(at(4, 1), 0); // distance 2: near
        assert_eq!(at(5, 0), 2); // distance 3: far
        assert_eq!(at(7, 7), 2);
        assert_eq!(z.iter().filter(|&&v| v == 1).count(), 9 * 4);
        assert_eq!(z.iter().filter(|&&v| v == 2).count(), (64 - 25) * 4);
    }

    #[test]
    fn stroke_mask_pools_back_to_exactly_the_region() {
        let mask = stroke_mask(Region { y: 2, x: 4 }, (8, 8), 32).unwrap();
        let pooled = crate::edit::pool_mask(&mask, (8, 8), crate::edit::Pooling::Max).unwrap();
        assert_eq!(pooled.sum(Kind::Float).double_value(&[]), 9.0);
        assert_eq!(pooled.double_value(&[2, 4]), 1.0);
        assert_eq!(pooled.double_value(&[4, 6]), 1.0);
        assert_eq!(pooled.double_value(&[5, 6]), 0.0);
    }

    /// A tiny layer4 whose "bright" and "dark" rankings are all its units in order.
    fn tiny() -> (ProgGan, ProjectLayer) {
        use crate::project::{ConceptRanking, LevelTable};
        tch::manual_seed(4);
        let model = ProgGan::new(
            crate::model::ProgGanConfig {
                z_dim: 16,
                channels: vec![16, 8, 8, 4],
            },
            tch::Device::Cpu,
        );
        let (units, ..) = model.layer_shape("layer4").unwrap();
        let units = units as usize;
        let layer = ProjectLayer {
            layer: "layer4".into(),
            units,
            unit_labels: vec!["bright".into(); units],
            unit_iou: vec![0.1; units],
            rankings: ["bright", "dark"]
                .map(|concept| ConceptRanking {
                    concept: concept.into(),
                    metric: "iou".into(),
                    scores: vec![-0.1; units],
                    units: (0..units as i64).collect(),
                })
                .to_vec(),
            paint: Default::default(),
            levels: LevelTable::at_099(&vec![3.0; units]),
        };
        (model, layer)
    }

    #[test]
    fn context_draws_go_where_the_concept_has_room_and_fits() {
        let (model, layer) = tiny();
        let segmenter = crate::segment::testing::RedSegmenter::new();
        let eval = |draw_regions| {
            EditEval {
                generator: &model,
                segmenter: &segmenter,
                layer: &layer,
                concepts: vec!["bright".into(), "dark".into()],
                samples: 12,
                first_id: 100,
                units: Some(4),
                quantile: 0.99,
                strength: None,
                remove: true,
                seed: 3,
                batch: 5,
                choice: UnitChoice::Iou,
                draw_regions,
            }
            .run(&mut |_| {})
            .unwrap()
        };
        let random = eval(DrawRegions::Random);
        let profiles = ContextProfile::from_samples(
            &model,
            &segmenter,
            "layer4",
            &[1, 0],
            &(0..8).collect::<Vec<_>>(),
            4,
        )
        .unwrap();
        let context = eval(DrawRegions::Context(&profiles));
        assert!(
            context.concepts.values().any(|c| c.samples > 0),
            "no sample had room to draw: {context:?}"
        );
        // The regions the context draws should have been made in, chosen independently of
        // `run`, and the concept's share in them before the draw.
        let (_, gh, gw) = model.layer_shape("layer4").unwrap();
        let z = model.z_for_ids(&(100..112).collect::<Vec<_>>()).unwrap();
        let seg =
            segment_images(&segmenter, &model.forward(&z).unwrap(), tch::Device::Cpu).unwrap();
        let side = seg.size()[1];
        let labels = crate::dissect::stats::to_i64_vec(&seg).unwrap();
        let per = (side * side) as usize;
        let random_regions = regions(12, (gh, gw), 3);
        let mut moved = false;
        for (concept, profile) in ["bright", "dark"].iter().zip(&profiles) {
            let chosen: Vec<(usize, Region)> = labels
                .chunks(per)
                .enumerate()
                .filter_map(|(i, map)| {
                    profile
                        .best_region(map, (side, side), (gh, gw))
                        .map(|(r, _)| (i, r))
                })
                .collect();
            let c = &context.concepts[*concept];
            assert_eq!(c.samples, chosen.len() as u64, "{concept}");
            let before: Vec<f64> = chosen
                .iter()
                .map(|&(i, r)| {
                    let zones = zones(r, (gh, gw), (side, side));
                    let map = &labels[i * per..(i + 1) * per];
                    SampleMaps {
                        zones: &zones,
                        before: map,
                    }
                    .share(map, profile.class)
                })
                .collect();
            assert!(before.iter().all(|&b| b < super::super::context::MAX_SHARE));
            if !before.is_empty() {
                let mean = before.iter().sum::<f64>() / before.len() as f64;
                assert!(
                    (c.draw_before - mean).abs() < 1e-9,
                    "{concept}: {c:?} vs {mean}"
                );
            }
            moved |= chosen.iter().any(|&(i, r)| r != random_regions[i]);
            // Removes are unchanged: the random regions.
            let r = &random.concepts[*concept];
            assert_eq!(r.samples, 12);
            assert_eq!(
                (c.remove_samples, c.remove_cut),
                (r.remove_samples, r.remove_cut)
            );
        }
        assert!(moved, "every context region was the random one");
    }

    #[test]
    fn share_and_far_changes_count_pixels() {
        let zones = [1u8, 1, 0, 2, 2];
        let before = [3i64, 1, 3, 3, 3];
        let maps = SampleMaps {
            zones: &zones,
            before: &before,
        };
        assert_eq!(maps.share(&before, 3), 0.5);
        assert_eq!(maps.far_changes(&[3, 3, 0, 3, 0]), (1, 2));
    }
}
