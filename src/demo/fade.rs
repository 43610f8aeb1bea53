//! What a run that grew keeps while the new resolution fades in (see [`super::grow`]):
//! the record of each growth, where an adopted run began, and the [`Fade`] blocks (G's
//! old output block and D's old input layer, with their optimisers) that blend the old
//! resolution with the new one. [`super::gan`] trains with them; [`super::grow`] makes
//! them. Neither imports the other for these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

use super::nn::{ema_update, load_vars, Adam, EqLayer};
use crate::model::proggan::pixel_norm;
use crate::model::ProgGan;

/// One growth of a run: at `step` the resolution went from `from` to `to`, and the new
/// blocks were faded in over `fade_steps` steps.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Growth {
    pub step: i64,
    pub from: i64,
    pub to: i64,
    pub fade_steps: i64,
    /// The batch before growing, when growing changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_from: Option<i64>,
}

impl Growth {
    /// The blend weight of the new blocks at `step`: 0 when grown, 1 after the fade.
    pub fn alpha(&self, step: i64) -> f64 {
        if self.fade_steps <= 0 {
            return 1.0;
        }
        ((step - self.step) as f64 / self.fade_steps as f64).clamp(0.0, 1.0)
    }

    pub fn fading(&self, step: i64) -> bool {
        self.alpha(step) < 1.0
    }
}

/// Where a run began when it did not begin from random weights.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Adoption {
    /// The generator file G and its moving average started from.
    pub generator: String,
    /// Steps a fresh D trained alone before G moved.
    pub d_steps: i64,
}

/// G's output block as a layer of its own: `PixelNorm → conv1×1 (c → 3) → WScale(gain 1)`,
/// exactly [`crate::model::proggan`]'s output block, under the same variable names.
pub struct ToRgb {
    weight: Tensor,
    bias: Tensor,
    scale: f64,
}

impl ToRgb {
    fn new(path: nn::Path, channels: i64) -> Self {
        let weight = (&path / "conv").var(
            "weight",
            &[3, channels, 1, 1],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        );
        let bias = (&path / "wscale").var("b", &[3], nn::Init::Const(0.0));
        ToRgb {
            weight,
            bias,
            scale: 1.0 / (channels as f64).sqrt(),
        }
    }

    /// h: [N, c, R, R] → image [N, 3, R, R], in h's dtype.
    fn forward(&self, h: &Tensor) -> Tensor {
        let x = pixel_norm(h).expect("pixel norm");
        let weight = self.weight.to_kind(x.kind());
        let x = x.conv2d::<Tensor>(&weight, None, [1, 1], [0, 0], [1, 1], 1) * self.scale;
        x + self.bias.to_kind(h.kind()).view([1, 3, 1, 1])
    }
}

/// The blocks of the resolution a run grew from, kept while the new one fades in.
pub struct Fade {
    pub growth: Growth,
    g_vs: nn::VarStore,
    g_rgb: ToRgb,
    g_ema_vs: nn::VarStore,
    g_ema_rgb: ToRgb,
    d_vs: nn::VarStore,
    d_rgb: EqLayer,
    opt_g: Adam,
    opt_d: Adam,
}

impl Fade {
    /// Fresh fade blocks for a run that grew by `growth`, whose last resolution before
    /// growing had `old_channels` channels, trained at `lr`.
    pub fn new(growth: Growth, old_channels: i64, lr: f64, device: Device) -> Self {
        let out = output_name(growth.from);
        let g_vs = nn::VarStore::new(device);
        let g_rgb = ToRgb::new(g_vs.root() / out.as_str(), old_channels);
        let g_ema_vs = nn::VarStore::new(device);
        let g_ema_rgb = ToRgb::new(g_ema_vs.root() / out.as_str(), old_channels);
        let d_vs = nn::VarStore::new(device);
        let d_rgb = EqLayer::conv(d_vs.root() / "from_rgb", 3, old_channels, 1);
        let opt_g = Adam::new(&g_vs, lr, 0.0, 0.99);
        let opt_d = Adam::new(&d_vs, lr, 0.0, 0.99);
        Fade {
            growth,
            g_vs,
            g_rgb,
            g_ema_vs,
            g_ema_rgb,
            d_vs,
            d_rgb,
            opt_g,
            opt_d,
        }
    }

    pub fn alpha(&self, step: i64) -> f64 {
        self.growth.alpha(step)
    }

    /// The blended image of G (or of its moving average, `ema`) at `step`, with G's first
    /// `frozen` layers run without gradients, and G's activation at the old resolution when it was computed
    /// without gradients (every old layer held): what an [`Anchor`] draws from.
    pub fn generate_parts(
        &self,
        g: &ProgGan,
        ema: bool,
        step: i64,
        z: &Tensor,
        frozen: usize,
    ) -> (Tensor, Option<Tensor>) {
        let split = old_layers(g);
        let h = run_held(g, &latent(z), 0..split, frozen);
        let new = run_held(g, &h, split..g.layer_names().len(), frozen);
        let rgb = if ema { &self.g_ema_rgb } else { &self.g_rgb };
        let old = rgb.forward(&h);
        let (r, kind) = (self.growth.to, new.kind());
        let old = old.upsample_nearest2d([r, r], None, None).to_kind(kind);
        let alpha = self.alpha(step);
        let image = old * (1.0 - alpha) + new * alpha;
        (image, (frozen >= split).then_some(h))
    }

    /// The kept input layer of D and the blend weight, for [`super::gan::Discriminator`].
    pub fn discriminator_path(&self, step: i64) -> (&EqLayer, f64) {
        (&self.d_rgb, self.alpha(step))
    }

    pub fn zero_grad(&mut self) {
        self.opt_g.zero_grad();
        self.opt_d.zero_grad();
    }

    pub fn update_d(&mut self) {
        self.opt_d.update();
    }

    /// Updates G's kept output block, unless `held` (G's every old layer is frozen, so the
    /// old resolution's output stays exactly what it drew), and its moving average.
    pub fn update_g(&mut self, ema_beta: f64, held: bool) {
        if !held {
            self.opt_g.update();
        }
        ema_update(&self.g_ema_vs, &self.g_vs, ema_beta);
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.opt_g.lr = lr;
        self.opt_d.lr = lr;
    }

    /// Named tensors for a checkpoint: `g_fade.*`, `g_ema_fade.*`, `d_fade.*` and the
    /// Adam moments `adam_g_fade.*`, `adam_d_fade.*`.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (prefix, vs) in [
            ("g_fade.", &self.g_vs),
            ("g_ema_fade.", &self.g_ema_vs),
            ("d_fade.", &self.d_vs),
        ] {
            out.extend(
                vs.variables()
                    .into_iter()
                    .map(|(k, t)| (format!("{prefix}{k}"), t)),
            );
        }
        out.extend(self.opt_g.state("adam_g_fade"));
        out.extend(self.opt_d.state("adam_d_fade"));
        out
    }

    /// Loads what [`Self::tensors`] wrote. Without Adam moments (a compact state), the
    /// moments start from zero and warm up again.
    pub fn load(&mut self, tensors: &BTreeMap<String, Tensor>, step: i64) -> anyhow::Result<()> {
        load_vars(&self.g_vs, "g_fade.", tensors)?;
        load_vars(&self.g_ema_vs, "g_ema_fade.", tensors)?;
        load_vars(&self.d_vs, "d_fade.", tensors)?;
        if tensors.keys().any(|k| k.starts_with("adam_g_fade.")) {
            self.opt_g.load_state("adam_g_fade", tensors, step)?;
            self.opt_d.load_state("adam_d_fade", tensors, step)?;
        }
        Ok(())
    }
}

pub(super) fn output_name(resolution: i64) -> String {
    format!("output_{resolution}x{resolution}")
}

/// The number of G's layers at the resolution it grew from: `2L` of a generator now at
/// `L + 1` resolutions.
pub(super) fn old_layers(g: &ProgGan) -> usize {
    2 * (g.config().channels.len() - 1)
}

/// G's latent input `[N, D, 1, 1]` for z `[N, D]`.
pub(super) fn latent(z: &Tensor) -> Tensor {
    z.view([z.size()[0], -1, 1, 1])
}

/// Runs G's blocks `blocks` on `h`; those before block `frozen` (G's frozen layers) run
/// without gradients and their result is detached, so they get none.
pub(super) fn run_held(
    g: &ProgGan,
    h: &Tensor,
    blocks: std::ops::Range<usize>,
    frozen: usize,
) -> Tensor {
    let mid = frozen.clamp(blocks.start, blocks.end);
    let h = if mid > blocks.start {
        tch::no_grad(|| g.run(h, blocks.start..mid))
            .expect("generator blocks")
            .detach()
    } else {
        h.shallow_clone()
    };
    g.run(&h, mid..blocks.end).expect("generator blocks")
}

/// The output block of the resolution a run grew from, kept to anchor the new one: with
/// G's old layers held fixed, `toRGB_R(h_R)` is the image the grown-from generator drew,
/// and the new output, average-pooled to `R`, is pulled towards it
/// ([`super::gan::GanSettings::anchor_weight`]). The adversarial loss is free to add
/// detail inside each pooled cell, but not to change the colours or the layout the
/// finished generator had. Stored with the run as `g_anchor.output_RxR.*`.
pub struct Anchor {
    vs: nn::VarStore,
    rgb: ToRgb,
    /// The anchored resolution R (half of G's).
    pub resolution: i64,
}

/// Checkpoint prefix of the anchor's output block.
pub const ANCHOR_PREFIX: &str = "g_anchor.";

impl Anchor {
    fn empty(g: &ProgGan) -> anyhow::Result<Self> {
        let channels = &g.config().channels;
        if channels.len() < 2 {
            anyhow::bail!("a generator at 4x4 has no resolution below it to anchor to");
        }
        let resolution = g.resolution() / 2;
        let vs = nn::VarStore::new(g.device());
        let rgb = ToRgb::new(
            vs.root() / output_name(resolution).as_str(),
            channels[channels.len() - 2],
        );
        Ok(Anchor {
            vs,
            rgb,
            resolution,
        })
    }

    /// The anchor for `g` from `generator`, a generator at half `g`'s resolution whose
    /// layers are `g`'s first ones (the one the run grew from): its output block. Refuses a
    /// generator whose layers differ in shape from `g`'s (naming the key and the shapes);
    /// returns the largest difference of their values too, for the caller to report.
    pub fn from_generator(g: &ProgGan, generator: &ProgGan) -> anyhow::Result<(Self, f64)> {
        let anchor = Anchor::empty(g)?;
        if generator.resolution() != anchor.resolution {
            anyhow::bail!(
                "the anchor generator draws {0}x{0}; this run is at {1}x{1}, so it anchors to {2}x{2}",
                generator.resolution(),
                g.resolution(),
                anchor.resolution
            );
        }
        let ours: BTreeMap<String, Tensor> = g.named_tensors().into_iter().collect();
        let out = output_name(anchor.resolution);
        let mut theirs = BTreeMap::new();
        let mut largest: f64 = 0.0;
        for (key, tensor) in generator.named_tensors() {
            if key.starts_with(&format!("{out}.")) {
                theirs.insert(key, tensor);
                continue;
            }
            let mine = ours
                .get(&key)
                .ok_or_else(|| anyhow::anyhow!("the run's generator has no `{key}`"))?;
            if mine.size() != tensor.size() {
                anyhow::bail!(
                    "`{key}` is {:?} in the anchor generator but {:?} in the run",
                    tensor.size(),
                    mine.size()
                );
            }
            let diff = (mine - &tensor).abs().max().double_value(&[]);
            largest = largest.max(diff);
        }
        load_vars(&anchor.vs, "", &theirs)?;
        Ok((anchor, largest))
    }

    /// The anchor stored in a checkpoint, if it has one.
    pub fn load(g: &ProgGan, tensors: &BTreeMap<String, Tensor>) -> anyhow::Result<Option<Self>> {
        if !tensors.keys().any(|k| k.starts_with(ANCHOR_PREFIX)) {
            return Ok(None);
        }
        let anchor = Anchor::empty(g)?;
        load_vars(&anchor.vs, ANCHOR_PREFIX, tensors)?;
        Ok(Some(anchor))
    }

    /// Named tensors for a checkpoint.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.vs
            .variables()
            .into_iter()
            .map(|(k, t)| (format!("{ANCHOR_PREFIX}{k}"), t))
            .collect()
    }

    /// The anchored image `[N, 3, R, R]` (f32, no gradients): the output block on `g`'s
    /// last activation at `R`, `h` when the caller has it (see
    /// [`Fade::generate_parts`]), else computed from `z`.
    pub fn target(&self, g: &ProgGan, z: &Tensor, h: Option<&Tensor>) -> Tensor {
        tch::no_grad(|| {
            let computed;
            let h = match h {
                Some(h) => h,
                None => {
                    let layer = format!("layer{}", old_layers(g));
                    computed = g.features(z, &layer).expect("generator prefix");
                    &computed
                }
            };
            self.rgb.forward(h).to_kind(tch::Kind::Float)
        })
    }

    /// Mean squared difference between `images` `[N, 3, 2R, 2R]`, average-pooled to `R`,
    /// and the anchored images for the same `z` (`h` as in [`Self::target`]).
    pub fn loss(&self, g: &ProgGan, z: &Tensor, h: Option<&Tensor>, images: &Tensor) -> Tensor {
        let target = self.target(g, z, h);
        let factor = images.size()[2] / self.resolution;
        let pooled = images.to_kind(tch::Kind::Float).avg_pool2d(
            [factor, factor],
            [factor, factor],
            [0, 0],
            false,
            true,
            None::<i64>,
        );
        (pooled - target).square().mean(tch::Kind::Float)
    }
}
