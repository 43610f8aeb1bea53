//! `ganpaint train-demo`: train the bundled demo models on rendered scenes.
//!
//! ```text
//! ganpaint train-demo gan --run runs/demo-gan --steps 6000      # resumes if the run exists
//! ganpaint train-demo widen --run runs/demo-gan --channels 256,256,64,64,32  # same function, more room
//! ganpaint train-demo export --run runs/demo-gan --out models/demo_generator.safetensors
//! ganpaint train-demo pick --run runs/demo-gan --out models/demo_generator.safetensors  # kept ones
//! ganpaint train-demo adopt --run runs/demo-256 --generator models/demo_generator.safetensors
//! ganpaint train-demo grow --run runs/demo-256 --to 128 --channels 16   # fade a new resolution in
//! ganpaint train-demo snapshot --run runs/demo-256 --out models/train   # compact, resumable
//! ganpaint train-demo encoder --project dissect/demo --out models/demo_encoder.safetensors
//! ```

use std::path::PathBuf;

use anyhow::Context;

use crate::cli::eval_demo::{check_split, load_segmenter};
use crate::demo::gan::{
    write_compact, write_compact_state, GanRun, GanSettings, GanTrainer, Retune, TeacherFiles,
    KEPT_DIR,
};
use crate::demo::grow::{adopt_generator, grow_run};
use crate::demo::pick::pick;
use crate::demo::scene::CLASSES;
use crate::demo::segmenter::{heldout_iou, heldout_iou_drawn, SegmenterRun};
use crate::model::{DeviceChoice, ProgGan};

#[derive(clap::Args, Debug)]
pub struct TrainDemoArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// Train the demo generator (a Progressive GAN) on rendered scenes.
    Gan(Box<GanArgs>),
    /// Train the demo segmenter on rendered scenes and report its held-out IoU.
    Segmenter(SegmenterArgs),
    /// Write a run's EMA generator as a compact (f16) safetensors model.
    Export(ExportArgs),
    /// Give a GAN run more channels at some resolutions, keeping what it computes; then
    /// resume it with `train-demo gan` as usual.
    Widen(WidenArgs),
    /// Choose among a run's kept generators (`gan --keep-from`) on a validation split, and
    /// write the chosen one as a compact model.
    Pick(PickArgs),
    /// Give a GAN run twice its resolution, Progressive GAN style: a new block in G and in D,
    /// faded in over `--fade-steps` steps; then resume it with `train-demo gan`.
    Grow(GrowArgs),
    /// Start a new GAN run from a finished generator (G and its average start as it; a
    /// fresh D trains alone first), for when the run that made it is gone.
    Adopt(AdoptArgs),
    /// Write what a run needs to resume, compactly (f16 G, G's average and D, one file each,
    /// and state.json; no Adam moments), to a folder that is itself a resumable run.
    Snapshot(SnapshotArgs),
    /// Train the encoder that inverts pictures (picture → the layer's activations) on pairs
    /// the project's generator makes, for `ganpaint invert`.
    Encoder(EncoderArgs),
}

#[derive(clap::Args, Debug)]
struct EncoderArgs {
    /// A dissection folder: its generator and default layer are the ones inverted.
    #[arg(long, default_value = "dissect/demo")]
    project: PathBuf,
    /// Generator (default: the project's model, else the bundled one).
    #[arg(long)]
    generator: Option<PathBuf>,
    /// The layer (default: `layer4` when dissected, else the project's first).
    #[arg(long)]
    layer: Option<String>,
    #[arg(long, default_value = crate::invert::DEFAULT_ENCODER)]
    out: PathBuf,
    #[arg(long, default_value_t = 2000)]
    steps: i64,
    #[arg(long, default_value_t = 16)]
    batch: i64,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Weight of the pixel loss of rendering the guess (0: activations only).
    #[arg(long, default_value_t = 1.0)]
    pixel_weight: f64,
    /// Weight of the error of the predicted z. The encoder predicts z beside the
    /// activations (it starts the fit of z that lets earlier layers paint an inverted
    /// picture); 0 trains an encoder without a z head.
    #[arg(long, default_value_t = 0.1)]
    z_weight: f64,
    /// Width at full resolution; it doubles at each halving up to --max-width.
    #[arg(long, default_value_t = 32)]
    width: i64,
    #[arg(long, default_value_t = 256)]
    max_width: i64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

#[derive(clap::Args, Debug)]
struct GrowArgs {
    #[arg(long)]
    run: PathBuf,
    /// The new resolution: twice the run's. A run already there (or past it) is left as it is.
    #[arg(long)]
    to: i64,
    /// Width of the new resolution's blocks.
    #[arg(long)]
    channels: i64,
    /// Steps over which the new blocks fade in (α from 0 to 1).
    #[arg(long, default_value_t = 1000)]
    fade_steps: i64,
    /// A new batch size from here on (Progressive GAN lowers it as the resolution grows).
    #[arg(long)]
    batch: Option<i64>,
}

#[derive(clap::Args, Debug)]
struct AdoptArgs {
    /// The new run's folder (must not hold a run).
    #[arg(long)]
    run: PathBuf,
    /// The generator to start from.
    #[arg(long, default_value = "models/demo_generator.safetensors")]
    generator: PathBuf,
    /// Steps the fresh discriminator trains alone before G moves.
    #[arg(long, default_value_t = 300)]
    d_steps: i64,
    #[arg(long, default_value_t = 32)]
    batch: i64,
    #[arg(long, default_value_t = 0.002)]
    lr: f64,
    #[arg(long, default_value_t = 0.1)]
    r1_gamma: f64,
    #[arg(long, default_value_t = 4)]
    r1_every: i64,
    #[arg(long, default_value_t = 0.99)]
    ema_beta: f64,
    #[arg(long, default_value_t = false)]
    bf16: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

#[derive(clap::Args, Debug)]
struct SnapshotArgs {
    #[arg(long)]
    run: PathBuf,
    #[arg(long, default_value = "models/train")]
    out: PathBuf,
}

#[derive(clap::Args, Debug)]
struct GanArgs {
    /// Run folder: checkpoints, losses and sample grids. An existing run is resumed.
    #[arg(long)]
    run: PathBuf,
    /// Train until this many steps in total.
    #[arg(long, default_value_t = 6000)]
    steps: i64,
    #[arg(long, default_value_t = 32)]
    batch: i64,
    #[arg(long, default_value_t = 128)]
    z_dim: i64,
    /// Widths at 4², 8², 16², …: the last sets the resolution (5 widths → 64²).
    #[arg(long, value_delimiter = ',', default_value = "256,256,128,64,32")]
    channels: Vec<i64>,
    /// Learning rate of both networks [default: 0.002]. These four settings may be given on
    /// resume to change the run from its current step on; `state.json` records the change.
    #[arg(long)]
    lr: Option<f64>,
    /// Weight of the R1 penalty [default: 0.1].
    #[arg(long)]
    r1_gamma: Option<f64>,
    /// Apply R1 every this many steps [default: 4].
    #[arg(long)]
    r1_every: Option<i64>,
    /// Decay of the exported moving average of G's weights [default: 0.998].
    #[arg(long)]
    ema_beta: Option<f64>,
    /// Hold G's first K layers (`layer1..layerK`) fixed and train the rest [default: 0].
    /// After `grow`, the old resolutions' layers (10 for a run grown from 64²) keep what
    /// they draw while the new blocks learn the finer scale. May change on resume.
    #[arg(long)]
    freeze_g_layers: Option<i64>,
    /// Anchor a grown run to this generator, the one at half the run's resolution it grew
    /// from: G's images, average-pooled to that resolution, are pulled towards what it draws
    /// there, with weight `--anchor-weight`. Stored with the run from this step on.
    #[arg(long)]
    anchor: Option<PathBuf>,
    /// Weight of the anchor loss [default: 0, off]. May change on resume.
    #[arg(long)]
    anchor_weight: Option<f64>,
    /// A label teacher: a smaller generator (for example the one a grown run grew from)
    /// whose scenes, labelled by `--teacher-segmenter`, G's images must keep, class by
    /// class, for the same latents. Needed on every resume of a run taught so.
    #[arg(long, requires = "teacher_segmenter")]
    teacher: Option<PathBuf>,
    /// The segmenter that labels the teacher's scenes and G's images (it does not train).
    #[arg(long, requires = "teacher")]
    teacher_segmenter: Option<PathBuf>,
    /// The side both are segmented at: the teacher's scenes are upsampled to it, G's
    /// images average-pooled.
    #[arg(long, default_value_t = 128)]
    teacher_size: i64,
    /// How many images of each batch the teacher teaches (the first ones; segmenting with
    /// gradients at 256² costs more than the rest of a step) [default: all].
    #[arg(long, default_value_t = i64::MAX, hide_default_value = true)]
    teacher_images: i64,
    /// Small patches do not teach: where the teacher's scene holds less of a class than
    /// this times the class's mean share in rendered scenes (counted as for
    /// --share-weight), those pixels teach nothing [default: 0, every patch teaches].
    /// Given on each resume, like the teacher.
    #[arg(long, default_value_t = 0.0)]
    teacher_min_patch: f64,
    /// The side the teacher's scenes are labelled at, their scores then resized to
    /// --teacher-size: at the teacher's own size (for example 64 for a 64² teacher), its
    /// scenes are labelled as it drew them rather than as their upsampled blur [default:
    /// --teacher-size]. Given on each resume, like the teacher.
    #[arg(long, requires = "teacher")]
    teacher_label_size: Option<i64>,
    /// The segmenter that labels the teacher's scenes, for example one trained at
    /// --teacher-label-size; it must name --teacher-segmenter's classes [default:
    /// --teacher-segmenter]. Given on each resume, like the teacher.
    #[arg(long, requires = "teacher")]
    teacher_label_segmenter: Option<PathBuf>,
    /// Weight of the teacher's loss [default: 0, off]. May change on resume.
    #[arg(long)]
    teacher_weight: Option<f64>,
    /// Weight of the share loss [default: 0, off]: how each class's share spreads over G's
    /// images (in how many it appears, and how much of each) is held to how it spreads over
    /// rendered scenes, both as the teacher's segmenter sees them at --teacher-size, on
    /// the images the teacher teaches (--teacher-images of each batch). Needs --teacher
    /// (its --teacher-weight may be 0). May change on resume.
    #[arg(long)]
    share_weight: Option<f64>,
    /// Weight of the presence loss [default: 0, off]: in how many of G's images each class
    /// appears is held to the rendered scenes', by each class's margin over the best other
    /// class on its most decided 0.2% of the pixels (positive about where eval-demo calls
    /// it present), so that a small cloud the segmenter is sure of is still pulled out of
    /// an image. Needs --teacher, like --share-weight. May change on resume.
    #[arg(long)]
    presence_weight: Option<f64>,
    /// The share loss's temperature [default: 1]: the teacher segmenter's scores are
    /// divided by it before each pixel's probabilities are averaged into a class's share,
    /// for G's images and the rendered scenes alike. Under 1 (for example 0.25) a pixel
    /// counts closer to its most likely class alone, as eval-demo and pick count shares, so
    /// a half-decided edge no longer counts half for each side. May change on resume.
    #[arg(long)]
    share_temperature: Option<f64>,
    /// Weight of the sharpness loss [default: 0, off]: how far the mean luminance gradient
    /// of G's images (eval-demo's sharpness) falls short of the step's rendered scenes', as
    /// a fraction of theirs. The teacher, share and presence losses soften G's edges; this
    /// holds them up. Needs no teacher. May change on resume.
    #[arg(long)]
    sharpness_weight: Option<f64>,
    /// Weight of the spectrum loss [default: 0, off]: the mean squared log ratio between
    /// the power spectra of G's images and the step's rendered scenes along rows and along
    /// columns, over the fine detail (periods of a sixteenth of the side and less). A
    /// regular stripe costs as much as blur, where the sharpness loss pays for any extra
    /// gradient, a stripe's too. Needs no teacher. May change on resume.
    #[arg(long)]
    spectrum_weight: Option<f64>,
    /// The classes the presence loss holds, comma-separated names of the teacher
    /// segmenter's classes (for example cloud,roof) [default: every class]: a class already
    /// present as often as in rendered scenes is left to the share loss, which the presence
    /// loss's pull on faint patches would otherwise thin. Given on each resume, like the
    /// teacher.
    #[arg(long, value_delimiter = ',', requires = "teacher")]
    presence_classes: Vec<String>,
    /// Activations in bf16 (fp32 master weights); worth it on CPUs with AMX/AVX-512-BF16.
    #[arg(long, default_value_t = false)]
    bf16: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 200)]
    checkpoint_every: i64,
    #[arg(long, default_value_t = 500)]
    sample_every: i64,
    /// From this step on, each checkpoint also keeps its live and EMA generators under
    /// `RUN/kept/`, for `train-demo pick`.
    #[arg(long)]
    keep_from: Option<i64>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

#[derive(clap::Args, Debug)]
struct SegmenterArgs {
    /// Where to write the weights (safetensors).
    #[arg(long, default_value = "models/demo_segmenter.safetensors")]
    out: PathBuf,
    #[arg(long, default_value_t = 2000)]
    steps: i64,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Scene size; several (`128,256`) are taken in turn, step by step, for one segmenter
    /// that labels every size it was trained at. Its held-out IoU is reported at each.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    size: Vec<usize>,
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Start from these weights instead of fresh ones: fine-tuning a trained segmenter, for
    /// example to a new size, takes a fraction of the steps.
    #[arg(long)]
    init: Option<PathBuf>,
    /// The probability that a training scene is drawn coarsely (at half or a quarter of
    /// its side, then upsampled), its labels kept exact: a grown generator's edges are
    /// soft over several pixels, and a segmenter that has only seen crisp ones calls the
    /// pale blend of wall and sky cloud. The held-out IoU is then also reported on scenes
    /// drawn at a quarter of the side.
    #[arg(long, default_value_t = 0.0)]
    coarse: f64,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

#[derive(clap::Args, Debug)]
struct WidenArgs {
    #[arg(long)]
    run: PathBuf,
    /// The new widths at 4², 8², 16², …: as many as the run has, none narrower, the first
    /// unchanged.
    #[arg(long, value_delimiter = ',', required = true)]
    channels: Vec<i64>,
}

#[derive(clap::Args, Debug)]
struct PickArgs {
    #[arg(long)]
    run: PathBuf,
    /// Where to write the chosen generator (compact, f16).
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    segmenter: Option<PathBuf>,
    /// First id of the validation split: generated ids and held-out scenes from here on.
    /// It may not overlap `eval-demo`'s reported split (ids 0..1000).
    #[arg(long, default_value_t = 100_000)]
    first_sample: u64,
    /// Generated samples (and as many rendered scenes) per candidate.
    #[arg(long, default_value_t = 1000)]
    samples: u64,
    /// Only generators kept from this step on (a grown run keeps each resolution's).
    #[arg(long, default_value_t = 0)]
    from_step: u64,
    /// Only generators kept up to this step.
    #[arg(long, default_value_t = u64::MAX)]
    until_step: u64,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

/// `eval-demo`'s reported split is ids `0..REPORTED_SAMPLES`; `pick` must choose elsewhere.
const REPORTED_SAMPLES: u64 = 1000;

#[derive(clap::Args, Debug)]
struct ExportArgs {
    #[arg(long)]
    run: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: TrainDemoArgs) -> anyhow::Result<()> {
    match args.what {
        What::Gan(a) => {
            let a = *a;
            if let Some(lr) = a.lr.filter(|v| !(v.is_finite() && *v > 0.0)) {
                anyhow::bail!("--lr must be a positive number, got {lr}");
            }
            if let Some(b) = a.ema_beta.filter(|v| !(0.0..1.0).contains(v)) {
                anyhow::bail!("--ema-beta must be in [0, 1), got {b}");
            }
            if let Some(g) = a.r1_gamma.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                anyhow::bail!("--r1-gamma must be 0 or more, got {g}");
            }
            if let Some(w) = a.anchor_weight.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                anyhow::bail!("--anchor-weight must be 0 or more, got {w}");
            }
            if let Some(w) = a.teacher_weight.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                anyhow::bail!("--teacher-weight must be 0 or more, got {w}");
            }
            if let Some(w) = a.share_weight.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                anyhow::bail!("--share-weight must be 0 or more, got {w}");
            }
            if let Some(w) = a.presence_weight.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                anyhow::bail!("--presence-weight must be 0 or more, got {w}");
            }
            if let Some(w) = a.sharpness_weight.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                anyhow::bail!("--sharpness-weight must be 0 or more, got {w}");
            }
            if let Some(w) = a.spectrum_weight.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                anyhow::bail!("--spectrum-weight must be 0 or more, got {w}");
            }
            if let Some(t) = a.share_temperature {
                crate::demo::teacher::check_share_temperature(t)?;
            }
            crate::demo::teacher::check_min_patch(a.teacher_min_patch)?;
            if a.teacher_min_patch > 0.0 && a.teacher.is_none() {
                anyhow::bail!("--teacher-min-patch leaves patches out of a teacher's labels: give --teacher and --teacher-segmenter");
            }
            if let Some(e) = a.r1_every.filter(|v| *v < 0) {
                anyhow::bail!("--r1-every must be 0 (off) or more, got {e}");
            }
            let settings = GanSettings {
                z_dim: a.z_dim,
                channels: a.channels,
                batch: a.batch,
                lr: a.lr.unwrap_or(0.002),
                r1_gamma: a.r1_gamma.unwrap_or(0.1),
                r1_every: a.r1_every.unwrap_or(4),
                ema_beta: a.ema_beta.unwrap_or(0.998),
                bf16: a.bf16,
                seed: a.seed,
                frozen_layers: a.freeze_g_layers.unwrap_or(0),
                anchor_weight: a.anchor_weight.unwrap_or(0.0),
                teacher_weight: a.teacher_weight.unwrap_or(0.0),
                share_weight: a.share_weight.unwrap_or(0.0),
                presence_weight: a.presence_weight.unwrap_or(0.0),
                share_temperature: a.share_temperature.unwrap_or(1.0),
                sharpness_weight: a.sharpness_weight.unwrap_or(0.0),
                spectrum_weight: a.spectrum_weight.unwrap_or(0.0),
            };
            let run = GanRun {
                dir: a.run,
                steps: a.steps,
                checkpoint_every: a.checkpoint_every,
                sample_every: a.sample_every,
                retune: Retune {
                    lr: a.lr,
                    ema_beta: a.ema_beta,
                    r1_gamma: a.r1_gamma,
                    r1_every: a.r1_every,
                    frozen_layers: a.freeze_g_layers,
                    anchor_weight: a.anchor_weight,
                    teacher_weight: a.teacher_weight,
                    share_weight: a.share_weight,
                    presence_weight: a.presence_weight,
                    share_temperature: a.share_temperature,
                    sharpness_weight: a.sharpness_weight,
                    spectrum_weight: a.spectrum_weight,
                },
                keep_from: a.keep_from,
                anchor: a.anchor,
                teacher: a
                    .teacher
                    .zip(a.teacher_segmenter)
                    .map(|(generator, segmenter)| TeacherFiles {
                        generator,
                        segmenter,
                        size: a.teacher_size,
                        images: a.teacher_images,
                        min_patch: a.teacher_min_patch,
                        label_size: a.teacher_label_size,
                        label_segmenter: a.teacher_label_segmenter,
                        presence_classes: a.presence_classes,
                    }),
            };
            run.run(settings, a.device.resolve()?)?;
            Ok(())
        }
        What::Segmenter(a) => {
            crate::demo::segmenter::check_sizes(&a.size)?;
            crate::demo::segmenter::check_coarse(a.coarse)?;
            if let Some(init) = &a.init {
                if !init.is_file() {
                    anyhow::bail!("--init {}: no such file", init.display());
                }
            }
            let run = SegmenterRun {
                steps: a.steps,
                batch: a.batch,
                sizes: a.size.clone(),
                lr: a.lr,
                seed: a.seed,
                init: a.init,
                coarse: a.coarse,
            };
            let model = run.run(&a.out, a.device.resolve()?)?;
            // The held-out IoU at each size; the headline figure is the worst of them.
            let mut worst = f64::INFINITY;
            let mut by_size = serde_json::Map::new();
            for &size in &a.size {
                let (miou, per_class) = heldout_iou(&model, 500, size)?;
                worst = worst.min(miou);
                let per_class: serde_json::Map<String, serde_json::Value> = CLASSES
                    .iter()
                    .zip(per_class)
                    .map(|(c, v)| (c.to_string(), serde_json::json!(v)))
                    .collect();
                let mut report = serde_json::json!({ "segmenter_miou": miou, "iou": per_class });
                if a.coarse > 0.0 && size >= 32 {
                    // On scenes drawn at a quarter of the side: what it was also trained on.
                    let (coarse_miou, _) = heldout_iou_drawn(&model, 200, size, 4)?;
                    report["coarse_miou"] = serde_json::json!(coarse_miou);
                }
                by_size.insert(size.to_string(), report);
            }
            println!(
                "{}",
                serde_json::json!({ "segmenter_miou": worst, "by_size": by_size })
            );
            Ok(())
        }
        What::Widen(a) => {
            let trainer = crate::demo::widen::widen_run(&a.run, &a.channels)?;
            println!(
                "widened {} at step {} to channels {:?}",
                a.run.display(),
                trainer.step,
                trainer.settings.channels
            );
            Ok(())
        }
        What::Pick(a) => {
            if a.first_sample < REPORTED_SAMPLES {
                anyhow::bail!(
                    "--first-sample {} overlaps the reported split (ids 0..{REPORTED_SAMPLES}); \
                     pick on a disjoint one, for example 100000",
                    a.first_sample
                );
            }
            check_split(a.first_sample, a.samples)?;
            let device = a.device.resolve()?;
            let segmenter = load_segmenter(a.segmenter, device)?;
            let picked = pick(
                &a.run,
                &segmenter,
                a.first_sample,
                a.samples,
                a.from_step..=a.until_step,
                device,
            )?;
            for c in &picked.candidates {
                println!("{:<22} {:>6.3}  worst: {}", c.name, c.score, c.worst_class);
            }
            let report = a.run.join(KEPT_DIR).join("pick.json");
            std::fs::write(&report, serde_json::to_string_pretty(&picked)?)?;
            let chosen = picked.chosen();
            std::fs::copy(&chosen.path, &a.out)
                .with_context(|| format!("writing {}", a.out.display()))?;
            tracing::info!(chosen = %chosen.name, bars_missed = chosen.bars_missed, score = chosen.score, out = %a.out.display(), report = %report.display(), "picked");
            println!(
                "{}",
                serde_json::json!({"chosen": chosen.name, "bars_missed": chosen.bars_missed, "score": chosen.score, "worst_class": chosen.worst_class, "out": a.out, "report": report})
            );
            Ok(())
        }
        What::Grow(a) => {
            match grow_run(&a.run, a.to, a.channels, a.fade_steps, a.batch)? {
                Some(trainer) => println!(
                    "grew {} at step {} to {}x{} (channels {:?}, batch {}), fading in until step {}",
                    a.run.display(),
                    trainer.step,
                    a.to,
                    a.to,
                    trainer.settings.channels,
                    trainer.settings.batch,
                    trainer.step + a.fade_steps
                ),
                None => println!("{} is at {}x{} or past it already", a.run.display(), a.to, a.to),
            }
            Ok(())
        }
        What::Adopt(a) => {
            let settings = GanSettings {
                z_dim: 0,
                channels: Vec::new(),
                batch: a.batch,
                lr: a.lr,
                r1_gamma: a.r1_gamma,
                r1_every: a.r1_every,
                ema_beta: a.ema_beta,
                bf16: a.bf16,
                seed: a.seed,
                frozen_layers: 0,
                anchor_weight: 0.0,
                teacher_weight: 0.0,
                share_weight: 0.0,
                presence_weight: 0.0,
                share_temperature: 1.0,
                sharpness_weight: 0.0,
                spectrum_weight: 0.0,
            };
            let trainer = adopt_generator(
                &a.run,
                &a.generator,
                settings,
                a.d_steps,
                a.device.resolve()?,
            )?;
            println!(
                "started {} from {} (channels {:?}); D trained alone for {} steps",
                a.run.display(),
                a.generator.display(),
                trainer.settings.channels,
                a.d_steps
            );
            Ok(())
        }
        What::Snapshot(a) => {
            let trainer = GanTrainer::resume(&a.run, tch::Device::Cpu)?.ok_or_else(|| {
                anyhow::anyhow!("{} holds no run (no state.json)", a.run.display())
            })?;
            write_compact_state(&trainer, &a.out)?;
            println!(
                "wrote the state of {} at step {} to {}",
                a.run.display(),
                trainer.step,
                a.out.display()
            );
            Ok(())
        }
        What::Encoder(a) => train_encoder(a),
        What::Export(a) => {
            let source = a.run.join("generator_ema.safetensors");
            let model = ProgGan::load(&source, tch::Device::Cpu)
                .with_context(|| format!("loading {}", source.display()))?;
            write_compact(&model, &a.out)?;
            tracing::info!(out = %a.out.display(), "exported generator");
            Ok(())
        }
    }
}

fn train_encoder(a: EncoderArgs) -> anyhow::Result<()> {
    use crate::invert::{encoder::train_encoder, Encoder, EncoderConfig, EncoderTraining};
    if a.steps < 1 || a.batch < 1 {
        anyhow::bail!("--steps and --batch must be at least 1");
    }
    let device = a.device.resolve()?;
    let project = crate::project::read_project(&a.project)
        .with_context(|| format!("reading the dissection in {}", a.project.display()))?;
    let layer = project.chosen_layer(a.layer.as_deref())?.layer.clone();
    // The generator the server paints this project with, unless one is given.
    let generator_path = match &a.generator {
        Some(path) => path.clone(),
        None => crate::project::generator_file(&project)?,
    };
    let generator = ProgGan::load(&generator_path, device)
        .with_context(|| format!("loading {}", generator_path.display()))?;
    tch::manual_seed(a.seed as i64);
    let mut config = EncoderConfig::for_layer(&generator, &layer, a.width, a.max_width)?;
    if a.z_weight <= 0.0 {
        config.z_dim = None;
    }
    let encoder = Encoder::new(config, device);
    let settings = EncoderTraining {
        layer: layer.clone(),
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        pixel_weight: a.pixel_weight,
        z_weight: a.z_weight,
        seed: a.seed,
    };
    tracing::info!(generator = %generator_path.display(), %layer, ?settings, widths = ?encoder.config().widths, "training the encoder");
    let bar = crate::cli::progress_bar(a.steps as u64, "train encoder");
    let history = train_encoder(&encoder, &generator, &settings, &mut |s| {
        bar.set_message(format!(
            "train encoder feature {:.4} pixel {:.4} z {:.4}",
            s.feature_loss, s.pixel_loss, s.z_loss
        ));
        bar.inc(1);
        if (s.step + 1) % 100 == 0 {
            tracing::info!(
                step = s.step + 1,
                feature_loss = s.feature_loss,
                pixel_loss = s.pixel_loss,
                z_loss = s.z_loss,
                "encoder"
            );
        }
    })?;
    bar.finish();
    if let Some(parent) = a.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    encoder.save(&a.out)?;
    // The last tenth of the run, averaged: a figure less noisy than one batch's.
    let tail = &history[history.len() - (history.len() / 10).max(1)..];
    let mean = |f: fn(&crate::invert::encoder::EncoderStep) -> f64| {
        tail.iter().map(f).sum::<f64>() / tail.len() as f64
    };
    println!(
        "{}",
        serde_json::json!({
            "out": a.out,
            "steps": a.steps,
            "feature_loss": mean(|s| s.feature_loss),
            "pixel_loss": mean(|s| s.pixel_loss),
            "z_loss": mean(|s| s.z_loss),
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    fn run_args(args: &[&str]) -> anyhow::Result<()> {
        let cli = crate::cli::Cli::try_parse_from(
            [
                "ganpaint",
                "train-demo",
                "gan",
                "--run",
                "/nonexistent/run",
                "--steps",
                "0",
            ]
            .iter()
            .chain(args),
        )?;
        crate::cli::run(cli)
    }

    #[test]
    fn a_minimum_patch_needs_a_teacher_and_a_sound_value() {
        let err = run_args(&["--teacher-min-patch", "0.3"]).unwrap_err();
        assert!(
            format!("{err:#}").contains("--teacher-min-patch"),
            "{err:#}"
        );
        assert!(format!("{err:#}").contains("--teacher "), "{err:#}");
        let err = run_args(&["--teacher-min-patch=-1"]).unwrap_err();
        assert!(format!("{err:#}").contains("must be 0 or more"), "{err:#}");
        let err = run_args(&["--teacher-min-patch", "NaN"]).unwrap_err();
        assert!(
            format!("{err:#}").contains("--teacher-min-patch"),
            "{err:#}"
        );
    }

    #[test]
    fn loss_weights_must_be_sound() {
        for flag in [
            "--teacher-weight",
            "--share-weight",
            "--presence-weight",
            "--sharpness-weight",
            "--spectrum-weight",
        ] {
            for bad in ["-1", "NaN", "inf"] {
                let err = run_args(&[&format!("{flag}={bad}")]).unwrap_err();
                let msg = format!("{err:#}");
                assert!(
                    msg.contains(flag) && msg.contains("must be 0 or more"),
                    "{flag}={bad}: {msg}"
                );
            }
        }
    }

    #[test]
    fn the_share_temperature_must_be_above_zero() {
        for bad in ["0", "-0.5", "NaN", "inf"] {
            let err = run_args(&[&format!("--share-temperature={bad}")]).unwrap_err();
            let msg = format!("{err:#}");
            assert!(
                msg.contains("--share-temperature") && msg.contains("above 0"),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn the_teachers_options_need_a_teacher() {
        for flag in [
            &["--teacher-label-size", "64"][..],
            &["--presence-classes", "cloud,roof"],
            &[
                "--teacher-label-segmenter",
                "models/demo_segmenter.safetensors",
            ],
        ] {
            let err = run_args(flag).unwrap_err();
            assert!(
                format!("{err:#}").contains("--teacher "),
                "{flag:?}: {err:#}"
            );
        }
    }
}
