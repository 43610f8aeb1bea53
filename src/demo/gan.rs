//! Training the demo generator: the project's own Progressive GAN architecture
//! ([`crate::model::ProgGan`], the same code that serves and dissects) against a
//! Progressive-GAN-style discriminator, on scenes rendered on the fly by
//! [`super::scene`].
//!
//! Recipe (chosen to converge in about two CPU hours on two cores):
//! - non-saturating logistic loss, lazy R1 penalty on reals (every `r1_every` steps);
//! - equalized learning rate in both networks, Adam(β₁ = 0, β₂ = 0.99);
//! - minibatch standard deviation in D, so that G is pushed to cover the scene variety;
//! - an exponential moving average of G's weights, which is what gets exported;
//! - bf16 activations with fp32 master weights on CPUs that have AMX/AVX-512-BF16.
//!
//! A run folder holds `checkpoint.safetensors` (G, G_ema, D and both Adam states),
//! `state.json` (step and settings), `log.jsonl` (losses) and `samples-<step>.png`.
//! Starting again with the same folder resumes from the checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use super::data::SceneBatches;
use super::eval::{line_spectra, SPECTRUM_BAND_START};
use super::fade::{latent, old_layers, run_held, Adoption, Anchor, Fade, Growth};
use super::nn::{copy_vars, ema_update, load_vars, Adam, EqLayer};
use super::teacher::{LabelTeacher, ShareReference, Wanted};
use crate::model::{ProgGan, ProgGanConfig};

/// Everything that defines a run; stored in `state.json` so a resume cannot silently
/// change the recipe.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GanSettings {
    pub z_dim: i64,
    pub channels: Vec<i64>,
    pub batch: i64,
    pub lr: f64,
    pub r1_gamma: f64,
    pub r1_every: i64,
    pub ema_beta: f64,
    pub bf16: bool,
    pub seed: u64,
    /// G's first this many layers (`layer1..layerK`) are held fixed: they run without
    /// gradients and their weights do not move. 0 trains all of G. A run grown from a
    /// finished generator can hold the resolutions it already draws well and train only
    /// the new blocks (and, when K covers every old layer, the old output block is held
    /// too while it fades out).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frozen_layers: i64,
    /// Weight of the anchor loss (see [`Anchor`]): the mean squared difference between
    /// G's images, average-pooled to the resolution the run grew from, and what the
    /// grown-from generator drew there. 0 (or no anchor): off.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub anchor_weight: f64,
    /// Weight of the label teacher's loss (see [`LabelTeacher`]): the cross-entropy of G's
    /// segmented images against the labels of a smaller generator's scenes for the same
    /// latents. 0 (or no teacher): off.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub teacher_weight: f64,
    /// Weight of the share loss (see [`crate::demo::teacher`]): the distance between how
    /// each class's share spreads over G's images and over rendered scenes, as the label
    /// teacher's segmenter sees them. 0 (or no teacher): off.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub share_weight: f64,
    /// Weight of the presence loss (see [`crate::demo::teacher`]): the distance between
    /// how each class's presence score (a margin over its most decided pixels) spreads
    /// over G's images and over rendered scenes, which holds in how many images a class
    /// appears. 0 (or no teacher): off.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub presence_weight: f64,
    /// The share loss's temperature (see [`LabelTeacher::with_share_temperature`]): the
    /// segmenter's scores are divided by it before the softmax of a soft share, on both
    /// sides. 1: its own probabilities; under 1, closer to counting each pixel for its most
    /// likely class.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub share_temperature: f64,
    /// Weight of the sharpness loss (see [`sharpness_loss`]): how far G's images' mean
    /// luminance gradient falls short of the rendered scenes' of the same step. 0: off.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub sharpness_weight: f64,
    /// Weight of the spectrum loss (see [`spectrum_loss`]): how far the fine-detail power
    /// spectrum of G's images strays from the rendered scenes' of the same step, too much
    /// (a stripe) as much as too little (blur). 0: off.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub spectrum_weight: f64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

fn one() -> f64 {
    1.0
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

impl GanSettings {
    pub fn generator_config(&self) -> ProgGanConfig {
        ProgGanConfig {
            z_dim: self.z_dim,
            channels: self.channels.clone(),
        }
    }
    pub fn resolution(&self) -> i64 {
        self.generator_config().resolution()
    }
}

/// Progressive GAN's discriminator, mirroring the generator's widths: fromRGB at R², two
/// 3×3 convs and a 2× average pool per resolution, then minibatch-stddev, a 3×3 conv and
/// two dense layers at 4².
pub struct Discriminator {
    from_rgb: EqLayer,
    blocks: Vec<(EqLayer, EqLayer)>,
    final_conv: EqLayer,
    dense: EqLayer,
    out: EqLayer,
}

impl Discriminator {
    pub fn new(path: &nn::Path, g: &ProgGanConfig) -> Self {
        let c = &g.channels;
        let last = c.len() - 1;
        let from_rgb = EqLayer::conv(path / "from_rgb", 3, c[last], 1);
        let blocks = (1..=last)
            .rev()
            .map(|k| {
                let p = path / format!("block{k}");
                (
                    EqLayer::conv(&p / "conv0", c[k], c[k], 3),
                    EqLayer::conv(&p / "conv1", c[k], c[k - 1], 3),
                )
            })
            .collect();
        let final_conv = EqLayer::conv(path / "final_conv", c[0] + 1, c[0], 3);
        let dense = EqLayer::dense(path / "dense", c[0] * 16, c[0], std::f64::consts::SQRT_2);
        let out = EqLayer::dense(path / "out", c[0], 1, 1.0);
        Discriminator {
            from_rgb,
            blocks,
            final_conv,
            dense,
            out,
        }
    }

    /// images: [N, 3, R, R] → realness logits [N] (f32).
    pub fn forward(&self, images: &Tensor) -> Tensor {
        self.forward_faded(images, None)
    }

    /// As [`Self::forward`], while a new first block fades in (see [`super::grow`]):
    /// `fade` is the kept input layer of the resolution below and the new block's weight
    /// α; its output is blended with that layer's on the 2×-pooled images.
    pub fn forward_faded(&self, images: &Tensor, fade: Option<(&EqLayer, f64)>) -> Tensor {
        let act = |x: Tensor| crate::model::proggan::leaky_relu(&x).expect("leaky relu");
        let pool = |x: &Tensor| x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
        let mut x = act(self.from_rgb.forward(images));
        for (index, (conv0, conv1)) in self.blocks.iter().enumerate() {
            x = act(conv0.forward(&x));
            x = act(conv1.forward(&x));
            x = pool(&x);
            if let (0, Some((from_rgb, alpha))) = (index, fade) {
                let old = act(from_rgb.forward(&pool(images)));
                x = old * (1.0 - alpha) + x * alpha;
            }
        }
        let x = minibatch_stddev(&x, 4);
        let x = act(self.final_conv.forward(&x));
        let x = act(self.dense.forward(&x.flatten(1, -1)));
        self.out.forward(&x).to_kind(Kind::Float).view([-1])
    }
}

/// Appends one feature map holding the batch's mean standard deviation, computed within
/// groups of `group` images, so D can see a lack of variety.
fn minibatch_stddev(x: &Tensor, group: i64) -> Tensor {
    let (n, c, h, w) = x.size4().expect("4-d activations");
    let g = group.min(n);
    let g = if n % g == 0 { g } else { 1 };
    let y = x.to_kind(Kind::Float).view([g, n / g, c, h, w]);
    let y = &y - y.mean_dim(0, true, None);
    let y = (y.square().mean_dim(0, false, None) + 1e-8).sqrt();
    let y = y.mean_dim([1i64, 2, 3].as_slice(), false, None); // [n/g]
    let y = y
        .view([1, n / g, 1, 1, 1])
        .repeat([g, 1, 1, h, w])
        .view([n, 1, h, w]);
    Tensor::cat(&[x.shallow_clone(), y.to_kind(x.kind())], 1)
}

/// Losses of one step, for the log.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StepLosses {
    pub step: i64,
    pub d_loss: f64,
    pub g_loss: f64,
    pub r1: f64,
    pub real_score: f64,
    pub fake_score: f64,
    /// The anchor loss (0 when off).
    pub anchor: f64,
    /// The label teacher's loss (0 when off).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub teacher: f64,
    /// The share loss (0 when off).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub shares: f64,
    /// The presence loss (0 when off).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub presence: f64,
    /// The sharpness loss (0 when off).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub sharpness: f64,
    /// The spectrum loss (0 when off).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub spectrum: f64,
}

pub struct GanTrainer {
    pub settings: GanSettings,
    pub g: ProgGan,
    pub g_ema: ProgGan,
    d_vs: nn::VarStore,
    d: Discriminator,
    opt_g: Adam,
    opt_d: Adam,
    pub step: i64,
    /// Carried from `state.json` so a widened run keeps its record.
    pub widenings: Vec<Widening>,
    /// Carried from `state.json`: settings changed on resume.
    pub changes: Vec<SettingChange>,
    /// Carried from `state.json`: every growth of the run's resolution, oldest first.
    pub growths: Vec<Growth>,
    /// Carried from `state.json`: the generator the run started from, if adopted.
    pub origin: Option<Adoption>,
    /// The old resolution's blocks while a new one fades in.
    pub fade: Option<Fade>,
    /// The output block of the resolution the run grew from, when anchored.
    pub anchor: Option<Anchor>,
    /// The label teacher, when one is given (never stored with the run: its files are
    /// named again on each resume).
    pub teacher: Option<LabelTeacher>,
    compute_kind: Kind,
}

impl GanTrainer {
    pub fn new(settings: GanSettings, device: Device) -> Self {
        tch::manual_seed(settings.seed as i64);
        let config = settings.generator_config();
        let g = ProgGan::new(config.clone(), device);
        let g_ema = ProgGan::new(config.clone(), device);
        copy_vars(g_ema.var_store(), g.var_store());
        let d_vs = nn::VarStore::new(device);
        let d = Discriminator::new(&d_vs.root(), &config);
        let opt_g = Adam::new(g.var_store(), settings.lr, 0.0, 0.99);
        let opt_d = Adam::new(&d_vs, settings.lr, 0.0, 0.99);
        let compute_kind = if settings.bf16 {
            Kind::BFloat16
        } else {
            Kind::Float
        };
        GanTrainer {
            settings,
            g,
            g_ema,
            d_vs,
            d,
            opt_g,
            opt_d,
            step: 0,
            widenings: Vec::new(),
            changes: Vec::new(),
            growths: Vec::new(),
            origin: None,
            fade: None,
            anchor: None,
            teacher: None,
            compute_kind,
        }
    }

    fn sample_z(&self, n: i64) -> Tensor {
        Tensor::randn([n, self.settings.z_dim], (Kind::Float, self.g.device()))
            .to_kind(self.compute_kind)
    }

    /// G's images for `z` (its moving average's when `ema`), blended with the old
    /// resolution's while a new one fades in. G's frozen layers run without gradients.
    pub fn generate(&self, z: &Tensor, ema: bool) -> Tensor {
        self.generate_parts(z, ema).0
    }

    /// [`Self::generate`], and G's activation at the resolution below when it was computed
    /// without gradients (G's old layers all frozen): what the anchor draws from.
    fn generate_parts(&self, z: &Tensor, ema: bool) -> (Tensor, Option<Tensor>) {
        let g = if ema { &self.g_ema } else { &self.g };
        let frozen = if ema {
            0
        } else {
            self.settings.frozen_layers as usize
        };
        match &self.fade {
            Some(fade) => fade.generate_parts(g, ema, self.step, z, frozen),
            None => {
                let split = old_layers(g);
                let h = run_held(g, &latent(z), 0..split, frozen);
                let image = run_held(g, &h, split..g.layer_names().len(), frozen);
                (image, (frozen >= split).then_some(h))
            }
        }
    }

    fn critic(&self, images: &Tensor) -> Tensor {
        let fade = self.fade.as_ref().map(|f| f.discriminator_path(self.step));
        self.d.forward_faded(images, fade)
    }

    /// One D update and one G update. `reals`: [N, 3, R, R] in [-1, 1], f32.
    pub fn train_step(&mut self, reals: &Tensor) -> StepLosses {
        let do_r1 = self.settings.r1_every > 0 && self.step % self.settings.r1_every == 0;
        let mut losses = self.d_step(reals, do_r1);
        self.g_step(reals, &mut losses);
        self.step += 1;
        if self
            .fade
            .as_ref()
            .is_some_and(|f| !f.growth.fading(self.step))
        {
            tracing::info!(
                step = self.step,
                "fade complete: the old resolution's blocks are dropped"
            );
            self.fade = None;
        }
        losses
    }

    /// One D update (with the lazy R1 penalty on reals when `do_r1`); G does not move.
    pub fn d_step(&mut self, reals: &Tensor, do_r1: bool) -> StepLosses {
        let n = reals.size()[0];
        let reals = reals.to_device(self.g.device()).to_kind(self.compute_kind);
        let mut losses = StepLosses {
            step: self.step,
            ..Default::default()
        };
        self.opt_d.zero_grad();
        if let Some(fade) = self.fade.as_mut() {
            fade.zero_grad();
        }
        let fakes = tch::no_grad(|| self.generate(&self.sample_z(n), false));
        let reals = if do_r1 {
            reals.detach().set_requires_grad(true)
        } else {
            reals
        };
        let real_logits = self.critic(&reals);
        let fake_logits = self.critic(&fakes);
        let mut d_loss =
            (-&real_logits).softplus().mean(Kind::Float) + fake_logits.softplus().mean(Kind::Float);
        if do_r1 {
            let grads =
                Tensor::run_backward(&[real_logits.sum(Kind::Float)], &[&reals], true, true);
            let penalty = grads[0]
                .to_kind(Kind::Float)
                .square()
                .sum_dim_intlist([1i64, 2, 3].as_slice(), false, None)
                .mean(Kind::Float);
            losses.r1 = penalty.double_value(&[]);
            d_loss += penalty * (self.settings.r1_gamma / 2.0 * self.settings.r1_every as f64);
        }
        d_loss.backward();
        self.opt_d.update();
        if let Some(fade) = self.fade.as_mut() {
            fade.update_d();
        }
        losses.d_loss = d_loss.double_value(&[]);
        losses.real_score = real_logits.mean(Kind::Float).double_value(&[]);
        losses.fake_score = fake_logits.mean(Kind::Float).double_value(&[]);
        losses
    }

    /// One G update on as many fresh latents as `reals` holds images, then the moving
    /// average; sets G's adversarial loss, the anchor loss, the teacher's label, share and
    /// presence losses and the sharpness loss (each 0 when off) in `losses`. `reals` (the
    /// step's rendered scenes) are what the sharpness loss measures G's images against.
    fn g_step(&mut self, reals: &Tensor, losses: &mut StepLosses) {
        let n = reals.size()[0];
        self.opt_g.zero_grad();
        self.opt_d.zero_grad();
        if let Some(fade) = self.fade.as_mut() {
            fade.zero_grad();
        }
        let z = self.sample_z(n);
        let (fakes, held) = self.generate_parts(&z, false);
        let g_loss = (-self.critic(&fakes)).softplus().mean(Kind::Float);
        let mut total = g_loss.shallow_clone();
        let weight = self.settings.anchor_weight;
        losses.anchor = 0.0;
        if let Some(anchor) = self.anchor.as_ref().filter(|_| weight > 0.0) {
            let loss = anchor.loss(&self.g, &z, held.as_ref(), &fakes);
            total = &total + &loss * weight;
            losses.anchor = loss.double_value(&[]);
        }
        // The sharpness and the spectrum loss hold G's images to the step's rendered scenes,
        // moved to G's device once for both.
        let (sharpness_weight, spectrum_weight) = (
            self.settings.sharpness_weight,
            self.settings.spectrum_weight,
        );
        losses.sharpness = 0.0;
        losses.spectrum = 0.0;
        if sharpness_weight > 0.0 || spectrum_weight > 0.0 {
            let reals = reals.to_device(self.g.device());
            if sharpness_weight > 0.0 {
                let loss = sharpness_loss(&fakes, &reals);
                total = &total + &loss * sharpness_weight;
                losses.sharpness = loss.double_value(&[]);
            }
            if spectrum_weight > 0.0 {
                let loss = spectrum_loss(&fakes, &reals);
                total = &total + &loss * spectrum_weight;
                losses.spectrum = loss.double_value(&[]);
            }
        }
        let s = &self.settings;
        let (weight, share_weight, presence_weight) =
            (s.teacher_weight, s.share_weight, s.presence_weight);
        let wanted = Wanted {
            labels: weight > 0.0,
            shares: share_weight > 0.0,
            presence: presence_weight > 0.0,
        };
        (losses.teacher, losses.shares, losses.presence) = (0.0, 0.0, 0.0);
        if let Some(teacher) = self
            .teacher
            .as_ref()
            .filter(|_| wanted.labels || wanted.shares || wanted.presence)
        {
            let taught = teacher.losses(&z, &fakes, wanted);
            if wanted.labels {
                total = &total + &taught.labels * weight;
                losses.teacher = taught.labels.double_value(&[]);
            }
            // GanRun gives the teacher its references whenever their weights are set.
            if wanted.shares {
                let loss = taught
                    .shares
                    .expect("a share weight needs the teacher's share reference");
                total = &total + &loss * share_weight;
                losses.shares = loss.double_value(&[]);
            }
            if wanted.presence {
                let loss = taught
                    .presence
                    .expect("a presence weight needs the teacher's presence reference");
                total = &total + &loss * presence_weight;
                losses.presence = loss.double_value(&[]);
            }
        }
        total.backward();
        self.opt_g.update();
        self.opt_d.zero_grad();
        let beta = self.settings.ema_beta;
        let held = self.settings.frozen_layers as usize >= old_layers(&self.g);
        if let Some(fade) = self.fade.as_mut() {
            fade.update_g(beta, held);
            fade.zero_grad();
        }
        ema_update(self.g_ema.var_store(), self.g.var_store(), beta);
        losses.g_loss = g_loss.double_value(&[]);
    }

    /// Anchors the run to `generator`, the generator at half G's resolution it grew from
    /// (see [`Anchor`]); recorded as a setting change. Returns the largest difference
    /// between its layers and G's first ones (0 when G's old layers are those, held).
    pub fn set_anchor(&mut self, generator: &ProgGan) -> anyhow::Result<f64> {
        let (anchor, difference) = Anchor::from_generator(&self.g, generator)?;
        let same = self.anchor.as_ref().is_some_and(|had| {
            had.tensors()
                .iter()
                .zip(anchor.tensors())
                .all(|((_, a), (_, b))| a.equal(&b))
        });
        if !same {
            self.changes.push(SettingChange {
                step: self.step,
                setting: "anchor".into(),
                from: if self.anchor.is_some() { 1.0 } else { 0.0 },
                to: 1.0,
            });
        }
        self.anchor = Some(anchor);
        Ok(difference)
    }

    /// Every tensor of the run by name: `g.*`, `g_ema.*`, `d.*` and both Adam states.
    pub fn checkpoint_tensors(&self) -> Vec<(String, Tensor)> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (prefix, vs) in [
            ("g.", self.g.var_store()),
            ("g_ema.", self.g_ema.var_store()),
            ("d.", &self.d_vs),
        ] {
            tensors.extend(
                vs.variables()
                    .into_iter()
                    .map(|(k, t)| (format!("{prefix}{k}"), t)),
            );
        }
        tensors.extend(self.opt_g.state("adam_g"));
        tensors.extend(self.opt_d.state("adam_d"));
        if let Some(fade) = &self.fade {
            tensors.extend(fade.tensors());
        }
        if let Some(anchor) = &self.anchor {
            tensors.extend(anchor.tensors());
        }
        tensors
    }

    /// A trainer at `step` whose every tensor comes from `tensors` (as
    /// [`Self::checkpoint_tensors`] names them).
    /// A run without growths; see [`Self::load_checkpoint`] for one that has them.
    pub fn from_checkpoint(
        settings: GanSettings,
        step: i64,
        tensors: &BTreeMap<String, Tensor>,
        device: Device,
    ) -> anyhow::Result<Self> {
        let mut trainer = GanTrainer::new(settings, device);
        trainer.load_checkpoint(step, tensors)?;
        Ok(trainer)
    }

    /// Loads every tensor of the run at `step` (set `growths` first: a growth still
    /// fading at `step` brings back its [`Fade`]). A checkpoint without Adam moments
    /// (a compact state, see [`write_compact_state`]) starts the optimizers afresh.
    pub fn load_checkpoint(
        &mut self,
        step: i64,
        tensors: &BTreeMap<String, Tensor>,
    ) -> anyhow::Result<()> {
        load_vars(self.g.var_store(), "g.", tensors)?;
        load_vars(self.g_ema.var_store(), "g_ema.", tensors)?;
        load_vars(&self.d_vs, "d.", tensors)?;
        if tensors.keys().any(|k| k.starts_with("adam_g.")) {
            self.opt_g.load_state("adam_g", tensors, step)?;
            self.opt_d.load_state("adam_d", tensors, step)?;
        } else {
            tracing::info!(
                step,
                "no Adam moments in the checkpoint: the optimizers start afresh"
            );
        }
        self.step = step;
        self.anchor = Anchor::load(&self.g, tensors)?;
        self.fade = match self.growths.last().filter(|g| g.fading(step)) {
            Some(growth) => {
                let channels = &self.settings.channels;
                let mut fade = Fade::new(
                    growth.clone(),
                    channels[channels.len() - 2],
                    self.settings.lr,
                    self.g.device(),
                );
                fade.set_lr(self.settings.lr);
                fade.load(tensors, step)?;
                Some(fade)
            }
            None => None,
        };
        Ok(())
    }

    /// D's realness logits for images [N, 3, R, R] (in the training dtype).
    pub fn discriminate(&self, images: &Tensor) -> Tensor {
        self.critic(&images.to_device(self.g.device()).to_kind(self.compute_kind))
    }

    /// Applies the settings `retune` asks for from this step on, recording each change.
    pub fn retune(&mut self, retune: &Retune) -> anyhow::Result<()> {
        if let Some(k) = retune.frozen_layers {
            check_frozen_layers(k, &self.settings.channels)?;
        }
        let step = self.step;
        let mut record = |setting: &str, from: f64, to: f64| {
            tracing::info!(step, setting, from, to, "training setting changed");
            self.changes.push(SettingChange {
                step,
                setting: setting.into(),
                from,
                to,
            });
        };
        if let Some(lr) = retune.lr.filter(|&v| v != self.settings.lr) {
            record("lr", self.settings.lr, lr);
            self.settings.lr = lr;
            self.opt_g.lr = lr;
            self.opt_d.lr = lr;
            if let Some(fade) = self.fade.as_mut() {
                fade.set_lr(lr);
            }
        }
        if let Some(beta) = retune.ema_beta.filter(|&v| v != self.settings.ema_beta) {
            record("ema_beta", self.settings.ema_beta, beta);
            self.settings.ema_beta = beta;
        }
        if let Some(gamma) = retune.r1_gamma.filter(|&v| v != self.settings.r1_gamma) {
            record("r1_gamma", self.settings.r1_gamma, gamma);
            self.settings.r1_gamma = gamma;
        }
        if let Some(every) = retune.r1_every.filter(|&v| v != self.settings.r1_every) {
            record("r1_every", self.settings.r1_every as f64, every as f64);
            self.settings.r1_every = every;
        }
        if let Some(k) = retune
            .frozen_layers
            .filter(|&v| v != self.settings.frozen_layers)
        {
            record(
                "frozen_layers",
                self.settings.frozen_layers as f64,
                k as f64,
            );
            self.settings.frozen_layers = k;
        }
        if let Some(w) = retune
            .anchor_weight
            .filter(|&v| v != self.settings.anchor_weight)
        {
            record("anchor_weight", self.settings.anchor_weight, w);
            self.settings.anchor_weight = w;
        }
        if let Some(w) = retune
            .teacher_weight
            .filter(|&v| v != self.settings.teacher_weight)
        {
            record("teacher_weight", self.settings.teacher_weight, w);
            self.settings.teacher_weight = w;
        }
        if let Some(w) = retune
            .share_weight
            .filter(|&v| v != self.settings.share_weight)
        {
            record("share_weight", self.settings.share_weight, w);
            self.settings.share_weight = w;
        }
        if let Some(w) = retune
            .presence_weight
            .filter(|&v| v != self.settings.presence_weight)
        {
            record("presence_weight", self.settings.presence_weight, w);
            self.settings.presence_weight = w;
        }
        if let Some(t) = retune
            .share_temperature
            .filter(|&v| v != self.settings.share_temperature)
        {
            record("share_temperature", self.settings.share_temperature, t);
            self.settings.share_temperature = t;
        }
        if let Some(w) = retune
            .sharpness_weight
            .filter(|&v| v != self.settings.sharpness_weight)
        {
            record("sharpness_weight", self.settings.sharpness_weight, w);
            self.settings.sharpness_weight = w;
        }
        if let Some(w) = retune
            .spectrum_weight
            .filter(|&v| v != self.settings.spectrum_weight)
        {
            record("spectrum_weight", self.settings.spectrum_weight, w);
            self.settings.spectrum_weight = w;
        }
        Ok(())
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let tensors = self.checkpoint_tensors();
        let tmp = dir.join("checkpoint.safetensors.tmp");
        Tensor::write_safetensors(&tensors, &tmp)?;
        std::fs::rename(&tmp, dir.join("checkpoint.safetensors"))?;
        std::fs::write(
            dir.join("state.json"),
            serde_json::to_string_pretty(&self.run_state())?,
        )?;
        self.g_ema
            .save_safetensors(&dir.join("generator_ema.safetensors"))?;
        Ok(())
    }

    pub(crate) fn run_state(&self) -> RunState {
        RunState {
            step: self.step,
            settings: self.settings.clone(),
            widenings: self.widenings.clone(),
            changes: self.changes.clone(),
            growths: self.growths.clone(),
            origin: self.origin.clone(),
        }
    }

    /// Keeps this step's live and EMA generators, compact, as `dir/kept/step-NNNNNN-live`
    /// and `-ema` (`.safetensors`): the candidates `train-demo pick` chooses among.
    pub fn keep(&self, dir: &Path) -> anyhow::Result<()> {
        let kept = dir.join(KEPT_DIR);
        std::fs::create_dir_all(&kept)?;
        for (which, g) in [("live", &self.g), ("ema", &self.g_ema)] {
            write_compact(
                g,
                &kept.join(format!("step-{:06}-{which}.safetensors", self.step)),
            )?;
        }
        Ok(())
    }

    /// Resumes from `dir` if it holds a checkpoint; the stored settings win.
    pub fn resume(dir: &Path, device: Device) -> anyhow::Result<Option<Self>> {
        let state_path = dir.join("state.json");
        if !state_path.exists() {
            return Ok(None);
        }
        let state = RunState::read(dir)?;
        let ckpt = dir.join("checkpoint.safetensors");
        let (tensors, source) = if ckpt.exists() {
            let tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(&ckpt)
                .with_context(|| format!("reading {}", ckpt.display()))?
                .into_iter()
                .collect();
            (tensors, ckpt)
        } else {
            (read_compact_state(dir)?, dir.to_path_buf())
        };
        let mut trainer = GanTrainer::new(state.settings, device);
        trainer.widenings = state.widenings;
        trainer.changes = state.changes;
        trainer.growths = state.growths;
        trainer.origin = state.origin;
        trainer
            .load_checkpoint(state.step, &tensors)
            .with_context(|| format!("loading {}", source.display()))?;
        Ok(Some(trainer))
    }
}

impl RunState {
    /// Reads `dir/state.json`.
    pub(crate) fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (is this a GAN run folder?)", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct RunState {
    pub step: i64,
    pub settings: GanSettings,
    /// Every time the run's networks were widened (see [`super::widen`]), oldest first.
    #[serde(default)]
    pub widenings: Vec<Widening>,
    /// Every change of a training setting on resume, oldest first.
    #[serde(default)]
    pub changes: Vec<SettingChange>,
    /// Every growth of the resolution (see [`super::grow`]), oldest first.
    #[serde(default)]
    pub growths: Vec<Growth>,
    /// The generator the run started from, when it did not start from random weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Adoption>,
}

/// A training setting changed when the run was resumed at `step`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SettingChange {
    pub step: i64,
    pub setting: String,
    pub from: f64,
    pub to: f64,
}

/// Settings that may change when a run resumes (`None`: keep the run's). The
/// architecture, batch, precision and seed may not: use `train-demo widen` for widths.
#[derive(Clone, Debug, Default)]
pub struct Retune {
    pub lr: Option<f64>,
    pub ema_beta: Option<f64>,
    pub r1_gamma: Option<f64>,
    pub r1_every: Option<i64>,
    pub frozen_layers: Option<i64>,
    pub anchor_weight: Option<f64>,
    pub teacher_weight: Option<f64>,
    pub share_weight: Option<f64>,
    pub presence_weight: Option<f64>,
    pub share_temperature: Option<f64>,
    pub sharpness_weight: Option<f64>,
    pub spectrum_weight: Option<f64>,
}

/// The sharpness loss: how far the mean luminance gradient of G's images (`fakes`) falls
/// short of the rendered scenes' (`reals`, no gradient), as a fraction of theirs; 0 where
/// G's is at least theirs. `eval-demo`'s sharpness ratio is the same mean over theirs, so
/// this is 1 − that ratio, counted on the batch, while it is under 1. The losses that work
/// through a segmenter (teacher, share, presence) soften G's edges: this holds them up.
pub fn sharpness_loss(fakes: &Tensor, reals: &Tensor) -> Tensor {
    let reference = tch::no_grad(|| {
        super::eval::luminance_gradient(reals)
            .mean(Kind::Float)
            .clamp_min(1e-6)
    });
    let own = super::eval::luminance_gradient(fakes).mean(Kind::Float);
    let ratio = own / reference;
    (-ratio + 1.0).relu()
}

/// The spectrum loss: the mean squared log ratio between the line spectra
/// ([`line_spectra`]) of G's images (`fakes`) and of the rendered scenes (`reals`, no
/// gradient), over the band from a side's [`SPECTRUM_BAND_START`]th up to the highest
/// frequency. A regular stripe is a peak at one frequency on one axis, and blur a
/// shortfall over the high ones: both cost, where the sharpness loss pays for gradient
/// however it is made, a stripe's included. 0 when the two spectra agree. (Squared, not
/// absolute: a ratio near 1 then has a small gradient, not a full one that flips sign.)
pub fn spectrum_loss(fakes: &Tensor, reals: &Tensor) -> Tensor {
    let (_, _, _, w) = fakes.size4().expect("[N, 3, H, W] images");
    let first = (w / SPECTRUM_BAND_START).max(1);
    let band = |x: Tensor| x.narrow(1, first, w / 2 + 1 - first);
    let floor = 1e-10;
    let reference = tch::no_grad(|| (band(line_spectra(reals)) + floor).log());
    let own = (band(line_spectra(fakes)) + floor).log();
    (own - reference).square().mean(Kind::Float)
}

/// How many rendered scenes the share loss's reference is counted from.
pub const SHARE_REFERENCE_SCENES: u64 = 512;

/// The rendered scenes' soft shares and presence scores as `teacher` sees them (the share and
/// the presence reference): the first [`SHARE_REFERENCE_SCENES`] scenes of the run's
/// training stream, at G's resolution.
pub(crate) fn share_references(
    teacher: &LabelTeacher,
    settings: &GanSettings,
) -> anyhow::Result<(ShareReference, ShareReference)> {
    let started = std::time::Instant::now();
    let seeds: Vec<u64> = (0..SHARE_REFERENCE_SCENES)
        .map(|i| super::data::mix(settings.seed, i))
        .collect();
    let (mut soft, mut presence) = (Vec::new(), Vec::new());
    for chunk in seeds.chunks(32) {
        let scenes = super::data::render_batch(chunk, settings.resolution() as usize);
        let (s, p) = teacher.both_shares_of(&scenes.images)?;
        soft.push(s);
        presence.push(p);
    }
    let references = (
        ShareReference::from_shares(&Tensor::cat(&soft, 0))?,
        ShareReference::from_shares(&Tensor::cat(&presence, 0))?,
    );
    tracing::info!(
        scenes = SHARE_REFERENCE_SCENES,
        seconds = started.elapsed().as_secs_f64(),
        "share references counted"
    );
    Ok(references)
}

/// Checks that holding G's first `k` layers fixed leaves a layer to train: G at these
/// widths has `layer1..layer{2n}` (n widths).
pub fn check_frozen_layers(k: i64, channels: &[i64]) -> anyhow::Result<()> {
    let layers = 2 * channels.len() as i64;
    if !(0..layers).contains(&k) {
        anyhow::bail!(
            "--freeze-g-layers {k}: G has layer1..layer{layers} at these widths; hold 0 to {} \
             of them fixed, so that one still trains",
            layers - 1
        );
    }
    Ok(())
}

/// One widening of a run: at `step`, the channels went from `from` to `to`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Widening {
    pub step: i64,
    pub from: Vec<i64>,
    pub to: Vec<i64>,
}

/// The folder of a run that holds its kept generators (see [`GanTrainer::keep`]).
pub const KEPT_DIR: &str = "kept";

/// Writes `g` as a compact model: f16 weights, half the file. The loader widens them to
/// f32, so the model is exactly these rounded weights everywhere it runs.
pub fn write_compact(g: &ProgGan, path: &Path) -> anyhow::Result<()> {
    let half: Vec<(String, Tensor)> = g
        .named_tensors()
        .into_iter()
        .map(|(k, t)| (k, t.to_kind(Kind::Half)))
        .collect();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    Tensor::write_safetensors(&half, &tmp)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The run loop behind `ganpaint train-demo gan`.
pub struct GanRun {
    pub dir: PathBuf,
    pub steps: i64,
    pub checkpoint_every: i64,
    pub sample_every: i64,
    /// Settings to change if the run is resumed (a new run takes them from `settings`).
    pub retune: Retune,
    /// From this step on, every checkpoint also keeps its generators ([`GanTrainer::keep`]).
    pub keep_from: Option<i64>,
    /// A generator file to anchor the run to (see [`Anchor`]), applied from the current
    /// step on.
    pub anchor: Option<PathBuf>,
    /// The label teacher's files (see [`LabelTeacher`]); needed on every resume of a run
    /// whose `teacher_weight` is above 0.
    pub teacher: Option<TeacherFiles>,
}

/// Where a [`LabelTeacher`] comes from.
#[derive(Clone, Debug)]
pub struct TeacherFiles {
    pub generator: PathBuf,
    pub segmenter: PathBuf,
    /// The side its segmenter works at.
    pub size: i64,
    /// How many images of each batch it teaches.
    pub images: i64,
    /// Patches under this times their class's mean rendered share do not teach (see
    /// [`LabelTeacher::with_min_patch`]); 0: all do.
    pub min_patch: f64,
    /// The side the teacher's scenes are labelled at ([`LabelTeacher::labelling_at`]);
    /// `None`: `size`.
    pub label_size: Option<i64>,
    /// What labels them, when not `segmenter`.
    pub label_segmenter: Option<PathBuf>,
    /// The classes the presence loss holds ([`LabelTeacher::with_presence_classes`]);
    /// empty: every class.
    pub presence_classes: Vec<String>,
}

impl GanRun {
    pub fn run(&self, settings: GanSettings, device: Device) -> anyhow::Result<GanTrainer> {
        std::fs::create_dir_all(&self.dir)?;
        let mut trainer = match GanTrainer::resume(&self.dir, device)? {
            Some(mut t) => {
                let fixed =
                    |s: &GanSettings| (s.z_dim, s.channels.clone(), s.batch, s.bf16, s.seed);
                if fixed(&t.settings) != fixed(&settings) {
                    tracing::warn!(stored = ?t.settings, "resuming with the run's stored architecture, batch, precision and seed, not the flags");
                }
                tracing::info!(step = t.step, dir = %self.dir.display(), "resumed");
                t.retune(&self.retune)?;
                t
            }
            None => GanTrainer::new(settings, device),
        };
        check_frozen_layers(trainer.settings.frozen_layers, &trainer.settings.channels)?;
        if let Some(path) = &self.anchor {
            let generator = ProgGan::load(path, device)
                .with_context(|| format!("--anchor {}", path.display()))?;
            let difference = trainer
                .set_anchor(&generator)
                .with_context(|| format!("--anchor {}", path.display()))?;
            tracing::info!(anchor = %path.display(), difference, "anchored to the generator the run grew from");
            if difference > 1e-2 {
                tracing::warn!(
                    difference,
                    "the anchor generator's layers differ from the run's first ones: it anchors to \
                     what that generator drew, not to what this run's layers compute"
                );
            }
        }
        if let Some(files) = &self.teacher {
            // (Before the teacher loads and its references are counted.)
            if !files.presence_classes.is_empty()
                && trainer.settings.presence_weight == 0.0
                && trainer.step < self.steps
            {
                anyhow::bail!(
                    "--presence-classes {} chooses what the presence loss holds, and the run has \
                     none: give --presence-weight",
                    files.presence_classes.join(",")
                );
            }
            let teacher = LabelTeacher::load(
                &files.generator,
                &files.segmenter,
                files.size,
                files.images,
                device,
            )?;
            let labeller = match &files.label_segmenter {
                Some(path) => Some(
                    crate::segment::load(path, None, device)
                        .with_context(|| format!("--teacher-label-segmenter {}", path.display()))?,
                ),
                None => None,
            };
            let label_size = files.label_size.unwrap_or(files.size);
            let teacher = teacher
                .labelling_at(label_size, labeller)?
                .with_share_temperature(trainer.settings.share_temperature)?;
            teacher.check(trainer.settings.z_dim, trainer.settings.resolution())?;
            tracing::info!(teacher = %files.generator.display(), segmenter = %files.segmenter.display(), size = files.size, label_size, labeller = ?files.label_segmenter, images = files.images, "label teacher");
            // (Counting the reference takes a while: only for a command with steps to train.)
            let s = &trainer.settings;
            let wanted = s.share_weight > 0.0 || s.presence_weight > 0.0 || files.min_patch > 0.0;
            trainer.teacher = Some(if wanted && trainer.step < self.steps {
                let (reference, presence) = share_references(&teacher, &trainer.settings)?;
                teacher
                    .with_reference(reference)
                    .with_presence_reference(presence)
                    .with_presence_classes(&files.presence_classes)?
                    .with_min_patch(files.min_patch)?
            } else {
                teacher
            });
        }
        // (A command whose steps the run is past already trains nothing, so needs none.)
        if trainer.settings.teacher_weight > 0.0
            && trainer.teacher.is_none()
            && trainer.step < self.steps
        {
            anyhow::bail!(
                "the run trains with a label teacher (teacher_weight {} in state.json): give \
                 --teacher and --teacher-segmenter, or --teacher-weight 0 to go on without one",
                trainer.settings.teacher_weight
            );
        }
        if trainer.settings.share_weight > 0.0
            && trainer.teacher.is_none()
            && trainer.step < self.steps
        {
            anyhow::bail!(
                "the share loss (share_weight {}) uses the label teacher's segmenter: give \
                 --teacher and --teacher-segmenter, or --share-weight 0",
                trainer.settings.share_weight
            );
        }
        if trainer.settings.presence_weight > 0.0
            && trainer.teacher.is_none()
            && trainer.step < self.steps
        {
            anyhow::bail!(
                "the presence loss (presence_weight {}) uses the label teacher's segmenter: give \
                 --teacher and --teacher-segmenter, or --presence-weight 0",
                trainer.settings.presence_weight
            );
        }
        if trainer.settings.anchor_weight > 0.0 {
            if trainer.anchor.is_none() {
                tracing::warn!(
                    "--anchor-weight is set but the run holds no anchor (growing or widening \
                     drops it): give --anchor with the generator the run grew from"
                );
            } else if (trainer.settings.frozen_layers as usize) < old_layers(&trainer.g) {
                tracing::warn!(
                    frozen = trainer.settings.frozen_layers,
                    "G's old layers are not all frozen, so the anchor's target moves as they \
                     train: it anchors to the old output block on this run's own features"
                );
            }
        }
        if trainer.step >= self.steps {
            tracing::info!(
                step = trainer.step,
                steps = self.steps,
                "the run is already at --steps (the step to train to, counted from the run's \
                 start): nothing to train"
            );
        }
        let s = trainer.settings.clone();
        let resolution = s.resolution() as usize;
        let batches = SceneBatches::spawn(
            s.seed,
            (trainer.step * s.batch) as u64,
            s.batch as usize,
            resolution,
        );
        let bar = crate::progress::progress_bar_from(
            self.steps as u64,
            trainer.step.min(self.steps) as u64,
            "train gan",
        );
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log.jsonl"))?;
        let started = std::time::Instant::now();
        let first_step = trainer.step;
        while trainer.step < self.steps {
            let batch = batches.next()?;
            let losses = trainer.train_step(&batch.images);
            use std::io::Write;
            writeln!(log, "{}", serde_json::to_string(&losses)?)?;
            bar.set_message(format!(
                "train gan d {:.3} g {:.3} r1 {:.2}",
                losses.d_loss, losses.g_loss, losses.r1
            ));
            bar.inc(1);
            if trainer.step % 50 == 0 {
                let per_step = started.elapsed().as_secs_f64() / (trainer.step - first_step) as f64;
                tracing::info!(
                    step = trainer.step,
                    d = losses.d_loss,
                    g = losses.g_loss,
                    r1 = losses.r1,
                    real = losses.real_score,
                    fake = losses.fake_score,
                    anchor = losses.anchor,
                    teacher = losses.teacher,
                    shares = losses.shares,
                    presence = losses.presence,
                    sharpness = losses.sharpness,
                    spectrum = losses.spectrum,
                    s_per_step = per_step,
                    "losses"
                );
            }
            if trainer.step % self.checkpoint_every == 0 || trainer.step == self.steps {
                trainer.save(&self.dir)?;
                if self.keep_from.is_some_and(|from| trainer.step >= from) {
                    trainer.keep(&self.dir)?;
                }
            }
            if trainer.step % self.sample_every == 0 || trainer.step == self.steps {
                trainer.write_sample_grid(
                    &self.dir.join(format!("samples-{:06}.png", trainer.step)),
                )?;
            }
        }
        bar.finish();
        Ok(trainer)
    }
}

impl GanTrainer {
    /// An 8×8 grid of ids 0..64 from the moving average of G (blended while fading).
    pub fn write_sample_grid(&self, path: &Path) -> anyhow::Result<()> {
        let _guard = tch::no_grad_guard();
        let ids: Vec<u64> = (0..64).collect();
        let z = self.g_ema.z_for_ids(&ids)?;
        let images = self.generate(&z, true).to_kind(Kind::Float);
        let images = crate::imageio::to_rgb_images(&images)?;
        crate::imageio::write_png(&crate::imageio::grid(&images, 8), path)?;
        Ok(())
    }
}

/// The files of a compact run state (see [`write_compact_state`]), each holding the
/// tensors of the checkpoint names that start with one of its prefixes.
const COMPACT_FILES: [(&str, &[&str]); 3] = [
    ("g.safetensors", &["g.", "g_fade.", "g_anchor."]),
    ("g_ema.safetensors", &["g_ema.", "g_ema_fade."]),
    ("d.safetensors", &["d.", "d_fade."]),
];

/// Writes what a run needs to resume, compactly, into `out`: G, its moving average and D
/// (with any fade blocks) in f16, one file each, and `state.json`. Adam's moments are left
/// out; a run resumed from this starts its optimizers afresh. `out` is itself a run
/// folder that [`GanTrainer::resume`] reads, so it can be copied to a new machine and
/// trained on.
pub fn write_compact_state(trainer: &GanTrainer, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let tensors = trainer.checkpoint_tensors();
    for (file, prefixes) in COMPACT_FILES {
        let part: Vec<(String, Tensor)> = tensors
            .iter()
            .filter(|(name, _)| prefixes.iter().any(|p| name.starts_with(p)))
            .map(|(name, t)| (name.clone(), t.to_kind(Kind::Half)))
            .collect();
        let path = out.join(file);
        let tmp = out.join(format!("{file}.tmp"));
        Tensor::write_safetensors(&part, &tmp)?;
        std::fs::rename(&tmp, &path)?;
    }
    std::fs::write(
        out.join("state.json"),
        serde_json::to_string_pretty(&trainer.run_state())?,
    )?;
    Ok(())
}

/// Reads the tensors [`write_compact_state`] wrote (widened to f32 when loaded).
fn read_compact_state(dir: &Path) -> anyhow::Result<BTreeMap<String, Tensor>> {
    let mut tensors = BTreeMap::new();
    for (file, _) in COMPACT_FILES {
        let path = dir.join(file);
        tensors.extend(Tensor::read_safetensors(&path).with_context(|| {
            format!(
                "reading {} (no checkpoint.safetensors either)",
                path.display()
            )
        })?);
    }
    Ok(tensors)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A run small enough for unit tests (32², batch 4); `widen`'s tests share it.
    pub(crate) fn tiny_settings() -> GanSettings {
        GanSettings {
            z_dim: 16,
            channels: vec![16, 16, 8, 8],
            batch: 4,
            lr: 0.002,
            r1_gamma: 1.0,
            r1_every: 2,
            ema_beta: 0.9,
            bf16: false,
            seed: 3,
            frozen_layers: 0,
            anchor_weight: 0.0,
            teacher_weight: 0.0,
            share_weight: 0.0,
            presence_weight: 0.0,
            share_temperature: 1.0,
            sharpness_weight: 0.0,
            spectrum_weight: 0.0,
        }
    }

    #[test]
    fn the_share_temperature_is_stored_only_when_set_and_may_be_retuned() {
        // A state.json from before the setting existed reads as temperature 1, and 1 is
        // not written, so such a file stays as it was.
        let settings = tiny_settings();
        let json = serde_json::to_value(&settings).unwrap();
        assert!(json.get("share_temperature").is_none(), "{json}");
        let read: GanSettings = serde_json::from_value(json).unwrap();
        assert_eq!(read.share_temperature, 1.0);
        let colder = GanSettings {
            share_temperature: 0.25,
            ..settings
        };
        let json = serde_json::to_value(&colder).unwrap();
        assert_eq!(json["share_temperature"], 0.25);
        assert_eq!(serde_json::from_value::<GanSettings>(json).unwrap(), colder);
        // A resume may change it, recorded like the other settings.
        let mut trainer = GanTrainer::new(tiny_settings(), Device::Cpu);
        trainer
            .retune(&Retune {
                share_temperature: Some(0.25),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(trainer.settings.share_temperature, 0.25);
        assert_eq!(
            trainer.changes,
            vec![SettingChange {
                step: 0,
                setting: "share_temperature".into(),
                from: 1.0,
                to: 0.25
            }]
        );
    }

    /// Random `[n, 3, side, side]` images in [-1, 1] and the same blurred (a quarter of
    /// the side, then bilinear back up).
    fn sharp_and_blurred(n: i64, side: i64) -> (Tensor, Tensor) {
        let sharp = Tensor::rand([n, 3, side, side], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let blurred = sharp
            .adaptive_avg_pool2d([side / 4, side / 4])
            .upsample_bilinear2d([side, side], false, None, None);
        (sharp, blurred)
    }

    #[test]
    fn the_sharpness_loss_is_the_shortfall_of_the_mean_luminance_gradient() {
        tch::manual_seed(5);
        let (sharp, blurred) = sharp_and_blurred(4, 32);
        let mean = |x: &Tensor| {
            crate::demo::eval::luminance_gradient(x)
                .mean(Kind::Float)
                .double_value(&[])
        };
        // As sharp as the scenes, or sharper: nothing to pay.
        assert_eq!(sharpness_loss(&sharp, &sharp).double_value(&[]), 0.0);
        assert_eq!(sharpness_loss(&sharp, &blurred).double_value(&[]), 0.0);
        // Blurred: 1 − the ratio of the two means, eval-demo's sharpness ratio.
        let loss = sharpness_loss(&blurred, &sharp).double_value(&[]);
        let expected = 1.0 - mean(&blurred) / mean(&sharp);
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
        assert!(
            loss > 0.5,
            "a quarter-size blur keeps under half the gradient: {loss}"
        );
        // Its gradient sharpens: plain descent on the blurred images raises their mean
        // gradient and lowers the loss. The scenes get none.
        let mut x = blurred.copy().set_requires_grad(true);
        let reals = sharp.copy().set_requires_grad(true);
        for _ in 0..20 {
            let loss = sharpness_loss(&x, &reals);
            let grads = Tensor::run_backward(&[&loss], &[&x], false, false);
            assert!(
                grads[0].isfinite().all().int64_value(&[]) == 1,
                "a non-finite gradient"
            );
            tch::no_grad(|| {
                let _ = x.f_sub_(&(&grads[0] * 20.0)).unwrap();
            });
        }
        sharpness_loss(&x, &reals).backward();
        assert!(
            !reals.grad().defined(),
            "the scenes are the reference, not trained"
        );
        let after = sharpness_loss(&x, &sharp).double_value(&[]);
        assert!(after < loss - 0.05, "{loss} -> {after}");
        assert!(mean(&x) > mean(&blurred));
        // A flat image (every difference 0) still has a finite gradient.
        let flat = Tensor::zeros([1, 3, 8, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let loss = sharpness_loss(&flat, &sharp);
        assert!((loss.double_value(&[]) - 1.0).abs() < 1e-3);
        loss.backward();
        assert_eq!(flat.grad().isfinite().all().int64_value(&[]), 1);
    }

    /// A loss weight's life in a tiny run: left out of the settings' JSON while 0 (and read
    /// back as 0 when absent), a step at 0 pays nothing, `retune` to `to` is recorded as a
    /// change at step 1 and stored, and the next step stays finite. The two steps' losses.
    fn train_off_then_on(setting: &str, retune: Retune, to: f64) -> (StepLosses, StepLosses) {
        let settings = tiny_settings();
        let json = serde_json::to_value(&settings).unwrap();
        assert!(json.get(setting).is_none(), "{json}");
        let back = serde_json::from_value::<GanSettings>(json).unwrap();
        assert!(serde_json::to_value(&back).unwrap().get(setting).is_none());
        let mut trainer = GanTrainer::new(settings, Device::Cpu);
        let reals = Tensor::rand([4, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let off = trainer.train_step(&reals);
        trainer.retune(&retune).unwrap();
        assert_eq!(
            trainer.changes,
            vec![SettingChange {
                step: 1,
                setting: setting.into(),
                from: 0.0,
                to
            }]
        );
        let on = trainer.train_step(&reals);
        assert!(on.g_loss.is_finite() && on.d_loss.is_finite(), "{on:?}");
        let json = serde_json::to_value(&trainer.settings).unwrap();
        assert_eq!(json[setting], to);
        (off, on)
    }

    #[test]
    fn the_sharpness_weight_trains_g_and_is_stored_only_when_set() {
        let retune = Retune {
            sharpness_weight: Some(2.0),
            ..Default::default()
        };
        let (off, on) = train_off_then_on("sharpness_weight", retune, 2.0);
        assert_eq!(off.sharpness, 0.0);
        // An untrained G's images are smoother than uniform noise: the loss is paid.
        assert!(on.sharpness > 0.0 && on.sharpness <= 1.0, "{on:?}");
    }

    #[test]
    fn the_spectrum_loss_pays_for_a_stripe_and_for_blur_and_its_descent_removes_the_stripe() {
        use crate::demo::eval::tests::plain_and_striped;
        tch::manual_seed(12);
        let (side, cycles) = (32, 10);
        let (plain, striped) = plain_and_striped(4, side, cycles);
        assert!(spectrum_loss(&plain, &plain).double_value(&[]).abs() < 1e-6);
        let stripe_cost = spectrum_loss(&striped, &plain).double_value(&[]);
        assert!(stripe_cost > 0.05, "{stripe_cost}");
        // Blur (2× down, then up) costs too, as a shortfall at the high frequencies: the
        // reference here is sharp noise.
        let (sharp, blurred) = sharp_and_blurred(4, side);
        let blur_cost = spectrum_loss(&blurred, &sharp).double_value(&[]);
        assert!(blur_cost > 0.5, "{blur_cost}");
        // Its gradient takes the stripe out: plain descent lowers the loss and the power at
        // the stripe's frequency. The scenes get no gradient.
        let mut x = striped.copy().set_requires_grad(true);
        let reals = plain.copy().set_requires_grad(true);
        let power_at_stripe = |t: &Tensor| line_spectra(t).double_value(&[0, cycles]);
        let before = power_at_stripe(&striped);
        for _ in 0..40 {
            let loss = spectrum_loss(&x, &reals);
            let grads = Tensor::run_backward(&[&loss], &[&x], false, false);
            assert_eq!(grads[0].isfinite().all().int64_value(&[]), 1);
            tch::no_grad(|| {
                // A step of 0.02 at the largest element: the loss is in log power, so its
                // gradient shrinks as the stripe grows and plain steps would crawl.
                let step = &grads[0] / grads[0].abs().max() * 0.02;
                let _ = x.f_sub_(&step).unwrap();
            });
        }
        spectrum_loss(&x, &reals).backward();
        assert!(!reals.grad().defined(), "the scenes are the reference");
        let after = spectrum_loss(&x, &plain).double_value(&[]);
        assert!(after < stripe_cost * 0.5, "{stripe_cost} -> {after}");
        let left = power_at_stripe(&x.detach());
        assert!(left < before * 0.2, "{before} -> {left}");
        // A flat image still has a finite gradient.
        let flat =
            Tensor::zeros([1, 3, side, side], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let loss = spectrum_loss(&flat, &plain);
        assert!(loss.double_value(&[]).is_finite());
        loss.backward();
        assert_eq!(flat.grad().isfinite().all().int64_value(&[]), 1);
    }

    #[test]
    fn the_spectrum_weight_trains_g_and_is_stored_only_when_set() {
        let retune = Retune {
            spectrum_weight: Some(0.5),
            ..Default::default()
        };
        let (off, on) = train_off_then_on("spectrum_weight", retune, 0.5);
        assert_eq!(off.spectrum, 0.0);
        assert!(serde_json::to_value(&off)
            .unwrap()
            .get("spectrum")
            .is_none());
        // An untrained G's images are far smoother than uniform noise: the loss is paid.
        assert!(on.spectrum > 0.1 && on.spectrum.is_finite(), "{on:?}");
    }

    #[test]
    fn discriminator_scores_each_image() {
        let config = tiny_settings().generator_config();
        let vs = nn::VarStore::new(Device::Cpu);
        let d = Discriminator::new(&vs.root(), &config);
        let x = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert_eq!(d.forward(&x).size(), vec![4]);
    }

    #[test]
    fn training_steps_change_weights_and_resume_exactly() {
        let dir = std::env::temp_dir().join(format!("ganpaint-gan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut trainer = GanTrainer::new(tiny_settings(), Device::Cpu);
        let before = trainer.g.named_tensors()[0].1.copy();
        let reals = Tensor::rand([4, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        for _ in 0..3 {
            let losses = trainer.train_step(&reals);
            assert!(losses.d_loss.is_finite() && losses.g_loss.is_finite());
        }
        assert!(
            !trainer.g.named_tensors()[0].1.equal(&before),
            "G did not move"
        );
        trainer.save(&dir).unwrap();
        let resumed = GanTrainer::resume(&dir, Device::Cpu).unwrap().unwrap();
        assert_eq!(resumed.step, 3);
        for ((name, a), (_, b)) in trainer
            .g_ema
            .named_tensors()
            .iter()
            .zip(resumed.g_ema.named_tensors())
        {
            assert!(a.equal(&b), "{name} differs after resume");
        }
        // Resuming may change the training settings from here on; the change is recorded.
        let mut retuned = GanTrainer::resume(&dir, Device::Cpu).unwrap().unwrap();
        retuned
            .retune(&Retune {
                lr: Some(0.001),
                ema_beta: Some(0.9),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(retuned.opt_g.lr, 0.001);
        assert_eq!(retuned.opt_d.lr, 0.001);
        assert_eq!(retuned.changes.len(), 1, "{:?}", retuned.changes); // ema_beta was 0.9
        retuned.save(&dir).unwrap();
        let again = GanTrainer::resume(&dir, Device::Cpu).unwrap().unwrap();
        assert_eq!(again.settings.lr, 0.001);
        assert_eq!(
            again.changes,
            vec![SettingChange {
                step: 3,
                setting: "lr".into(),
                from: 0.002,
                to: 0.001
            }]
        );
        // The exported EMA generator loads through the one model loader.
        let exported = ProgGan::load(&dir.join("generator_ema.safetensors"), Device::Cpu).unwrap();
        assert_eq!(exported.resolution(), 32);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
