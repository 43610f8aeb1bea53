//! `ganpaint train-demo pick`: choose the generator to ship among a run's kept ones.
//!
//! A GAN's generator swings from checkpoint to checkpoint, in how much of each class it
//! draws as much as in anything else. A run trained with `--keep-from` keeps the live and
//! the EMA generator of every checkpoint from then on (see [`super::gan::GanTrainer::keep`]).
//! `pick` measures each on a validation split, generated ids and rendered scenes disjoint
//! from the ones `eval-demo` reports on, and chooses the one whose worst class is closest
//! to the rendered scenes and whose images are as sharp, without a fine stripe: the one
//! that misses the fewest of those bars ([`demo_misses`]: the realism bars, the sharpness
//! bar and the stripe bar), and of those the closest to them ([`demo_score`]). So the
//! choice is made on figures other than the reported ones, and the reported figures stay an honest measurement.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use tch::Device;

use super::eval::{demo_misses, demo_score, ClassRealism, EvalDemo, Stripe};
use super::gan::KEPT_DIR;
use crate::model::ProgGan;
use crate::segment::Segmenter;

/// One kept generator, measured on the validation split.
#[derive(Debug, Serialize)]
pub struct Candidate {
    /// The file name without `.safetensors`, for example `step-024600-ema`.
    pub name: String,
    pub path: PathBuf,
    /// [`demo_score`]: below 1.0 every realism bar and the sharpness bar are met on the
    /// validation split.
    pub score: f64,
    /// The class that sets the score (`sharpness` or `stripe` when that bar does).
    pub worst_class: String,
    /// How many bars it misses ([`demo_misses`]); candidates rank by it first.
    pub bars_missed: usize,
    pub realism: BTreeMap<String, ClassRealism>,
    /// The generated images' mean gradient magnitude over the rendered scenes'.
    pub sharpness_ratio: f64,
    /// The strongest fine regular pattern of the generated images against the scenes'.
    pub stripe: Option<Stripe>,
}

/// What `pick` measured and chose; written as `kept/pick.json`.
#[derive(Debug, Serialize)]
pub struct Pick {
    pub first_sample: u64,
    pub samples: u64,
    /// Best first.
    pub candidates: Vec<Candidate>,
}

impl Pick {
    pub fn chosen(&self) -> &Candidate {
        &self.candidates[0]
    }
}

/// The step a kept generator's name (`step-004800-ema.safetensors`) says it was kept at.
fn kept_step(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?.split('-').next()?.parse().ok()
}

/// The kept generators of a run whose step lies in `steps`, oldest first.
pub fn kept_generators(
    run: &Path,
    steps: std::ops::RangeInclusive<u64>,
) -> anyhow::Result<Vec<PathBuf>> {
    let dir = run.join(KEPT_DIR);
    let entries = std::fs::read_dir(&dir).with_context(|| {
        format!(
            "reading {}: train the run with --keep-from STEP to keep generators to pick from",
            dir.display()
        )
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".safetensors") && kept_step(name).is_some_and(|s| steps.contains(&s)) {
            paths.push(path);
        }
    }
    // Zero-padded steps: the names sort in step order.
    paths.sort();
    if paths.is_empty() {
        anyhow::bail!(
            "{} holds no kept generators from step {} to {}: train the run with --keep-from STEP first",
            dir.display(),
            steps.start(),
            steps.end()
        );
    }
    Ok(paths)
}

/// Keeps the run's own G and moving average at its current step when that step lies in
/// `steps` and is not kept yet: a run restored from a compact state (`train-demo
/// snapshot`, as `models/train` holds it) has no kept generators, and one trained without
/// `--keep-from` may not have kept its last step. Returns whether it kept them.
pub fn keep_current(
    run: &Path,
    steps: &std::ops::RangeInclusive<u64>,
    device: Device,
) -> anyhow::Result<bool> {
    // The step from state.json first: the whole checkpoint is read only to keep it.
    if !run.join("state.json").exists() {
        return Ok(false);
    }
    let step = super::gan::RunState::read(run)?.step as u64;
    let kept = run
        .join(KEPT_DIR)
        .join(format!("step-{step:06}-ema.safetensors"));
    if !steps.contains(&step) || kept.exists() {
        return Ok(false);
    }
    let Some(trainer) = super::gan::GanTrainer::resume(run, device)? else {
        return Ok(false);
    };
    trainer.keep(run)?;
    tracing::info!(step, run = %run.display(), "kept the run's current generators");
    Ok(true)
}

/// Measures every kept generator of `run` kept at a step in `steps` (a grown run keeps
/// generators of each resolution) on generated ids `first_sample..+samples` (and
/// as many held-out scenes) and ranks them, best first (the run's current pair is kept
/// first where [`keep_current`] says so). Sample grids of each go to
/// `run/kept/eval/<name>/`.
pub fn pick(
    run: &Path,
    segmenter: &dyn Segmenter,
    first_sample: u64,
    samples: u64,
    steps: std::ops::RangeInclusive<u64>,
    device: Device,
) -> anyhow::Result<Pick> {
    keep_current(run, &steps, device)?;
    let paths = kept_generators(run, steps)?;
    let bar = crate::progress::progress_bar(paths.len() as u64, "pick");
    let mut candidates = Vec::new();
    // The rendered scenes are the same for every candidate: segment them once.
    let mut rendered = None;
    for path in paths {
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let generator =
            ProgGan::load(&path, device).with_context(|| format!("loading {}", path.display()))?;
        let report = EvalDemo {
            generator: &generator,
            segmenter,
            first_sample,
            samples,
            heldout: 0,
            out_dir: &run.join(KEPT_DIR).join("eval").join(&name),
            size: None,
        }
        .run_cached(&mut rendered)?;
        let (score, worst_class) = demo_score(
            &report.realism,
            report.sharpness_ratio,
            report.stripe.as_ref(),
        )
        .context("the segmenter has no classes")?;
        let bars_missed = demo_misses(
            &report.realism,
            report.sharpness_ratio,
            report.stripe.as_ref(),
        );
        tracing::info!(%name, bars_missed, score, %worst_class, sharpness_ratio = report.sharpness_ratio, "measured");
        candidates.push(Candidate {
            name,
            path,
            score,
            worst_class,
            bars_missed,
            realism: report.realism,
            sharpness_ratio: report.sharpness_ratio,
            stripe: report.stripe,
        });
        bar.inc(1);
    }
    bar.finish();
    // Fewest bars missed first, then the closest. Stable: of equal ranks, the earlier
    // step (and EMA before live) stays first.
    candidates.sort_by(|a, b| {
        a.bars_missed
            .cmp(&b.bars_missed)
            .then(a.score.total_cmp(&b.score))
    });
    Ok(Pick {
        first_sample,
        samples,
        candidates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::gan::{tests::tiny_settings, GanRun, Retune};
    use crate::segment::testing::RedSegmenter;

    #[test]
    fn a_run_keeps_generators_from_a_step_and_pick_ranks_them() {
        let dir = std::env::temp_dir().join(format!("ganpaint-pick-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let segmenter = RedSegmenter::new();
        // No run yet: the message says how to make one.
        let err = pick(&dir, &segmenter, 1000, 4, 0..=u64::MAX, Device::Cpu).unwrap_err();
        assert!(format!("{err:#}").contains("--keep-from"), "{err:#}");

        let trainer = GanRun {
            dir: dir.clone(),
            steps: 6,
            checkpoint_every: 2,
            sample_every: 100,
            retune: Retune::default(),
            keep_from: Some(4),
            anchor: None,
            teacher: None,
        }
        .run(tiny_settings(), Device::Cpu)
        .unwrap();
        let names = |steps| -> Vec<String> {
            kept_generators(&dir, steps)
                .unwrap()
                .iter()
                .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
                .collect()
        };
        // A step range keeps to its own checkpoints (a grown run holds several sizes).
        assert_eq!(
            names(6..=7),
            [
                "step-000006-ema.safetensors",
                "step-000006-live.safetensors"
            ]
        );
        assert!(kept_generators(&dir, 7..=9).is_err());
        let names = names(0..=u64::MAX);
        assert_eq!(
            names,
            [
                "step-000004-ema.safetensors",
                "step-000004-live.safetensors",
                "step-000006-ema.safetensors",
                "step-000006-live.safetensors",
            ]
        );
        // The last kept pair is the trainer's own generators, rounded to f16.
        for (which, g) in [("live", &trainer.g), ("ema", &trainer.g_ema)] {
            let kept = ProgGan::load(
                &dir.join(KEPT_DIR)
                    .join(format!("step-000006-{which}.safetensors")),
                Device::Cpu,
            )
            .unwrap();
            for ((name, a), (_, b)) in kept.named_tensors().iter().zip(g.named_tensors()) {
                let rounded = b.to_kind(tch::Kind::Half).to_kind(tch::Kind::Float);
                assert!(a.equal(&rounded), "{which} {name}");
            }
        }

        let picked = pick(&dir, &segmenter, 1000, 4, 0..=u64::MAX, Device::Cpu).unwrap();
        assert_eq!(picked.candidates.len(), 4);
        for pair in picked.candidates.windows(2) {
            let rank = |c: &Candidate| (c.bars_missed, c.score);
            assert!(rank(&pair[0]) <= rank(&pair[1]));
        }
        for c in &picked.candidates {
            assert_eq!(
                demo_score(&c.realism, c.sharpness_ratio, c.stripe.as_ref()).unwrap(),
                (c.score, c.worst_class.clone())
            );
            assert_eq!(
                demo_misses(&c.realism, c.sharpness_ratio, c.stripe.as_ref()),
                c.bars_missed
            );
            assert!(c.sharpness_ratio > 0.0 && c.sharpness_ratio.is_finite());
            let stripe = c
                .stripe
                .as_ref()
                .expect("a stripe measured on every candidate");
            assert!(stripe.ratio > 0.0 && stripe.ratio.is_finite(), "{stripe:?}");
            assert!(dir
                .join(KEPT_DIR)
                .join("eval")
                .join(&c.name)
                .join("generated_grid.png")
                .exists());
        }
        // The live and EMA generators differ, so their figures do too.
        let figures = |name: &str| {
            let c = picked.candidates.iter().find(|c| c.name == name).unwrap();
            c.realism["bright"].generated_share
        };
        assert_ne!(figures("step-000006-live"), figures("step-000006-ema"));

        // A run restored from its compact state has kept nothing: its own pair at its step
        // is kept first, the same generators the run kept there.
        let restored = dir.join("restored");
        crate::demo::gan::write_compact_state(&trainer, &restored).unwrap();
        assert!(!restored.join(KEPT_DIR).exists());
        assert!(!keep_current(&restored, &(0..=5), Device::Cpu).unwrap());
        let picked = pick(&restored, &segmenter, 1000, 4, 0..=u64::MAX, Device::Cpu).unwrap();
        let mut names: Vec<&str> = picked.candidates.iter().map(|c| c.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["step-000006-ema", "step-000006-live"]);
        for which in ["live", "ema"] {
            let load = |run: &Path| {
                let path = run
                    .join(KEPT_DIR)
                    .join(format!("step-000006-{which}.safetensors"));
                ProgGan::load(&path, Device::Cpu).unwrap()
            };
            let (a, b) = (load(&dir), load(&restored));
            for ((name, x), (_, y)) in a.named_tensors().iter().zip(b.named_tensors()) {
                assert!(x.equal(&y), "{which} {name}");
            }
        }
        // Once kept, it is not kept again.
        assert!(!keep_current(&restored, &(0..=u64::MAX), Device::Cpu).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
