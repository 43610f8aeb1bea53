//! The Progressive GAN generator (Karras et al. 2018) exactly as GAN Dissection's
//! `proggan.py` defines it, so that its published weights load and give the same pixels.
//!
//! ```text
//! z [N, D] → view [N, D, 1, 1]
//! layer1      PixelNorm → conv4×4 pad 3 (D → c₄)            → WScale → LeakyReLU(0.2)   4×4
//! layer2      PixelNorm → conv3×3 (c₄ → c₄)                 → WScale → LeakyReLU        4×4
//! layer3      PixelNorm → nearest ×2 → conv3×3 (c₄ → c₈)    → WScale → LeakyReLU        8×8
//! layer4      PixelNorm → conv3×3 (c₈ → c₈)                 → WScale → LeakyReLU        8×8
//! …           two blocks per resolution, up to R×R
//! output_RxR  PixelNorm → conv1×1 (c_R → 3) → WScale(gain 1), no activation, no clamp
//! ```
//! `WScale(x) = x·gain/√fan_in + b`, with `fan_in` the input channels and
//! `gain = √2 / kernel` (1 for the output). Its bias `b` is the block's only bias.
//!
//! Variables live in a [`nn::VarStore`] under the reference state_dict names
//! (`layer4.conv.weight`, `layer4.wscale.b`), so loading is a name-for-name copy and the
//! same struct trains the demo model. Execution splits at any layer:
//! [`ProgGan::features`] runs the prefix up to and including a layer (its post-LeakyReLU
//! activation), [`ProgGan::forward_from`] runs the suffix to the image. Painting,
//! dissection and the benchmark all go through this split.

use std::collections::BTreeMap;
use std::path::Path;

use tch::{nn, Device, Kind, Tensor};

pub use super::block::{channels_last, LayerSpec};
use super::fast::{FastBlock, Precision};
use super::weights::{self, ModelError};

const PIXEL_NORM_EPS: f64 = 1e-8;
const LEAKY_SLOPE: f64 = 0.2;

/// The architecture: latent size and channels per resolution (4², 8², …, R²).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgGanConfig {
    pub z_dim: i64,
    /// `channels[k]` is the width at resolution `4·2^k`.
    pub channels: Vec<i64>,
}

impl ProgGanConfig {
    /// GAN Dissection's LSUN 256² models (church, bedroom, …): layer4 is 512×8×8.
    pub fn lsun256() -> Self {
        ProgGanConfig {
            z_dim: 512,
            channels: vec![512, 512, 512, 512, 256, 128, 64],
        }
    }

    pub fn resolution(&self) -> i64 {
        4 << (self.channels.len() - 1)
    }

    pub fn output_name(&self) -> String {
        let r = self.resolution();
        format!("output_{r}x{r}")
    }

    /// Every block in order, the output block last.
    pub fn layer_specs(&self) -> Vec<LayerSpec> {
        let block =
            |index: usize, cin: i64, cout: i64, kernel: i64, upsample: bool, res: i64| LayerSpec {
                name: format!("layer{index}"),
                in_channels: cin,
                out_channels: cout,
                kernel,
                padding: if kernel == 4 { 3 } else { kernel / 2 },
                upsample,
                activation: true,
                scale: std::f64::consts::SQRT_2 / kernel as f64 / (cin as f64).sqrt(),
                resolution: res,
            };
        let c = &self.channels;
        let mut specs = vec![
            block(1, self.z_dim, c[0], 4, false, 4),
            block(2, c[0], c[0], 3, false, 4),
        ];
        for k in 1..c.len() {
            let res = 4 << k;
            specs.push(block(2 * k + 1, c[k - 1], c[k], 3, true, res));
            specs.push(block(2 * k + 2, c[k], c[k], 3, false, res));
        }
        let last = *c.last().expect("at least one resolution");
        specs.push(LayerSpec {
            name: self.output_name(),
            in_channels: last,
            out_channels: 3,
            kernel: 1,
            padding: 0,
            upsample: false,
            activation: false,
            scale: 1.0 / (last as f64).sqrt(),
            resolution: self.resolution(),
        });
        specs
    }

    /// The state_dict this architecture expects: name → shape, in file order.
    pub fn expected_shapes(&self) -> Vec<(String, Vec<i64>)> {
        self.layer_specs()
            .into_iter()
            .flat_map(|s| {
                [
                    (
                        format!("{}.conv.weight", s.name),
                        vec![s.out_channels, s.in_channels, s.kernel, s.kernel],
                    ),
                    (format!("{}.wscale.b", s.name), vec![s.out_channels]),
                ]
            })
            .collect()
    }

    /// Reads the architecture off a state_dict's shapes (names already canonical):
    /// z from `layer1.conv.weight`, one width per pair of blocks.
    pub fn infer(shapes: &BTreeMap<String, Vec<i64>>) -> Result<Self, ModelError> {
        let out_of = |index: usize| -> Result<Option<Vec<i64>>, ModelError> {
            let key = format!("layer{index}.conv.weight");
            match shapes.get(&key) {
                None => Ok(None),
                Some(shape) if shape.len() == 4 => Ok(Some(shape.clone())),
                Some(shape) => Err(ModelError::ShapeMismatch {
                    key,
                    expected: "[out, in, k, k]".into(),
                    found: format!("{shape:?}"),
                }),
            }
        };
        let first = out_of(1)?.ok_or_else(|| ModelError::MissingKey {
            key: "layer1.conv.weight".into(),
            expected: "[c4, z_dim, 4, 4]".into(),
        })?;
        let mut blocks = 0;
        while out_of(blocks + 1)?.is_some() {
            blocks += 1;
        }
        if blocks < 2 || blocks % 2 != 0 {
            return Err(ModelError::NotAProgGan(format!(
                "found {blocks} blocks layer1..layer{blocks}; a Progressive GAN has an even number, at least 2"
            )));
        }
        let mut channels = Vec::new();
        for pair in 0..blocks / 2 {
            channels.push(out_of(2 * pair + 2)?.expect("counted above")[0]);
        }
        Ok(ProgGanConfig {
            z_dim: first[1],
            channels,
        })
    }
}

struct ConvBlock {
    spec: LayerSpec,
    weight: Tensor,
    bias: Tensor,
}

impl ConvBlock {
    /// x: [N, in, r, r] (r halved when upsampling) → [N, out, r', r']
    fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let x = pixel_norm(x)?;
        let x = if self.spec.upsample {
            let (h, w) = (x.size()[2], x.size()[3]);
            x.f_upsample_nearest2d([2 * h, 2 * w], None, None)?
        } else {
            x
        };
        let p = self.spec.padding;
        // Training runs activations in bf16: cast the fp32 master weights to match.
        // (A differentiable no-op in fp32.)
        let (weight, bias) = if x.kind() == self.weight.kind() {
            (self.weight.shallow_clone(), self.bias.shallow_clone())
        } else {
            (
                channels_last(&self.weight.f_to_kind(x.kind())?)?,
                self.bias.f_to_kind(x.kind())?,
            )
        };
        let mut x = x.f_conv2d::<Tensor>(&weight, None, [1, 1], [p, p], [1, 1], 1)?;
        // In place: the conv output is needed by nothing else (its backward reads only
        // the input and the weight), and each pass over a 256² map costs memory traffic.
        let _ = x.f_mul_scalar_(self.spec.scale)?;
        let _ = x.f_add_(&bias.f_view([1, -1, 1, 1])?)?;
        if self.spec.activation {
            leaky_relu(&x)
        } else {
            Ok(x)
        }
    }
}

/// LeakyReLU(0.2): `x > 0 ? x : 0.2·x`, in one pass. tch's `leaky_relu` has no slope
/// argument, but PReLU with a single weight of 0.2 is the same function. In f32 it gives
/// PyTorch's `F.leaky_relu(x, 0.2)` bit for bit (both multiply by 0.2f); in bf16 the
/// weight rounds to 0.2002. The weight is filled on the tensor's device, so no host copy.
pub fn leaky_relu(x: &Tensor) -> Result<Tensor, tch::TchError> {
    let slope = Tensor::f_full([1], LEAKY_SLOPE, (x.kind(), x.device()))?;
    x.f_prelu(&slope)
}

/// `x / √(mean_c x² + 1e-8)` over channels.
pub fn pixel_norm(x: &Tensor) -> Result<Tensor, tch::TchError> {
    let denom = x
        .f_square()?
        .f_mean_dim(1, true, None)?
        .f_add_scalar(PIXEL_NORM_EPS)?
        .f_sqrt()?;
    x.f_div(&denom)
}

/// The generator. Variables are f32 on one device, chosen at load time, and so is the
/// precision it computes in (see [`ProgGan::set_precision`]).
pub struct ProgGan {
    config: ProgGanConfig,
    vs: nn::VarStore,
    blocks: Vec<ConvBlock>,
    precision: Precision,
    /// The fast plan, one entry per block, when the precision asks for it.
    fast: Option<FastPlan>,
}

struct FastPlan {
    kind: Kind,
    blocks: Vec<FastBlock>,
}

impl ProgGan {
    /// A generator with fresh variables: conv weights N(0, 1) (the scale is applied at run
    /// time, as equalized learning rate wants), biases 0. Used by training and tests.
    pub fn new(config: ProgGanConfig, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let blocks = config
            .layer_specs()
            .into_iter()
            .map(|spec| {
                let p = &root / spec.name.as_str();
                let weight = (&p / "conv").var(
                    "weight",
                    &[
                        spec.out_channels,
                        spec.in_channels,
                        spec.kernel,
                        spec.kernel,
                    ],
                    nn::Init::Randn {
                        mean: 0.0,
                        stdev: 1.0,
                    },
                );
                let bias = (&p / "wscale").var("b", &[spec.out_channels], nn::Init::Const(0.0));
                ConvBlock { spec, weight, bias }
            })
            .collect();
        ProgGan {
            config,
            vs,
            blocks,
            precision: Precision::Exact,
            fast: None,
        }
    }

    /// Chooses how the generator computes from now on. The fast plan is built from the
    /// current weights (folded, cast once, channels-last), so call this after loading and
    /// again after the weights change. A new model computes [`Precision::Exact`].
    pub fn set_precision(&mut self, precision: Precision) -> Result<(), ModelError> {
        self.fast = match precision.compute_kind(self.device()) {
            None => None,
            Some(kind) => {
                let _guard = tch::no_grad_guard();
                let blocks = self
                    .blocks
                    .iter()
                    .map(|b| FastBlock::new(&b.spec, &b.weight, &b.bias, kind))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(FastPlan { kind, blocks })
            }
        };
        self.precision = precision;
        Ok(())
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The kind activations have between blocks: f32 when exact, else the plan's kind.
    pub fn compute_kind(&self) -> Kind {
        self.fast.as_ref().map_or(Kind::Float, |plan| plan.kind)
    }

    /// Bytes of weights the fast plan holds besides the f32 master weights.
    pub fn plan_bytes(&self) -> usize {
        self.fast
            .as_ref()
            .map_or(0, |plan| plan.blocks.iter().map(FastBlock::bytes).sum())
    }

    /// Loads a `.pth` (zip or legacy pickle, bare or `{'state_dict': …}`, new or old
    /// names) or `.safetensors` file. The architecture is inferred from the shapes.
    pub fn load(path: &Path, device: Device) -> Result<Self, ModelError> {
        Self::load_as(path, None, device)
    }

    /// Loads weights, checking them against `expected` when given (otherwise the
    /// architecture is inferred). Every key is checked by name and shape.
    pub fn load_as(
        path: &Path,
        expected: Option<&ProgGanConfig>,
        device: Device,
    ) -> Result<Self, ModelError> {
        let tensors = weights::read_generator_state_dict(path)?;
        let shapes: BTreeMap<String, Vec<i64>> =
            tensors.iter().map(|(k, t)| (k.clone(), t.size())).collect();
        let config = match expected {
            Some(config) => config.clone(),
            None => ProgGanConfig::infer(&shapes)?,
        };
        let model = ProgGan::new(config, device);
        model.copy_from(tensors)?;
        Ok(model)
    }

    /// Copies a state_dict into the variables, name for name, after checking that the
    /// names and shapes are exactly the expected ones.
    pub fn copy_from(&self, tensors: Vec<(String, Tensor)>) -> Result<(), ModelError> {
        let mut given: BTreeMap<String, Tensor> = tensors.into_iter().collect();
        let expected = self.config.expected_shapes();
        for (key, shape) in &expected {
            let Some(found) = given.get(key) else {
                return Err(ModelError::MissingKey {
                    key: key.clone(),
                    expected: format!("{shape:?}"),
                });
            };
            if &found.size() != shape {
                return Err(ModelError::ShapeMismatch {
                    key: key.clone(),
                    expected: format!("{shape:?}"),
                    found: format!("{:?}", found.size()),
                });
            }
        }
        if let Some((key, tensor)) = given
            .iter()
            .find(|(key, _)| !expected.iter().any(|(k, _)| k == *key))
        {
            return Err(ModelError::UnexpectedKey {
                key: key.clone(),
                shape: format!("{:?}", tensor.size()),
            });
        }
        let _guard = tch::no_grad_guard();
        let mut vars = self.vs.variables();
        for (key, _) in &expected {
            let source = given.remove(key).expect("checked above");
            let target = vars
                .get_mut(key)
                .expect("variable names mirror expected_shapes");
            target.f_copy_(&source.f_to_kind(Kind::Float)?)?;
        }
        Ok(())
    }

    pub fn config(&self) -> &ProgGanConfig {
        &self.config
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    pub fn z_dim(&self) -> i64 {
        self.config.z_dim
    }

    pub fn resolution(&self) -> i64 {
        self.config.resolution()
    }

    /// Block names in execution order: `layer1`, …, `output_RxR`.
    pub fn layer_names(&self) -> Vec<&str> {
        self.blocks.iter().map(|b| b.spec.name.as_str()).collect()
    }

    pub fn layer_spec(&self, layer: &str) -> Result<&LayerSpec, ModelError> {
        Ok(&self.blocks[self.layer_index(layer)?].spec)
    }

    /// A layer's activation shape per image: (channels, height, width).
    pub fn layer_shape(&self, layer: &str) -> Result<(i64, i64, i64), ModelError> {
        let spec = self.layer_spec(layer)?;
        Ok((spec.out_channels, spec.resolution, spec.resolution))
    }

    pub fn layer_index(&self, layer: &str) -> Result<usize, ModelError> {
        self.blocks
            .iter()
            .position(|b| b.spec.name == layer)
            .ok_or_else(|| ModelError::UnknownLayer {
                layer: layer.to_string(),
                available: self.layer_names().join(", "),
            })
    }

    /// GAN Dissection's z for image ids (see [`super::latent::z_for_ids`]): `[N, D]` f32
    /// on this model's device.
    pub fn z_for_ids(&self, ids: &[u64]) -> Result<Tensor, ModelError> {
        let z = super::latent::z_for_ids(ids, self.config.z_dim as usize);
        Ok(Tensor::f_from_slice(&z)?
            .f_view([ids.len() as i64, self.config.z_dim])?
            .f_to_device(self.device())?)
    }

    /// z: [N, D] → image: [N, 3, R, R], roughly in [-1, 1].
    pub fn forward(&self, z: &Tensor) -> Result<Tensor, ModelError> {
        self.run(&self.latent_input(z)?, 0..self.blocks.len())
    }

    /// z: [N, D] → the activation of `layer` (post-LeakyReLU): [N, C, H, W].
    pub fn features(&self, z: &Tensor, layer: &str) -> Result<Tensor, ModelError> {
        let last = self.layer_index(layer)?;
        self.run(&self.latent_input(z)?, 0..last + 1)
    }

    /// `layer`'s activation [N, C, H, W] → image [N, 3, R, R]. `features` followed by
    /// `forward_from` is exactly `forward`.
    pub fn forward_from(&self, layer: &str, features: &Tensor) -> Result<Tensor, ModelError> {
        let first = self.layer_index(layer)? + 1;
        self.run(features, first..self.blocks.len())
    }

    /// Runs blocks `range` one after another, starting from `input` (any kind); the
    /// result is f32, NCHW-contiguous.
    pub fn run(&self, input: &Tensor, range: std::ops::Range<usize>) -> Result<Tensor, ModelError> {
        let mut x = self.to_compute(input)?;
        for index in range {
            x = self.step(index, &x)?;
        }
        self.to_output(&x)
    }

    /// Block `index` on an activation already in the compute representation.
    pub(crate) fn step(&self, index: usize, x: &Tensor) -> Result<Tensor, ModelError> {
        Ok(match &self.fast {
            Some(plan) => plan.blocks[index].forward(x)?,
            None => self.blocks[index].forward(x)?,
        })
    }

    /// An activation in the representation blocks pass between them: the plan's kind,
    /// channels-last (a no-op when exact).
    pub(crate) fn to_compute(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        Ok(match &self.fast {
            // f16 tops out at 65504: saturate rather than turn huge inputs into inf.
            Some(plan) if plan.kind == Kind::Half => {
                channels_last(&x.f_clamp(-65504.0, 65504.0)?.f_to_kind(plan.kind)?)?
            }
            Some(plan) => channels_last(&x.f_to_kind(plan.kind)?)?,
            None => x.shallow_clone(),
        })
    }

    /// Back to f32, NCHW-contiguous (a no-op when exact).
    pub(crate) fn to_output(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        Ok(match &self.fast {
            Some(_) => x.f_to_kind(Kind::Float)?.f_contiguous()?,
            None => x.shallow_clone(),
        })
    }

    pub(crate) fn block_specs(&self) -> impl Iterator<Item = &LayerSpec> {
        self.blocks.iter().map(|b| &b.spec)
    }

    fn latent_input(&self, z: &Tensor) -> Result<Tensor, ModelError> {
        let size = z.size();
        if size.len() != 2 || size[1] != self.config.z_dim {
            return Err(ModelError::BadLatent {
                expected: self.config.z_dim,
                found: format!("{size:?}"),
            });
        }
        Ok(z.f_view([size[0], size[1], 1, 1])?)
    }

    /// The variables as (reference name, tensor), for saving.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.config
            .expected_shapes()
            .into_iter()
            .map(|(key, _)| {
                let t = self.vs.variables()[&key].shallow_clone();
                (key, t)
            })
            .collect()
    }

    /// Saves the weights as safetensors under the reference names.
    pub fn save_safetensors(&self, path: &Path) -> Result<(), ModelError> {
        let tensors = self.named_tensors();
        Tensor::write_safetensors(&tensors, path).map_err(|e| ModelError::Write {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ProgGanConfig {
        ProgGanConfig {
            z_dim: 16,
            channels: vec![32, 16, 8],
        }
    }

    #[test]
    fn lsun256_layer4_is_512_by_8_by_8_and_output_named_256() {
        let config = ProgGanConfig::lsun256();
        assert_eq!(config.resolution(), 256);
        let specs = config.layer_specs();
        assert_eq!(specs.len(), 15);
        let layer4 = &specs[3];
        assert_eq!(
            (layer4.name.as_str(), layer4.out_channels, layer4.resolution),
            ("layer4", 512, 8)
        );
        assert_eq!(specs[14].name, "output_256x256");
    }

    #[test]
    fn wscale_uses_in_channels_and_root_two_over_kernel() {
        let specs = tiny().layer_specs();
        let expect = std::f64::consts::SQRT_2 / 4.0 / 16f64.sqrt();
        assert!((specs[0].scale - expect).abs() < 1e-15);
        let expect3 = std::f64::consts::SQRT_2 / 3.0 / 32f64.sqrt();
        assert!((specs[2].scale - expect3).abs() < 1e-15);
        assert!((specs.last().unwrap().scale - 1.0 / 8f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn config_is_inferred_from_shapes() {
        let config = tiny();
        let shapes = config.expected_shapes().into_iter().collect();
        assert_eq!(ProgGanConfig::infer(&shapes).unwrap(), config);
    }

    #[test]
    fn prefix_then_suffix_equals_forward_at_every_layer() {
        tch::manual_seed(0);
        let model = ProgGan::new(tiny(), Device::Cpu);
        let _guard = tch::no_grad_guard();
        let z = Tensor::randn([3, 16], (Kind::Float, Device::Cpu));
        let full = model.forward(&z).unwrap();
        assert_eq!(full.size(), vec![3, 3, 16, 16]);
        for layer in ["layer1", "layer3", "layer4", "layer6"] {
            let feats = model.features(&z, layer).unwrap();
            let image = model.forward_from(layer, &feats).unwrap();
            assert!(image.equal(&full), "split at {layer} differs");
        }
    }

    #[test]
    fn fast_plans_match_the_exact_forward() {
        // 16² runs every upsampling block upsampled then convolved; 32² adds one that runs
        // as the transposed convolution. layer1 runs as a matrix product in both.
        for config in [
            tiny(),
            ProgGanConfig {
                z_dim: 16,
                channels: vec![32, 16, 8, 8],
            },
        ] {
            check_fast_plans(config);
        }
    }

    fn check_fast_plans(config: ProgGanConfig) {
        tch::manual_seed(5);
        let mut model = ProgGan::new(config, Device::Cpu);
        let _guard = tch::no_grad_guard();
        let z = Tensor::randn([4, 16], (Kind::Float, Device::Cpu));
        let exact = model.forward(&z).unwrap();
        // Relative RMS error: bf16 keeps 8 bits of mantissa, so about 2⁻⁸ per value, which
        // the layers compound. The tests share libtorch's random generator, so the weights
        // here depend on what runs beside this test: over 200 random tiny models the worst
        // errors were 0.034 (bf16), 0.0039 (f16) and 2.6e-6 (f32), and the bounds below
        // leave about twice that.
        let rel_rms = |a: &Tensor, b: &Tensor| {
            (a - b).square().mean(None).sqrt().double_value(&[])
                / b.square().mean(None).sqrt().double_value(&[])
        };
        // FastF16 is what CUDA runs; it is checked here on the CPU.
        for (precision, tolerance) in [
            (Precision::FastF32, 1e-5),
            (Precision::FastBf16, 0.06),
            (Precision::FastF16, 0.008),
        ] {
            model.set_precision(precision).unwrap();
            let fast = model.forward(&z).unwrap();
            assert_eq!(fast.kind(), Kind::Float);
            assert!(fast.is_contiguous());
            let error = rel_rms(&fast, &exact);
            assert!(
                error < tolerance,
                "{precision:?}: relative RMS error {error}"
            );
            // The split still composes in the fast plan.
            let feats = model.features(&z, "layer3").unwrap();
            let split = model.forward_from("layer3", &feats).unwrap();
            let error = rel_rms(&split, &fast);
            assert!(error < tolerance, "{precision:?}: split differs by {error}");
        }
        model.set_precision(Precision::Exact).unwrap();
        assert!(model.forward(&z).unwrap().equal(&exact));
    }

    #[test]
    fn unknown_layer_and_bad_latent_are_named_errors() {
        let model = ProgGan::new(tiny(), Device::Cpu);
        let err = model.layer_index("layer99").unwrap_err().to_string();
        assert!(err.contains("layer99") && err.contains("layer4"), "{err}");
        let z = Tensor::zeros([2, 15], (Kind::Float, Device::Cpu));
        let err = model.forward(&z).unwrap_err().to_string();
        assert!(err.contains("16") && err.contains("[2, 15]"), "{err}");
    }

    #[test]
    fn copy_from_names_key_and_shapes_on_mismatch() {
        let model = ProgGan::new(tiny(), Device::Cpu);
        let mut tensors = model.named_tensors();
        tensors[2].1 = Tensor::zeros([32, 31, 3, 3], (Kind::Float, Device::Cpu));
        let err = model.copy_from(tensors).unwrap_err().to_string();
        assert!(err.contains("layer2.conv.weight"), "{err}");
        assert!(
            err.contains("[32, 32, 3, 3]") && err.contains("[32, 31, 3, 3]"),
            "{err}"
        );
    }
}
