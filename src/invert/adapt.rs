//! Step 3 of the inversion, image-specific adaptation: with the layer's activations `h`
//! fixed, fine-tune the weights `θ` of the blocks after the layer for this one picture,
//! held near the originals `θ₀`:
//!
//! ```text
//! min_θ  ‖G_after(h; θ) − x‖²  +  μ · Σ_blocks mean((θ − θ₀)²)
//! ```
//!
//! The weights are stored N(0, 1) and scaled at run time (equalized learning rate), so one
//! Adam rate suits every block. The prefix (up to the layer) is not touched, so the
//! dissection's units and levels still describe the activations that edits change.

use std::sync::atomic::{AtomicBool, Ordering};

use tch::Tensor;

use super::optimize::Adam;
use super::{InvertError, Stage};
use crate::model::ProgGan;

/// Settings of step 3.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AdaptSettings {
    pub steps: usize,
    pub lr: f64,
    /// μ, the pull towards the original weights.
    pub pull: f64,
}

impl Default for AdaptSettings {
    fn default() -> Self {
        AdaptSettings {
            steps: 100,
            lr: 2e-3,
            pull: 1.0,
        }
    }
}

/// The names of the variables of the blocks after `layer`, in execution order.
pub fn weights_after(generator: &ProgGan, layer: &str) -> Result<Vec<String>, InvertError> {
    let first = generator.layer_index(layer)? + 1;
    Ok(generator.layer_names()[first..]
        .iter()
        .flat_map(|name| [format!("{name}.conv.weight"), format!("{name}.wscale.b")])
        .collect())
}

/// Fine-tunes, in place, the weights after `layer` of `generator` (a working copy whose
/// other weights are frozen) to render `target` from `features`; returns the adapted
/// weights by name (detached copies).
pub fn adapt_after(
    generator: &ProgGan,
    layer: &str,
    features: &Tensor,
    target: &Tensor,
    settings: &AdaptSettings,
    progress: &mut dyn FnMut(Stage, usize, usize),
    cancel: &AtomicBool,
) -> Result<Vec<(String, Tensor)>, InvertError> {
    let names = weights_after(generator, layer)?;
    let vars = generator.var_store().variables();
    let params: Vec<Tensor> = names
        .iter()
        .map(|n| vars[n].f_set_requires_grad(true))
        .collect::<Result<_, _>>()?;
    let originals: Vec<Tensor> = tch::no_grad(|| {
        params
            .iter()
            .map(|p| p.f_detach_copy())
            .collect::<Result<_, _>>()
    })?;
    // Channels-last: libtorch's CPU convolutions (and their weight gradients) run about
    // twice as fast on it, and every block keeps the layout.
    let features = crate::model::block::channels_last(&features.f_detach()?)?;
    let mut adam = Adam::new(
        params.iter().map(Tensor::shallow_clone).collect(),
        settings.lr,
    )?;
    let result = (|| {
        for step in 0..settings.steps {
            if cancel.load(Ordering::Relaxed) {
                return Err(InvertError::Cancelled);
            }
            let image = generator.forward_from(layer, &features)?;
            let mut loss = image.f_mse_loss(target, tch::Reduction::Mean)?;
            if settings.pull > 0.0 {
                for (p, p0) in params.iter().zip(&originals) {
                    let drift = p.f_mse_loss(p0, tch::Reduction::Mean)?;
                    loss = loss.f_add(&drift.f_mul_scalar(settings.pull)?)?;
                }
            }
            loss.f_backward()?;
            adam.step()?;
            progress(Stage::Adapt, step + 1, settings.steps);
        }
        Ok(())
    })();
    // Frozen again whatever happened: the copy renders without building graphs.
    for p in &params {
        let _ = p.f_set_requires_grad(false)?;
    }
    result?;
    let _guard = tch::no_grad_guard();
    names
        .into_iter()
        .zip(&params)
        .map(|(name, p)| Ok((name, p.f_detach_copy()?)))
        .collect()
}
