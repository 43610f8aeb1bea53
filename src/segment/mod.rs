//! Segmenters: networks that label every pixel of an image with a concept. Dissection
//! compares unit activations with their masks, and the demo's evaluation measures the
//! generator through them.
//!
//! The interface, for any segmenter plugged in:
//! - input: images `[N, 3, H, W]`, RGB in `[-1, 1]` (the generator's own range);
//! - output: class scores `[N, C, h, w]` (any `h, w`; argmax over `C` is the label);
//! - labels: `C` concept names, index `c` naming channel `c`.
//!
//! Two kinds are provided: the bundled [`demo::DemoSegmenter`] (weights in safetensors),
//! and any TorchScript module with a `labels.json` ([`torchscript::TorchScriptSegmenter`]).

pub mod demo;
pub mod torchscript;

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("cannot load segmenter {path}: {detail}")]
    Load { path: String, detail: String },
    #[error("segmenter output has shape {found}, expected [N, {classes}, h, w]")]
    BadOutput { found: String, classes: usize },
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

pub trait Segmenter {
    /// images `[N, 3, H, W]` in `[-1, 1]` → class scores `[N, C, h, w]`.
    fn scores(&self, images: &Tensor) -> Result<Tensor, SegmentError>;

    /// As [`Self::scores`], but keeping autograd's graph (where the caller's grad mode is
    /// on), so that an edit upstream can be optimized through the segmenter (see
    /// [`crate::dissect::optimize`]). The segmenter's own weights stay as they are.
    fn differentiable_scores(&self, images: &Tensor) -> Result<Tensor, SegmentError>;

    /// Concept names, one per score channel.
    fn labels(&self) -> &[String];

    /// images → per-pixel class ids `[N, h, w]` (i64).
    fn segment(&self, images: &Tensor) -> Result<Tensor, SegmentError> {
        let scores = self.scores(images)?;
        let size = scores.size();
        if size.len() != 4 || size[1] != self.labels().len() as i64 {
            return Err(SegmentError::BadOutput {
                found: format!("{size:?}"),
                classes: self.labels().len(),
            });
        }
        Ok(scores.f_argmax(1, false)?)
    }
}

/// The arithmetic a segmenter's scores (not its gradients) are computed in. Only the demo
/// segmenter has a low-precision path; TorchScript modules score as they were saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScorePrecision {
    F32,
    /// bf16: several times faster on CPUs with AMX or AVX-512-BF16. On the demo world's
    /// 256² images, measured at 128², 99.9% of labels agree with f32's.
    Bf16,
    F16,
}

impl ScorePrecision {
    pub fn kind(self) -> Kind {
        match self {
            ScorePrecision::F32 => Kind::Float,
            ScorePrecision::Bf16 => Kind::BFloat16,
            ScorePrecision::F16 => Kind::Half,
        }
    }

    /// The fastest precision the demo segmenter has on `device`: bf16 on CPUs that multiply
    /// it natively, f16 on CUDA, otherwise f32.
    pub fn fastest(device: Device) -> Self {
        match device {
            Device::Cuda(_) => ScorePrecision::F16,
            Device::Cpu if crate::model::fast::cpu_has_fast_bf16() => ScorePrecision::Bf16,
            _ => ScorePrecision::F32,
        }
    }
}

/// The smallest side [`AtMostSize`] segments at (the demo segmenter pools three times).
pub const MIN_SEGMENT_SIZE: usize = 8;

/// A segmenter that sees images at most `size` pixels a side: larger ones are
/// area-averaged down first, and the class scores are scaled back (bilinearly) to the
/// image's own size, so callers see the same shapes as without it. GAN Dissection
/// segments its 256² images at half size the same way (`segment_batch(…, downsample=2)`);
/// on a 256² generator it makes a pass that segments every render about four times
/// cheaper, while the labels stay those of a segmenter at 128².
pub struct AtMostSize {
    inner: Box<dyn Segmenter>,
    size: i64,
}

impl AtMostSize {
    pub fn new(inner: Box<dyn Segmenter>, size: usize) -> Self {
        AtMostSize {
            inner,
            size: size as i64,
        }
    }

    /// The images as the inner segmenter sees them, and their own size.
    fn shrink(&self, images: &Tensor) -> Result<(Tensor, [i64; 2]), SegmentError> {
        let size = images.size();
        let (h, w) = (size[size.len() - 2], size[size.len() - 1]);
        let side = h.max(w);
        if side <= self.size {
            return Ok((images.shallow_clone(), [h, w]));
        }
        let scaled = |n: i64| ((n * self.size + side / 2) / side).max(1);
        Ok((
            images.f_adaptive_avg_pool2d([scaled(h), scaled(w)])?,
            [h, w],
        ))
    }

    fn grow(scores: Tensor, [h, w]: [i64; 2]) -> Result<Tensor, SegmentError> {
        let size = scores.size();
        if size.len() == 4 && (size[2], size[3]) != (h, w) {
            return Ok(scores.f_upsample_bilinear2d([h, w], false, None, None)?);
        }
        Ok(scores)
    }
}

impl Segmenter for AtMostSize {
    fn scores(&self, images: &Tensor) -> Result<Tensor, SegmentError> {
        let (small, size) = self.shrink(images)?;
        Self::grow(self.inner.scores(&small)?, size)
    }

    fn differentiable_scores(&self, images: &Tensor) -> Result<Tensor, SegmentError> {
        let (small, size) = self.shrink(images)?;
        Self::grow(self.inner.differentiable_scores(&small)?, size)
    }

    fn labels(&self) -> &[String] {
        self.inner.labels()
    }
}

/// True when `path` is the demo segmenter's kind of file (the one with a low-precision
/// path, see [`ScorePrecision`]).
pub fn is_demo_segmenter(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// Loads a segmenter by file type: `.safetensors` is the demo segmenter; anything else is
/// a TorchScript module whose labels are `labels` or `labels.json` beside it.
pub fn load(
    path: &Path,
    labels: Option<&Path>,
    device: Device,
) -> Result<Box<dyn Segmenter>, SegmentError> {
    load_in(path, labels, device, ScorePrecision::F32)
}

/// As [`load`], with the demo segmenter scoring in `precision`.
pub fn load_in(
    path: &Path,
    labels: Option<&Path>,
    device: Device,
    precision: ScorePrecision,
) -> Result<Box<dyn Segmenter>, SegmentError> {
    if is_demo_segmenter(path) {
        let segmenter = demo::DemoSegmenter::load(path, device)?;
        return Ok(Box::new(match precision {
            ScorePrecision::F32 => segmenter,
            low => segmenter.with_fast_scores(low.kind()),
        }));
    }
    let labels = labels
        .map(Path::to_path_buf)
        .unwrap_or_else(|| path.with_file_name("labels.json"));
    Ok(Box::new(torchscript::TorchScriptSegmenter::load(
        path, &labels, device,
    )?))
}

#[cfg(test)]
mod tests {
    use super::testing::RedSegmenter;
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn precisions_read_and_write_by_their_short_names() {
        for (precision, name) in [
            (ScorePrecision::F32, "f32"),
            (ScorePrecision::Bf16, "bf16"),
            (ScorePrecision::F16, "f16"),
        ] {
            let json = serde_json::to_value(precision).unwrap();
            assert_eq!(json, name);
            assert_eq!(
                serde_json::from_value::<ScorePrecision>(json).unwrap(),
                precision
            );
        }
        assert_eq!(
            ScorePrecision::fastest(Device::Cuda(0)),
            ScorePrecision::F16
        );
        let cpu = ScorePrecision::fastest(Device::Cpu);
        assert_eq!(
            cpu == ScorePrecision::Bf16,
            crate::model::fast::cpu_has_fast_bf16()
        );
    }

    #[test]
    fn the_demo_segmenter_loads_in_the_precision_asked_for() {
        tch::manual_seed(5);
        let path = std::env::temp_dir().join(format!(
            "ganpaint-seg-load-in-{}.safetensors",
            std::process::id()
        ));
        demo::DemoSegmenter::new(Device::Cpu).save(&path).unwrap();
        let exact = load(&path, None, Device::Cpu).unwrap();
        let same = load_in(&path, None, Device::Cpu, ScorePrecision::F32).unwrap();
        let low = load_in(&path, None, Device::Cpu, ScorePrecision::Bf16).unwrap();
        let _ = std::fs::remove_file(path);
        let x = Tensor::rand([1, 3, 16, 16], (Kind::Float, Device::Cpu));
        let reference = exact.scores(&x).unwrap();
        assert!(same.scores(&x).unwrap().equal(&reference));
        let scored = low.scores(&x).unwrap();
        assert!(!scored.equal(&reference), "bf16 scores are not f32's");
        assert!(scored.allclose(&reference, 0.1, 0.1, false));
    }

    /// An 8×8 image whose red channel alternates +1/−1 pixel by pixel: every 2×2 average is 0.
    fn checkerboard() -> Tensor {
        let idx = Tensor::arange(8, (Kind::Float, Device::Cpu));
        let parity = (idx.unsqueeze(1) + idx.unsqueeze(0)).remainder(2.0);
        let red = parity * 2.0 - 1.0;
        Tensor::stack(&[&red, &red.zeros_like(), &red.zeros_like()], 0).unsqueeze(0)
    }

    #[test]
    fn larger_images_are_segmented_scaled_down_and_scored_at_their_own_size() {
        let image = checkerboard();
        let plain = RedSegmenter::new();
        let labels = plain.segment(&image).unwrap();
        assert_eq!(labels.size(), [1, 8, 8]);
        // Alone, the segmenter sees every pixel: half of them are `bright`.
        assert_eq!(labels.sum(Kind::Int64).int64_value(&[]), 32);

        let at_4 = AtMostSize::new(Box::new(RedSegmenter::new()), 4);
        let scores = at_4.scores(&image).unwrap();
        assert_eq!(
            scores.size(),
            [1, 2, 8, 8],
            "scores come back at the image's size"
        );
        // Scaled to 4×4 every pixel averages to 0, so no pixel scores bright over dark.
        let margin = (scores.select(1, 1) - scores.select(1, 0)).abs().max();
        assert!(margin.double_value(&[]) < 1e-6);
        assert_eq!(at_4.labels(), plain.labels());

        // Images no larger than the size pass through untouched.
        let at_8 = AtMostSize::new(Box::new(RedSegmenter::new()), 8);
        assert!(at_8.segment(&image).unwrap().equal(&labels));
    }

    #[test]
    fn a_wide_image_keeps_its_aspect_when_scaled() {
        // 4×16, bright on the right half: scaled to at most 8 a side (2×8) and back, the
        // halves keep their labels away from the seam.
        let right = Tensor::arange(16, (Kind::Float, Device::Cpu))
            .ge(8.0)
            .to_kind(Kind::Float)
            * 2.0
            - 1.0;
        let red = right.unsqueeze(0).expand([4, 16], true);
        let image = Tensor::stack(&[&red, &red.zeros_like(), &red.zeros_like()], 0).unsqueeze(0);
        let seg = AtMostSize::new(Box::new(RedSegmenter::new()), 8);
        let labels = seg.segment(&image).unwrap();
        assert_eq!(labels.size(), [1, 4, 16]);
        assert_eq!(labels.get(0).get(2).get(1).int64_value(&[]), 0);
        assert_eq!(labels.get(0).get(2).get(14).int64_value(&[]), 1);
    }
}

/// Segmenters for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{SegmentError, Segmenter};
    use tch::Tensor;

    /// Labels a pixel `bright` when its red channel is above 0, else `dark`.
    pub(crate) struct RedSegmenter(Vec<String>);

    impl RedSegmenter {
        pub(crate) fn new() -> Self {
            RedSegmenter(vec!["dark".into(), "bright".into()])
        }
    }

    impl Segmenter for RedSegmenter {
        fn scores(&self, images: &Tensor) -> Result<Tensor, SegmentError> {
            let red = images.narrow(1, 0, 1);
            Ok(Tensor::cat(&[red.neg(), red], 1))
        }
        fn differentiable_scores(&self, images: &Tensor) -> Result<Tensor, SegmentError> {
            self.scores(images)
        }
        fn labels(&self) -> &[String] {
            &self.0
        }
    }
}
