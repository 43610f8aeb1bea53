//! Projects: reading a dissected generator's folder, the vocabulary that the server, the
//! commands and the dissection share. A project is what `ganpaint dissect` leaves behind,
//! or a GAN Dissection output folder served as it is; this room reads it and never
//! writes it (writing is the dissection's).
//!
//! ## What a project folder holds
//! - `dissect.json` ([`DISSECT_FILE`]): GAN Dissection's layout ([`DissectJson`]): the
//!   settings the dissection ran with, and per layer its units (best concept, IoU, the
//!   0.99 level, top images) and its rankings (`<concept>-<metric>`, one score per unit,
//!   lower first; the metrics painting reads are in [`metric`]). A folder holding one is a
//!   project; its id is the folder's name ([`discover`], [`read_spec`]).
//! - `levels.json` ([`LEVELS_FILE`], ours): per layer, the [`LevelTable`] painting uses:
//!   each unit's activation at the painting quantiles ([`LEVEL_QUANTILES`]) and on a grid
//!   fine enough to answer any quantile.
//! - `<layer>/quantiles.npz` (GAN Dissection's): the layer's quantile sketch, read with
//!   gandissect's semantics ([`quantiles`]) when `levels.json` lacks the layer, and for the
//!   server's activation-to-quantile map ([`QuantileNormalizer`]).
//! - `project.json` (optional): `{"model": "<weights>", "encoder": "<weights>"}`, paths
//!   relative to the folder, naming the generator and the encoder outright.
//!
//! [`read_project`] reads a folder into a [`Project`]; [`ProjectLayer::stroke_edits`] and
//! [`ProjectLayer::resolve_stroke`] turn a concept into the units a stroke paints.
//!
//! ## Which generator and encoder a project uses
//! One function each, for the server and every command ([`models`]):
//! - the generator, [`generator_file`]: `project.json`'s `model` always wins; else ours,
//!   `settings.model` as a path relative to the repository; else GAN Dissection's,
//!   `settings.model` as the Python expression its dissection ran
//!   (`netdissect.proggan.from_pth_file('<file>')`, or a
//!   `netdissect.proggan.ProgressiveGenerator(…)` whose weights `settings.pthfile` names),
//!   read without evaluating anything; any other expression is refused with an error that
//!   points at `project.json`;
//! - the encoder that inverts uploaded pictures, [`encoder_file`]: `project.json`'s
//!   `encoder`, else `settings.encoder`, else the bundled one;
//! - the segmenter, [`setting_file`]: the one a command is given, else `settings.segmenter`;
//! - the layer, [`Project::chosen_layer`]: the one named, else `layer4` when dissected,
//!   else the first.
//!
//! ## Where it sits
//! It reads files through [`crate::formats`] and speaks of strokes in [`crate::edit`]'s
//! terms; the dissection, the server and the command line build on it, never the other
//! way round.

mod dissect_json;
mod levels;
pub mod models;
pub mod quantiles;
mod read;
mod spec;
mod stroke;

use std::path::Path;

pub use dissect_json::{
    metric, DissectJson, DissectLayer, DissectUnit, Ranking, Settings, TopImage, DISSECT_FILE,
    LEVELS_FILE, MIN_WEIGHT,
};
pub use levels::{grid_quantiles, LevelTable, LEVEL_QUANTILES};
pub use models::{
    encoder_file, generator_file, repo_root, resolve_setting_path, setting_file, setting_path,
};
pub use quantiles::{gandissect_quantiles_path, QuantileNormalizer, RunningQuantileState};
pub use read::{read_project, ConceptRanking, Project, ProjectLayer, UnitChoice};
pub use spec::{discover, read_spec, ProjectSpec};
pub use stroke::{
    ConceptPaint, StrokeDefault, StrokeError, StrokeUnits, DEFAULT_UNITS, DRAW_QUANTILE,
    MAX_STRENGTH,
};

/// Why a project could not be read, or has no such layer, concept or level.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid {what}: {detail}")]
    Format {
        path: String,
        what: String,
        detail: String,
    },
    /// `project.json` is not `{"model": …, "encoder": …}`.
    #[error("{path}: {detail}")]
    ProjectFile { path: String, detail: String },
    /// `dissect.json`'s settings name no generator that can be loaded; `why` says how to
    /// name one.
    #[error("{path}: {why}")]
    Generator { path: String, why: String },
    #[error("layer `{layer}` is not in the dissection (it has: {available})")]
    UnknownLayer { layer: String, available: String },
    #[error("concept `{concept}` has no ranking at layer `{layer}` (ranked: {available})")]
    UnknownConcept {
        concept: String,
        layer: String,
        available: String,
    },
    #[error("layer `{layer}` has no level for quantile {quantile} (levels: {available})")]
    NoLevel {
        layer: String,
        quantile: f64,
        available: String,
    },
}

/// A file's bytes, or an error naming it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, ProjectError> {
    std::fs::read(path).map_err(|source| ProjectError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// A JSON file as `T`; `what` names the file in errors.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
) -> Result<T, ProjectError> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|e| ProjectError::Format {
        path: path.display().to_string(),
        what: what.into(),
        detail: e.to_string(),
    })
}
