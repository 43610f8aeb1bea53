//! The bundled demo segmenter: a small U-Net trained on rendered scenes with their exact
//! labels (see `ganpaint train-demo segmenter`). It labels the demo generator's images for
//! dissection and evaluation.
//!
//! ```text
//! 64² 3→32→32 ─────────────────────────────── cat → 64→32 → C
//!  32² 32→64→64 ───────────────────── cat → 128→64 ↑
//!   16² 64→128→128 ───────── cat → 256→128 ↑
//!    8² 128→128→128 (bottleneck) ↑
//! ```
//! Convs are 3×3 with GroupNorm and ReLU; downsampling is 2× max-pool, upsampling nearest.

use std::path::Path;

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use super::{SegmentError, Segmenter};

/// Names of the label values of the demo world's scenes (`crate::demo::scene`), indexed
/// by label. Sky is 0 because it is the background: every
/// pixel nothing else claims is sky.
///
/// - `sky`: open sky, including the glow around a low sun.
/// - `cloud`: clouds, wherever they are at least half opaque.
/// - `grass`: the ground, including cast shadows on it.
/// - `tree`: tree crowns and trunks, and the band of distant woods on the horizon.
/// - `brick`: every masonry wall: church bodies, gables, towers, the drums under domes, battlements
///   and door surrounds, whether brick, stone or plastered.
/// - `dome`: domes of every profile, with their lanterns and crosses.
/// - `door`: doors.
/// - `window`: windows, rose windows and belfry openings.
/// - `roof`: pitched roofs, gable trims and spires; kept apart from `brick` so that `brick`
///   stays a texture concept.
/// - `path`: the path leading up to a church door.
pub const CLASSES: &[&str] = &[
    "sky", "cloud", "grass", "tree", "brick", "dome", "door", "window", "roof", "path",
];

fn conv_block(p: nn::Path, cin: i64, cout: i64) -> nn::Sequential {
    let cfg = nn::ConvConfig {
        padding: 1,
        ..Default::default()
    };
    nn::seq()
        .add(nn::conv2d(&p / "conv0", cin, cout, 3, cfg))
        .add(nn::group_norm(&p / "norm0", 8, cout, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::conv2d(&p / "conv1", cout, cout, 3, cfg))
        .add(nn::group_norm(&p / "norm1", 8, cout, Default::default()))
        .add_fn(|x| x.relu())
}

pub struct DemoSegmenter {
    vs: nn::VarStore,
    down: Vec<nn::Sequential>,
    bottleneck: nn::Sequential,
    up: Vec<nn::Sequential>,
    head: nn::Conv2D,
    labels: Vec<String>,
    /// A copy of the weights in a low-precision kind for [`Segmenter::scores`] (see
    /// [`DemoSegmenter::with_fast_scores`]); `None` scores in f32.
    fast: Option<Box<DemoSegmenter>>,
}

const WIDTHS: [i64; 3] = [32, 64, 128];

impl DemoSegmenter {
    /// Fresh weights (for training).
    pub fn new(device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let mut down = Vec::new();
        let mut cin = 3;
        for (i, &w) in WIDTHS.iter().enumerate() {
            down.push(conv_block(&root / format!("down{i}"), cin, w));
            cin = w;
        }
        let bottleneck = conv_block(&root / "bottleneck", cin, cin);
        let mut up = Vec::new();
        for (i, &w) in WIDTHS.iter().enumerate().rev() {
            // input: upsampled deeper features (cin) concatenated with the skip (w)
            up.push(conv_block(&root / format!("up{i}"), cin + w, w));
            cin = w;
        }
        let head = nn::conv2d(
            &root / "head",
            cin,
            CLASSES.len() as i64,
            1,
            Default::default(),
        );
        let labels = CLASSES.iter().map(|s| s.to_string()).collect();
        DemoSegmenter {
            vs,
            down,
            bottleneck,
            up,
            head,
            labels,
            fast: None,
        }
    }

    pub fn load(path: &Path, device: Device) -> Result<Self, SegmentError> {
        let mut model = DemoSegmenter::load_trainable(path, device)?;
        model.vs.freeze();
        Ok(model)
    }

    /// Stored weights that training may go on changing (fine-tuning).
    pub fn load_trainable(path: &Path, device: Device) -> Result<Self, SegmentError> {
        let mut model = DemoSegmenter::new(device);
        model.vs.load(path).map_err(|e| SegmentError::Load {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Ok(model)
    }

    pub fn save(&self, path: &Path) -> Result<(), SegmentError> {
        self.vs.save(path).map_err(|e| SegmentError::Load {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    /// Scores (not gradients) computed by a copy of the weights in `kind`, with images cast
    /// to it and scores cast back to f32. In bf16 on a CPU with AMX or AVX-512-BF16 the
    /// convolutions run several times faster.
    pub fn with_fast_scores(mut self, kind: Kind) -> Self {
        let mut copy = DemoSegmenter::new(self.vs.device());
        copy.vs.copy(&self.vs).expect("same architecture");
        copy.vs.set_kind(kind);
        copy.vs.freeze();
        self.fast = Some(Box::new(copy));
        self
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// images [N, 3, H, W] (H, W divisible by 8) → logits [N, C, H, W]; differentiable.
    pub fn forward(&self, images: &Tensor) -> Tensor {
        let mut skips = Vec::new();
        let mut x = images.shallow_clone();
        for block in &self.down {
            x = block.forward(&x);
            skips.push(x.shallow_clone());
            x = x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        }
        x = self.bottleneck.forward(&x);
        for block in &self.up {
            let skip = skips.pop().expect("one skip per level");
            let (h, w) = (skip.size()[2], skip.size()[3]);
            x = block.forward(&Tensor::cat(
                &[x.upsample_nearest2d([h, w], None, None), skip],
                1,
            ));
        }
        self.head.forward(&x)
    }
}

impl Segmenter for DemoSegmenter {
    fn scores(&self, images: &Tensor) -> Result<Tensor, SegmentError> {
        let _guard = tch::no_grad_guard();
        if let Some(fast) = &self.fast {
            let kind = fast.vs.kind();
            let images = images.to_device(self.vs.device()).f_to_kind(kind)?;
            let images = crate::model::proggan::channels_last(&images)?;
            return Ok(fast.forward(&images).f_to_kind(Kind::Float)?.contiguous());
        }
        // Channels-last input makes every convolution, GroupNorm and pooling below run in
        // that layout (libtorch follows the input's strides): about 1.5× faster on CPU,
        // with the same labels up to rounding.
        let images = crate::model::proggan::channels_last(&images.to_device(self.vs.device()))?;
        Ok(self.forward(&images).contiguous())
    }

    fn differentiable_scores(&self, images: &Tensor) -> Result<Tensor, SegmentError> {
        let images = crate::model::proggan::channels_last(&images.to_device(self.vs.device()))?;
        Ok(self.forward(&images).contiguous())
    }

    fn labels(&self) -> &[String] {
        &self.labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_have_one_channel_per_class_at_full_resolution() {
        let seg = DemoSegmenter::new(Device::Cpu);
        let x = Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert_eq!(
            seg.scores(&x).unwrap().size(),
            vec![2, CLASSES.len() as i64, 32, 32]
        );
        assert_eq!(seg.segment(&x).unwrap().size(), vec![2, 32, 32]);
    }

    #[test]
    fn save_and_load_round_trip() {
        let seg = DemoSegmenter::new(Device::Cpu);
        let path =
            std::env::temp_dir().join(format!("ganpaint-seg-{}.safetensors", std::process::id()));
        seg.save(&path).unwrap();
        let again = DemoSegmenter::load(&path, Device::Cpu).unwrap();
        let x = Tensor::randn([1, 3, 16, 16], (Kind::Float, Device::Cpu));
        assert!(seg.scores(&x).unwrap().equal(&again.scores(&x).unwrap()));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn fast_scores_stay_close_to_f32_and_leave_gradients_in_f32() {
        tch::manual_seed(3);
        let seg = DemoSegmenter::new(Device::Cpu);
        let path = std::env::temp_dir().join(format!(
            "ganpaint-seg-fast-{}.safetensors",
            std::process::id()
        ));
        seg.save(&path).unwrap();
        let fast = DemoSegmenter::load(&path, Device::Cpu)
            .unwrap()
            .with_fast_scores(Kind::BFloat16);
        let _ = std::fs::remove_file(path);
        let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu)) * 2 - 1;
        let exact = seg.scores(&x).unwrap();
        let low = fast.scores(&x).unwrap();
        assert_eq!(low.kind(), Kind::Float);
        assert_eq!(low.size(), exact.size());
        // bf16 keeps 8 bits of mantissa: about 2⁻⁸ relative error per value, a few times
        // that after the convolutions and norms.
        let rms = |t: &Tensor| t.square().mean(Kind::Float).sqrt().double_value(&[]);
        let error = rms(&(&low - &exact)) / rms(&exact);
        assert!(error > 0.0 && error < 0.05, "relative RMS error {error}");
        // Gradients (and the scores they come with) are the f32 weights' own.
        assert!(fast
            .differentiable_scores(&x)
            .unwrap()
            .equal(&seg.differentiable_scores(&x).unwrap()));
    }
}
