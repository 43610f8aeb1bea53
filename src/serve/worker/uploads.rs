//! Uploaded pictures on the worker thread: each is rendered by its own adapted generator
//! ([`crate::invert::Fit::generator`], at the server's precision), loaded from its stored
//! file on first use and kept for the next strokes, the most recently used
//! [`KEPT_UPLOADS`] at a time.
//!
//! Painting an upload goes through the render cache like painting a generated image: the
//! first stroke records the adapted generator's suffix activations, the next ones update
//! them incrementally. The edited render is then blended with the uploaded pixels by the
//! edit's difference ([`crate::invert::blend_edit`]), so what the edit does not change
//! stays the user's picture exactly.
//!
//! An edit of a layer before the one the picture was inverted at goes through the fitted
//! z ([`Fit::features_under`]): its change at the inverted layer is added to the fitted
//! activations, and the adapted generator renders from there (a full pass: such an edit
//! moves every cell of the inverted layer).

use std::collections::HashMap;

use tch::{Kind, Tensor};

use super::super::render_cache::{RenderCache, RenderEntry, RenderKey};
use super::jobs::UploadRef;
use super::WorkerError;
use crate::edit::{self, LayerPlanes, Route};
use crate::invert::{blend_edit, Fit, InvertError};
use crate::model::{IncrementalStats, ProgGan};

/// Adapted generators kept in memory (each is a copy of the generator's weights).
pub const KEPT_UPLOADS: usize = 4;

/// One upload, ready to paint.
struct Loaded {
    fit: Fit,
    /// The adapted generator, at the base generator's precision.
    model: ProgGan,
    /// Its render of the fit's activations: what an edit's difference is measured from.
    reconstruction: Tensor,
    /// Activations of later layers, computed from the fit's on first use.
    prefixes: HashMap<String, Tensor>,
    used: u64,
}

/// The worker's kept uploads.
#[derive(Default)]
pub(super) struct UploadModels {
    kept: HashMap<String, Loaded>,
    clock: u64,
}

/// An upload's edited render: the blended image `[1, 3, R, R]`, and how much of a full
/// pass it recomputed.
pub(super) struct UploadRender {
    pub image: Tensor,
    pub incremental: Option<IncrementalStats>,
}

impl From<InvertError> for WorkerError {
    fn from(e: InvertError) -> Self {
        match e {
            InvertError::Layer(detail) => WorkerError::BadRequest(detail),
            InvertError::Saved(detail) => WorkerError::NotFound(format!(
                "image: the stored upload cannot be read ({detail}); upload the picture again"
            )),
            other => WorkerError::Inference(other.to_string()),
        }
    }
}

impl UploadModels {
    /// The upload, loaded from its file when it is not kept (evicting the least recently
    /// used one past [`KEPT_UPLOADS`]).
    fn get(&mut self, base: &ProgGan, upload: &UploadRef) -> Result<&mut Loaded, WorkerError> {
        self.clock += 1;
        if !self.kept.contains_key(&upload.id) {
            if !upload.file.is_file() {
                return Err(WorkerError::NotFound(format!(
                    "image: {} is no longer stored; upload the picture again",
                    upload.id
                )));
            }
            let fit = Fit::load(&upload.file, base)?;
            let mut model = fit.generator(base)?;
            model.set_precision(base.precision())?;
            let reconstruction = model.forward_from(&fit.layer, &fit.features)?;
            if self.kept.len() >= KEPT_UPLOADS {
                if let Some(oldest) = self
                    .kept
                    .iter()
                    .min_by_key(|(_, l)| l.used)
                    .map(|(id, _)| id.clone())
                {
                    self.kept.remove(&oldest);
                }
            }
            self.kept.insert(
                upload.id.clone(),
                Loaded {
                    fit,
                    model,
                    reconstruction,
                    prefixes: HashMap::new(),
                    used: 0,
                },
            );
        }
        let loaded = self.kept.get_mut(&upload.id).expect("just inserted");
        loaded.used = self.clock;
        Ok(loaded)
    }

    /// Renders `upload` under `edits` (none, or one layer's), through the render cache
    /// when it is on and the layer is the inverted one or a later one.
    pub(super) fn render(
        &mut self,
        base: &ProgGan,
        cache: &mut RenderCache,
        upload: &UploadRef,
        edits: &[LayerPlanes],
    ) -> Result<UploadRender, WorkerError> {
        let loaded = self.get(base, upload)?;
        let edit = match edits {
            [] => {
                return Ok(UploadRender {
                    image: to_pixels(&loaded.fit.target)?,
                    incremental: None,
                })
            }
            [edit] => edit,
            _ => {
                return Err(WorkerError::BadRequest(
                    "an uploaded picture takes an edit of one layer".into(),
                ))
            }
        };
        let (fitted, edited_index) = (
            loaded.model.layer_index(&loaded.fit.layer)?,
            loaded.model.layer_index(&edit.layer)?,
        );
        // An earlier layer goes through the fitted z, as a full pass from the fitted layer.
        let (edited, incremental) = if edited_index < fitted {
            let carried = loaded
                .fit
                .render_carried(&loaded.model, &edit.layer, &edit.planes)?;
            (carried, None)
        } else {
            let prefix = loaded.prefix(&edit.layer, &upload.id)?;
            let model = &loaded.model;
            let key = RenderKey::upload(&upload.id, &edit.layer);
            let last = model.layer_names().len() - 1;
            let cacheable = cache.enabled() && model.layer_index(&edit.layer)? < last;
            match cacheable.then(|| cache.take(&key)).flatten() {
                Some(mut entry) => {
                    let rendered = edit::render_edited(
                        model,
                        &edit.layer,
                        &entry.prefix,
                        &edit.planes,
                        Route::Update(&mut entry.suffix),
                    )?;
                    cache.insert(key, entry);
                    (
                        rendered.images,
                        Some(rendered.incremental.unwrap_or_default()),
                    )
                }
                None if cacheable => {
                    let rendered = edit::render_edited(
                        model,
                        &edit.layer,
                        &prefix,
                        &edit.planes,
                        Route::Record,
                    )?;
                    if let Some(suffix) = rendered.kept.into_iter().next() {
                        cache.insert(key, RenderEntry { prefix, suffix });
                    }
                    (rendered.images, None)
                }
                None => {
                    let rendered = edit::render_edited(
                        model,
                        &edit.layer,
                        &prefix,
                        &edit.planes,
                        Route::Full,
                    )?;
                    (rendered.images, None)
                }
            }
        };
        let image = to_pixels(&blend_edit(
            &loaded.fit.target,
            &loaded.reconstruction,
            &edited,
        )?)?;
        Ok(UploadRender { image, incremental })
    }
}

/// An upload's render in [-1, 1], nudged up by half an 8-bit step: pixels are truncated
/// to 8 bits (as GAN Dissection does), and the nudge makes that round to nearest, so the
/// uploaded pixels come back exactly where the edit changes nothing.
/// (Converting to bytes clamps to [0, 255].)
fn to_pixels(image: &Tensor) -> Result<Tensor, WorkerError> {
    Ok(image.f_to_kind(Kind::Float)?.f_add_scalar(1.0 / 255.0)?)
}

impl Loaded {
    /// The unedited activation of `layer`: the fit's own at its layer, computed by the
    /// adapted generator for a later one.
    fn prefix(&mut self, layer: &str, id: &str) -> Result<Tensor, WorkerError> {
        let fitted = self.model.layer_index(&self.fit.layer)?;
        let wanted = self.model.layer_index(layer)?;
        if wanted < fitted {
            return Err(WorkerError::BadRequest(format!(
                "layer: {id} was inverted at {}; paint it at {} or a later layer, not {layer}",
                self.fit.layer, self.fit.layer
            )));
        }
        if wanted == fitted {
            return Ok(self.fit.features.shallow_clone());
        }
        if let Some(kept) = self.prefixes.get(layer) {
            return Ok(kept.shallow_clone());
        }
        let computed = self.model.run(&self.fit.features, fitted + 1..wanted + 1)?;
        self.prefixes
            .insert(layer.to_string(), computed.shallow_clone());
        Ok(computed)
    }
}
