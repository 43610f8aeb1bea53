//! Any TorchScript segmenter (`torch.jit.save` of a module following the interface in
//! [`super`]), with its concept names in a `labels.json` array beside it or given
//! explicitly.

use std::path::Path;

use tch::{CModule, Device, Tensor};

use super::{SegmentError, Segmenter};

pub struct TorchScriptSegmenter {
    module: CModule,
    labels: Vec<String>,
    device: Device,
}

impl TorchScriptSegmenter {
    pub fn load(
        module_path: &Path,
        labels_path: &Path,
        device: Device,
    ) -> Result<Self, SegmentError> {
        let load_err = |path: &Path, detail: String| SegmentError::Load {
            path: path.display().to_string(),
            detail,
        };
        let text = std::fs::read_to_string(labels_path)
            .map_err(|e| load_err(labels_path, e.to_string()))?;
        let labels: Vec<String> = serde_json::from_str(&text)
            .map_err(|e| load_err(labels_path, format!("expected a JSON array of names: {e}")))?;
        let mut module = CModule::load_on_device(module_path, device)
            .map_err(|e| load_err(module_path, e.to_string()))?;
        module.set_eval();
        Ok(TorchScriptSegmenter {
            module,
            labels,
            device,
        })
    }
}

impl Segmenter for TorchScriptSegmenter {
    fn scores(&self, images: &Tensor) -> Result<Tensor, SegmentError> {
        Ok(self.module.forward_ts(&[images.to_device(self.device)])?)
    }

    fn differentiable_scores(&self, images: &Tensor) -> Result<Tensor, SegmentError> {
        self.scores(images)
    }

    fn labels(&self) -> &[String] {
        &self.labels
    }
}
