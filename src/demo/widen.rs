//! Widening a GAN run in place: more channels at some resolutions, the same function.
//!
//! A run trained with narrow high-resolution layers (cheap, but short of capacity for
//! small details such as windows and doors) can grow wider and go on training, instead of
//! starting over. The widened networks compute exactly what the narrow ones did:
//!
//! - Every new output channel of a layer starts with zero weights and bias, so it outputs 0
//!   and LeakyReLU keeps it 0. Its new input columns in the next layer get fresh N(0, 1)
//!   weights: they multiply zeros for now, and give the new channels a gradient.
//! - Generator: each block pixel-normalizes its input over channels. With `c` live
//!   channels among `c'`, the norm grows the live ones by `√(c'/c)`, and the block's
//!   equalized-learning-rate scale `√2 / k√c'` shrinks by `√(c/c')`; the two cancel, so
//!   the stored weights are kept as they are.
//! - Discriminator: there is no norm, so a layer whose input widens has its stored weights
//!   multiplied by `√(c'/c)` to undo its smaller run-time scale.
//! - Adam: the old moments are carried over (rescaled with their weights); new entries get
//!   a zero first moment and the tensor's mean second moment, so their first steps are of
//!   the usual size rather than ten times it.
//!
//! The old checkpoint and state are kept beside the new ones, and `state.json` records the
//! widening.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use tch::{Device, Kind, Tensor};

use super::gan::{GanSettings, GanTrainer, RunState, Widening};

/// Widens the run in `dir` to `channels` (same length, none narrower, one wider at least).
/// Returns the widened trainer, already saved.
pub fn widen_run(dir: &Path, channels: &[i64]) -> anyhow::Result<GanTrainer> {
    let state_path = dir.join("state.json");
    let state = RunState::read(dir)?;
    if let Some(growth) = state.growths.last().filter(|g| g.fading(state.step)) {
        bail!(
            "the run is still fading in {0}x{0} (until step {1}); widen it after the fade",
            growth.to,
            growth.step + growth.fade_steps
        );
    }
    let old_channels = state.settings.channels.clone();
    check_widths(&old_channels, channels)?;
    let ckpt = dir.join("checkpoint.safetensors");
    let old: BTreeMap<String, Tensor> = Tensor::read_safetensors(&ckpt)
        .with_context(|| format!("reading {}", ckpt.display()))?
        .into_iter()
        .collect();
    let settings = GanSettings {
        channels: channels.to_vec(),
        ..state.settings.clone()
    };
    let widened = widen_tensors(&old, &settings)?;
    let mut trainer = GanTrainer::from_checkpoint(settings, state.step, &widened, Device::Cpu)?;
    trainer.widenings = state.widenings.clone();
    trainer.changes = state.changes.clone();
    trainer.growths = state.growths.clone();
    trainer.origin = state.origin.clone();
    trainer.widenings.push(Widening {
        step: state.step,
        from: old_channels.clone(),
        to: channels.to_vec(),
    });

    // Keep what was there: the narrow checkpoint and state, named by step and widths.
    let tag = format!(
        "step{}-{}",
        state.step,
        old_channels
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("_")
    );
    std::fs::copy(&ckpt, dir.join(format!("checkpoint-{tag}.safetensors")))?;
    std::fs::copy(&state_path, dir.join(format!("state-{tag}.json")))?;
    trainer.save(dir)?;
    tracing::info!(
        step = state.step,
        from = ?old_channels,
        to = ?channels,
        kept = %format!("checkpoint-{tag}.safetensors"),
        "widened run"
    );
    Ok(trainer)
}

fn check_widths(old: &[i64], new: &[i64]) -> anyhow::Result<()> {
    if old.len() != new.len() {
        bail!(
            "--channels has {} widths but the run has {} ({old:?}); widening keeps the resolution",
            new.len(),
            old.len()
        );
    }
    if let Some((k, (o, n))) = old.iter().zip(new).enumerate().find(|(_, (o, n))| n < o) {
        bail!(
            "--channels would narrow resolution {} from {o} to {n}; widening only adds channels",
            4 << k
        );
    }
    if new[0] != old[0] {
        bail!(
            "--channels changes the 4x4 width from {} to {}; it stays, because the discriminator's \
             head (minibatch-stddev channel, flattened dense layer) is laid out by it",
            old[0],
            new[0]
        );
    }
    if old == new {
        bail!("--channels {new:?} are the run's widths already");
    }
    Ok(())
}

/// Maps a narrow run's checkpoint tensors onto the architecture of `settings`. Fresh
/// values (for new input columns) come from a new trainer seeded with the run's seed, so
/// the result is deterministic.
pub fn widen_tensors(
    old: &BTreeMap<String, Tensor>,
    settings: &GanSettings,
) -> anyhow::Result<BTreeMap<String, Tensor>> {
    let _guard = tch::no_grad_guard();
    let fresh = GanTrainer::new(settings.clone(), Device::Cpu);
    let mut out = BTreeMap::new();
    for (name, template) in fresh.checkpoint_tensors() {
        if name.ends_with(".step") {
            // Adam's step count carries over as it is: left out, the run's step is used.
            continue;
        }
        let source = old
            .get(&name)
            .ok_or_else(|| anyhow::anyhow!("checkpoint lacks `{name}`"))?
            .to_kind(Kind::Float);
        let (from, to) = (source.size(), template.size());
        if from.len() != to.len() || from.iter().zip(&to).any(|(a, b)| a > b) {
            bail!("`{name}` is {from:?} in the checkpoint and cannot grow into {to:?}");
        }
        // Only the discriminator's stored weights carry their input width's scale.
        let in_grows = from.len() >= 2 && to[1] != from[1];
        let factor = if in_grows && (name.starts_with("d.") || name.starts_with("adam_d.")) {
            (to[1] as f64 / from[1] as f64).sqrt()
        } else {
            1.0
        };
        let widened = if name.starts_with("adam_g.m.") || name.starts_with("adam_d.m.") {
            let base = template.zeros_like();
            embed(&base, &(&source / factor));
            base
        } else if name.starts_with("adam_g.v.") || name.starts_with("adam_d.v.") {
            let scaled = &source / (factor * factor);
            let base = template.ones_like() * scaled.mean(Kind::Float);
            embed(&base, &scaled);
            base
        } else {
            let base = template.copy();
            if to[0] > from[0] {
                let _ = base.narrow(0, from[0], to[0] - from[0]).zero_();
            }
            embed(&base, &(&source * factor));
            base
        };
        out.insert(name, widened);
    }
    Ok(out)
}

/// Copies `part` into the leading corner of `base` (every dimension from index 0).
fn embed(base: &Tensor, part: &Tensor) {
    let mut view = base.shallow_clone();
    for (dim, &n) in part.size().iter().enumerate() {
        view = view.narrow(dim as i64, 0, n);
    }
    view.copy_(part);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(channels: Vec<i64>) -> GanSettings {
        GanSettings {
            channels,
            ..crate::demo::gan::tests::tiny_settings()
        }
    }

    fn reals() -> Tensor {
        tch::manual_seed(11);
        Tensor::rand([4, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn widened_networks_compute_the_same_and_then_train_their_new_channels() {
        let dir = std::env::temp_dir().join(format!("ganpaint-widen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut narrow = GanTrainer::new(settings(vec![16, 16, 8, 4]), Device::Cpu);
        let images = reals();
        for _ in 0..3 {
            narrow.train_step(&images);
        }
        narrow.save(&dir).unwrap();

        let z = Tensor::randn([5, 16], (Kind::Float, Device::Cpu));
        let (g_before, ema_before, d_before) = tch::no_grad(|| {
            (
                narrow.g.forward(&z).unwrap(),
                narrow.g_ema.forward(&z).unwrap(),
                narrow.discriminate(&images),
            )
        });

        let mut wide = widen_run(&dir, &[16, 16, 12, 8]).unwrap();
        assert_eq!(wide.step, 3);
        let (g_after, ema_after, d_after) = tch::no_grad(|| {
            (
                wide.g.forward(&z).unwrap(),
                wide.g_ema.forward(&z).unwrap(),
                wide.discriminate(&images),
            )
        });
        assert!(
            max_diff(&g_before, &g_after) < 1e-4,
            "G changed: {}",
            max_diff(&g_before, &g_after)
        );
        assert!(max_diff(&ema_before, &ema_after) < 1e-4, "G_ema changed");
        assert!(
            max_diff(&d_before, &d_after) < 1e-4,
            "D changed: {d_before} vs {d_after}"
        );

        // The new channels start silent (zero rows) and training wakes them.
        let last_conv = |t: &GanTrainer| {
            t.g.named_tensors()
                .into_iter()
                .find(|(k, _)| k == "layer8.conv.weight")
                .unwrap()
                .1
        };
        let w = last_conv(&wide);
        assert_eq!(w.size(), vec![8, 8, 3, 3]);
        assert_eq!(
            w.narrow(0, 4, 4).abs().sum(Kind::Float).double_value(&[]),
            0.0
        );
        for _ in 0..2 {
            let losses = wide.train_step(&images);
            assert!(losses.d_loss.is_finite() && losses.g_loss.is_finite());
        }
        assert!(
            last_conv(&wide)
                .narrow(0, 4, 4)
                .abs()
                .sum(Kind::Float)
                .double_value(&[])
                > 0.0
        );

        // The record and the narrow originals are on disk, and the wide run resumes.
        let resumed = GanTrainer::resume(&dir, Device::Cpu).unwrap().unwrap();
        assert_eq!(resumed.settings.channels, vec![16, 16, 12, 8]);
        assert_eq!(
            resumed.widenings,
            vec![Widening {
                step: 3,
                from: vec![16, 16, 8, 4],
                to: vec![16, 16, 12, 8]
            }]
        );
        assert!(dir.join("checkpoint-step3-16_16_8_4.safetensors").exists());
        assert!(dir.join("state-step3-16_16_8_4.json").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn widths_that_narrow_or_change_resolution_are_refused() {
        let err = check_widths(&[16, 8], &[16, 4]).unwrap_err().to_string();
        assert!(
            err.contains("narrow") && err.contains("8 from 8 to 4"),
            "{err}"
        );
        let err = check_widths(&[16, 8], &[16, 8, 8]).unwrap_err().to_string();
        assert!(err.contains("resolution"), "{err}");
        assert!(check_widths(&[16, 8], &[16, 8]).is_err());
        assert!(check_widths(&[16, 8], &[32, 8])
            .unwrap_err()
            .to_string()
            .contains("4x4"));
        assert!(check_widths(&[16, 8], &[16, 16]).is_ok());
    }
}
