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

use tch::{Device, Tensor};

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

/// Loads a segmenter by file type: `.safetensors` is the demo segmenter; anything else is
/// a TorchScript module whose labels are `labels` or `labels.json` beside it.
pub fn load(
    path: &Path,
    labels: Option<&Path>,
    device: Device,
) -> Result<Box<dyn Segmenter>, SegmentError> {
    if path.extension().is_some_and(|e| e == "safetensors") {
        return Ok(Box::new(demo::DemoSegmenter::load(path, device)?));
    }
    let labels = labels
        .map(Path::to_path_buf)
        .unwrap_or_else(|| path.with_file_name("labels.json"));
    Ok(Box::new(torchscript::TorchScriptSegmenter::load(
        path, &labels, device,
    )?))
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
