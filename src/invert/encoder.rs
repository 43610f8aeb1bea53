//! The encoder: a small convolutional network that maps a picture to the generator's
//! activations at the painted layer (step 1 of GANPaint Studio's inversion).
//!
//! ```text
//! image [N, 3, R, R] in [-1, 1]
//! stem        conv3×3 (3 → w₀)                          → LeakyReLU(0.2)   R×R
//! down{k}     conv4×4 stride 2 (w_k → w_{k+1})           → LeakyReLU        R/2^{k+1}
//! mid{k}      conv3×3 (w_{k+1} → w_{k+1})                → LeakyReLU
//! …           until the grid of the layer (8×8 for layer4)
//! head        conv1×1 (w_n → C), no activation           → features [N, C, H, W]
//! zhead_conv  conv1×1 (w_n → 16) → LeakyReLU, flattened  (optional: the z head)
//! zhead_fc    linear (16·8·8 → D), no activation         → z [N, D]
//! ```
//!
//! It trains on pairs the generator makes itself: `x = G(z)`, target `h = layer(z)`. The
//! loss is the mean squared error on the activations, plus (optionally) the pixel error of
//! rendering the guess, `‖G_after(E(x)) − x‖²`, which teaches the encoder to care about the
//! activations that matter for the picture, plus (with a z head) the error of the
//! predicted z. Optimisation, adaptation and edits work on the layer's activations; the
//! predicted z starts the fit of a z whose prefix matches them
//! ([`super::optimize::fit_z`]), which is what carries an edit of an earlier layer onto an
//! inverted picture.
//!
//! The architecture is read back from the weights' shapes, so a file is all a loader needs.

use std::collections::BTreeMap;
use std::path::Path;

use tch::nn::{Module, OptimizerConfig};
use tch::{nn, Device, Kind, Tensor};

use super::InvertError;
use crate::model::proggan::leaky_relu;
use crate::model::ProgGan;

/// The encoder's shape: input resolution, output grid and channels, and the width of each
/// stage (`widths[0]` at full resolution, `widths[k]` after `k` halvings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderConfig {
    pub resolution: i64,
    pub grid: i64,
    pub out_channels: i64,
    pub widths: Vec<i64>,
    /// The generator's z size when the encoder predicts z too (it has a z head).
    pub z_dim: Option<i64>,
}

/// Channels of the z head's 1×1 reduction before it is flattened.
const Z_HEAD_CHANNELS: i64 = 16;

impl EncoderConfig {
    /// An encoder for `generator`'s `layer`: halvings from the image to the layer's grid,
    /// widths doubling from `base_width` up to `max_width`.
    pub fn for_layer(
        generator: &ProgGan,
        layer: &str,
        base_width: i64,
        max_width: i64,
    ) -> Result<Self, InvertError> {
        let (channels, grid, _) = generator.layer_shape(layer)?;
        let resolution = generator.resolution();
        let halvings = halvings(resolution, grid)?;
        let widths = (0..=halvings)
            .map(|k| (base_width << k).min(max_width))
            .collect();
        Ok(EncoderConfig {
            resolution,
            grid,
            out_channels: channels,
            widths,
            z_dim: Some(generator.z_dim()),
        })
    }

    /// Reads the architecture off a state_dict's shapes.
    pub fn infer(shapes: &BTreeMap<String, Vec<i64>>) -> Result<Self, InvertError> {
        let get = |key: &str| {
            shapes
                .get(key)
                .cloned()
                .ok_or_else(|| InvertError::Encoder {
                    detail: format!("missing `{key}`"),
                })
        };
        let stem = get("stem.weight")?;
        let mut widths = vec![stem[0]];
        while let Some(shape) = shapes.get(&format!("down{}.weight", widths.len() - 1)) {
            widths.push(shape[0]);
        }
        let head = get("head.weight")?;
        // The grid is not in the shapes: every encoder ends at [`GRID`].
        let halvings = widths.len() as i64 - 1;
        let z_dim = shapes.get("zhead_fc.weight").map(|shape| shape[0]);
        Ok(EncoderConfig {
            resolution: GRID << halvings,
            grid: GRID,
            out_channels: head[0],
            widths,
            z_dim,
        })
    }
}

/// The grid every encoder ends at: the layer painted is on an 8×8 grid (layer4 of
/// GAN Dissection's models and of the demo generator).
pub const GRID: i64 = 8;

fn halvings(resolution: i64, grid: i64) -> Result<i64, InvertError> {
    let mut k = 0;
    while grid << k < resolution {
        k += 1;
    }
    if grid << k != resolution || grid != GRID {
        return Err(InvertError::Encoder {
            detail: format!(
                "an encoder maps {resolution}² pictures to an {GRID}×{GRID} grid by halvings; \
                 this layer's grid is {grid}×{grid}"
            ),
        });
    }
    Ok(k)
}

/// A conv with bias; the init is libtorch's default (Kaiming uniform).
fn conv(path: nn::Path, cin: i64, cout: i64, kernel: i64, stride: i64) -> nn::Conv2D {
    let padding = if kernel == 4 { 1 } else { kernel / 2 };
    nn::conv2d(
        path,
        cin,
        cout,
        kernel,
        nn::ConvConfig {
            stride,
            padding,
            ..Default::default()
        },
    )
}

pub struct Encoder {
    config: EncoderConfig,
    vs: nn::VarStore,
    stem: nn::Conv2D,
    stages: Vec<(nn::Conv2D, nn::Conv2D)>,
    head: nn::Conv2D,
    z_head: Option<(nn::Conv2D, nn::Linear)>,
}

impl Encoder {
    /// Fresh weights (seed them with `tch::manual_seed` first for a reproducible start).
    pub fn new(config: EncoderConfig, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let w = &config.widths;
        let stem = conv(&root / "stem", 3, w[0], 3, 1);
        let stages = (0..w.len() - 1)
            .map(|k| {
                (
                    conv(&root / format!("down{k}"), w[k], w[k + 1], 4, 2),
                    conv(&root / format!("mid{k}"), w[k + 1], w[k + 1], 3, 1),
                )
            })
            .collect();
        let head = conv(
            &root / "head",
            *w.last().expect("one width"),
            config.out_channels,
            1,
            1,
        );
        let z_head = config.z_dim.map(|z_dim| {
            (
                conv(
                    &root / "zhead_conv",
                    *w.last().expect("one width"),
                    Z_HEAD_CHANNELS,
                    1,
                    1,
                ),
                nn::linear(
                    &root / "zhead_fc",
                    Z_HEAD_CHANNELS * config.grid * config.grid,
                    z_dim,
                    Default::default(),
                ),
            )
        });
        Encoder {
            config,
            vs,
            stem,
            stages,
            head,
            z_head,
        }
    }

    /// Loads an encoder saved by [`Encoder::save`]; the architecture comes from the shapes.
    pub fn load(path: &Path, device: Device) -> Result<Self, InvertError> {
        let tensors = Tensor::read_safetensors(path).map_err(|e| InvertError::Encoder {
            detail: format!("cannot read {}: {e}", path.display()),
        })?;
        let shapes = tensors.iter().map(|(k, t)| (k.clone(), t.size())).collect();
        let encoder = Encoder::new(EncoderConfig::infer(&shapes)?, device);
        let mut given: BTreeMap<String, Tensor> = tensors.into_iter().collect();
        let _guard = tch::no_grad_guard();
        let mut vars = encoder.vs.variables();
        if let Some(extra) = given.keys().find(|k| !vars.contains_key(*k)) {
            return Err(InvertError::Encoder {
                detail: format!("unexpected tensor `{extra}` in {}", path.display()),
            });
        }
        for (key, var) in vars.iter_mut() {
            let source = given.remove(key).ok_or_else(|| InvertError::Encoder {
                detail: format!("missing `{key}` in {}", path.display()),
            })?;
            if source.size() != var.size() {
                return Err(InvertError::Encoder {
                    detail: format!("`{key}` is {:?}, expected {:?}", source.size(), var.size()),
                });
            }
            var.f_copy_(&source.f_to_kind(Kind::Float)?)?;
        }
        Ok(encoder)
    }

    /// Writes the weights in f16 (half the size; the loader widens them to f32, and an
    /// encoder only starts an optimisation, so its last bits do not matter).
    pub fn save(&self, path: &Path) -> Result<(), InvertError> {
        let tensors = self
            .vs
            .variables()
            .into_iter()
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .map(|(name, t)| Ok((name, t.f_detach()?.f_to_kind(Kind::Half)?)))
            .collect::<Result<Vec<_>, tch::TchError>>()?;
        Tensor::write_safetensors(&tensors, path).map_err(|e| InvertError::Encoder {
            detail: format!("cannot write {}: {e}", path.display()),
        })
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Checks that this encoder fits `generator`'s `layer`.
    pub fn check_fits(&self, generator: &ProgGan, layer: &str) -> Result<(), InvertError> {
        self.check_fits_config(generator.config(), layer)
    }

    /// [`Encoder::check_fits`] from the generator's configuration alone (no weights).
    pub fn check_fits_config(
        &self,
        generator: &crate::model::ProgGanConfig,
        layer: &str,
    ) -> Result<(), InvertError> {
        let spec = generator
            .layer_specs()
            .into_iter()
            .find(|s| s.name == layer)
            .ok_or_else(|| InvertError::Encoder {
                detail: format!("the generator has no layer `{layer}`"),
            })?;
        let (channels, grid) = (spec.out_channels, spec.resolution);
        let c = &self.config;
        if let Some(z_dim) = c.z_dim.filter(|&d| d != generator.z_dim) {
            return Err(InvertError::Encoder {
                detail: format!(
                    "the encoder predicts a z of {z_dim} values; this generator's z has {}",
                    generator.z_dim
                ),
            });
        }
        if c.out_channels != channels || c.grid != grid || c.resolution != generator.resolution() {
            return Err(InvertError::Encoder {
                detail: format!(
                    "the encoder maps {}² pictures to {}×{}×{}, but `{layer}` of this \
                     {}² generator is {channels}×{grid}×{grid}",
                    c.resolution,
                    c.out_channels,
                    c.grid,
                    c.grid,
                    generator.resolution()
                ),
            });
        }
        Ok(())
    }

    /// images `[N, 3, R, R]` in [-1, 1] → the layer's activations `[N, C, 8, 8]`.
    pub fn forward(&self, images: &Tensor) -> Result<Tensor, InvertError> {
        Ok(self.head.forward(&self.trunk(images)?))
    }

    /// images → (activations `[N, C, 8, 8]`, z `[N, D]` when the encoder has a z head).
    pub fn forward_with_z(&self, images: &Tensor) -> Result<(Tensor, Option<Tensor>), InvertError> {
        let x = self.trunk(images)?;
        let z = match &self.z_head {
            Some((reduce, fc)) => {
                Some(fc.forward(&leaky_relu(&reduce.forward(&x))?.f_flatten(1, -1)?))
            }
            None => None,
        };
        Ok((self.head.forward(&x), z))
    }

    /// The stages before the heads.
    fn trunk(&self, images: &Tensor) -> Result<Tensor, InvertError> {
        let size = images.size();
        let r = self.config.resolution;
        if size.len() != 4 || size[1] != 3 || size[2] != r || size[3] != r {
            return Err(InvertError::BadImage(format!(
                "the encoder takes [N, 3, {r}, {r}], got {size:?}"
            )));
        }
        let mut x = leaky_relu(&self.stem.forward(images))?;
        for (down, mid) in &self.stages {
            x = leaky_relu(&down.forward(&x))?;
            x = leaky_relu(&mid.forward(&x))?;
        }
        Ok(x)
    }
}

/// How to train an encoder.
#[derive(Clone, Debug)]
pub struct EncoderTraining {
    pub layer: String,
    pub steps: i64,
    pub batch: i64,
    pub lr: f64,
    /// Weight of the pixel loss of rendering the guess (0: activations only).
    pub pixel_weight: f64,
    /// Weight of the error of the predicted z (used when the encoder has a z head).
    pub z_weight: f64,
    pub seed: u64,
}

/// One step's losses.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct EncoderStep {
    pub step: i64,
    /// Mean squared error on the activations.
    pub feature_loss: f64,
    /// Mean squared error of the rendered guess (NaN when the pixel loss is off).
    pub pixel_loss: f64,
    /// Mean squared error of the predicted z (NaN without a z head).
    pub z_loss: f64,
}

/// Trains `encoder` on pairs `generator` makes (fresh z each step); `progress` sees each
/// step's losses. The generator is not changed (its gradients are not even computed).
pub fn train_encoder(
    encoder: &Encoder,
    generator: &ProgGan,
    settings: &EncoderTraining,
    progress: &mut dyn FnMut(&EncoderStep),
) -> Result<Vec<EncoderStep>, InvertError> {
    encoder.check_fits(generator, &settings.layer)?;
    let frozen = super::frozen_copy(generator)?;
    let device = generator.device();
    tch::manual_seed(settings.seed as i64);
    let mut adam = nn::Adam {
        beta1: 0.9,
        beta2: 0.99,
        wd: 0.0,
        eps: 1e-8,
        amsgrad: false,
    }
    .build(&encoder.vs, settings.lr)?;
    let mut history = Vec::with_capacity(settings.steps as usize);
    for step in 0..settings.steps {
        // Cosine decay to a tenth of the rate.
        let progress_share = step as f64 / settings.steps.max(1) as f64;
        let lr =
            settings.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress_share).cos()));
        adam.set_lr(lr);
        let z = Tensor::f_randn([settings.batch, generator.z_dim()], (Kind::Float, device))?;
        let (features, images) = tch::no_grad(|| -> Result<_, InvertError> {
            let features = frozen.features(&z, &settings.layer)?;
            let images = frozen.forward_from(&settings.layer, &features)?;
            Ok((features, images))
        })?;
        let (guess, z_guess) = encoder.forward_with_z(&images)?;
        let feature_loss = guess.f_mse_loss(&features, tch::Reduction::Mean)?;
        let (loss, pixel_loss) = if settings.pixel_weight > 0.0 {
            let rendered = frozen.forward_from(&settings.layer, &guess)?;
            let pixel = rendered.f_mse_loss(&images, tch::Reduction::Mean)?;
            let pixel_value = pixel.double_value(&[]);
            (
                feature_loss.f_add(&pixel.f_mul_scalar(settings.pixel_weight)?)?,
                pixel_value,
            )
        } else {
            (feature_loss.shallow_clone(), f64::NAN)
        };
        let (loss, z_loss) = match &z_guess {
            Some(z_guess) => {
                let z_error = z_guess.f_mse_loss(&z, tch::Reduction::Mean)?;
                let value = z_error.double_value(&[]);
                (
                    loss.f_add(&z_error.f_mul_scalar(settings.z_weight)?)?,
                    value,
                )
            }
            None => (loss, f64::NAN),
        };
        adam.zero_grad();
        loss.f_backward()?;
        adam.step();
        let record = EncoderStep {
            step,
            feature_loss: feature_loss.double_value(&[]),
            pixel_loss,
            z_loss,
        };
        progress(&record);
        history.push(record);
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_maps_pictures_to_the_layer_grid_and_round_trips_through_a_file() {
        let generator = crate::model::testing::tiny_generator(3);
        let config = EncoderConfig::for_layer(&generator, "layer4", 8, 16).unwrap();
        assert_eq!(config.widths, vec![8, 16]);
        let encoder = Encoder::new(config.clone(), Device::Cpu);
        encoder.check_fits(&generator, "layer4").unwrap();
        let images = Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let out = encoder.forward(&images).unwrap();
        assert_eq!(out.size(), vec![2, 16, 8, 8]);
        // The z head predicts the generator's z beside the same activations.
        assert_eq!(config.z_dim, Some(generator.z_dim()));
        let (same, z) = encoder.forward_with_z(&images).unwrap();
        assert!(same.equal(&out));
        assert_eq!(z.unwrap().size(), vec![2, generator.z_dim()]);
        let path = std::env::temp_dir().join(format!("ganpaint-enc-{}.st", std::process::id()));
        encoder.save(&path).unwrap();
        let loaded = Encoder::load(&path, Device::Cpu).unwrap();
        assert_eq!(loaded.config(), &config);
        // Stored in f16: the same function up to f16's rounding of the weights.
        let reloaded = loaded.forward(&images).unwrap();
        let error = (&reloaded - &out).abs().max().double_value(&[]);
        assert!(error < 1e-2 * out.abs().max().double_value(&[]), "{error}");
        let _ = std::fs::remove_file(&path);
        // A layer on another grid is refused by name.
        let err = EncoderConfig::for_layer(&generator, "layer6", 8, 16).unwrap_err();
        assert!(err.to_string().contains("16×16"), "{err}");
        // An encoder saved without a z head (as before it had one) loads and has none.
        let no_z = Encoder::new(
            EncoderConfig {
                z_dim: None,
                ..config.clone()
            },
            Device::Cpu,
        );
        no_z.save(&path).unwrap();
        let loaded = Encoder::load(&path, Device::Cpu).unwrap();
        assert_eq!(loaded.config().z_dim, None);
        assert!(loaded.forward_with_z(&images).unwrap().1.is_none());
        let _ = std::fs::remove_file(&path);
        // A z head of another size is refused by name.
        let wrong = Encoder::new(
            EncoderConfig {
                z_dim: Some(7),
                ..config
            },
            Device::Cpu,
        );
        let err = wrong.check_fits(&generator, "layer4").unwrap_err();
        assert!(err.to_string().contains("z of 7 values"), "{err}");
    }

    #[test]
    fn training_lowers_the_feature_loss_and_leaves_the_generator_alone() {
        let generator = crate::model::testing::tiny_generator(3);
        let before: Vec<Tensor> = generator
            .named_tensors()
            .into_iter()
            .map(|(_, t)| t.copy())
            .collect();
        tch::manual_seed(1);
        let encoder = Encoder::new(
            EncoderConfig::for_layer(&generator, "layer4", 8, 16).unwrap(),
            Device::Cpu,
        );
        let settings = EncoderTraining {
            layer: "layer4".into(),
            steps: 60,
            batch: 8,
            lr: 3e-3,
            pixel_weight: 1.0,
            z_weight: 1.0,
            seed: 2,
        };
        let mut seen = 0;
        let history = train_encoder(&encoder, &generator, &settings, &mut |_| seen += 1).unwrap();
        assert_eq!(seen, 60);
        let mean =
            |s: &[EncoderStep]| s.iter().map(|r| r.feature_loss).sum::<f64>() / s.len() as f64;
        let (first, last) = (mean(&history[..10]), mean(&history[50..]));
        assert!(last < 0.8 * first, "feature loss {first} → {last}");
        let z_mean = |s: &[EncoderStep]| s.iter().map(|r| r.z_loss).sum::<f64>() / s.len() as f64;
        let (z_first, z_last) = (z_mean(&history[..10]), z_mean(&history[50..]));
        assert!(z_last < 0.95 * z_first, "z loss {z_first} → {z_last}");
        assert!(history.iter().all(|r| r.pixel_loss.is_finite()));
        for ((_, now), then) in generator.named_tensors().iter().zip(&before) {
            assert!(now.equal(then));
        }
    }
}
