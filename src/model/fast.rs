//! The fast execution plan: the same generator, with its blocks rewritten once at load
//! time into fewer, cheaper operations. [`super::ProgGan`] runs through this plan when its
//! precision is [`Precision::Fast`]; the exact blocks stay for training, for fixtures and
//! for bit-stable tests.
//!
//! Per block, `PixelNorm → [nearest ×2] → conv → WScale → LeakyReLU` becomes
//!
//! ```text
//! x · 1/max(‖x‖₂, √C·1e-4)                 one reduction, one multiply
//! conv(W·scale·√C) + b                     WScale and PixelNorm's √C folded into W; bias fused
//!   or, after an upsample, conv_transpose(K, stride 2) with K[i,o,4,4] built from W[o,i,3,3]
//!   (on maps of 32² and more; below that nearest ×2 and the 3×3 conv read fewer weights)
//!   or, for layer1 on the 1×1 latent, one matrix product
//! prelu(0.2)                               one pass (same values as LeakyReLU(0.2))
//! ```
//!
//! The transposed convolution is exact algebra, not an approximation: a 3×3 convolution
//! of a nearest-upsampled map reads each input pixel through summed taps, so every output
//! pixel needs 2×2 input taps instead of 3×3, and the upsampled map is never built. It
//! cuts an upsampling block's multiply-adds to 16/36.
//!
//! Weights are cast once to the compute kind (bf16 on CPUs with AVX-512-BF16 or AMX, f16
//! on CUDA, f32 elsewhere) and stored channels-last; activations stay in that kind and
//! layout between blocks, so no pass re-lays memory out.

use tch::{Device, Kind, Tensor};

use super::block::{channels_last, LayerSpec};

/// How the generator computes. Written as clap writes it (`exact`, `fast`, `fast-bf16`, …).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// The reference arithmetic, op for op, in f32: bit-stable, used by tests.
    Exact,
    /// The fast plan in the best kind this device has (bf16 on AMX/AVX-512-BF16 CPUs, f16
    /// on CUDA, otherwise f32).
    #[default]
    Fast,
    /// The fast plan, forced to f32.
    FastF32,
    /// The fast plan, forced to bf16.
    FastBf16,
    /// The fast plan, forced to f16.
    FastF16,
}

impl Precision {
    /// The compute kind of the fast plan on `device`; `None` for [`Precision::Exact`].
    pub fn compute_kind(self, device: Device) -> Option<Kind> {
        match self {
            Precision::Exact => None,
            Precision::FastF32 => Some(Kind::Float),
            Precision::FastBf16 => Some(Kind::BFloat16),
            Precision::FastF16 => Some(Kind::Half),
            Precision::Fast => Some(match device {
                Device::Cuda(_) => Kind::Half,
                Device::Cpu if cpu_has_fast_bf16() => Kind::BFloat16,
                _ => Kind::Float,
            }),
        }
    }
}

impl Precision {
    /// The precision `device` computes this as: [`Precision::Fast`] becomes the plan in the
    /// kind it picks there (`fast-bf16`, `fast-f16` or `fast-f32`); the others stay.
    pub fn on(self, device: Device) -> Precision {
        match self.compute_kind(device) {
            Some(_) if self != Precision::Fast => self,
            Some(Kind::BFloat16) => Precision::FastBf16,
            Some(Kind::Half) => Precision::FastF16,
            Some(_) => Precision::FastF32,
            None => Precision::Exact,
        }
    }
}

/// True when the CPU multiplies bf16 natively (AVX-512-BF16 or AMX-BF16); elsewhere bf16
/// convolutions are emulated and slower than f32.
pub fn cpu_has_fast_bf16() -> bool {
    static FLAGS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FLAGS.get_or_init(|| {
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|info| {
                info.lines()
                    .find(|l| l.starts_with("flags"))
                    .map(|l| {
                        l.split_whitespace()
                            .any(|f| f == "avx512_bf16" || f == "amx_bf16")
                    })
                    .unwrap_or(false)
            })
            .unwrap_or(false)
    })
}

/// The operation a fast block runs after normalizing its input.
#[derive(Debug)]
enum FastOp {
    /// Stride-1 convolution with this zero padding.
    Conv { padding: i64 },
    /// Nearest ×2 then 3×3 convolution, as a stride-2 4×4 transposed convolution.
    UpConv,
    /// Nearest ×2 then the 3×3 convolution itself: on small maps (see
    /// [`UPCONV_FROM_RESOLUTION`]).
    UpsampleConv,
    /// `layer1`: a k×k kernel with padding k−1 on the 1×1 latent is a matrix product,
    /// `z [N, I] · K [I, O·k·k]`; as a convolution it would multiply k² − 1 padded zeros
    /// per output. `weight` holds K.
    Dense { kernel: i64 },
}

/// Upsampling blocks whose output is at least this resolution run as the transposed
/// convolution; smaller ones upsample and convolve. At batch 1 on small maps a block is
/// bound by reading its weights, and the 4×4 transposed kernel is 16/9 of the 3×3 one:
/// measured with libtorch on 2 CPUs in bf16 at 512 channels, 4²→8² took 1.62 ms
/// transposed against 0.81 ms upsampled, 8²→16² 1.92 against 1.07, 16²→32² 2.31 against
/// 2.37, and from there on the transposed convolution's 16/36 multiply-adds win (32²→64²
/// at 512→256 channels: 2.76 against 3.74).
const UPCONV_FROM_RESOLUTION: i64 = 32;

/// One block of the fast plan. Its input and output are `[N, C, H, W]` in the plan's
/// compute kind, channels-last.
#[derive(Debug)]
pub(crate) struct FastBlock {
    op: FastOp,
    weight: Tensor,
    bias: Tensor,
    /// `[1]` holding 0.2 in the compute kind, or `None` for the output block.
    slope: Option<Tensor>,
    /// PixelNorm's eps, moved under the square root's √C: `√C·1e-4`.
    norm_floor: f64,
}

/// Multiply-adds per output pixel and per channel pair of `spec`'s block in the fast plan:
/// 2×2 taps for the transposed convolution, k² for a convolution (after an upsample on
/// small maps too).
pub(crate) fn taps_per_output(spec: &LayerSpec) -> i64 {
    if spec.upsample && spec.resolution >= UPCONV_FROM_RESOLUTION {
        4
    } else {
        spec.kernel * spec.kernel
    }
}

/// Folds a 3×3 kernel applied after nearest ×2 into the 4×4 kernel of a stride-2,
/// padding-1 transposed convolution. Per axis, output row `2m` reads input rows `m−1`
/// (tap w₋₁) and `m` (taps w₀+w₁); row `2m+1` reads `m` (w₋₁+w₀) and `m+1` (w₁). In
/// transposed-convolution indexing (`k = o + 1 − 2i`) that is `K = [w₁, w₀+w₁, w₋₁+w₀, w₋₁]`.
///
/// weight `[O, I, 3, 3]` → `[I, O, 4, 4]`
fn upconv_kernel(weight: &Tensor) -> Result<Tensor, tch::TchError> {
    let taps: [[f32; 3]; 4] = [[0., 0., 1.], [0., 1., 1.], [1., 1., 0.], [1., 0., 0.]];
    let flat: Vec<f32> = taps.iter().flatten().copied().collect();
    let m = Tensor::f_from_slice(&flat)?
        .f_view([4, 3])?
        .f_to_device(weight.device())?
        .f_to_kind(weight.kind())?;
    let k = Tensor::f_einsum("ja,kb,oiab->iojk", &[&m, &m, weight], None::<&[i64]>)?;
    k.f_contiguous()
}

impl FastBlock {
    /// Prepares one block from its f32 master weight `[O, I, k, k]` and bias `[O]`.
    pub(crate) fn new(
        spec: &LayerSpec,
        weight: &Tensor,
        bias: &Tensor,
        kind: Kind,
    ) -> Result<Self, tch::TchError> {
        let root_c = (spec.in_channels as f64).sqrt();
        let folded = weight
            .f_detach()?
            .f_to_kind(Kind::Double)?
            .f_mul_scalar(spec.scale * root_c)?;
        let k = spec.kernel;
        let (op, kernel) = if spec.upsample && spec.resolution >= UPCONV_FROM_RESOLUTION {
            (FastOp::UpConv, upconv_kernel(&folded)?)
        } else if spec.upsample {
            (FastOp::UpsampleConv, folded)
        } else if spec.padding == k - 1 && spec.resolution == k {
            // out[o, y, x] = Σᵢ W[o, i, k−1−y, k−1−x] · zᵢ: flip, then [I, O, k, k].
            let dense = folded
                .f_flip([2i64, 3].as_slice())?
                .f_permute([1i64, 0, 2, 3].as_slice())?
                .f_contiguous()?;
            (FastOp::Dense { kernel: k }, dense)
        } else {
            (
                FastOp::Conv {
                    padding: spec.padding,
                },
                folded,
            )
        };
        let weight = match op {
            FastOp::Dense { .. } => kernel.f_to_kind(kind)?,
            _ => channels_last(&kernel.f_to_kind(kind)?)?,
        };
        let bias = bias.f_detach()?.f_to_kind(kind)?.f_contiguous()?;
        let slope = if spec.activation {
            Some(
                Tensor::f_from_slice(&[0.2f32])?
                    .f_to_kind(kind)?
                    .f_to_device(weight.device())?,
            )
        } else {
            None
        };
        Ok(FastBlock {
            op,
            weight,
            bias,
            slope,
            norm_floor: root_c * 1e-4,
        })
    }

    /// x: `[N, I, r, r]` → `[N, O, r', r']` (r' = 2r after an upsample). Zero padding at
    /// the borders of `x`, as if `x` were the whole map.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        // Multiply by the reciprocal: the reciprocal is per pixel (1/C of the map), and a
        // multiply pass is cheaper than a divide pass.
        // In f16 the norm (√C times the RMS) can overflow where the activations do not,
        // so it is taken in f32 there; bf16 has f32's range.
        let norm = if x.kind() == Kind::Half {
            x.f_norm_scalaropt_dim_dtype(2.0, [1i64].as_slice(), true, Kind::Float)?
        } else {
            x.f_norm_scalaropt_dim(2.0, [1i64].as_slice(), true)?
        };
        let inverse = norm
            .f_clamp_min(self.norm_floor)?
            .f_reciprocal()?
            .f_to_kind(x.kind())?;
        let x = x.f_mul(&inverse)?;
        let y = match self.op {
            FastOp::Conv { padding } => x.f_conv2d(
                &self.weight,
                Some(&self.bias),
                [1, 1],
                [padding, padding],
                [1, 1],
                1,
            )?,
            FastOp::UpConv => x.f_conv_transpose2d(
                &self.weight,
                Some(&self.bias),
                [2, 2],
                [1, 1],
                [0, 0],
                1,
                [1, 1],
            )?,
            FastOp::UpsampleConv => {
                let (h, w) = (x.size()[2], x.size()[3]);
                x.f_upsample_nearest2d([2 * h, 2 * w], None, None)?
                    .f_conv2d(&self.weight, Some(&self.bias), [1, 1], [1, 1], [1, 1], 1)?
            }
            FastOp::Dense { kernel } => {
                let size = x.size();
                let (n, i) = (size[0], size[1]);
                let o = self.bias.size()[0];
                if size[2..] != [1, 1] {
                    return Err(tch::TchError::Shape(format!(
                        "layer1's dense plan takes a 1×1 latent, got {size:?}"
                    )));
                }
                let y = x
                    .f_reshape([n, i])?
                    .f_matmul(&self.weight.f_view([i, o * kernel * kernel])?)?
                    .f_view([n, o, kernel, kernel])?;
                channels_last(&(y + self.bias.view([1, o, 1, 1])))?
            }
        };
        match &self.slope {
            Some(slope) => y.f_prelu(slope),
            None => Ok(y),
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        (self.weight.numel() + self.bias.numel()) * self.weight.kind().elt_size_in_bytes()
    }
}

/// Where a block's output region comes from: what an output span `[y0, y1)` (rows, and
/// the same rule for columns) needs of the input, and what a change does downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// 2 for blocks that upsample, else 1.
    pub stride: i64,
    /// The convolution's zero padding (its reach, in output pixels).
    pub padding: i64,
}

impl Footprint {
    pub fn of(spec: &LayerSpec) -> Option<Self> {
        // Only "same" convolutions are local in the way the incremental path assumes;
        // layer1's 4×4 kernel on a 1×1 input never follows an edited layer anyway.
        if spec.kernel != 2 * spec.padding + 1 {
            return None;
        }
        Some(Footprint {
            stride: if spec.upsample { 2 } else { 1 },
            padding: spec.padding,
        })
    }

    /// Output rows that can differ when input rows `[r0, r1)` change (of `out_len`).
    pub fn changed(&self, (r0, r1): (i64, i64), out_len: i64) -> (i64, i64) {
        (
            (self.stride * r0 - self.padding).max(0),
            (self.stride * r1 + self.padding).min(out_len),
        )
    }

    /// The input rows `[a, b)` (clipped to `in_len`) whose block output, computed with
    /// zero padding on the crop, is right over output rows `[y0, y1)`. That output covers
    /// rows `[stride·a, stride·b)` of the whole map.
    pub fn needed(&self, (y0, y1): (i64, i64), in_len: i64) -> (i64, i64) {
        if self.stride == 1 {
            ((y0 - self.padding).max(0), (y1 + self.padding).min(in_len))
        } else {
            // Output row 2m reads m−1 and m; row 2m+1 reads m and m+1.
            ((ceil_div(y0, 2) - 1).max(0), (y1 / 2 + 1).min(in_len))
        }
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1).div_euclid(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upconv_kernel_equals_nearest_upsample_then_conv() {
        // PyTorch: F.conv2d(F.interpolate(x, scale_factor=2), w, padding=1)
        //       == F.conv_transpose2d(x, K, stride=2, padding=1)
        tch::manual_seed(3);
        let x = Tensor::randn([2, 5, 6, 7], (Kind::Double, Device::Cpu));
        let w = Tensor::randn([4, 5, 3, 3], (Kind::Double, Device::Cpu));
        let reference = x.upsample_nearest2d([12, 14], None, None).conv2d::<Tensor>(
            &w,
            None,
            [1, 1],
            [1, 1],
            [1, 1],
            1,
        );
        let k = upconv_kernel(&w).unwrap();
        let fast = x.conv_transpose2d::<Tensor>(&k, None, [2, 2], [1, 1], [0, 0], 1, [1, 1]);
        assert_eq!(fast.size(), reference.size());
        let diff = (fast - reference).abs().max().double_value(&[]);
        assert!(diff < 1e-12, "max diff {diff}");
    }

    #[test]
    fn footprint_needed_rows_cover_every_changed_row() {
        let up = Footprint {
            stride: 2,
            padding: 1,
        };
        // Output rows 5..11 of 16 need input rows 2..6 of 8 (row 5 = 2·2+1 reads 2 and 3,
        // row 10 = 2·5 reads 4 and 5).
        assert_eq!(up.needed((5, 11), 8), (2, 6));
        assert_eq!(up.needed((4, 12), 8), (1, 7));
        assert_eq!(up.needed((0, 16), 8), (0, 8));
        assert_eq!(up.changed((3, 5), 16), (5, 11));
        let same = Footprint {
            stride: 1,
            padding: 1,
        };
        assert_eq!(same.changed((0, 2), 8), (0, 3));
        assert_eq!(same.needed((0, 3), 8), (0, 4));
    }

    #[test]
    fn fast_precision_picks_a_kind_per_device() {
        assert_eq!(Precision::Exact.compute_kind(Device::Cpu), None);
        assert_eq!(
            Precision::Fast.compute_kind(Device::Cuda(0)),
            Some(Kind::Half)
        );
        let cpu = Precision::Fast.compute_kind(Device::Cpu).unwrap();
        assert!(cpu == Kind::BFloat16 || cpu == Kind::Float);
        assert_eq!(
            Precision::FastF32.compute_kind(Device::Cpu),
            Some(Kind::Float)
        );
    }

    #[test]
    fn a_precision_on_a_device_names_the_kind_it_computes_in() {
        assert_eq!(Precision::Fast.on(Device::Cuda(0)), Precision::FastF16);
        let cpu = if cpu_has_fast_bf16() {
            Precision::FastBf16
        } else {
            Precision::FastF32
        };
        assert_eq!(Precision::Fast.on(Device::Cpu), cpu);
        for fixed in [
            Precision::Exact,
            Precision::FastF32,
            Precision::FastBf16,
            Precision::FastF16,
        ] {
            assert_eq!(fixed.on(Device::Cpu), fixed);
        }
        // Recorded as the command line writes it.
        assert_eq!(
            serde_json::to_value(Precision::FastBf16).unwrap(),
            "fast-bf16"
        );
        assert_eq!(
            serde_json::from_value::<Precision>("exact".into()).unwrap(),
            Precision::Exact
        );
    }
}
