//! The timed cases on one model, and the intervention they time.
//!
//! The bench caches the prefix at the edited layer for 8 images, builds one intervention
//! (the `units` most active units drawn at their peak under a centred mask) and times,
//! at batch 1, the suffix through to u8 pixels: the exact f32 path, the fast path, each
//! with PNG encoding, and an incremental re-render of a 2×2-cell stroke (at the centre,
//! the worst case; at a corner; and at every place in turn). The PyTorch reference's
//! cases run in the same rounds, so every ratio is taken between cases timed seconds
//! apart (see [`super::rounds`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use tch::{Device, Kind, Tensor};

use super::reference::{max_pixel_diff, Reference, ReferenceCase, ReferenceInputs};
use super::report::{Latencies, ModelReport, Ratios, TorchReport, TunedMalloc, WorkFraction};
use super::rounds::{reps_per_round, run_rounds, Ours, RoundCase, Timed, WARM_UP_REPS};
use super::stats::{round3, Latency, RatioStats, RoundSamples};
use crate::edit::{self, EditPlanes, Pooling, UnitEdit};
use crate::imageio;
use crate::model::{IncrementalStats, ProgGan, SuffixActivations};

/// What the server runs to render an edit of `layer` when it holds the layer's activation
/// `prefix` `[N, C, H, W]`: the planes applied, then the suffix (as the inference worker's
/// full renders do). Returns the image `[N, 3, R, R]` f32. The fast and exact cases time
/// exactly this, so it is the one place to change when the server's render path changes.
pub fn render_edit(
    model: &ProgGan,
    layer: &str,
    prefix: &Tensor,
    planes: &EditPlanes,
) -> anyhow::Result<Tensor> {
    Ok(edit::render_edited(model, layer, prefix, planes, edit::Route::Full)?.images)
}

/// What the server runs to update a kept render `kept` of one image of `layer` under new planes
/// (the inference worker's re-render): only what changed is recomputed.
pub fn rerender_edit(
    model: &ProgGan,
    layer: &str,
    kept: &mut SuffixActivations,
    prefix: &Tensor,
    planes: &EditPlanes,
) -> anyhow::Result<(Tensor, IncrementalStats)> {
    let rendered = edit::render_edited(model, layer, prefix, planes, edit::Route::Update(kept))?;
    let stats = rendered
        .incremental
        .ok_or_else(|| anyhow::anyhow!("the update route reported no incremental work"))?;
    Ok((rendered.images, stats))
}

/// u8 pixels of `[N, 3, R, R]`, as the server produces them (this copies to the host, so
/// it also waits for the GPU).
pub fn pixels(images: &Tensor) -> anyhow::Result<Vec<image::RgbImage>> {
    Ok(imageio::to_rgb_images(images)?)
}

/// PSNR in dB of `a` against `b`, over every pixel of every image.
pub fn psnr(a: &[image::RgbImage], b: &[image::RgbImage]) -> f64 {
    let (mut sum, mut count) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.as_raw().iter().zip(y.as_raw()) {
            let d = *p as f64 - *q as f64;
            sum += d * d;
            count += 1.0;
        }
    }
    let mse = (sum / count).max(1e-10);
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// The bench's intervention on one model: the cached prefix and the planes.
pub struct Scene {
    /// The latents of the 8 images `[8, D]`.
    pub z: Tensor,
    /// Exact prefix activations of 8 images `[8, C, H, W]`.
    pub prefix: Tensor,
    pub planes: EditPlanes,
    /// A second stroke on top of `planes`, covering 2×2 cells at the centre / a corner.
    pub centre_stroke: EditPlanes,
    pub corner_stroke: EditPlanes,
    /// The same stroke at every placement of a 2×2 window on the grid.
    pub every_stroke: Vec<EditPlanes>,
}

fn grid_mask(h: i64, w: i64, rows: (i64, i64), cols: (i64, i64), device: Device) -> Tensor {
    let mask = Tensor::zeros([h, w], (Kind::Float, device));
    let _ = mask
        .narrow(0, rows.0, rows.1 - rows.0)
        .narrow(1, cols.0, cols.1 - cols.0)
        .fill_(1.0);
    mask
}

/// The intervention on `model` (computing exactly): prefix, planes and strokes.
pub fn scene(model: &ProgGan, layer: &str, units: i64) -> anyhow::Result<Scene> {
    let z = model.z_for_ids(&(0..8).collect::<Vec<u64>>())?;
    let prefix = model.features(&z, layer)?;
    let shape = model.layer_shape(layer)?;
    let (c, h, w) = shape;
    // The `units` most active units, drawn at their highest activation over the images:
    // a strong, visible edit, like painting a concept at its 0.99 level.
    let peak = prefix.f_amax([0i64, 2, 3].as_slice(), false)?;
    let (values, order) = peak.f_sort(0, true)?;
    let count = units.min(c) as usize;
    let values = Vec::<f32>::try_from(values.f_to_device(Device::Cpu)?)?;
    let order = Vec::<i64>::try_from(order.f_to_device(Device::Cpu)?)?;
    let draw: Vec<UnitEdit> = (0..count)
        .map(|i| UnitEdit {
            unit: order[i],
            alpha: 1.0,
            value: values[i],
        })
        .collect();
    let remove: Vec<UnitEdit> = draw.iter().map(|e| UnitEdit { value: 0.0, ..*e }).collect();
    let device = model.device();
    let half = grid_mask(h, w, (h / 4, 3 * h / 4), (w / 4, 3 * w / 4), device);
    let planes = edit::intervention_planes(layer, shape, &draw, Some(&half), Pooling::Max, device)?;
    let stroke = |rows, cols| -> anyhow::Result<EditPlanes> {
        let mask = grid_mask(h, w, rows, cols, device);
        let mut both = EditPlanes {
            alpha: planes.alpha.copy(),
            value: planes.value.copy(),
        };
        let new =
            edit::intervention_planes(layer, shape, &remove, Some(&mask), Pooling::Max, device)?;
        both.over(&new)?;
        Ok(both)
    };
    let mut every_stroke = Vec::new();
    for y in 0..h - 1 {
        for x in 0..w - 1 {
            every_stroke.push(stroke((y, y + 2), (x, x + 2))?);
        }
    }
    Ok(Scene {
        centre_stroke: stroke((h / 2 - 1, h / 2 + 1), (w / 2 - 1, w / 2 + 1))?,
        corner_stroke: stroke((0, 2), (0, 2))?,
        every_stroke,
        z,
        prefix,
        planes,
    })
}

/// How to bench one model.
pub struct ModelSettings<'a> {
    pub name: &'a str,
    pub layer: &'a str,
    /// Units in the intervention.
    pub units: i64,
    /// Timed runs per case in all (split over the rounds).
    pub iters: usize,
    pub rounds: usize,
    /// Batch sizes for the throughput case.
    pub batches: &'a [i64],
    /// The Python that runs the PyTorch reference; `None` skips it.
    pub python: Option<&'a Path>,
    /// Where the reference's inputs and logs go.
    pub scratch: &'a Path,
}

/// The cases of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Exact,
    ExactPng,
    Fast,
    FastPng,
    FastFromZ,
    PngEncode,
    JpegEncode,
    IncrementalCentre,
    IncrementalCorner,
    IncrementalAny,
    TorchFp32,
    TorchLow,
    TorchFp32TunedMalloc,
}

/// One incremental case: alternate between the edit and the edit plus one 2×2-cell stroke
/// (at one place, or cycling through `strokes`), so every render changes exactly those
/// cells, as a brush stroke does. The planes are applied inside the timed call, as in the
/// fast case. Each render's share of a full pass goes to `fractions`.
fn incremental<'a>(
    model: &'a ProgGan,
    layer: &'a str,
    base: &'a EditPlanes,
    strokes: Vec<&'a EditPlanes>,
    prefix: &'a Tensor,
    mut kept: SuffixActivations,
    fractions: &'a mut Vec<f64>,
) -> impl FnMut() -> anyhow::Result<()> + 'a {
    let mut step = 0usize;
    move || {
        step += 1;
        let planes = if step % 2 == 1 {
            strokes[(step / 2) % strokes.len()]
        } else {
            base
        };
        let (image, stats) = rerender_edit(model, layer, &mut kept, prefix, planes)?;
        fractions.push(stats.work_fraction);
        pixels(&image)?;
        Ok(())
    }
}

/// The fast pass from z: every block, the edit applied at `layer` on the way, as the
/// server renders an image it holds nothing of (its batched route, `edit::render`).
fn render_from_z<'a>(
    model: &'a ProgGan,
    layer: &'a str,
    z: &'a Tensor,
    planes: &'a EditPlanes,
) -> impl FnMut() -> anyhow::Result<()> + 'a {
    let edits = [edit::LayerPlanes {
        layer: layer.to_string(),
        planes: EditPlanes {
            alpha: planes.alpha.shallow_clone(),
            value: planes.value.shallow_clone(),
        },
    }];
    move || {
        pixels(&edit::render(model, z, &edits)?)?;
        Ok(())
    }
}

/// A full render of `prefix` under `planes` through to u8 pixels (and PNG when `png`).
fn full_render<'a>(
    model: &'a ProgGan,
    layer: &'a str,
    prefix: &'a Tensor,
    planes: &'a EditPlanes,
    png: bool,
) -> impl FnMut() -> anyhow::Result<()> + 'a {
    move || {
        let rgb = pixels(&render_edit(model, layer, prefix, planes)?)?;
        if png {
            imageio::encode_png(&rgb[0])?;
        }
        Ok(())
    }
}

/// A case of the rounds.
fn case<'a>(id: Case, reps: usize, timed: impl Timed + 'a) -> RoundCase<'a, Case> {
    RoundCase {
        id,
        reps,
        timed: Box::new(timed),
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The references of one model, started.
struct References {
    plain: RefCell<Reference>,
    tuned: RefCell<Reference>,
    max_pixel_diff: u8,
}

/// Benchmarks one model: `exact` computes in f32, `fast` is the same weights in the
/// served precision.
pub fn bench_model(
    settings: &ModelSettings,
    exact: &ProgGan,
    fast: &ProgGan,
) -> anyhow::Result<ModelReport> {
    let layer = settings.layer;
    let bar = super::super::progress_bar(
        settings.rounds as u64 + 2,
        &format!("bench {}", settings.name),
    );
    let scene = scene(exact, layer, settings.units)?;
    let one = scene.prefix.narrow(0, 0, 1);
    let exact_images = pixels(&render_edit(exact, layer, &scene.prefix, &scene.planes)?)?;
    let fast_images = pixels(&render_edit(fast, layer, &scene.prefix, &scene.planes)?)?;
    let psnr_db = psnr(&fast_images, &exact_images);

    let references = match settings.python {
        None => None,
        Some(python) => {
            let inputs = ReferenceInputs::write(
                exact,
                settings.name,
                layer,
                &one,
                &scene.planes,
                settings.scratch,
                python,
            )?;
            let plain = inputs.start(false)?;
            let theirs = std::fs::read(inputs.pixels_path())
                .with_context(|| format!("reading {}", inputs.pixels_path().display()))?;
            let max_pixel_diff = max_pixel_diff(exact_images[0].as_raw(), &theirs)?;
            Some(References {
                plain: RefCell::new(plain),
                tuned: RefCell::new(inputs.start(true)?),
                max_pixel_diff,
            })
        }
    };
    bar.inc(1);

    let kept = || -> anyhow::Result<SuffixActivations> {
        let mut rendered =
            edit::render_edited(fast, layer, &one, &scene.planes, edit::Route::Record)?;
        Ok(rendered.kept.pop().expect("one image"))
    };
    let reps = reps_per_round(settings.iters, settings.rounds);
    let every: Vec<&EditPlanes> = scene.every_stroke.iter().collect();
    let any_reps = reps_per_round(2 * every.len(), settings.rounds);
    let (mut centre_fractions, mut corner_fractions, mut any_fractions) =
        (Vec::new(), Vec::new(), Vec::new());
    let samples = {
        let render = |model, png| full_render(model, layer, &one, &scene.planes, png);
        let image = &fast_images[0];
        let one_z = scene.z.narrow(0, 0, 1);
        let mut cases = vec![
            case(Case::Fast, reps, Ours(render(fast, false))),
            case(
                Case::FastFromZ,
                reps,
                Ours(render_from_z(fast, layer, &one_z, &scene.planes)),
            ),
            case(Case::Exact, reps, Ours(render(exact, false))),
        ];
        if let Some(references) = &references {
            let reference = |reference, name| ReferenceCase {
                reference,
                case: name,
            };
            cases.push(case(
                Case::TorchFp32,
                reps,
                reference(&references.plain, "fp32"),
            ));
            if references.plain.borrow().ready.low_precision.is_some() {
                cases.push(case(
                    Case::TorchLow,
                    reps,
                    reference(&references.plain, "low"),
                ));
            }
            cases.push(case(
                Case::TorchFp32TunedMalloc,
                reps,
                reference(&references.tuned, "fp32"),
            ));
        }
        cases.extend([
            case(
                Case::IncrementalCentre,
                reps,
                Ours(incremental(
                    fast,
                    layer,
                    &scene.planes,
                    vec![&scene.centre_stroke],
                    &one,
                    kept()?,
                    &mut centre_fractions,
                )),
            ),
            case(
                Case::IncrementalAny,
                any_reps,
                Ours(incremental(
                    fast,
                    layer,
                    &scene.planes,
                    every,
                    &one,
                    kept()?,
                    &mut any_fractions,
                )),
            ),
            case(
                Case::IncrementalCorner,
                reps,
                Ours(incremental(
                    fast,
                    layer,
                    &scene.planes,
                    vec![&scene.corner_stroke],
                    &one,
                    kept()?,
                    &mut corner_fractions,
                )),
            ),
            case(Case::FastPng, reps, Ours(render(fast, true))),
            case(Case::ExactPng, reps, Ours(render(exact, true))),
            case(
                Case::PngEncode,
                reps,
                Ours(|| {
                    imageio::encode_png(image)?;
                    Ok(())
                }),
            ),
            // What GAN Dissection's `/api/generate` answers with.
            case(
                Case::JpegEncode,
                reps,
                Ours(|| {
                    imageio::encode_jpeg(image, 95)?;
                    Ok(())
                }),
            ),
        ]);
        run_rounds(&mut cases, settings.rounds, || bar.inc(1))?
    };
    let of = |case: Case| samples.iter().find(|(id, _)| *id == case).map(|(_, s)| s);
    let latency = |case: Case| -> anyhow::Result<Latency> {
        of(case)
            .and_then(RoundSamples::latency)
            .with_context(|| format!("no samples of {case:?}"))
    };
    let ratio = |ours: Case, theirs: Case| RatioStats::of(of(ours)?, of(theirs)?);
    let ratios = Ratios {
        fp32_vs_torch_fp32: ratio(Case::Exact, Case::TorchFp32),
        fast_vs_torch_fp32: ratio(Case::Fast, Case::TorchFp32),
        fast_vs_torch_low_precision: ratio(Case::Fast, Case::TorchLow),
        fp32_vs_torch_fp32_tuned_malloc: ratio(Case::Exact, Case::TorchFp32TunedMalloc),
        fast_vs_torch_fp32_tuned_malloc: ratio(Case::Fast, Case::TorchFp32TunedMalloc),
        incremental_vs_fast: ratio(Case::IncrementalAny, Case::Fast),
        incremental_centre_vs_fast: ratio(Case::IncrementalCentre, Case::Fast),
    };

    let torch = match references {
        None => None,
        Some(references) => {
            let ready = references.plain.borrow().ready.clone();
            let low = of(Case::TorchLow).and_then(RoundSamples::latency);
            let is_fp16 = ready.low_precision.as_deref() == Some("fp16");
            let low_psnr = ready.low_psnr_db_vs_fp32.map(round3);
            Some(TorchReport {
                torch: ready.torch,
                threads: ready.threads,
                device: ready.device,
                batch: ready.batch,
                fp32: latency(Case::TorchFp32)?,
                bf16: low.filter(|_| !is_fp16),
                fp16: low.filter(|_| is_fp16),
                bf16_psnr_db_vs_fp32: low_psnr.filter(|_| !is_fp16),
                fp16_psnr_db_vs_fp32: low_psnr.filter(|_| is_fp16),
                fp32_max_pixel_diff_vs_ours: references.max_pixel_diff,
                tuned_malloc: TunedMalloc {
                    fp32: latency(Case::TorchFp32TunedMalloc)?,
                },
            })
        }
    };

    let mut throughput = BTreeMap::new();
    for &n in settings.batches {
        let x = scene.planes.apply(&one.repeat([n, 1, 1, 1]))?;
        let mut batch = Ours(|| {
            pixels(&fast.forward_from(layer, &x)?)?;
            Ok(())
        });
        batch.time(WARM_UP_REPS)?;
        let ms = batch.time(settings.iters.div_ceil(2).max(3))?;
        let p50 = Latency::of(&ms).context("no throughput samples")?.p50_ms;
        throughput.insert(n, round3(n as f64 * 1000.0 / p50));
    }
    bar.inc(1);
    bar.finish_and_clear();

    Ok(ModelReport {
        resolution: fast.resolution(),
        layer: layer.to_string(),
        compute_kind: format!("{:?}", fast.compute_kind()),
        rounds: settings.rounds,
        reps_per_round: reps,
        latency_ms: Latencies {
            exact_fp32: latency(Case::Exact)?,
            exact_fp32_png: latency(Case::ExactPng)?,
            fast: latency(Case::Fast)?,
            fast_png: latency(Case::FastPng)?,
            fast_from_z: latency(Case::FastFromZ)?,
            png_encode: latency(Case::PngEncode)?,
            jpeg_encode: latency(Case::JpegEncode)?,
            incremental_2x2_centre: latency(Case::IncrementalCentre)?,
            incremental_2x2_corner: latency(Case::IncrementalCorner)?,
            incremental_2x2_any_place: latency(Case::IncrementalAny)?,
        },
        incremental_work_fraction: WorkFraction {
            centre: round3(mean(&centre_fractions)),
            corner: round3(mean(&corner_fractions)),
            any_place_mean: round3(mean(&any_fractions)),
        },
        throughput_images_per_s_fast: throughput,
        psnr_db_fast_vs_exact: round3(psnr_db),
        ratios,
        torch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;

    #[test]
    fn psnr_of_identical_images_is_capped_and_of_one_step_is_48_db() {
        let a = vec![RgbImage::from_pixel(4, 4, image::Rgb([10, 20, 30]))];
        let b = vec![RgbImage::from_pixel(4, 4, image::Rgb([11, 21, 31]))];
        // MSE 1: 10·log10(255²) = 48.13 dB.
        assert!((psnr(&a, &b) - 48.131).abs() < 1e-3);
        assert!(psnr(&a, &a) > 140.0);
    }
}
