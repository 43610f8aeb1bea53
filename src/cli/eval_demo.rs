//! `ganpaint eval-demo`: the demo models' quality figures, as one JSON line at the end.

use std::path::PathBuf;

use anyhow::Context;
use tch::Device;

use crate::demo::eval::{
    realism_misses, sharpness_misses_bar, EvalDemo, Stripe, SHARPNESS_BAR, STRIPE_BAR,
};
use crate::model::{repo_path, DeviceChoice, ProgGan, DEFAULT_MODEL};
use crate::segment::demo::DemoSegmenter;

/// The bundled demo segmenter, relative to the repository root.
pub const DEFAULT_SEGMENTER: &str = "models/demo_segmenter.safetensors";

#[derive(clap::Args, Debug)]
pub struct EvalDemoArgs {
    #[arg(long)]
    generator: Option<PathBuf>,
    #[arg(long)]
    segmenter: Option<PathBuf>,
    /// Generated samples (ids 0..N) and as many rendered scenes for the realism figures.
    #[arg(long, default_value_t = 1000)]
    samples: u64,
    /// First id of the realism split. 0 (the default) gives the reported figures; another
    /// offset, for example 100000, gives a disjoint validation split for choosing between
    /// checkpoints.
    #[arg(long, default_value_t = 0)]
    first_sample: u64,
    /// Held-out rendered scenes for the segmenter's IoU.
    #[arg(long, default_value_t = 500)]
    heldout: u64,
    /// Measure at this side (32 to 256): the generator's images resized to it (bilinear up,
    /// averaged down), the scenes rendered at it. Default: the generator's own. A smaller
    /// generator at a grown one's size is what that one's label teacher sees.
    #[arg(long)]
    size: Option<usize>,
    /// Folder for the sample grids.
    #[arg(long, default_value = "out/eval-demo")]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

/// Checks a realism split (`--first-sample`, `--samples`): at least one sample, and no id
/// past the last one.
pub fn check_split(first_sample: u64, samples: u64) -> anyhow::Result<()> {
    if samples == 0 {
        anyhow::bail!("--samples must be at least 1");
    }
    if first_sample.saturating_add(samples) > crate::model::latent::MAX_ID + 1 {
        anyhow::bail!(
            "--first-sample {first_sample} with --samples {samples} runs past the last id, {}",
            crate::model::latent::MAX_ID
        );
    }
    Ok(())
}

/// Loads the demo segmenter at `path`, or the bundled one.
pub fn load_segmenter(path: Option<PathBuf>, device: Device) -> anyhow::Result<DemoSegmenter> {
    let path = path.unwrap_or_else(|| repo_path(DEFAULT_SEGMENTER));
    DemoSegmenter::load(&path, device).with_context(|| format!("loading {}", path.display()))
}

pub fn run(args: EvalDemoArgs) -> anyhow::Result<()> {
    check_split(args.first_sample, args.samples)?;
    let device = args.device.resolve()?;
    let g_path = args.generator.unwrap_or_else(|| repo_path(DEFAULT_MODEL));
    let generator =
        ProgGan::load(&g_path, device).with_context(|| format!("loading {}", g_path.display()))?;
    let segmenter = load_segmenter(args.segmenter, device)?;
    let report = EvalDemo {
        generator: &generator,
        segmenter: &segmenter,
        first_sample: args.first_sample,
        samples: args.samples,
        heldout: args.heldout,
        out_dir: &args.out,
        size: args.size,
    }
    .run()?;
    println!(
        "{:<8} {:>8} {:>10} {:>10} {:>14} {:>10} {:>10}",
        "class", "seg IoU", "gen share", "ren share", "share gap", "gen pres", "ren pres"
    );
    for (class, r) in &report.realism {
        let iou = report
            .segmenter_iou
            .get(class)
            .copied()
            .flatten()
            .map_or("-".to_string(), |v| format!("{v:.3}"));
        // (A standard error of the gap exactly where the scenes show the class.)
        let gap = r.share_gap_se().map_or("-".to_string(), |se| {
            let signed = r.generated_share / r.rendered_share - 1.0;
            format!("{:+.0}% ±{:.0}", 100.0 * signed, 100.0 * se)
        });
        println!(
            "{class:<8} {iou:>8} {:>10.4} {:>10.4} {gap:>14} {:>10.3} {:>10.3}",
            r.generated_share, r.rendered_share, r.generated_presence, r.rendered_presence
        );
    }
    println!(
        "sharpness (mean luminance gradient): generated {:.4}, rendered {:.4}, ratio {:.3}",
        report.generated_sharpness, report.rendered_sharpness, report.sharpness_ratio
    );
    if let Some(stripe) = &report.stripe {
        println!(
            "stripe (largest line-spectrum power over the scenes' in the fine band): {:.2}x at {} cycles {}",
            stripe.ratio, stripe.cycles, stripe.axis
        );
    }
    for miss in realism_misses(&report.realism) {
        println!("realism bar missed: {miss}");
    }
    if sharpness_misses_bar(report.sharpness_ratio) {
        println!(
            "sharpness bar missed: ratio {:.3} vs {SHARPNESS_BAR}",
            report.sharpness_ratio
        );
    }
    if let Some(stripe) = report.stripe.as_ref().filter(|s| Stripe::misses_bar(s)) {
        println!(
            "stripe bar missed: {:.2}x the scenes' power at {} cycles {} vs {STRIPE_BAR}x",
            stripe.ratio, stripe.cycles, stripe.axis
        );
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
