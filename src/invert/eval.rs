//! Measuring the inversion on pictures the generator never made: rendered scenes from the
//! held-out range (`demo::data::heldout_seed`, from [`FIRST_SCENE`] on, clear of the
//! segmenter's and the realism figures' scenes), at the generator's resolution.
//!
//! For each scene: invert it; PSNR of each step's reconstruction; the segmenter's labels
//! of the final reconstruction against the scene's true labels (per-class IoU summed over
//! all scenes, mean over the classes that occur, as `demo::segmenter::heldout_iou`); then
//! one draw stroke of `concept` on the inverted picture, with eval-edits' definitions
//! (`dissect::causal`): a 3×3-cell region per scene from the same deterministic
//! `regions(scenes, grid, seed)`, `draw_gain` = mean over scenes of the concept's share of
//! the region's segmentation pixels after − before, and `far_change` = the share of far
//! pixels (more than 2 cells from the region) whose segmented class changed. "Before" is
//! the uploaded picture; "after" is what the editor shows, [`Fit::render_edit_at`](super::Fit::render_edit_at).
//! The same stroke is measured at each of `other_layers` too (with regions on that
//! layer's grid, as `eval-edits --layer` does): an earlier layer goes through the fitted z.

use std::sync::atomic::AtomicBool;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::{invert, Encoder, InvertError, InvertSettings};
use crate::demo::data::{heldout_seed, render_batch};
use crate::dissect::causal::{regions, zones};
use crate::edit::{intervention_planes, Pooling, StrokeMode};
use crate::model::ProgGan;
use crate::project::{ProjectError, ProjectLayer, UnitChoice};
use crate::segment::Segmenter;

/// The first held-out scene index used here: the segmenter's held-out scenes are numbered
/// from 0 and the realism figures' from 1 000 000.
pub const FIRST_SCENE: u64 = 2_000_000;

pub struct InvertEval<'a> {
    pub generator: &'a ProgGan,
    pub encoder: &'a Encoder,
    pub segmenter: &'a dyn Segmenter,
    pub layer: &'a ProjectLayer,
    /// Other dissected layers to paint the inverted picture at (figures in `by_layer`).
    pub other_layers: Vec<&'a ProjectLayer>,
    pub settings: InvertSettings,
    pub scenes: u64,
    /// Held-out scene indices `first_scene..first_scene + scenes`.
    pub first_scene: u64,
    pub concept: String,
    pub units: usize,
    pub quantile: f64,
    pub strength: f32,
    pub choice: UnitChoice,
    /// Seed of the stroke regions.
    pub seed: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct InvertEvalReport {
    pub scenes: u64,
    pub resolution: i64,
    pub psnr_encoder_db_median: f64,
    pub psnr_optimized_db_median: f64,
    pub psnr_adapted_db_median: f64,
    /// The segmenter on the reconstructions, against the scenes' true labels.
    pub reconstruction_miou: f64,
    /// The segmenter on the scenes themselves, for reference.
    pub scene_miou: f64,
    pub concept: String,
    pub draw_gain: f64,
    pub far_change: f64,
    pub time_p50_s: f64,
    pub time_p90_s: f64,
    /// The fitted z's relative error at the inverted layer (median; `None` without a z).
    pub z_error_median: Option<f64>,
    /// The stroke at the inverted layer and at each of the other layers.
    pub by_layer: Vec<LayerEditFigures>,
}

/// One layer's draw stroke on the inverted pictures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LayerEditFigures {
    pub layer: String,
    pub draw_gain: f64,
    pub far_change: f64,
}

/// What a layer's stroke needs, worked out once for every scene.
struct LayerStroke<'a> {
    name: &'a str,
    shape: (i64, i64, i64),
    edits: Vec<crate::edit::UnitEdit>,
    regions: Vec<crate::dissect::causal::Region>,
    gain: f64,
    far_changed: u64,
    far_total: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Invert(#[from] InvertError),
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Segment(#[from] crate::segment::SegmentError),
    #[error(transparent)]
    Edit(#[from] crate::edit::EditError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Settings(String),
}

/// Per-class intersection and union counts.
struct IouTally {
    inter: Vec<f64>,
    union: Vec<f64>,
}

impl IouTally {
    fn new(classes: usize) -> Self {
        IouTally {
            inter: vec![0.0; classes],
            union: vec![0.0; classes],
        }
    }

    fn add(&mut self, predicted: &[i64], truth: &[i64]) {
        for c in 0..self.inter.len() as i64 {
            for (&p, &t) in predicted.iter().zip(truth) {
                let (p, t) = (p == c, t == c);
                self.inter[c as usize] += f64::from(u8::from(p && t));
                self.union[c as usize] += f64::from(u8::from(p || t));
            }
        }
    }

    /// Mean IoU over the classes that occur (in the prediction or the truth).
    fn mean(&self) -> f64 {
        let present: Vec<f64> = self
            .inter
            .iter()
            .zip(&self.union)
            .filter(|(_, u)| **u > 0.0)
            .map(|(i, u)| i / u)
            .collect();
        present.iter().sum::<f64>() / present.len().max(1) as f64
    }
}

fn to_i64_vec(t: &Tensor) -> Result<Vec<i64>, tch::TchError> {
    let flat = t
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Int64)?
        .f_flatten(0, -1)?;
    let mut out = vec![0i64; flat.numel()];
    let n = out.len();
    flat.f_copy_data(&mut out, n)?;
    Ok(out)
}

/// The `q` quantile (nearest rank) of `values`.
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl InvertEval<'_> {
    pub fn run(&self, progress: &mut dyn FnMut(u64)) -> Result<InvertEvalReport, EvalError> {
        let layer = self.layer.layer.as_str();
        let side = self.generator.resolution();
        let sizes = crate::demo::scene::MIN_SIZE..=crate::demo::scene::MAX_SIZE;
        if !sizes.contains(&(side as usize)) {
            return Err(EvalError::Settings(format!(
                "the generator makes {side}² pictures; rendered scenes come in {}² to {}²",
                sizes.start(),
                sizes.end()
            )));
        }
        let labels = self.segmenter.labels();
        let class = labels
            .iter()
            .position(|l| *l == self.concept)
            .ok_or_else(|| {
                EvalError::Settings(format!(
                    "concept `{}` is not one of the segmenter's labels ({})",
                    self.concept,
                    labels.join(", ")
                ))
            })? as i64;
        let mut strokes = Vec::new();
        for painted in std::iter::once(self.layer).chain(self.other_layers.iter().copied()) {
            let name = painted.layer.as_str();
            let shape = self.generator.layer_shape(name)?;
            strokes.push(LayerStroke {
                name,
                shape,
                edits: painted.stroke_edits(
                    &self.concept,
                    StrokeMode::Draw,
                    self.units,
                    self.strength,
                    self.quantile,
                    self.choice,
                )?,
                regions: regions(self.scenes, (shape.1, shape.2), self.seed),
                gain: 0.0,
                far_changed: 0,
                far_total: 0,
            });
        }
        let device = self.generator.device();
        let mut scene_iou = IouTally::new(labels.len());
        let mut reconstruction_iou = IouTally::new(labels.len());
        let (mut psnr0, mut psnr2, mut psnr3, mut times) = (vec![], vec![], vec![], vec![]);
        let mut z_errors = Vec::new();
        let segment = |images: &Tensor| -> Result<Vec<i64>, EvalError> {
            let clamped = images.f_clamp(-1.0, 1.0)?;
            Ok(to_i64_vec(&self.segmenter.segment(&clamped)?)?)
        };
        for i in 0..self.scenes as usize {
            let scene = render_batch(&[heldout_seed(self.first_scene + i as u64)], side as usize);
            let picture = scene.images.f_to_device(device)?;
            let truth = to_i64_vec(&scene.labels)?;
            let inversion = invert(
                self.generator,
                self.encoder,
                layer,
                &picture,
                &self.settings,
                &mut |_, _, _| {},
                &AtomicBool::new(false),
            )?;
            let r = &inversion.report;
            psnr0.push(r.psnr_encoder_db);
            psnr2.push(r.psnr_optimized_db);
            psnr3.push(r.psnr_adapted_db);
            times.push(r.total_s);
            z_errors.extend(r.z_error);

            let _guard = tch::no_grad_guard();
            let before = segment(&inversion.target)?;
            if before.len() != truth.len() {
                return Err(EvalError::Settings(format!(
                    "the segmenter labels {} pixels of a {side}² picture",
                    before.len()
                )));
            }
            scene_iou.add(&before, &truth);
            reconstruction_iou.add(&segment(&inversion.reconstruction)?, &truth);

            let adapted = inversion.generator(self.generator)?;
            for stroke in &mut strokes {
                let grid = (stroke.shape.1, stroke.shape.2);
                let zone = zones(stroke.regions[i], grid, (side, side));
                let mask_values: Vec<f32> =
                    zone.iter().map(|&z| f32::from(u8::from(z == 1))).collect();
                let mask = Tensor::f_from_slice(&mask_values)?.f_view([side, side])?;
                let planes = intervention_planes(
                    stroke.name,
                    stroke.shape,
                    &stroke.edits,
                    Some(&mask),
                    Pooling::Max,
                    device,
                )?;
                let after = segment(&inversion.render_edit_at(&adapted, stroke.name, &planes)?)?;
                let share = |labels: &[i64]| {
                    let (inside, hits) = zone
                        .iter()
                        .zip(labels)
                        .filter(|(&z, _)| z == 1)
                        .fold((0u64, 0u64), |(n, h), (_, &l)| {
                            (n + 1, h + u64::from(l == class))
                        });
                    hits as f64 / inside.max(1) as f64
                };
                stroke.gain += share(&after) - share(&before);
                for ((&z, &b), &a) in zone.iter().zip(&before).zip(&after) {
                    if z == 2 {
                        stroke.far_total += 1;
                        stroke.far_changed += u64::from(a != b);
                    }
                }
            }
            progress(1);
        }
        let by_layer: Vec<LayerEditFigures> = strokes
            .iter()
            .map(|s| LayerEditFigures {
                layer: s.name.to_string(),
                draw_gain: s.gain / self.scenes.max(1) as f64,
                far_change: s.far_changed as f64 / s.far_total.max(1) as f64,
            })
            .collect();
        Ok(InvertEvalReport {
            scenes: self.scenes,
            resolution: side,
            psnr_encoder_db_median: quantile(&psnr0, 0.5),
            psnr_optimized_db_median: quantile(&psnr2, 0.5),
            psnr_adapted_db_median: quantile(&psnr3, 0.5),
            reconstruction_miou: reconstruction_iou.mean(),
            scene_miou: scene_iou.mean(),
            concept: self.concept.clone(),
            draw_gain: by_layer[0].draw_gain,
            far_change: by_layer[0].far_change,
            time_p50_s: quantile(&times, 0.5),
            time_p90_s: quantile(&times, 0.9),
            z_error_median: (!z_errors.is_empty()).then(|| quantile(&z_errors, 0.5)),
            by_layer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_tally_means_over_the_classes_that_occur() {
        let mut tally = IouTally::new(4);
        // Class 0: 2 shared of 3 → 2/3; class 1: 1 of 2 → 1/2; classes 2, 3 never occur.
        tally.add(&[0, 0, 1, 1], &[0, 0, 0, 1]);
        assert!((tally.mean() - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.5), 2.0);
        assert_eq!(
            quantile(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 0.9),
            9.0
        );
        assert!(quantile(&[], 0.5).is_nan());
    }
}
