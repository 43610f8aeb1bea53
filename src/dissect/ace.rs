//! Causal rankings: which units, switched on (or off) one at a time, draw (or remove) a
//! concept where they are switched. This is GAN Dissection's average causal effect
//! (ACE) per unit, measured with the same stroke geometry as [`super::causal`].
//!
//! IoU ranks units by where they fire; painting needs units that *make* the concept. The
//! two disagree most for large concepts (sky, grass), where a unit thresholded at its
//! 0.99 quantile covers at most 1% of pixels and so cannot reach a high IoU however well
//! it draws. For each of `samples` images (ids `first_id..`) and a random 3×3-cell region
//! per image, every unit is, on its own:
//!
//! - **drawn**: set to its 0.99 level inside the region; the unit's draw effect on a
//!   concept is the mean rise of the concept's pixel share inside the region;
//! - **removed**: set to 0 inside the region; its remove effect is the mean relative fall
//!   of the share over the images where the concept is present (≥ 5% of the region).
//!
//! The result is two rankings per concept, written to `dissect.json` beside the IoU ones
//! as `<concept>-causal-draw` and `<concept>-causal-remove` (score = −effect, lower is
//! better, as GAN Dissection's rankings are). Painting uses them when present.
//!
//! Each image is rendered once, kept, and every single-unit edit of it branches from
//! that render ([`Route::Branch`]): only what the 3×3-cell region reaches is recomputed,
//! for a batch of units at once. That equals a full render of each edit up to the
//! rounding of a differently tiled convolution.

use std::time::{Duration, Instant};

use tch::{Kind, Tensor};

use super::causal::{regions, zones as region_zones, PRESENT_SHARE, REGION_CELLS};
use super::collect::{latents, segment_images};
use super::DissectError;
use crate::edit::{render_edited, EditPlanes, Rendered, Route, StrokeMode};
use crate::model::ProgGan;
use crate::project::Ranking;
use crate::segment::Segmenter;

/// A remove ranking needs at least this many images whose region held the concept;
/// below that its order is mostly noise and painting is better off with IoU (measured on
/// the demo: with 4–7 such images, dome and door removed less by causal rank than by IoU).
pub const MIN_PRESENT: u64 = 12;

/// Ranking metrics written by this module (named in [`crate::project::metric`], where
/// painting reads them).
pub use crate::project::metric::{CAUSAL_DRAW as DRAW_METRIC, CAUSAL_REMOVE as REMOVE_METRIC};

/// What to measure.
pub struct UnitEffects<'a> {
    pub generator: &'a ProgGan,
    pub segmenter: &'a dyn Segmenter,
    pub layer: &'a str,
    /// Each unit's draw level (its 0.99 quantile).
    pub levels: &'a [f32],
    /// (concept, segmenter class) pairs.
    pub concepts: Vec<(String, i64)>,
    pub samples: u64,
    pub first_id: u64,
    pub seed: u64,
    /// Images per forward pass.
    pub batch: usize,
    /// Render every edit whole instead of branching from the image's kept render: the
    /// same effects up to float rounding, and slower; for checking.
    pub full_renders: bool,
}

/// Per concept, per unit: the mean effects.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectTable {
    pub concepts: Vec<String>,
    /// `[concept][unit]`: mean rise of the concept's share in the region when drawn.
    pub draw: Vec<Vec<f64>>,
    /// `[concept][unit]`: mean relative fall where present, when removed (0 when the
    /// concept was never present).
    pub remove: Vec<Vec<f64>>,
    /// Per concept: the images whose region held it (the remove effects' sample size).
    pub present: Vec<u64>,
}

impl EffectTable {
    /// The rankings for `dissect.json`: up to two per concept. A ranking without signal
    /// (no unit with a positive effect, or a concept present in fewer than
    /// [`MIN_PRESENT`] regions to remove it from) is left out, so painting falls back to
    /// the IoU ranking instead of an arbitrary order.
    pub fn rankings(&self) -> Vec<Ranking> {
        let mut out = Vec::new();
        for (c, concept) in self.concepts.iter().enumerate() {
            for (metric, effects) in [
                (DRAW_METRIC, &self.draw[c]),
                (REMOVE_METRIC, &self.remove[c]),
            ] {
                let observed = metric == DRAW_METRIC || self.present[c] >= MIN_PRESENT;
                if !observed || !effects.iter().any(|&e| e > 0.0) {
                    continue;
                }
                out.push(Ranking {
                    name: format!("{concept}-{metric}"),
                    concept: concept.clone(),
                    metric: metric.to_string(),
                    score: effects.iter().map(|e| -e).collect(),
                });
            }
        }
        out
    }
}

/// Share of each class inside the region (zone 1) of one label map.
fn region_shares(labels: &[i64], zones: &[u8], classes: usize) -> Vec<f64> {
    let mut counts = vec![0u64; classes];
    let mut inside = 0u64;
    for (&z, &l) in zones.iter().zip(labels) {
        if z == 1 {
            inside += 1;
            if (0..classes as i64).contains(&l) {
                counts[l as usize] += 1;
            }
        }
    }
    counts
        .into_iter()
        .map(|n| n as f64 / inside.max(1) as f64)
        .collect()
}

impl UnitEffects<'_> {
    pub fn run(&self, progress: &mut dyn FnMut(u64)) -> Result<EffectTable, DissectError> {
        let _guard = tch::no_grad_guard();
        let device = self.generator.device();
        let (units, gh, gw) = self.generator.layer_shape(self.layer)?;
        if self.levels.len() != units as usize {
            return Err(DissectError::Settings(format!(
                "{} levels for {units} units of `{}`",
                self.levels.len(),
                self.layer
            )));
        }
        let classes = self.segmenter.labels().len();
        let n_concepts = self.concepts.len();
        let mut draw = vec![vec![0f64; units as usize]; n_concepts];
        let mut remove = vec![vec![0f64; units as usize]; n_concepts];
        let mut present_count = vec![0u64; n_concepts];
        let all_regions = regions(self.samples, (gh, gw), self.seed);
        let levels = Tensor::f_from_slice(self.levels)?
            .f_to_device(device)?
            .f_view([1, units, 1, 1])?;
        let no_value = levels.f_zeros_like()?;
        let (mut render_time, mut segment_time) = (Duration::ZERO, Duration::ZERO);
        let identity = EditPlanes::empty((units, gh, gw), device);
        for (index, region) in all_regions.iter().enumerate() {
            let id = self.first_id + index as u64;
            let z = latents(self.generator, &[id])?;
            let features = self.generator.features(&z, self.layer)?;
            // The unedited render, kept: every single-unit edit below branches from it
            // and recomputes only what its region reaches.
            let Rendered {
                images: image,
                kept,
                ..
            } = render_edited(
                self.generator,
                self.layer,
                &features,
                &identity,
                Route::Record,
            )?;
            let kept = kept.into_iter().next().expect("one image");
            let before =
                super::stats::to_i64_vec(&segment_images(self.segmenter, &image, device)?)?;
            let seg_side = ((before.len() as f64).sqrt()) as i64;
            let zones = region_zones(*region, (gh, gw), (seg_side, seg_side));
            let shares_before = region_shares(&before, &zones, classes);
            // The region's cells at the layer grid.
            let cell_mask = Tensor::f_zeros([1, 1, gh, gw], (Kind::Float, device))?;
            let _ = cell_mask
                .f_narrow(2, region.y, REGION_CELLS.min(gh - region.y))?
                .f_narrow(3, region.x, REGION_CELLS.min(gw - region.x))?
                .f_fill_(1.0)?;
            let present: Vec<bool> = self
                .concepts
                .iter()
                .map(|(_, class)| shares_before[*class as usize] >= PRESENT_SHARE)
                .collect();
            for (c, p) in present.iter().enumerate() {
                present_count[c] += u64::from(*p);
            }
            let any_present = present.iter().any(|p| *p);
            let chunk = self.batch.max(1) as i64;
            let mut first = 0;
            while first < units {
                let k = chunk.min(units - first);
                // alpha [k, C, H, W]: unit first+j's channel in image j, inside the region.
                let onehot = Tensor::f_eye_m(k, units, (Kind::Float, device))?
                    .f_roll([first].as_slice(), [1i64].as_slice())?
                    .f_view([k, units, 1, 1])?;
                let alpha = onehot.f_mul(&cell_mask)?;
                for (mode, value) in [(StrokeMode::Draw, &levels), (StrokeMode::Remove, &no_value)]
                {
                    if mode == StrokeMode::Remove && !any_present {
                        continue;
                    }
                    let planes = EditPlanes {
                        alpha: alpha.shallow_clone(),
                        value: value.shallow_clone(),
                    };
                    let route = if self.full_renders {
                        Route::Full
                    } else {
                        Route::Branch(&kept)
                    };
                    let started = Instant::now();
                    let images =
                        render_edited(self.generator, self.layer, &features, &planes, route)?
                            .images;
                    render_time += started.elapsed();
                    let started = Instant::now();
                    let labels = super::stats::to_i64_vec(&segment_images(
                        self.segmenter,
                        &images,
                        device,
                    )?)?;
                    segment_time += started.elapsed();
                    let per = before.len();
                    for j in 0..k as usize {
                        let unit = first as usize + j;
                        let after = region_shares(&labels[j * per..(j + 1) * per], &zones, classes);
                        for (c, (_, class)) in self.concepts.iter().enumerate() {
                            let (b, a) = (shares_before[*class as usize], after[*class as usize]);
                            match mode {
                                StrokeMode::Draw => draw[c][unit] += a - b,
                                StrokeMode::Remove if present[c] => remove[c][unit] += (b - a) / b,
                                StrokeMode::Remove => {}
                            }
                        }
                    }
                }
                first += k;
            }
            progress(1);
        }
        tracing::info!(
            layer = self.layer,
            render_s = render_time.as_secs_f64(),
            segment_s = segment_time.as_secs_f64(),
            full_renders = self.full_renders,
            "causal effects: time rendering and segmenting the single-unit edits"
        );
        let samples = self.samples.max(1) as f64;
        for (draw, (remove, present)) in draw.iter_mut().zip(remove.iter_mut().zip(&present_count))
        {
            draw.iter_mut().for_each(|e| *e /= samples);
            remove
                .iter_mut()
                .for_each(|e| *e /= (*present).max(1) as f64);
        }
        Ok(EffectTable {
            concepts: self.concepts.iter().map(|(c, _)| c.clone()).collect(),
            draw,
            remove,
            present: present_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::{paint_planes, ResolvedStroke};
    use crate::model::ProgGanConfig;
    use crate::segment::testing::RedSegmenter;
    use tch::Device;

    /// The effect of drawing `unit` on sample `index`, computed the way the server paints
    /// (`paint_planes`, the stroke mask at image resolution), independently of `run`.
    fn painted_share_change(
        model: &ProgGan,
        segmenter: &RedSegmenter,
        level: f32,
        unit: i64,
        id: u64,
        region: super::super::causal::Region,
    ) -> f64 {
        let z = model.z_for_ids(&[id]).unwrap();
        let features = model.features(&z, "layer4").unwrap();
        let (c, h, w) = model.layer_shape("layer4").unwrap();
        let side = model.resolution();
        let zones = region_zones(region, (h, w), (side, side));
        let mask: Vec<f32> = zones.iter().map(|&z| f32::from(u8::from(z == 1))).collect();
        let stroke = ResolvedStroke {
            units: vec![unit],
            levels: vec![level],
            alphas: vec![1.0],
            mode: StrokeMode::Draw,
            strength: 1.0,
            mask: Tensor::from_slice(&mask).view([side, side]),
        };
        let planes = paint_planes("layer4", (c, h, w), &[stroke], Device::Cpu).unwrap();
        let share = |x: &Tensor| {
            let image = model.forward_from("layer4", x).unwrap();
            let labels = super::super::stats::to_i64_vec(
                &segmenter.segment(&image.clamp(-1.0, 1.0)).unwrap(),
            )
            .unwrap();
            region_shares(&labels, &zones, 2)[1]
        };
        share(&planes.apply(&features).unwrap()) - share(&features)
    }

    #[test]
    fn draw_effects_equal_painting_each_unit_alone() {
        let _guard = tch::no_grad_guard();
        tch::manual_seed(21);
        let model = ProgGan::new(
            ProgGanConfig {
                z_dim: 16,
                channels: vec![16, 8, 8, 4],
            },
            Device::Cpu,
        );
        let segmenter = RedSegmenter::new();
        let levels = vec![4.0f32; 8];
        let effects = UnitEffects {
            generator: &model,
            segmenter: &segmenter,
            layer: "layer4",
            levels: &levels,
            concepts: vec![("bright".into(), 1)],
            samples: 3,
            first_id: 50,
            seed: 9,
            batch: 3,
            full_renders: false,
        };
        let table = effects.run(&mut |_| {}).unwrap();
        assert_eq!(table.draw[0].len(), 8);
        let regions = regions(3, (8, 8), 9);
        for unit in [0usize, 5, 7] {
            let expected: f64 = (0..3)
                .map(|i| {
                    painted_share_change(
                        &model,
                        &segmenter,
                        4.0,
                        unit as i64,
                        50 + i,
                        regions[i as usize],
                    )
                })
                .sum::<f64>()
                / 3.0;
            assert!(
                (table.draw[0][unit] - expected).abs() < 1e-9,
                "unit {unit}: {} vs painted {expected}",
                table.draw[0][unit]
            );
        }
        assert!(
            table.draw[0].iter().any(|&e| e != 0.0),
            "no unit changed anything"
        );
    }

    #[test]
    fn branching_from_the_kept_render_measures_what_full_renders_measure() {
        let _guard = tch::no_grad_guard();
        tch::manual_seed(23);
        let model = ProgGan::new(
            ProgGanConfig {
                z_dim: 16,
                channels: vec![16, 16, 8, 8, 4],
            },
            Device::Cpu,
        );
        let segmenter = RedSegmenter::new();
        let levels: Vec<f32> = (0..16).map(|u| 1.0 + u as f32 / 4.0).collect();
        let effects = |full_renders| {
            UnitEffects {
                generator: &model,
                segmenter: &segmenter,
                layer: "layer4",
                levels: &levels,
                concepts: vec![("dark".into(), 0), ("bright".into(), 1)],
                samples: 6,
                first_id: 7,
                seed: 5,
                batch: 5,
                full_renders,
            }
            .run(&mut |_| {})
            .unwrap()
        };
        // The regions are small enough for the branches to be incremental.
        let layer = model.layer_index("layer4").unwrap();
        let incremental = regions(6, (8, 8), 5).into_iter().any(|r| {
            let cells = crate::model::incremental::Region {
                y0: r.y,
                y1: r.y + REGION_CELLS,
                x0: r.x,
                x1: r.x + REGION_CELLS,
            };
            let (_, fraction) = model.region_plan(layer, cells).unwrap().unwrap();
            fraction <= crate::model::incremental::FULL_RECOMPUTE_FRACTION
        });
        assert!(incremental);
        let (branched, full) = (effects(false), effects(true));
        assert_eq!(branched.present, full.present);
        assert!(full.present.iter().any(|&p| p > 0), "nothing to remove");
        for (a, b) in [
            (&branched.draw, &full.draw),
            (&branched.remove, &full.remove),
        ] {
            for (a, b) in a.iter().flatten().zip(b.iter().flatten()) {
                assert!((a - b).abs() < 1e-9, "{a} vs {b}");
            }
        }
        assert!(full.draw.iter().flatten().any(|&e| e != 0.0));
    }

    #[test]
    fn region_shares_count_only_the_region() {
        let labels = [0, 1, 1, 2, 1, 0];
        let zones = [1, 1, 0, 1, 2, 1];
        let shares = region_shares(&labels, &zones, 3);
        assert_eq!(shares, vec![0.5, 0.25, 0.25]);
    }

    #[test]
    fn rankings_score_minus_effect_per_concept_and_mode() {
        let table = EffectTable {
            concepts: vec!["tree".into(), "dome".into(), "door".into()],
            draw: vec![vec![0.1, 0.3], vec![0.0, -0.1], vec![0.2, 0.0]],
            remove: vec![vec![0.5, 0.2], vec![0.4, 0.0], vec![0.0, 0.0]],
            present: vec![MIN_PRESENT, MIN_PRESENT - 1, 0],
        };
        let rankings = table.rankings();
        let names: Vec<&str> = rankings.iter().map(|r| r.name.as_str()).collect();
        // dome draws nothing and was seldom present, door never: no rankings to mislead
        // painting.
        assert_eq!(
            names,
            vec!["tree-causal-draw", "tree-causal-remove", "door-causal-draw"]
        );
        assert_eq!(rankings[0].score, vec![-0.1, -0.3]);
        assert_eq!(rankings[1].metric, REMOVE_METRIC);
        assert_eq!(rankings[1].score, vec![-0.5, -0.2]);
    }
}
