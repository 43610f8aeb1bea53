//! A project as the server serves it: the dissection ([`crate::project`]) with each
//! dissected layer's grid from the loaded generator, the generator's worker and the
//! inverter for uploaded pictures. Reading the folder, and which generator and encoder it
//! names, is [`crate::project`]'s ([`read_spec`](crate::project::read_spec)).
//!
//! ## Quantiles as GAN Dissection computes them
//! When a layer has GAN Dissection's sketch `<layer>/quantiles.npz`, activations map to
//! quantiles ([`ProjectLayer::quantile_of`], used by `/api/features` and
//! `/api/featuremaps`) through the whole sketch, exactly as `RunningQuantile.normalize`
//! does ([`QuantileNormalizer`]), rather than through the level grid that painting uses.

use std::sync::Arc;

use crate::project::{ConceptRanking, ProjectSpec, QuantileNormalizer};

use super::worker::WorkerHandle;

/// A dissected layer as the APIs serve it: the dissection plus the grid from the model.
#[derive(Clone, Debug)]
pub struct ProjectLayer {
    pub name: String,
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    pub dissection: crate::project::ProjectLayer,
    /// GAN Dissection's quantile map, when the layer has its `quantiles.npz`.
    pub normalizer: Option<Arc<QuantileNormalizer>>,
}

impl ProjectLayer {
    /// The level of `unit` at `quantile`, when finite (see
    /// [`crate::project::ProjectLayer::level`]).
    pub fn level(&self, unit: usize, quantile: f64) -> Option<f32> {
        self.dissection.level(unit, quantile)
    }

    /// Where `value` falls in `unit`'s activation distribution, in [0, 1] (0 when
    /// unknown), as the f32 that GAN Dissection's `RunningQuantile.normalize` answers: from
    /// its sketch when the layer has one, else from the dissection's level grid.
    pub fn quantile_of(&self, unit: usize, value: f32) -> f32 {
        let q = match &self.normalizer {
            Some(normalizer) => normalizer.normalize(unit, value),
            None => self
                .dissection
                .levels
                .quantile_of(unit, value)
                .map(|q| q as f32),
        };
        q.filter(|q| !q.is_nan()).unwrap_or(0.0).clamp(0.0, 1.0)
    }

    /// Concepts ranked by IoU at this layer.
    pub fn concepts(&self) -> impl Iterator<Item = &ConceptRanking> {
        self.dissection
            .rankings
            .iter()
            .filter(|r| r.metric == crate::project::metric::IOU)
    }

    /// See [`crate::project::ProjectLayer::stroke_units`].
    pub fn stroke_units(
        &self,
        concept: &str,
        mode: crate::edit::StrokeMode,
        k: usize,
    ) -> Option<Vec<(usize, f32)>> {
        self.dissection.stroke_units(concept, mode, k)
    }

    /// The name of the ranking a stroke of `mode` takes its units from (the server's
    /// rule, [`crate::project::ProjectLayer::stroke_ranking`]), served to clients.
    pub fn stroke_ranking(&self, concept: &str, mode: crate::edit::StrokeMode) -> Option<String> {
        self.dissection
            .stroke_ranking(concept, mode, crate::project::UnitChoice::Optimized)
            .ok()
            .map(ConceptRanking::name)
    }

    /// See [`crate::project::ProjectLayer::concept_units`].
    pub fn concept_units(&self, concept: &str) -> Option<Vec<(usize, f64)>> {
        self.dissection.concept_units(concept)
    }
}

pub struct Project {
    pub spec: ProjectSpec,
    pub layers: Vec<ProjectLayer>,
    pub worker: WorkerHandle,
    /// Inverts uploaded pictures; why not, when the project takes none (no encoder that
    /// fits its generator).
    pub inverter: Result<Arc<super::uploads::Inverter>, String>,
    /// A hash of the generator's weights file: part of every upload's id, so uploads
    /// inverted for another generator are never painted with this one.
    pub generator_fingerprint: String,
}

impl Project {
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    pub fn layer(&self, name: &str) -> Option<&ProjectLayer> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// The dissection's default layer ([`crate::project::Project::default_layer`]).
    pub fn default_layer(&self) -> &ProjectLayer {
        self.spec
            .dissection
            .default_layer()
            .ok()
            .and_then(|l| self.layer(&l.layer))
            .unwrap_or(&self.layers[0])
    }

    pub fn resolution(&self) -> i64 {
        self.worker.config.resolution()
    }
}
