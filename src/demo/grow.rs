//! Growing a GAN run to twice its resolution, the Progressive GAN way (Karras et al. 2018,
//! section 2 and figure 2), and adopting a finished generator into a new run.
//!
//! [`grow_run`] adds one resolution `2R` to both networks of a run at `R`:
//!
//! - G gets a block pair `layer{2L+1}` (nearest ×2, 3×3 conv) and `layer{2L+2}`, and a new
//!   output block `output_2Rx2R`. `layer1..layer2L` keep their names and shapes, so
//!   `layer4` stays the same 8×8 layer and the dissection keeps its vocabulary.
//! - D gets a new `from_rgb` at `2R` and a block (two 3×3 convs and a 2× average pool) in
//!   front of the blocks it had.
//!
//! For `fade_steps` steps the new blocks are faded in while α goes linearly from 0 to 1:
//!
//! ```text
//! G(z)  = (1 − α) · up₂(toRGB_R(h_R)) + α · toRGB_2R(block_2R(h_R))     h_R: G's last activation at R
//! D(x)  = D_rest((1 − α) · act(fromRGB_R(pool₂(x))) + α · block_2R(act(fromRGB_2R(x))))
//! ```
//!
//! `toRGB_R` (G's old output block) and `fromRGB_R` (D's old input layer) are kept, with
//! their Adam moments, in a [`super::fade::Fade`] beside the networks and go on training. At α = 0 both
//! networks compute exactly what they computed before growing (a test checks it), so the
//! new blocks enter without a shock. Once α reaches 1 the kept blocks are dropped and the
//! run is a plain Progressive GAN at `2R` that serves like any other.
//!
//! [`adopt_generator`] starts a run from a finished generator file (for example the
//! bundled one) when the run that made it is gone: G and its moving average start as that
//! generator, and a fresh D is trained alone for a few hundred steps, so that G's first
//! gradients come from a discriminator that has learned something.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use tch::{Device, Kind, Tensor};

use super::data::SceneBatches;
use super::fade::{output_name, Adoption, Growth};
use super::gan::{GanSettings, GanTrainer, RunState};
use super::nn::load_vars;
use crate::model::ProgGan;

/// Grows the run in `dir` to `to`² (twice its resolution) with `channels` at the new
/// resolution, fading the new blocks in over `fade_steps` steps; `batch` may change with
/// it (Progressive GAN lowers the batch as the resolution grows). Returns the grown
/// trainer, already saved; the checkpoint at the old resolution is kept beside it.
/// A run already at `to`² or past it is left as it is (`Ok(None)`), so scripts can
/// repeat the call.
pub fn grow_run(
    dir: &Path,
    to: i64,
    channels: i64,
    fade_steps: i64,
    batch: Option<i64>,
) -> anyhow::Result<Option<GanTrainer>> {
    let state = RunState::read(dir)?;
    let from = state.settings.resolution();
    if from >= to {
        tracing::info!(resolution = from, to, dir = %dir.display(), "the run is at this resolution or past it already");
        return Ok(None);
    }
    if to != 2 * from {
        bail!(
            "--to {to}: the run is at {from}x{from}; it grows one resolution at a time, to {}",
            2 * from
        );
    }
    if let Some(last) = state.growths.last().filter(|g| g.fading(state.step)) {
        bail!(
            "the run is still fading in {}x{} (alpha {:.2} at step {}; the fade ends at step {}); \
             train it to there first",
            last.to,
            last.to,
            last.alpha(state.step),
            state.step,
            last.step + last.fade_steps
        );
    }
    if channels < 1 || fade_steps < 0 {
        bail!("--channels must be positive and --fade-steps 0 or more");
    }
    if let Some(b) = batch.filter(|&b| b < 1) {
        bail!("--batch must be positive, got {b}");
    }
    let old = GanTrainer::resume(dir, Device::Cpu)?
        .ok_or_else(|| anyhow::anyhow!("{} holds no checkpoint", dir.display()))?;
    let mut settings = old.settings.clone();
    settings.channels.push(channels);
    if let Some(b) = batch {
        settings.batch = b;
    }
    let growth = Growth {
        step: old.step,
        from,
        to,
        fade_steps,
        batch_from: batch
            .filter(|&b| b != old.settings.batch)
            .map(|_| old.settings.batch),
    };
    let old_tensors: BTreeMap<String, Tensor> = old.checkpoint_tensors().into_iter().collect();
    let grown = grow_tensors(&old_tensors, &settings, from)?;
    let mut trainer = GanTrainer::new(settings, Device::Cpu);
    trainer.widenings = old.widenings.clone();
    trainer.changes = old.changes.clone();
    trainer.origin = old.origin.clone();
    trainer.growths = old.growths.clone();
    trainer.growths.push(growth);
    trainer.load_checkpoint(old.step, &grown)?;

    // Keep the run as it was before growing, named by step and resolution.
    let tag = format!("step{}-{from}", old.step);
    for (name, kept) in [
        (
            "checkpoint.safetensors",
            format!("checkpoint-{tag}.safetensors"),
        ),
        ("state.json", format!("state-{tag}.json")),
    ] {
        let source = dir.join(name);
        if source.exists() {
            std::fs::copy(&source, dir.join(kept))?;
        }
    }
    trainer.save(dir)?;
    tracing::info!(
        step = trainer.step,
        from,
        to,
        channels,
        fade_steps,
        "grew run"
    );
    Ok(Some(trainer))
}

/// Maps the tensors of a run at `from`² onto `settings` (one resolution more). Every old
/// weight keeps its name and shape, except G's old output block and D's old `from_rgb`,
/// which move to the fade ([`Fade::tensors`]' names); the new blocks start fresh (from a
/// trainer seeded with the run's seed, so the result is deterministic). Adam's moments
/// are left out: as in Progressive GAN, the optimizers start afresh at each resolution.
fn grow_tensors(
    old: &BTreeMap<String, Tensor>,
    settings: &GanSettings,
    from: i64,
) -> anyhow::Result<BTreeMap<String, Tensor>> {
    let _guard = tch::no_grad_guard();
    let fresh = GanTrainer::new(settings.clone(), Device::Cpu);
    let out_old = output_name(from);
    let mut grown = BTreeMap::new();
    for (name, template) in fresh.checkpoint_tensors() {
        if name.starts_with("adam_") {
            continue;
        }
        let tensor = match old.get(&name) {
            // D's input layer is new at the new resolution: the old one moves to the fade.
            Some(_) if name.starts_with("d.from_rgb.") => template.copy(),
            Some(source) if source.size() == template.size() => source.to_kind(Kind::Float),
            Some(source) => bail!(
                "`{name}` is {:?} in the checkpoint but {:?} after growing",
                source.size(),
                template.size()
            ),
            None => template.copy(),
        };
        grown.insert(name, tensor);
    }
    let moved = [
        ("g.", out_old.as_str(), "g_fade."),
        ("g_ema.", out_old.as_str(), "g_ema_fade."),
        ("d.", "from_rgb", "d_fade."),
    ];
    for (name, tensor) in old {
        for (prefix, block, fade_prefix) in moved {
            if let Some(rest) = name.strip_prefix(prefix) {
                if rest.starts_with(&format!("{block}.")) {
                    grown.insert(format!("{fade_prefix}{rest}"), tensor.to_kind(Kind::Float));
                }
            }
        }
    }
    Ok(grown)
}

/// Starts a run in `dir` from the generator in `generator` (G and its moving average both
/// start as it), with a fresh D trained alone on rendered scenes for `d_steps` steps.
/// `settings.z_dim` and `settings.channels` are taken from the generator.
pub fn adopt_generator(
    dir: &Path,
    generator: &Path,
    mut settings: GanSettings,
    d_steps: i64,
    device: Device,
) -> anyhow::Result<GanTrainer> {
    if dir.join("state.json").exists() {
        bail!(
            "{} holds a run already; adopt starts a new one",
            dir.display()
        );
    }
    let model = ProgGan::load(generator, Device::Cpu)
        .with_context(|| format!("loading {}", generator.display()))?;
    settings.z_dim = model.z_dim();
    settings.channels = model.config().channels.clone();
    let mut trainer = GanTrainer::new(settings, device);
    let weights: BTreeMap<String, Tensor> = model
        .named_tensors()
        .into_iter()
        .flat_map(|(k, t)| {
            [
                (format!("g.{k}"), t.shallow_clone()),
                (format!("g_ema.{k}"), t),
            ]
        })
        .collect();
    {
        let _guard = tch::no_grad_guard();
        load_vars(trainer.g.var_store(), "g.", &weights)?;
        load_vars(trainer.g_ema.var_store(), "g_ema.", &weights)?;
    }
    trainer.origin = Some(Adoption {
        generator: generator.display().to_string(),
        d_steps,
    });
    std::fs::create_dir_all(dir)?;
    let s = trainer.settings.clone();
    let batches = SceneBatches::spawn(
        s.seed ^ 0xad0b7,
        0,
        s.batch as usize,
        s.resolution() as usize,
    );
    let bar = crate::progress::progress_bar(d_steps as u64, "train D alone");
    for i in 0..d_steps {
        let batch = batches.next()?;
        let do_r1 = s.r1_every > 0 && i % s.r1_every == 0;
        let losses = trainer.d_step(&batch.images, do_r1);
        bar.inc(1);
        if (i + 1) % 50 == 0 {
            tracing::info!(
                step = i + 1,
                d = losses.d_loss,
                real = losses.real_score,
                fake = losses.fake_score,
                "D alone"
            );
        }
    }
    bar.finish();
    trainer.save(dir)?;
    Ok(trainer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::gan::tests::tiny_settings;
    use crate::demo::gan::write_compact_state;
    use crate::demo::teacher::LabelTeacher;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ganpaint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    fn images(size: i64) -> Tensor {
        tch::manual_seed(5);
        Tensor::rand([4, 3, size, size], (Kind::Float, Device::Cpu)) * 2.0 - 1.0
    }

    /// A tiny run with these widths, trained a few steps and saved in `dir`.
    fn small_run(dir: &Path, channels: &[i64]) -> GanTrainer {
        let settings = GanSettings {
            channels: channels.to_vec(),
            ..tiny_settings()
        };
        let size = settings.resolution();
        let mut trainer = GanTrainer::new(settings, Device::Cpu);
        for _ in 0..3 {
            trainer.train_step(&images(size));
        }
        std::fs::create_dir_all(dir).unwrap();
        trainer.save(dir).unwrap();
        trainer
    }

    #[test]
    fn a_grown_run_computes_what_it_did_until_the_new_blocks_fade_in() {
        let dir = temp_dir("grow");
        let small = small_run(&dir, &[16, 16, 8]);
        let z = Tensor::randn([4, 16], (Kind::Float, Device::Cpu));
        let reals = images(32);
        let pooled = reals.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
        let (g_before, ema_before, d_before) = tch::no_grad(|| {
            (
                small.generate(&z, false),
                small.generate(&z, true),
                small.discriminate(&pooled),
            )
        });

        let mut grown = grow_run(&dir, 32, 8, 4, Some(2)).unwrap().unwrap();
        assert_eq!(grown.settings.channels, vec![16, 16, 8, 8]);
        assert_eq!(grown.settings.batch, 2);
        assert_eq!(grown.settings.resolution(), 32);
        assert_eq!(grown.growths.len(), 1);
        assert_eq!(grown.growths[0].batch_from, Some(4));
        assert_eq!(grown.fade.as_ref().unwrap().alpha(grown.step), 0.0);
        let up = |x: &Tensor| x.upsample_nearest2d([32, 32], None, None);
        let (g_after, ema_after, d_after) = tch::no_grad(|| {
            (
                grown.generate(&z, false),
                grown.generate(&z, true),
                grown.discriminate(&reals),
            )
        });
        assert_eq!(g_after.size(), vec![4, 3, 32, 32]);
        assert!(max_diff(&up(&g_before), &g_after) < 1e-5, "G changed");
        assert!(
            max_diff(&up(&ema_before), &ema_after) < 1e-5,
            "G_ema changed"
        );
        assert!(
            max_diff(&d_before, &d_after) < 1e-4,
            "D changed: {d_before} vs {d_after}"
        );
        // `layer1..layer6` kept their weights; the old run is kept beside the new one.
        let weight = |t: &GanTrainer, key: &str| {
            t.g.named_tensors()
                .into_iter()
                .find(|(k, _)| k == key)
                .unwrap()
                .1
        };
        assert!(weight(&small, "layer4.conv.weight").equal(&weight(&grown, "layer4.conv.weight")));
        assert!(dir.join("checkpoint-step3-16.safetensors").exists());
        assert!(dir.join("state-step3-16.json").exists());

        // Half-way through the fade: the run resumes with its fade, blend and all.
        for _ in 0..2 {
            let losses = grown.train_step(&images(32).narrow(0, 0, 2));
            assert!(losses.d_loss.is_finite() && losses.g_loss.is_finite());
        }
        assert_eq!(grown.fade.as_ref().unwrap().alpha(grown.step), 0.5);
        grown.save(&dir).unwrap();
        let resumed = GanTrainer::resume(&dir, Device::Cpu).unwrap().unwrap();
        let same =
            tch::no_grad(|| max_diff(&grown.generate(&z, true), &resumed.generate(&z, true)));
        assert!(same < 1e-6, "resumed fade differs by {same}");
        // Growing again mid-fade is refused; at the fade's end the old blocks go.
        let err = grow_run(&dir, 64, 8, 4, None).err().unwrap().to_string();
        assert!(err.contains("still fading"), "{err}");
        for _ in 0..2 {
            grown.train_step(&images(32).narrow(0, 0, 2));
        }
        assert!(grown.fade.is_none());
        grown.save(&dir).unwrap();
        assert!(
            grow_run(&dir, 32, 8, 4, None).unwrap().is_none(),
            "already 32²"
        );
        let err = grow_run(&dir, 128, 8, 4, None).err().unwrap().to_string();
        assert!(err.contains("one resolution at a time"), "{err}");
        // Once faded in, the exported generator is a plain ProgGan at 32².
        let exported = ProgGan::load(&dir.join("generator_ema.safetensors"), Device::Cpu).unwrap();
        assert_eq!(exported.resolution(), 32);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn frozen_old_layers_hold_what_the_old_resolution_drew_while_the_new_block_trains() {
        let dir = temp_dir("frozen");
        small_run(&dir, &[16, 16, 8]);
        let mut grown = grow_run(&dir, 32, 8, 10, None).unwrap().unwrap();
        // G at 16² had layer1..layer6; hold them all (and so the fading old output block).
        grown
            .retune(&crate::demo::gan::Retune {
                frozen_layers: Some(6),
                ..Default::default()
            })
            .unwrap();
        let snapshot = |t: &GanTrainer| -> BTreeMap<String, Tensor> {
            t.checkpoint_tensors()
                .into_iter()
                .filter(|(k, _)| k.starts_with("g.") || k.starts_with("g_fade."))
                .map(|(k, v)| (k, v.copy()))
                .collect()
        };
        let before = snapshot(&grown);
        for _ in 0..3 {
            let losses = grown.train_step(&images(32));
            assert!(losses.d_loss.is_finite() && losses.g_loss.is_finite());
        }
        let after = snapshot(&grown);
        let held = |k: &str| {
            k.starts_with("g_fade.") || (1..=6).any(|l| k.starts_with(&format!("g.layer{l}.")))
        };
        let mut moved = Vec::new();
        for (name, old) in &before {
            let same = old.equal(&after[name]);
            if held(name) {
                assert!(same, "{name} is held but moved");
            } else if !same {
                moved.push(name.clone());
            }
        }
        assert!(
            moved.iter().any(|k| k.starts_with("g.layer7."))
                && moved.iter().any(|k| k.starts_with("g.output_32x32.")),
            "the new blocks did not train: {moved:?}"
        );
        // Holding every layer leaves nothing to train, and is refused.
        let err = grown
            .retune(&crate::demo::gan::Retune {
                frozen_layers: Some(8),
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("--freeze-g-layers 8"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn layers_frozen_past_the_old_ones_hold_during_the_fade_too() {
        let dir = temp_dir("frozen-past");
        small_run(&dir, &[16, 16, 8]);
        let mut grown = grow_run(&dir, 32, 8, 10, None).unwrap().unwrap();
        grown
            .retune(&crate::demo::gan::Retune {
                frozen_layers: Some(7),
                ..Default::default()
            })
            .unwrap();
        assert!(grown.fade.is_some());
        let layer7 = |t: &GanTrainer| -> Vec<Tensor> {
            t.g.named_tensors()
                .into_iter()
                .filter(|(k, _)| k.starts_with("layer7."))
                .map(|(_, v)| v.copy())
                .collect()
        };
        let before = layer7(&grown);
        assert!(!before.is_empty());
        for _ in 0..2 {
            grown.train_step(&images(32));
        }
        for (a, b) in before.iter().zip(layer7(&grown)) {
            assert!(a.equal(&b), "layer7 is frozen but moved while fading");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_anchored_run_pulls_its_pooled_images_to_what_it_grew_from_and_keeps_the_anchor() {
        let dir = temp_dir("anchor");
        let small = small_run(&dir, &[16, 16, 8]);
        let copy_of = |g: &ProgGan, name: &str| {
            let path = dir.join(name);
            g.save_safetensors(&path).unwrap();
            ProgGan::load(&path, Device::Cpu).unwrap()
        };
        let old = copy_of(&small.g, "old.safetensors");
        // No fade, old layers held: the new block alone draws, and only the anchor says
        // what it should look like at 16².
        let mut grown = grow_run(&dir, 32, 8, 0, None).unwrap().unwrap();
        grown
            .retune(&crate::demo::gan::Retune {
                frozen_layers: Some(6),
                anchor_weight: Some(50.0),
                ..Default::default()
            })
            .unwrap();
        // A generator of another resolution is refused by name.
        let same = copy_of(&grown.g_ema, "same.safetensors");
        let err = grown.set_anchor(&same).unwrap_err();
        assert!(err.to_string().contains("anchors to 16x16"), "{err}");
        let difference = grown.set_anchor(&old).unwrap();
        assert!(difference < 1e-6, "held layers moved: {difference}");
        let z = Tensor::randn([8, 16], (Kind::Float, Device::Cpu));
        let anchor = grown.anchor.as_ref().unwrap();
        // The anchor draws what the old generator drew.
        let drawn = tch::no_grad(|| old.forward(&z).unwrap());
        assert!(max_diff(&anchor.target(&grown.g, &z, None), &drawn) < 1e-5);
        let loss_now = |t: &GanTrainer| tch::no_grad(|| anchor_loss(t, &z));
        let before = loss_now(&grown);
        let mut logged = Vec::new();
        // 40 steps: the tests share libtorch's one random generator, so the draws this test
        // gets depend on the tests running beside it; after 20 steps one such run here had
        // only cut the loss by a third (6.08 → 3.89).
        for _ in 0..40 {
            logged.push(grown.train_step(&images(32)).anchor);
        }
        let after = loss_now(&grown);
        assert!(
            logged.iter().all(|l| l.is_finite() && *l > 0.0),
            "{logged:?}"
        );
        assert!(after < 0.5 * before, "anchor loss {before} → {after}");
        // The anchor travels with the compact state.
        let out = dir.join("state");
        write_compact_state(&grown, &out).unwrap();
        let resumed = GanTrainer::resume(&out, Device::Cpu).unwrap().unwrap();
        assert!(resumed.anchor.is_some());
        assert_eq!(resumed.settings.anchor_weight, 50.0);
        assert!((loss_now(&resumed) - after).abs() < 0.05 * after.max(1e-3));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A tiny run grown from 16² to 32² with its first 6 layers held and `retune`
    /// applied, and a teacher for it: the 16² generator (saved in `dir`, its path returned
    /// too) with a segmenter that tells red from not red at 16², every pixel teaching.
    fn grown_with_teacher(
        dir: &Path,
        retune: crate::demo::gan::Retune,
    ) -> (GanTrainer, LabelTeacher, std::path::PathBuf) {
        let small = small_run(dir, &[16, 16, 8]);
        let path = dir.join("teacher.safetensors");
        small.g.save_safetensors(&path).unwrap();
        let old = ProgGan::load(&path, Device::Cpu).unwrap();
        let mut grown = grow_run(dir, 32, 8, 0, None).unwrap().unwrap();
        grown
            .retune(&crate::demo::gan::Retune {
                frozen_layers: Some(6),
                ..retune
            })
            .unwrap();
        let segmenter = Box::new(crate::segment::testing::RedSegmenter::new());
        let teacher = LabelTeacher::new(old, segmenter, 16, 0.0).unwrap();
        teacher.check(16, 32).unwrap();
        (grown, teacher, path)
    }

    #[test]
    fn a_taught_run_learns_its_teachers_labels_and_needs_its_teacher_to_resume() {
        let dir = temp_dir("teacher");
        let (mut grown, teacher, _) = grown_with_teacher(
            &dir,
            crate::demo::gan::Retune {
                teacher_weight: Some(50.0),
                ..Default::default()
            },
        );
        grown.teacher = Some(teacher);
        let z = Tensor::randn([8, 16], (Kind::Float, Device::Cpu));
        let loss_now = |t: &GanTrainer| {
            tch::no_grad(|| {
                let images = t.generate(&z, false);
                t.teacher
                    .as_ref()
                    .unwrap()
                    .loss(&z, &images)
                    .double_value(&[])
            })
        };
        let before = loss_now(&grown);
        let logged: Vec<f64> = (0..30)
            .map(|_| grown.train_step(&images(32)).teacher)
            .collect();
        let after = loss_now(&grown);
        assert!(
            logged.iter().all(|l| l.is_finite() && *l > 0.0),
            "{logged:?}"
        );
        assert!(after < 0.8 * before, "teacher loss {before} → {after}");
        // The teacher is not stored: a resume without one is refused, by the flag's name.
        let out = dir.join("state");
        write_compact_state(&grown, &out).unwrap();
        let resume = |teacher_weight, steps| crate::demo::gan::GanRun {
            dir: out.clone(),
            steps,
            checkpoint_every: 100,
            sample_every: 100,
            retune: crate::demo::gan::Retune {
                teacher_weight,
                ..Default::default()
            },
            keep_from: None,
            anchor: None,
            teacher: None,
        };
        let err = resume(None, grown.step + 1)
            .run(grown.settings.clone(), Device::Cpu)
            .err()
            .unwrap();
        assert!(
            format!("{err:#}").contains("--teacher-segmenter"),
            "{err:#}"
        );
        // A command for steps the run is past trains nothing, and needs no teacher.
        let past = resume(None, grown.step)
            .run(grown.settings.clone(), Device::Cpu)
            .unwrap();
        assert_eq!(past.step, grown.step);
        let resumed = resume(Some(0.0), grown.step + 1)
            .run(grown.settings.clone(), Device::Cpu)
            .unwrap();
        assert_eq!(resumed.settings.teacher_weight, 0.0);
        assert_eq!(resumed.step, grown.step + 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_share_loss_moves_gs_shares_towards_the_reference_and_needs_a_teacher() {
        use crate::demo::data::{mix, render_batch};
        use crate::demo::gan::{share_references, SHARE_REFERENCE_SCENES};
        use crate::demo::teacher::ShareReference;
        let dir = temp_dir("shares");
        let (mut grown, teacher, path) = grown_with_teacher(
            &dir,
            crate::demo::gan::Retune {
                share_weight: Some(200.0),
                ..Default::default()
            },
        );
        // The run's reference is the first scenes of its training stream at G's resolution:
        // those scenes' own shares are at distance 0 from it.
        let (reference, presence) = share_references(&teacher, &grown.settings).unwrap();
        let seeds: Vec<u64> = (0..SHARE_REFERENCE_SCENES)
            .map(|i| mix(grown.settings.seed, i))
            .collect();
        let scenes = render_batch(&seeds, 32).images;
        let (soft, presence_scores) = teacher.both_shares_of(&scenes).unwrap();
        let own = reference.loss(&soft);
        assert!(own.double_value(&[]).abs() < 1e-6, "{own:?}");
        let own = presence.presence_loss(&presence_scores);
        assert!(own.double_value(&[]).abs() < 1e-6, "{own:?}");
        // Held to scenes of two kinds, a fifth red and seven tenths red, G's shares move
        // there (the teacher's label loss is off: its weight is 0).
        let red = Tensor::from_slice2(&[[0.8f32, 0.2], [0.3, 0.7]]).repeat([2, 1]);
        grown.teacher = Some(teacher.with_reference(ShareReference::from_shares(&red).unwrap()));
        // Measured on 16 latents (G trains on others). Alone, 60 steps cut it by a quarter;
        // beside other tests that reseed libtorch's shared generator (the batches G trains
        // on then repeat), by 11% to 30% over 14 runs, so the bar is 5%.
        let z = Tensor::randn([16, 16], (Kind::Float, Device::Cpu));
        let loss_now = |t: &GanTrainer| {
            tch::no_grad(|| {
                let images = t.generate(&z, false);
                let shares = crate::demo::teacher::Wanted {
                    shares: true,
                    ..Default::default()
                };
                let losses = t.teacher.as_ref().unwrap().losses(&z, &images, shares);
                losses.shares.unwrap().double_value(&[])
            })
        };
        let before = loss_now(&grown);
        let logged: Vec<(f64, f64)> = (0..60)
            .map(|_| {
                let l = grown.train_step(&images(32));
                (l.shares, l.teacher)
            })
            .collect();
        assert!(
            logged
                .iter()
                .all(|&(s, t)| s.is_finite() && s > 0.0 && t == 0.0),
            "{logged:?}"
        );
        let after = loss_now(&grown);
        assert!(after < 0.95 * before, "share loss {before} → {after}");
        // The share loss needs the teacher's segmenter: a resume without one is refused.
        let out = dir.join("state");
        write_compact_state(&grown, &out).unwrap();
        let resume = |teacher| crate::demo::gan::GanRun {
            dir: out.clone(),
            steps: grown.step + 1,
            checkpoint_every: 100,
            sample_every: 100,
            // The presence loss joins on resume.
            retune: crate::demo::gan::Retune {
                presence_weight: Some(1.0),
                ..Default::default()
            },
            keep_from: None,
            anchor: None,
            teacher,
        };
        let err = resume(None)
            .run(grown.settings.clone(), Device::Cpu)
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("--share-weight 0"), "{err:#}");
        // With the teacher's files, the run counts its reference and trains with the loss.
        let segmenter = dir.join("segmenter.safetensors");
        crate::segment::demo::DemoSegmenter::new(Device::Cpu)
            .save(&segmenter)
            .unwrap();
        let files = crate::demo::gan::TeacherFiles {
            generator: path.clone(),
            segmenter: segmenter.clone(),
            size: 16,
            images: 4,
            min_patch: 0.5,
            label_size: Some(8),
            label_segmenter: Some(segmenter.clone()),
            presence_classes: Vec::new(),
        };
        // Classes for a presence loss the run does not have are refused.
        let without_presence = crate::demo::gan::GanRun {
            retune: Default::default(),
            ..resume(Some(crate::demo::gan::TeacherFiles {
                presence_classes: vec!["cloud".into()],
                ..files.clone()
            }))
        };
        assert_eq!(grown.settings.presence_weight, 0.0);
        let err = without_presence
            .run(grown.settings.clone(), Device::Cpu)
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("--presence-weight"), "{err:#}");
        let resumed = resume(Some(files))
            .run(grown.settings.clone(), Device::Cpu)
            .unwrap();
        assert_eq!(resumed.step, grown.step + 1);
        let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
        let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
        assert!(last["shares"].as_f64().unwrap() > 0.0, "{last}");
        assert!(last["presence"].as_f64().unwrap() > 0.0, "{last}");
        assert_eq!(resumed.settings.presence_weight, 1.0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn anchor_loss(t: &GanTrainer, z: &Tensor) -> f64 {
        let images = t.generate(z, false);
        t.anchor
            .as_ref()
            .unwrap()
            .loss(&t.g, z, None, &images)
            .double_value(&[])
    }

    #[test]
    fn a_compact_state_resumes_mid_fade_with_fresh_optimizers() {
        let dir = temp_dir("compact");
        small_run(&dir, &[16, 16, 8]);
        let mut grown = grow_run(&dir, 32, 8, 10, None).unwrap().unwrap();
        grown.train_step(&images(32));
        let out = dir.join("state");
        write_compact_state(&grown, &out).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "d.safetensors",
                "g.safetensors",
                "g_ema.safetensors",
                "state.json"
            ]
        );
        let stored = Tensor::read_safetensors(out.join("g.safetensors")).unwrap();
        assert!(stored.iter().all(|(_, t)| t.kind() == Kind::Half));
        assert!(stored
            .iter()
            .any(|(k, _)| k.starts_with("g_fade.output_16x16")));

        let mut resumed = GanTrainer::resume(&out, Device::Cpu).unwrap().unwrap();
        assert_eq!(resumed.step, grown.step);
        assert_eq!(resumed.growths, grown.growths);
        assert!(resumed.fade.is_some());
        let z = Tensor::randn([2, 16], (Kind::Float, Device::Cpu));
        let diff =
            tch::no_grad(|| max_diff(&grown.generate(&z, true), &resumed.generate(&z, true)));
        assert!(diff < 0.05, "f16 state differs by {diff}");
        // Adam restarts from its own step 0 (so its bias correction is right) and trains.
        let state: BTreeMap<String, Tensor> = resumed.checkpoint_tensors().into_iter().collect();
        assert_eq!(state["adam_g.step"].int64_value(&[]), 0);
        let losses = resumed.train_step(&images(32));
        assert!(losses.d_loss.is_finite());
        let state: BTreeMap<String, Tensor> = resumed.checkpoint_tensors().into_iter().collect();
        assert_eq!(state["adam_g.step"].int64_value(&[]), 1);
        assert_eq!(state["adam_g_fade.step"].int64_value(&[]), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_adopted_run_starts_as_the_generator_with_a_trained_discriminator() {
        let dir = temp_dir("adopt");
        let small = small_run(&dir.join("source"), &[16, 16, 8, 8]);
        let generator = dir.join("g.safetensors");
        small.g_ema.save_safetensors(&generator).unwrap();
        let settings = GanSettings {
            z_dim: 0,
            channels: Vec::new(),
            ..tiny_settings()
        };
        let run = dir.join("run");
        let adopted = adopt_generator(&run, &generator, settings.clone(), 2, Device::Cpu).unwrap();
        assert_eq!(adopted.settings.channels, vec![16, 16, 8, 8]);
        assert_eq!(adopted.settings.z_dim, 16);
        assert_eq!(adopted.step, 0, "D's own steps are not GAN steps");
        let z = Tensor::randn([3, 16], (Kind::Float, Device::Cpu));
        let expected = tch::no_grad(|| small.g_ema.forward(&z).unwrap());
        for ema in [false, true] {
            let got = tch::no_grad(|| adopted.generate(&z, ema));
            assert!(max_diff(&expected, &got) < 1e-6);
        }
        let state: BTreeMap<String, Tensor> = adopted.checkpoint_tensors().into_iter().collect();
        assert_eq!(state["adam_d.step"].int64_value(&[]), 2, "D trained alone");
        assert_eq!(state["adam_g.step"].int64_value(&[]), 0, "G did not move");
        let resumed = GanTrainer::resume(&run, Device::Cpu).unwrap().unwrap();
        assert_eq!(resumed.origin.as_ref().unwrap().d_steps, 2);
        let err = adopt_generator(&run, &generator, settings, 2, Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("holds a run already"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
