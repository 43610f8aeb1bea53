//! The layout of `dissect.json`, GAN Dissection's, as `ganpaint dissect` writes it and
//! [`read_project`](super::read_project) reads it back, with the names of the metrics its
//! rankings use.

use serde::{Deserialize, Serialize};

/// A project's dissection: GAN Dissection's layout, the file that makes a folder a project.
pub const DISSECT_FILE: &str = "dissect.json";
/// Per layer, the level table painting uses ([`LevelTable`](super::LevelTable)).
pub const LEVELS_FILE: &str = "levels.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DissectJson {
    pub netname: String,
    pub settings: Settings,
    pub quantile_threshold: f64,
    pub iou_threshold: f64,
    pub layers: Vec<DissectLayer>,
}

/// What a dissection was run with (`settings`). Shards must agree on all of it to merge;
/// the dissection reads the sampling scheme out of it (`Settings::validate`, `Settings::id`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The generator, relative to the repository root when inside it.
    pub model: String,
    pub segmenter: String,
    pub layers: Vec<String>,
    pub samples: u64,
    pub seed: u64,
    /// The threshold quantile (`t_u`).
    pub quantile: f64,
    pub batch: usize,
    pub sketch_capacity: usize,
    /// Images larger than this many pixels a side are segmented scaled down to it
    /// ([`AtMostSize`](crate::segment::AtMostSize)); every pass over the project segments
    /// the same way. Absent: at the generator's own size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_size: Option<usize>,
    /// The arithmetic every pass over the project segments in (the demo segmenter's
    /// [`ScorePrecision`](crate::segment::ScorePrecision)). Absent: f32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_precision: Option<crate::segment::ScorePrecision>,
    /// How the generator computes in the project's passes that only render (the
    /// dissection, `causal`, `tune`, `eval-edits`, `figure`); `ace` and `invert`, which
    /// differentiate through it, stay exact. Absent: exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_precision: Option<crate::model::Precision>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DissectLayer {
    pub layer: String,
    pub shape: [i64; 3],
    pub units: Vec<DissectUnit>,
    pub rankings: Vec<Ranking>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DissectUnit {
    pub unit: usize,
    pub iou: f64,
    pub iou_label: String,
    pub iou_cat: String,
    pub iou_labelnum: usize,
    /// The 0.99 level.
    pub level: f32,
    pub interp: bool,
    pub top: Vec<TopImage>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopImage {
    pub imgnum: u64,
    pub maxact: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    pub name: String,
    pub concept: String,
    pub metric: String,
    /// One per unit; lower ranks first (`−iou`).
    pub score: Vec<f64>,
}

/// The metrics of `dissect.json`'s rankings that painting reads.
pub mod metric {
    /// Units by IoU with the concept (`<concept>-iou`).
    pub const IOU: &str = "iou";
    /// Units by the causal effect of each alone (`dissect causal`).
    pub const CAUSAL_DRAW: &str = "causal-draw";
    pub const CAUSAL_REMOVE: &str = "causal-remove";
    /// Learned weights of an optimized intervention (`dissect ace`), score = −weight.
    pub const LEARNED_DRAW: &str = "ace-draw";
    pub const LEARNED_REMOVE: &str = "ace-remove";
}

/// Units whose learned weight is below this are left out when painting: they change
/// nothing that shows, and leaving them out keeps strokes sparse.
pub const MIN_WEIGHT: f32 = 0.02;
