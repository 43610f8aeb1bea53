//! Optimized interventions: GAN Dissection's `aceoptimize`. Instead of ranking units one
//! at a time ([`super::ace`]), learn, for one concept and one mode, a weight
//! `a_u ∈ [0, 1]` for every unit of a layer, together, so that editing with all of them
//! makes (or unmakes) the concept under the brush and nowhere else.
//!
//! Under a stroke's cells `m` (a 3×3-cell region of the layer grid) the edit is the
//! interventions' rule with `alpha = a_u`:
//!
//! ```text
//! draw:    x' = x·(1 − a·m) + a·m·level      level: each unit's 0.99 activation quantile
//! remove:  x' = x·(1 − a·m)
//! loss = ∓ mean_region p_c(G(x')) + λ_out · mean_outside (G(x') − G(x))² + λ₁ · Σ_u a_u
//! ```
//!
//! `p_c` is the segmenter's softmax probability of the concept, averaged over the region's
//! pixels (− to raise it when drawing, + to lower it when removing); the second term keeps
//! the rest of the image as it was; the L1 term keeps the set of units small. Each step
//! takes a batch of fresh samples (ids `first_id..`): drawing uses a random region per
//! image (or, given a context profile, the region where the concept fits best:
//! [`super::context`]), removing uses each image's region holding the most of the concept, and skips
//! images where even that holds under [`PRESENT_SHARE`]. Adam moves the weights, which are
//! projected back to `[0, 1]` after every step.
//!
//! The edited image is rendered by [`render_edited`]'s full route, as painting renders
//! it, with autograd flowing into the weights through the planes.
//!
//! Painting with the result applies `x·(1 − a_u) + a_u·strength·level_u` (draw) or
//! `x·(1 − a_u)` (remove) under the stroke, which is what was optimized. The weights are
//! stored in `dissect.json` as rankings `<concept>-ace-draw` and `<concept>-ace-remove`
//! with score `−a_u` (lower is better, as GAN Dissection's rankings are), so its client
//! lists them like the others.

use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use super::causal::{regions, zones, Region, PRESENT_SHARE};
use super::collect::latents;
use super::context::{all_regions, CellCounts, ContextProfile};
use super::DissectError;
use crate::edit::{render_edited, EditPlanes, Route, StrokeMode};
use crate::model::ProgGan;
use crate::project::Ranking;
use crate::segment::Segmenter;

/// Ranking metrics written by this module (named in [`crate::project::metric`], where
/// painting reads them), and the lightest learned weight painting uses.
pub use crate::project::metric::{LEARNED_DRAW as DRAW_METRIC, LEARNED_REMOVE as REMOVE_METRIC};
pub use crate::project::MIN_WEIGHT;

/// What to learn.
pub struct OptimizeEdit<'a> {
    pub generator: &'a ProgGan,
    pub segmenter: &'a dyn Segmenter,
    pub layer: &'a str,
    /// Each unit's draw level (its 0.99 quantile).
    pub levels: &'a [f32],
    pub concept: &'a str,
    /// The segmenter's class for the concept.
    pub class: i64,
    pub mode: StrokeMode,
    pub steps: usize,
    /// Images per step.
    pub batch: usize,
    pub lr: f64,
    /// λ₁, per unit at full weight.
    pub l1: f64,
    /// λ_out, on the mean squared pixel change outside the region.
    pub outside: f64,
    pub first_id: u64,
    pub seed: u64,
    /// Where draws are brushed: `None`, a random region per image; else, per image, the
    /// region where the concept fits best by this profile ([`super::context`]), skipping
    /// images where the concept covers half of every region.
    pub context: Option<&'a ContextProfile>,
}

/// What was learned.
#[derive(Clone, Debug)]
pub struct LearnedEdit {
    pub concept: String,
    pub mode: StrokeMode,
    /// One per unit, in `[0, 1]`.
    pub weights: Vec<f32>,
    /// Mean probability of the concept in the region over the first and the last tenth
    /// of the steps (with the edit as it stood then).
    pub region_prob_start: f64,
    pub region_prob_end: f64,
    /// Images the steps trained on (removal skips images without the concept).
    pub images: u64,
}

impl LearnedEdit {
    /// The units painting uses (weight at least [`MIN_WEIGHT`]), heaviest first.
    pub fn units(&self) -> Vec<(i64, f32)> {
        let mut units: Vec<(i64, f32)> = self
            .weights
            .iter()
            .enumerate()
            .filter(|(_, &w)| w >= MIN_WEIGHT)
            .map(|(u, &w)| (u as i64, w))
            .collect();
        units.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        units
    }

    pub fn ranking(&self) -> Ranking {
        let metric = match self.mode {
            StrokeMode::Draw => DRAW_METRIC,
            StrokeMode::Remove => REMOVE_METRIC,
        };
        Ranking {
            name: format!("{}-{metric}", self.concept),
            concept: self.concept.clone(),
            metric: metric.to_string(),
            score: self.weights.iter().map(|&w| -f64::from(w)).collect(),
        }
    }
}

/// The region of a `grid` holding the most of `class` in a label map `[h, w]`, and that
/// share (the first such region, row by row, on a tie).
fn richest_region(labels: &[i64], size: (i64, i64), grid: (i64, i64), class: i64) -> (Region, f64) {
    let classes = usize::try_from(class).map_or(0, |c| c + 1);
    let cells = CellCounts::new(labels, size, grid, classes);
    let mut best = (Region { y: 0, x: 0 }, -1.0);
    for region in all_regions(grid) {
        let share = cells.share(region, class);
        if share > best.1 {
            best = (region, share);
        }
    }
    best
}

/// `[n, 1, h, w]` f32: 1 where `zones` (per image, flattened) equal `zone`.
fn zone_mask(
    maps: &[Vec<u8>],
    size: (i64, i64),
    zone: u8,
    device: Device,
) -> Result<Tensor, DissectError> {
    let values: Vec<f32> = maps
        .iter()
        .flat_map(|m| m.iter().map(|&z| f32::from(u8::from(z == zone))))
        .collect();
    Ok(Tensor::f_from_slice(&values)?
        .f_view([maps.len() as i64, 1, size.0, size.1])?
        .f_to_device(device)?)
}

impl OptimizeEdit<'_> {
    pub fn run(&self, progress: &mut dyn FnMut(u64)) -> Result<LearnedEdit, DissectError> {
        let device = self.generator.device();
        let (units, gh, gw) = self.generator.layer_shape(self.layer)?;
        let grid = (gh, gw);
        if self.levels.len() != units as usize {
            return Err(DissectError::Settings(format!(
                "{} levels for {units} units of `{}`",
                self.levels.len(),
                self.layer
            )));
        }
        let side = self.generator.resolution();
        let levels = Tensor::f_from_slice(self.levels)?
            .f_to_device(device)?
            .f_view([1, units, 1, 1])?;
        let vs = nn::VarStore::new(device);
        let mut weight = vs.root().var("weight", &[units], nn::Init::Const(0.0));
        let mut opt = nn::Adam::default().build(&vs, self.lr)?;
        let batch = self.batch.max(1);
        let random_regions = regions((self.steps * batch) as u64, grid, self.seed);
        let tenth = (self.steps / 10).max(1);
        let (mut start, mut end) = ((0.0, 0u64), (0.0, 0u64));
        let mut images = 0u64;
        for step in 0..self.steps {
            let ids: Vec<u64> = (0..batch as u64)
                .map(|j| self.first_id + (step * batch) as u64 + j)
                .collect();
            let z = latents(self.generator, &ids)?;
            let (features, before, labels) = tch::no_grad(|| -> Result<_, DissectError> {
                let features = self.generator.features(&z, self.layer)?;
                let before = self.generator.forward_from(self.layer, &features)?;
                let labels = self.segmenter.segment(&before.f_clamp(-1.0, 1.0)?)?;
                Ok((features, before, labels))
            })?;
            let (seg_h, seg_w) = (labels.size()[1], labels.size()[2]);
            let labels = super::stats::to_i64_vec(&labels)?;
            let per = (seg_h * seg_w) as usize;
            // The images and regions this step trains on.
            let mut chosen: Vec<(usize, Region)> = Vec::new();
            for i in 0..batch {
                match self.mode {
                    StrokeMode::Draw => match self.context {
                        None => chosen.push((i, random_regions[step * batch + i])),
                        Some(profile) => {
                            let map = &labels[i * per..(i + 1) * per];
                            if let Some((region, _)) =
                                profile.best_region(map, (seg_h, seg_w), grid)
                            {
                                chosen.push((i, region));
                            }
                        }
                    },
                    StrokeMode::Remove => {
                        let map = &labels[i * per..(i + 1) * per];
                        let (region, share) = richest_region(map, (seg_h, seg_w), grid, self.class);
                        if share >= PRESENT_SHARE {
                            chosen.push((i, region));
                        }
                    }
                }
            }
            progress(1);
            if chosen.is_empty() {
                continue;
            }
            images += chosen.len() as u64;
            let index =
                Tensor::f_from_slice(&chosen.iter().map(|&(i, _)| i as i64).collect::<Vec<_>>())?
                    .f_to_device(device)?;
            let features = features.f_index_select(0, &index)?;
            let before = before.f_index_select(0, &index)?;
            let seg_zones: Vec<Vec<u8>> = chosen
                .iter()
                .map(|&(_, r)| zones(r, grid, (seg_h, seg_w)))
                .collect();
            let image_zones: Vec<Vec<u8>> = chosen
                .iter()
                .map(|&(_, r)| zones(r, grid, (side, side)))
                .collect();
            let cell_zones: Vec<Vec<u8>> =
                chosen.iter().map(|&(_, r)| zones(r, grid, grid)).collect();
            let cells = zone_mask(&cell_zones, grid, 1, device)?;
            let region = zone_mask(&seg_zones, (seg_h, seg_w), 1, device)?;
            let outside = zone_mask(&image_zones, (side, side), 1, device)?
                .f_neg()?
                .f_add_scalar(1.0)?;

            // The stroke's planes, differentiable in the weights: alpha [n, C, H, W], and
            // the level (draw) or 0 (remove) per unit.
            let planes = EditPlanes {
                alpha: weight.f_view([1, units, 1, 1])?.f_mul(&cells)?,
                value: match self.mode {
                    StrokeMode::Draw => levels.shallow_clone(),
                    StrokeMode::Remove => levels.f_zeros_like()?,
                },
            };
            let image =
                render_edited(self.generator, self.layer, &features, &planes, Route::Full)?.images;
            let scores = self
                .segmenter
                .differentiable_scores(&image.f_clamp(-1.0, 1.0)?)?;
            let prob = scores
                .f_softmax(1, Kind::Float)?
                .f_narrow(1, self.class, 1)?; // [n, 1, h, w]
            let region_prob = prob
                .f_mul(&region)?
                .f_sum(Kind::Float)?
                .f_div(&region.f_sum(Kind::Float)?)?;
            let change = image
                .f_sub(&before)?
                .f_square()?
                .f_mul(&outside)?
                .f_sum(Kind::Float)?
                .f_div(
                    &outside
                        .f_sum(Kind::Float)?
                        .f_mul_scalar(3.0)?
                        .f_clamp_min(1.0)?,
                )?;
            let sign = match self.mode {
                StrokeMode::Draw => -1.0,
                StrokeMode::Remove => 1.0,
            };
            let loss = region_prob
                .f_mul_scalar(sign)?
                .f_add(&change.f_mul_scalar(self.outside)?)?
                .f_add(&weight.f_sum(Kind::Float)?.f_mul_scalar(self.l1)?)?;
            opt.zero_grad();
            loss.f_backward()?;
            opt.step();
            let _ = tch::no_grad(|| weight.f_clamp_(0.0, 1.0))?;

            let p = region_prob.f_double_value(&[])?;
            if step < tenth {
                start = (start.0 + p, start.1 + 1);
            }
            if step >= self.steps.saturating_sub(tenth) {
                end = (end.0 + p, end.1 + 1);
            }
        }
        let mean = |(sum, n): (f64, u64)| if n == 0 { 0.0 } else { sum / n as f64 };
        let weights: Vec<f32> =
            Vec::<f32>::try_from(weight.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?)?;
        Ok(LearnedEdit {
            concept: self.concept.to_string(),
            mode: self.mode,
            weights,
            region_prob_start: mean(start),
            region_prob_end: mean(end),
            images,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProgGanConfig;
    use crate::segment::testing::RedSegmenter;

    fn model() -> ProgGan {
        tch::manual_seed(4);
        ProgGan::new(
            ProgGanConfig {
                z_dim: 16,
                channels: vec![16, 8, 8, 4],
            },
            Device::Cpu,
        )
    }

    fn learn(model: &ProgGan, mode: StrokeMode, l1: f64) -> LearnedEdit {
        learn_in(model, mode, l1, None)
    }

    fn learn_in(
        model: &ProgGan,
        mode: StrokeMode,
        l1: f64,
        context: Option<&ContextProfile>,
    ) -> LearnedEdit {
        let segmenter = RedSegmenter::new();
        let levels = vec![3.0f32; 8];
        OptimizeEdit {
            generator: model,
            segmenter: &segmenter,
            layer: "layer4",
            levels: &levels,
            concept: "bright",
            class: 1,
            mode,
            steps: 40,
            batch: 4,
            lr: 0.05,
            l1,
            outside: 0.1,
            first_id: 0,
            seed: 2,
            context,
        }
        .run(&mut |_| {})
        .unwrap()
    }

    #[test]
    fn learned_draw_weights_raise_the_concept_in_the_region() {
        let model = model();
        let learned = learn(&model, StrokeMode::Draw, 0.001);
        assert_eq!(learned.weights.len(), 8);
        assert!(learned.weights.iter().all(|w| (0.0..=1.0).contains(w)));
        assert!(!learned.units().is_empty(), "{:?}", learned.weights);
        assert!(
            learned.region_prob_end > learned.region_prob_start,
            "{} → {}",
            learned.region_prob_start,
            learned.region_prob_end
        );
        let ranking = learned.ranking();
        assert_eq!(ranking.name, "bright-ace-draw");
        assert_eq!(ranking.score[0], -f64::from(learned.weights[0]));
    }

    #[test]
    fn a_heavy_l1_penalty_leaves_no_units() {
        let model = model();
        let learned = learn(&model, StrokeMode::Draw, 10.0);
        assert!(learned.units().is_empty(), "{:?}", learned.weights);
    }

    #[test]
    fn removal_trains_only_on_regions_holding_the_concept() {
        let model = model();
        let learned = learn(&model, StrokeMode::Remove, 0.001);
        assert!(learned.images > 0 && learned.images <= 160);
        assert!(
            learned.region_prob_end <= learned.region_prob_start + 1e-6,
            "{} → {}",
            learned.region_prob_start,
            learned.region_prob_end
        );
    }

    #[test]
    fn context_draws_train_on_the_images_with_a_region_that_fits() {
        let model = model();
        let segmenter = RedSegmenter::new();
        let ids: Vec<u64> = (1000..1016).collect();
        let profile = ContextProfile::from_samples(&model, &segmenter, "layer4", &[1], &ids, 8)
            .unwrap()
            .remove(0);
        assert!(profile.pixels > 0);
        let learned = learn_in(&model, StrokeMode::Draw, 0.001, Some(&profile));
        // The images of the 40 steps × 4 (ids 0..160) where the profile finds a region.
        let (_, gh, gw) = model.layer_shape("layer4").unwrap();
        let z = model.z_for_ids(&(0..160).collect::<Vec<_>>()).unwrap();
        let labels = segmenter
            .segment(&model.forward(&z).unwrap().clamp(-1.0, 1.0))
            .unwrap();
        let side = labels.size()[1];
        let labels = super::super::stats::to_i64_vec(&labels).unwrap();
        let fitting = labels
            .chunks((side * side) as usize)
            .filter(|map| profile.best_region(map, (side, side), (gh, gw)).is_some())
            .count() as u64;
        assert!(fitting > 0);
        assert_eq!(learned.images, fitting);
        // A profile that never saw the concept places no draw, so nothing is learned.
        let blind = ContextProfile::learn(&[], (side, side), (gh, gw), 1, 2);
        assert_eq!(
            learn_in(&model, StrokeMode::Draw, 0.001, Some(&blind)).images,
            0
        );
    }

    #[test]
    fn the_richest_region_is_where_the_class_is() {
        // 8×8 labels on an 8×8 grid: class 1 fills the bottom-right 3×3 cells.
        let mut labels = vec![0i64; 64];
        for y in 5..8 {
            for x in 5..8 {
                labels[y * 8 + x] = 1;
            }
        }
        let (region, share) = richest_region(&labels, (8, 8), (8, 8), 1);
        assert_eq!(region, Region { y: 5, x: 5 });
        assert_eq!(share, 1.0);
    }
}
