//! The pieces of the architecture that both execution plans share: a block's
//! specification ([`LayerSpec`]) and the channels-last layout.

use tch::Tensor;

/// One convolution block as the reference names it.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    pub name: String,
    pub in_channels: i64,
    pub out_channels: i64,
    pub kernel: i64,
    pub padding: i64,
    pub upsample: bool,
    /// LeakyReLU(0.2) after WScale; false only for the output block.
    pub activation: bool,
    /// WScale's multiplier, `gain / √fan_in`.
    pub scale: f64,
    /// Output side length.
    pub resolution: i64,
}

/// The same values with NHWC strides. tch has no memory-format API, but libtorch picks
/// its channels-last kernels (much faster in bf16 on CPU) from the strides, and a conv
/// whose weight is channels-last returns channels-last activations.
pub fn channels_last(x: &Tensor) -> Result<Tensor, tch::TchError> {
    x.f_permute([0, 2, 3, 1])?
        .f_contiguous()?
        .f_permute([0, 3, 1, 2])
}
