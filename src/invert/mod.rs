//! Painting on your own picture: inverting the generator at the painted layer, as GANPaint
//! Studio (Bau et al., SIGGRAPH 2019) does, in three steps on the one inference path.
//!
//! 1. [`encoder`]: a small network guesses the layer's activations `h₀ = E(x)`.
//! 2. [`optimize`]: `h` is optimised from `h₀` so the generator's suffix renders `x`, with a
//!    pull towards `h₀`.
//! 3. [`adapt`]: the weights after the layer are fine-tuned for this picture, held near the
//!    originals, so that the reconstruction matches.
//!
//! When the encoder predicts z too, a z is fitted whose activations at the layer match `h`
//! ([`optimize::fit_z`]). The layers before the inverted one can then be painted: an edit
//! of an earlier layer is run through that z's prefix up to the inverted layer, and the
//! change it makes there is added to `h` ([`Fit::features_under`]):
//!
//! ```text
//! h' = h + (layer(z; edit at an earlier layer) − layer(z))
//! ```
//!
//! The result, an [`Inversion`], holds a [`Fit`]: the picture, `h` and the adapted weights
//! (only the blocks after the layer, by their state_dict names), which [`saved`] stores as
//! one file. [`Fit::generator`] builds the adapted generator, a [`ProgGan`] like any
//! other, so edits render through the same `forward_from` as everywhere else.
//! [`Fit::render_edit`] paints: it edits `h`,
//! renders with the adapted generator, and keeps the uploaded pixels wherever the edit
//! changes nothing, blending by the edit's difference as GANPaint Studio does:
//!
//! ```text
//! d = max_channels |G'(edit(h)) − G'(h)|, dilated by one pixel
//! w = min(1, d / BLEND_THRESHOLD)
//! out = (1 − w) · x + w · G'(edit(h))
//! ```

pub mod adapt;
pub mod encoder;
pub mod eval;
pub mod optimize;
pub mod saved;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::edit::{EditError, EditPlanes};
use crate::model::{ModelError, ProgGan};

pub use adapt::AdaptSettings;
pub use encoder::{Encoder, EncoderConfig, EncoderTraining};
pub use optimize::{OptimizeSettings, ZFitSettings};

/// The bundled demo encoder, relative to the repository root.
pub const DEFAULT_ENCODER: &str = "models/demo_encoder.safetensors";

/// A pixel whose edited value moves by this much (in [-1, 1] units) takes the edit fully.
pub const BLEND_THRESHOLD: f64 = 0.1;

#[derive(Debug, thiserror::Error)]
pub enum InvertError {
    #[error("encoder: {detail}")]
    Encoder { detail: String },
    #[error("bad picture: {0}")]
    BadImage(String),
    #[error("saved inversion {0}")]
    Saved(String),
    /// A layer this picture cannot be painted at; the message starts with `layer: `.
    #[error("{0}")]
    Layer(String),
    #[error("the inversion was cancelled")]
    Cancelled,
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Which step a progress report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Optimize,
    Adapt,
}

/// Settings of the whole inversion.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct InvertSettings {
    pub optimize: OptimizeSettings,
    pub adapt: AdaptSettings,
    /// The fit of z (run when the encoder predicts z and it has steps; else no z).
    #[serde(default)]
    pub z: ZFitSettings,
}

/// The figures of one inversion: PSNR (dB, on pixels in [-1, 1] with peak-to-peak 2) of
/// each step's reconstruction against the picture, and the time each step took.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InversionReport {
    pub psnr_encoder_db: f64,
    pub psnr_optimized_db: f64,
    pub psnr_adapted_db: f64,
    pub encode_s: f64,
    pub optimize_s: f64,
    pub adapt_s: f64,
    pub total_s: f64,
    /// The fitted z's relative error at the layer, `‖layer(z) − h‖² / ‖h‖²`; `None` when no
    /// z was fitted (an encoder without a z head, no z steps, or an inversion stored
    /// before z was fitted).
    #[serde(default)]
    pub z_error: Option<f64>,
    #[serde(default)]
    pub z_s: f64,
}

/// What painting on an inverted picture needs: the picture, the layer's activations and
/// the adapted weights. [`saved`] writes and reads it as one file.
pub struct Fit {
    pub layer: String,
    /// The picture, `[1, 3, R, R]` in [-1, 1].
    pub target: Tensor,
    /// The optimised activations `h`, `[1, C, H, W]`.
    pub features: Tensor,
    /// The adapted weights of the blocks after `layer`, by state_dict name.
    pub adapted: Vec<(String, Tensor)>,
    /// A z whose activations at `layer` match `features` (`[1, D]`), when one was fitted:
    /// what painting the layers before `layer` goes through.
    pub z: Option<Tensor>,
    pub report: InversionReport,
}

/// A picture inverted at `layer`: the [`Fit`] (its fields read through), and the
/// intermediate results the figures come from.
pub struct Inversion {
    pub fit: Fit,
    /// The encoder's guess `h₀`, `[1, C, H, W]`.
    pub encoder_guess: Tensor,
    /// Renders `[1, 3, R, R]`: of the encoder's guess, after step 2, after step 3.
    pub encoder_image: Tensor,
    pub optimized_image: Tensor,
    pub reconstruction: Tensor,
}

impl std::ops::Deref for Inversion {
    type Target = Fit;

    fn deref(&self) -> &Fit {
        &self.fit
    }
}

/// A copy of `generator` (same weights, exact precision, on its device) whose variables
/// do not require grad: gradients flow through it to its inputs only.
pub fn frozen_copy(generator: &ProgGan) -> Result<ProgGan, InvertError> {
    let mut copy = ProgGan::new(generator.config().clone(), generator.device());
    let tensors = generator
        .named_tensors()
        .into_iter()
        .map(|(name, t)| Ok((name, t.f_detach()?)))
        .collect::<Result<Vec<_>, tch::TchError>>()?;
    copy.copy_from(tensors)?;
    copy.var_store_mut().freeze();
    Ok(copy)
}

/// PSNR in dB of `image` against `target`, both in [-1, 1] (peak-to-peak 2), after
/// clamping `image` to that range as pixels are.
pub fn psnr_db(image: &Tensor, target: &Tensor) -> Result<f64, InvertError> {
    let mse = image
        .f_clamp(-1.0, 1.0)?
        .f_mse_loss(target, tch::Reduction::Mean)?
        .double_value(&[]);
    Ok(10.0 * (4.0 / mse.max(1e-12)).log10())
}

/// A picture file → `[1, 3, R, R]` in [-1, 1] on `device`: centre-cropped to a square and
/// resized to the generator's resolution.
pub fn load_picture(path: &Path, resolution: i64, device: Device) -> Result<Tensor, InvertError> {
    let image = image::open(path)
        .map_err(|e| InvertError::BadImage(format!("cannot read {}: {e}", path.display())))?
        .to_rgb8();
    picture_tensor(&image, resolution, device)
}

/// An RGB image centre-cropped to a square and resized (triangle filter) to `R × R`
/// when its side is not `R`: what the model is asked to reconstruct.
pub fn fit_picture(
    image: &image::RgbImage,
    resolution: u32,
) -> Result<image::RgbImage, InvertError> {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Err(InvertError::BadImage("the picture is empty".into()));
    }
    let side = w.min(h);
    let square =
        image::imageops::crop_imm(image, (w - side) / 2, (h - side) / 2, side, side).to_image();
    Ok(if side == resolution {
        square
    } else {
        image::imageops::resize(
            &square,
            resolution,
            resolution,
            image::imageops::FilterType::Triangle,
        )
    })
}

/// An RGB image → `[1, 3, R, R]` in [-1, 1] ([`fit_picture`], then scaled).
pub fn picture_tensor(
    image: &image::RgbImage,
    resolution: i64,
    device: Device,
) -> Result<Tensor, InvertError> {
    let sized = fit_picture(image, resolution as u32)?;
    let (w, h) = sized.dimensions();
    Ok(Tensor::f_from_slice(sized.as_raw())?
        .f_view([1, h as i64, w as i64, 3])?
        .f_permute([0, 3, 1, 2])?
        .f_to_kind(Kind::Float)?
        .f_div_scalar(127.5)?
        .f_sub_scalar(1.0)?
        .f_to_device(device)?)
}

/// Inverts `picture` (`[1, 3, R, R]` in [-1, 1]) at `layer` of `generator`, starting from
/// `encoder`'s guess. `progress(stage, step, steps)` follows steps 2 and 3; setting
/// `cancel` stops the inversion at the next step with [`InvertError::Cancelled`].
/// `generator` itself is not changed.
pub fn invert(
    generator: &ProgGan,
    encoder: &Encoder,
    layer: &str,
    picture: &Tensor,
    settings: &InvertSettings,
    progress: &mut dyn FnMut(Stage, usize, usize),
    cancel: &AtomicBool,
) -> Result<Inversion, InvertError> {
    let started = Instant::now();
    encoder.check_fits(generator, layer)?;
    let r = generator.resolution();
    let size = picture.size();
    if size != [1, 3, r, r] {
        return Err(InvertError::BadImage(format!(
            "expected a [1, 3, {r}, {r}] picture, got {size:?}"
        )));
    }
    let target = picture
        .f_to_kind(Kind::Float)?
        .f_to_device(generator.device())?
        .f_clamp(-1.0, 1.0)?;
    let working = frozen_copy(generator)?;

    let (encoder_guess, z_guess) = tch::no_grad(|| encoder.forward_with_z(&target))?;
    let encoder_image = tch::no_grad(|| working.forward_from(layer, &encoder_guess))?;
    let encoded = Instant::now();

    let features = optimize::optimize_layer(
        &working,
        layer,
        &target,
        &encoder_guess,
        &settings.optimize,
        progress,
        cancel,
    )?;
    let optimized_image = tch::no_grad(|| working.forward_from(layer, &features))?;
    let optimized = Instant::now();

    // The layers up to `layer` are not adapted, so z is fitted on the generator's own.
    // No steps: no z (the encoder's guess alone is far from the activations).
    let (z, z_error) = match z_guess.as_ref().filter(|_| settings.z.steps > 0) {
        Some(start) => {
            // The fast plan in f32 (layer1 as a matrix product, small upsampling blocks as
            // upsample + 3×3): the same function up to rounding, and at batch 1 on 8×8 maps
            // it runs the 150 steps in a fraction of the exact plan's time.
            let mut prefix_model = frozen_copy(generator)?;
            prefix_model.set_precision(crate::model::Precision::FastF32)?;
            let (z, error) =
                optimize::fit_z(&prefix_model, layer, &features, start, &settings.z, cancel)?;
            (Some(z), Some(error))
        }
        None => (None, None),
    };
    let z_fitted = Instant::now();

    let adapted = adapt::adapt_after(
        &working,
        layer,
        &features,
        &target,
        &settings.adapt,
        progress,
        cancel,
    )?;
    let reconstruction = tch::no_grad(|| working.forward_from(layer, &features))?;
    let done = Instant::now();

    let report = InversionReport {
        psnr_encoder_db: psnr_db(&encoder_image, &target)?,
        psnr_optimized_db: psnr_db(&optimized_image, &target)?,
        psnr_adapted_db: psnr_db(&reconstruction, &target)?,
        encode_s: (encoded - started).as_secs_f64(),
        optimize_s: (optimized - encoded).as_secs_f64(),
        adapt_s: (done - z_fitted).as_secs_f64(),
        total_s: (done - started).as_secs_f64(),
        z_error,
        z_s: (z_fitted - optimized).as_secs_f64(),
    };
    tracing::debug!(?report, "inverted a picture");
    Ok(Inversion {
        fit: Fit {
            layer: layer.to_string(),
            target,
            features,
            adapted,
            z,
            report,
        },
        encoder_guess,
        encoder_image,
        optimized_image,
        reconstruction,
    })
}

impl Fit {
    /// The adapted generator: `base`'s weights with the adapted ones put in their place,
    /// frozen, computing exactly (call `set_precision` on it for a fast plan).
    pub fn generator(&self, base: &ProgGan) -> Result<ProgGan, InvertError> {
        let mut adapted = ProgGan::new(base.config().clone(), base.device());
        let tensors = base
            .named_tensors()
            .into_iter()
            .map(|(name, t)| {
                let source = self
                    .adapted
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(t, |(_, a)| a.shallow_clone());
                Ok((name, source.f_detach()?))
            })
            .collect::<Result<Vec<_>, tch::TchError>>()?;
        adapted.copy_from(tensors)?;
        adapted.var_store_mut().freeze();
        Ok(adapted)
    }

    /// Paints `planes` (an edit of this inversion's layer) on the picture with the adapted
    /// generator `adapted` (from [`Fit::generator`]): `[1, 3, R, R]`, the uploaded
    /// pixels kept wherever the edit changes nothing.
    pub fn render_edit(
        &self,
        adapted: &ProgGan,
        planes: &EditPlanes,
    ) -> Result<Tensor, InvertError> {
        self.render_edit_at(adapted, &self.layer, planes)
    }

    /// [`Fit::render_edit`] for an edit of `layer`: the inverted layer, an earlier one
    /// (through the fitted z, [`Fit::features_under`]) or a later one.
    pub fn render_edit_at(
        &self,
        adapted: &ProgGan,
        layer: &str,
        planes: &EditPlanes,
    ) -> Result<Tensor, InvertError> {
        let _guard = tch::no_grad_guard();
        let reconstruction = adapted.forward_from(&self.layer, &self.features)?;
        let (fitted, edited_index) = (
            adapted.layer_index(&self.layer)?,
            adapted.layer_index(layer)?,
        );
        let edited = if edited_index < fitted {
            self.render_carried(adapted, layer, planes)?
        } else {
            let prefix = adapted.run(&self.features, fitted + 1..edited_index + 1)?;
            crate::edit::render_edited(adapted, layer, &prefix, planes, crate::edit::Route::Full)?
                .images
        };
        blend_edit(&self.target, &reconstruction, &edited)
    }

    /// The render (unblended, `[1, 3, R, R]`) of an edit of `layer`, a layer before the
    /// inverted one, by `generator` (the adapted one): from [`Fit::features_under`].
    pub fn render_carried(
        &self,
        generator: &ProgGan,
        layer: &str,
        planes: &EditPlanes,
    ) -> Result<Tensor, InvertError> {
        let carried = self.features_under(generator, layer, planes)?;
        Ok(generator.forward_from(&self.layer, &carried)?)
    }

    /// The inverted layer's activations under an edit of an earlier `layer`: the change
    /// the edit makes to the fitted z's activations at the inverted layer, added to the
    /// fitted ones, `h + (layer(z; edit) − layer(z))`. `generator` is the base generator
    /// or the adapted one (the same up to the inverted layer). Without a fitted z, the
    /// error names `layer` and says what to do.
    pub fn features_under(
        &self,
        generator: &ProgGan,
        layer: &str,
        planes: &EditPlanes,
    ) -> Result<Tensor, InvertError> {
        let refused = |why: &str| {
            InvertError::Layer(format!(
                "layer: this picture was inverted at {0}; paint it at {0} or a later layer, \
                 not {layer} ({why})",
                self.layer
            ))
        };
        let (fitted, index) = (
            generator.layer_index(&self.layer)?,
            generator.layer_index(layer)?,
        );
        if index >= fitted {
            return Err(refused("only the layers before it go through z"));
        }
        let z = self
            .z
            .as_ref()
            .ok_or_else(|| refused("no z was fitted with it to carry an earlier layer's edit"))?;
        let _guard = tch::no_grad_guard();
        let at = generator.features(z, layer)?;
        let plain = generator.run(&at, index + 1..fitted + 1)?;
        let edited = generator.run(&planes.apply(&at)?, index + 1..fitted + 1)?;
        Ok(self.features.f_add(&edited.f_sub(&plain)?)?)
    }
}

/// Keeps `original` where `edited` equals `reconstruction` and takes `edited` where they
/// differ by [`BLEND_THRESHOLD`] or more (see the module docs); all `[N, 3, R, R]`.
pub fn blend_edit(
    original: &Tensor,
    reconstruction: &Tensor,
    edited: &Tensor,
) -> Result<Tensor, InvertError> {
    let difference = edited
        .f_sub(reconstruction)?
        .f_abs()?
        .f_amax([1i64].as_slice(), true)?;
    let dilated = difference.f_max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], false)?;
    let weight = dilated
        .f_mul_scalar(1.0 / BLEND_THRESHOLD)?
        .f_clamp_max(1.0)?;
    // (1 − w)·x + w·e, as x + w·(e − x): fewer passes over the image.
    Ok(original.f_add(&edited.f_sub(original)?.f_mul(&weight)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::{intervention_planes, Pooling, UnitEdit};

    /// A tiny generator, an encoder trained on it for a few steps, and a picture it did
    /// not make: a generated picture with a bright square pasted in.
    fn fixture() -> (ProgGan, Encoder, Tensor) {
        let generator = crate::model::testing::tiny_generator(11);
        tch::manual_seed(12);
        let encoder = Encoder::new(
            EncoderConfig::for_layer(&generator, "layer4", 8, 16).unwrap(),
            Device::Cpu,
        );
        let training = EncoderTraining {
            layer: "layer4".into(),
            steps: 30,
            batch: 8,
            lr: 3e-3,
            pixel_weight: 1.0,
            z_weight: 1.0,
            seed: 4,
        };
        encoder::train_encoder(&encoder, &generator, &training, &mut |_| {}).unwrap();
        let picture = tch::no_grad(|| {
            let z = Tensor::randn([1, 16], (Kind::Float, Device::Cpu));
            let image = generator.forward(&z).unwrap().clamp(-1.0, 1.0);
            let _ = image.narrow(2, 2, 5).narrow(3, 3, 5).fill_(0.8);
            image
        });
        (generator, encoder, picture)
    }

    fn settings() -> InvertSettings {
        InvertSettings {
            optimize: OptimizeSettings {
                steps: 40,
                lr: 0.05,
                prior_weight: 0.01,
            },
            adapt: AdaptSettings {
                steps: 40,
                lr: 5e-3,
                pull: 1.0,
            },
            z: ZFitSettings {
                steps: 60,
                ..Default::default()
            },
        }
    }

    /// The fixture's picture inverted at layer4 with the test settings (the cancel flag
    /// set or not).
    fn run_inversion(cancel: bool) -> (ProgGan, Encoder, Result<Inversion, InvertError>) {
        let (generator, encoder, picture) = fixture();
        let inversion = invert(
            &generator,
            &encoder,
            "layer4",
            &picture,
            &settings(),
            &mut |_, _, _| {},
            &AtomicBool::new(cancel),
        );
        (generator, encoder, inversion)
    }

    fn inverted() -> (ProgGan, Encoder, Inversion) {
        let (generator, encoder, inversion) = run_inversion(false);
        (generator, encoder, inversion.unwrap())
    }

    /// Planes setting the first `units` units of `layer` to 5 under `mask`.
    fn high_units(layer: &str, shape: (i64, i64, i64), units: i64, mask: &Tensor) -> EditPlanes {
        let edits: Vec<UnitEdit> = (0..units)
            .map(|unit| UnitEdit {
                unit,
                alpha: 1.0,
                value: 5.0,
            })
            .collect();
        intervention_planes(layer, shape, &edits, Some(mask), Pooling::Max, Device::Cpu).unwrap()
    }

    #[test]
    fn each_step_reconstructs_better_than_the_one_before() {
        let (generator, encoder, picture) = fixture();
        let before: Vec<Tensor> = generator
            .named_tensors()
            .into_iter()
            .map(|(_, t)| t.copy())
            .collect();
        let mut seen = Vec::new();
        let inversion = invert(
            &generator,
            &encoder,
            "layer4",
            &picture,
            &settings(),
            &mut |stage, step, steps| seen.push((stage, step, steps)),
            &AtomicBool::new(false),
        )
        .unwrap();
        let r = &inversion.report;
        assert!(r.psnr_optimized_db > r.psnr_encoder_db + 0.5, "{r:?}");
        assert!(r.psnr_adapted_db > r.psnr_optimized_db + 0.5, "{r:?}");
        assert_eq!(seen.len(), 80);
        assert_eq!(seen[39], (Stage::Optimize, 40, 40));
        assert_eq!(seen[79], (Stage::Adapt, 40, 40));
        // Only the blocks after layer4 are adapted, and the base generator is unchanged.
        let names: Vec<&str> = inversion.adapted.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"layer5.conv.weight"));
        assert_eq!(names.last(), Some(&"output_16x16.wscale.b"));
        for ((_, now), then) in generator.named_tensors().iter().zip(&before) {
            assert!(now.equal(then));
        }
        // The adapted generator renders the reconstruction through the usual forward.
        let adapted = inversion.generator(&generator).unwrap();
        let again = tch::no_grad(|| adapted.forward_from("layer4", &inversion.features)).unwrap();
        assert!(again.allclose(&inversion.reconstruction, 1e-5, 1e-6, false));
    }

    #[test]
    fn an_edit_keeps_the_uploaded_pixels_where_it_changes_nothing() {
        let (generator, _, inversion) = inverted();
        let adapted = inversion.generator(&generator).unwrap();
        let shape = generator.layer_shape("layer4").unwrap();
        // No edit: the picture comes back exactly.
        let none = EditPlanes::empty(shape, Device::Cpu);
        let out = inversion.render_edit(&adapted, &none).unwrap();
        assert!(out.equal(&inversion.target));
        // An edit in the top-left corner cells changes pixels there and keeps the far corner.
        let mask = Tensor::zeros([16, 16], (Kind::Float, Device::Cpu));
        let _ = mask.narrow(0, 0, 4).narrow(1, 0, 4).fill_(1.0);
        let planes = high_units("layer4", shape, 8, &mask);
        let out = inversion.render_edit(&adapted, &planes).unwrap();
        let changed = (&out - &inversion.target).abs();
        assert!(
            changed
                .narrow(2, 0, 4)
                .narrow(3, 0, 4)
                .max()
                .double_value(&[])
                > 0.05
        );
        let far = changed.narrow(2, 12, 4).narrow(3, 12, 4);
        assert_eq!(far.max().double_value(&[]), 0.0);
    }

    #[test]
    fn an_earlier_layer_paints_through_the_fitted_z() {
        let (generator, encoder, inversion) = inverted();
        // The encoder predicts z, and the fitted z's activations match the fitted ones
        // better than the encoder's own z's do.
        let z = inversion.z.as_ref().expect("a fitted z");
        let relative = |z: &Tensor| {
            let h = tch::no_grad(|| generator.features(z, "layer4")).unwrap();
            (h - &inversion.features)
                .square()
                .mean(Kind::Float)
                .double_value(&[])
                / inversion
                    .features
                    .square()
                    .mean(Kind::Float)
                    .double_value(&[])
        };
        let (_, predicted) = tch::no_grad(|| encoder.forward_with_z(&inversion.target)).unwrap();
        let r = &inversion.report;
        let z_error = r.z_error.expect("a z error");
        assert!(
            (relative(z) - z_error).abs() < 1e-4,
            "{} vs {r:?}",
            relative(z)
        );
        assert!(z_error < relative(&predicted.unwrap()), "{r:?}");
        let adapted = inversion.generator(&generator).unwrap();
        let shape = generator.layer_shape("layer2").unwrap();
        // An identity edit of layer2 carries no change: the picture comes back exactly.
        let none = EditPlanes::empty(shape, Device::Cpu);
        let carried = inversion.features_under(&adapted, "layer2", &none).unwrap();
        assert!(carried.equal(&inversion.features));
        let out = inversion.render_edit_at(&adapted, "layer2", &none).unwrap();
        assert!(out.equal(&inversion.target));
        // Setting layer2's units high in its top-left cells changes the picture there.
        let mask = Tensor::zeros([16, 16], (Kind::Float, Device::Cpu));
        let _ = mask.narrow(0, 0, 8).narrow(1, 0, 8).fill_(1.0);
        let planes = high_units("layer2", shape, shape.0, &mask);
        let out = inversion
            .render_edit_at(&adapted, "layer2", &planes)
            .unwrap();
        let changed = (&out - &inversion.target).abs();
        assert!(changed.max().double_value(&[]) > 0.05);
        // A later layer still paints through the adapted generator's own activations.
        let shape5 = generator.layer_shape("layer5").unwrap();
        let none5 = EditPlanes::empty(shape5, Device::Cpu);
        let out = inversion
            .render_edit_at(&adapted, "layer5", &none5)
            .unwrap();
        assert!(out.equal(&inversion.target));
        // Without a z, an earlier layer is refused, naming the field.
        let without = Fit {
            layer: inversion.layer.clone(),
            target: inversion.target.shallow_clone(),
            features: inversion.features.shallow_clone(),
            adapted: Vec::new(),
            z: None,
            report: InversionReport::default(),
        };
        let err = without
            .features_under(&generator, "layer2", &planes)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("layer: ")
                && err.contains("inverted at layer4;")
                && err.contains("no z was fitted"),
            "{err}"
        );
    }

    #[test]
    fn a_set_cancel_flag_stops_the_inversion() {
        let err = run_inversion(true).2.err().unwrap();
        assert!(matches!(err, InvertError::Cancelled), "{err}");
    }

    #[test]
    fn pictures_are_cropped_to_a_square_and_sized_to_the_model() {
        let image = image::RgbImage::from_fn(40, 20, |x, _| {
            if !(10..30).contains(&x) {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        });
        let t = picture_tensor(&image, 16, Device::Cpu).unwrap();
        assert_eq!(t.size(), vec![1, 3, 16, 16]);
        // The centre square is the white band: all of it is near 1.
        assert!(t.min().double_value(&[]) > 0.9);
        // Identical pictures: the error floor of 1e-12, 10·log10(4 / 1e-12) dB.
        assert!((psnr_db(&t, &t).unwrap() - 10.0 * 4e12f64.log10()).abs() < 1e-9);
    }
}
