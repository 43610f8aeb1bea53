//! Step 2 of the inversion: starting from the encoder's guess `h₀`, optimise the layer's
//! activations `h` so that the generator's suffix renders the picture `x`:
//!
//! ```text
//! min_h  ‖G_after(h) − x‖²  +  λ · ‖h − h₀‖²        (both means over their elements)
//! ```
//!
//! The pull `λ` keeps `h` near activations the generator knows (the encoder's guess is
//! one), so that edits, which set units to levels measured on generated activations, still
//! mean what they mean there. Adam, a fixed number of steps.

use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Kind, Tensor};

use super::{InvertError, Stage};
use crate::model::ProgGan;

/// Adam over a few tensors that require grad, for the short per-picture optimisations
/// (tch's optimizer wants a whole `VarStore`).
pub(crate) struct Adam {
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: i32,
    pub lr: f64,
    beta1: f64,
    beta2: f64,
}

impl Adam {
    pub fn new(params: Vec<Tensor>, lr: f64) -> Result<Self, InvertError> {
        let zeros = |ps: &[Tensor]| {
            ps.iter()
                .map(|p| p.f_zeros_like())
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Adam {
            m: zeros(&params)?,
            v: zeros(&params)?,
            params,
            step: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
        })
    }

    /// Applies one update from the gradients `backward` left, then clears them.
    pub fn step(&mut self) -> Result<(), InvertError> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let bias1 = 1.0 - self.beta1.powi(self.step);
        let bias2 = 1.0 - self.beta2.powi(self.step);
        for ((p, m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
            let mut grad = p.grad();
            if !grad.defined() {
                continue;
            }
            let _ = m
                .f_mul_scalar_(self.beta1)?
                .f_add_(&grad.f_mul_scalar(1.0 - self.beta1)?)?;
            let _ = v
                .f_mul_scalar_(self.beta2)?
                .f_add_(&grad.f_square()?.f_mul_scalar(1.0 - self.beta2)?)?;
            let denom = v.f_div_scalar(bias2)?.f_sqrt()?.f_add_scalar(1e-8)?;
            let update = m.f_div(&denom)?.f_mul_scalar(self.lr / bias1)?;
            let _ = p.f_sub_(&update)?;
            let _ = grad.f_zero_()?;
        }
        Ok(())
    }
}

/// Settings of step 2.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct OptimizeSettings {
    pub steps: usize,
    pub lr: f64,
    /// λ, the pull towards the encoder's guess.
    pub prior_weight: f64,
}

impl Default for OptimizeSettings {
    fn default() -> Self {
        OptimizeSettings {
            steps: 50,
            lr: 0.05,
            prior_weight: 0.01,
        }
    }
}

/// `generator` must not need gradients of its own (pass a frozen copy); `target`
/// `[1, 3, R, R]`, `start` `[1, C, H, W]` → the optimised activations (no grad).
pub fn optimize_layer(
    generator: &ProgGan,
    layer: &str,
    target: &Tensor,
    start: &Tensor,
    settings: &OptimizeSettings,
    progress: &mut dyn FnMut(Stage, usize, usize),
    cancel: &AtomicBool,
) -> Result<Tensor, InvertError> {
    // A fresh leaf: copies made under no_grad carry no autograd history.
    let (anchor, features) = tch::no_grad(|| -> Result<_, tch::TchError> {
        let anchor = start.f_to_kind(Kind::Float)?.f_detach_copy()?;
        Ok((anchor.f_detach_copy()?, anchor))
    })?;
    let features = features.f_set_requires_grad(true)?;
    let mut adam = Adam::new(vec![features.shallow_clone()], settings.lr)?;
    for step in 0..settings.steps {
        if cancel.load(Ordering::Relaxed) {
            return Err(InvertError::Cancelled);
        }
        // Channels-last, as in step 3 (see `adapt`); the permutation is differentiable.
        let image =
            generator.forward_from(layer, &crate::model::block::channels_last(&features)?)?;
        let loss = image.f_mse_loss(target, tch::Reduction::Mean)?.f_add(
            &features
                .f_mse_loss(&anchor, tch::Reduction::Mean)?
                .f_mul_scalar(settings.prior_weight)?,
        )?;
        loss.f_backward()?;
        adam.step()?;
        progress(Stage::Optimize, step + 1, settings.steps);
    }
    Ok(features.f_detach()?)
}

/// Settings of the fit of z to the optimised activations.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ZFitSettings {
    pub steps: usize,
    pub lr: f64,
    /// The pull towards the encoder's predicted z (per value, against the relative error).
    pub prior_weight: f64,
}

impl Default for ZFitSettings {
    fn default() -> Self {
        ZFitSettings {
            steps: 150,
            lr: 0.05,
            prior_weight: 1e-3,
        }
    }
}

/// A z whose activations at `layer` match `features` (`[1, C, H, W]`), starting from
/// `start` (`[1, D]`, the encoder's prediction):
///
/// ```text
/// min_z  ‖layer(z) − h‖² / ‖h‖²  +  μ · mean((z − z₀)²)
/// ```
///
/// Returns z (no grad) and its relative error `‖layer(z) − h‖² / ‖h‖²`. `generator` must not
/// need gradients of its own (pass a frozen copy).
pub fn fit_z(
    generator: &ProgGan,
    layer: &str,
    features: &Tensor,
    start: &Tensor,
    settings: &ZFitSettings,
    cancel: &AtomicBool,
) -> Result<(Tensor, f64), InvertError> {
    let (anchor, z, target, scale) = tch::no_grad(|| -> Result<_, tch::TchError> {
        let anchor = start.f_to_kind(Kind::Float)?.f_detach_copy()?;
        let target = features.f_to_kind(Kind::Float)?.f_detach()?;
        let scale = target
            .f_square()?
            .f_mean(Kind::Float)?
            .double_value(&[])
            .max(1e-12);
        Ok((anchor.f_detach_copy()?, anchor, target, scale))
    })?;
    let z = z.f_set_requires_grad(true)?;
    let mut adam = Adam::new(vec![z.shallow_clone()], settings.lr)?;
    let relative = |z: &Tensor| -> Result<Tensor, InvertError> {
        Ok(generator
            .features(z, layer)?
            .f_mse_loss(&target, tch::Reduction::Mean)?
            .f_div_scalar(scale)?)
    };
    for _ in 0..settings.steps {
        if cancel.load(Ordering::Relaxed) {
            return Err(InvertError::Cancelled);
        }
        let loss = relative(&z)?.f_add(
            &z.f_mse_loss(&anchor, tch::Reduction::Mean)?
                .f_mul_scalar(settings.prior_weight)?,
        )?;
        loss.f_backward()?;
        adam.step()?;
    }
    let z = z.f_detach()?;
    let error = tch::no_grad(|| relative(&z))?.double_value(&[]);
    Ok((z, error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn fitting_z_finds_a_z_whose_activations_match() {
        let generator =
            super::super::frozen_copy(&crate::model::testing::tiny_generator(5)).unwrap();
        tch::manual_seed(6);
        let truth = Tensor::randn([1, 16], (Kind::Float, Device::Cpu));
        let features = tch::no_grad(|| generator.features(&truth, "layer4")).unwrap();
        // A start near the truth, as a trained encoder's prediction is.
        let start = &truth + Tensor::randn([1, 16], (Kind::Float, Device::Cpu)) * 0.5;
        let scale = features.square().mean(Kind::Float).double_value(&[]);
        let before = tch::no_grad(|| generator.features(&start, "layer4"))
            .unwrap()
            .mse_loss(&features, tch::Reduction::Mean)
            .double_value(&[])
            / scale;
        let settings = ZFitSettings {
            steps: 100,
            ..Default::default()
        };
        let (z, error) = fit_z(
            &generator,
            "layer4",
            &features,
            &start,
            &settings,
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(z.size(), vec![1, 16]);
        assert!(!z.requires_grad());
        assert!(error < 0.25 * before, "relative error {before} → {error}");
        // A set cancel flag stops it.
        let err = fit_z(
            &generator,
            "layer4",
            &features,
            &start,
            &settings,
            &AtomicBool::new(true),
        )
        .err()
        .unwrap();
        assert!(matches!(err, InvertError::Cancelled));
    }
}
