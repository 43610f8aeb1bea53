//! Dissection: which units of a generator layer draw which concepts (GAN Dissection,
//! Bau et al. 2019, §3.1), and how strongly to set a unit when painting.
//!
//! ## The flow
//! Dissection calls [`crate::model`] and [`crate::segment`], nothing above them. Samples
//! are GAN Dissection image ids, regenerated whenever they are needed (never stored), so
//! memory does not grow with the sample count. Two passes:
//!
//! 1. **Sketches** ([`collect::collect_sketches`]): each unit's raw activations (at the
//!    layer's own resolution) go into a mergeable [`quantile::QuantileSketch`]. Its
//!    quantile at `--quantile` (0.99) is the unit's threshold `t_u`; its quantiles at
//!    0.99, 0.995 and 0.999 are the unit's **levels**, the values painting writes.
//!    Quantiles are of the raw activations, as GAN Dissection's
//!    `collect_quantiles_and_topk` computes them, because levels are written into the raw
//!    grid; bilinear upsampling only interpolates between those values.
//! 2. **Counts** ([`collect::collect_counts`]): images are generated and segmented; each
//!    unit's activation is bilinearly upsampled to the segmentation's size
//!    (`align_corners = false`), thresholded at `t_u` (strictly), and compared with every
//!    concept mask. Intersection and union counts are exact `u64`s
//!    ([`stats::LayerCounts`]), IoU follows from them. Each unit's top samples by peak
//!    activation are kept too ([`stats::TopSamples`]).
//!
//! Then [`output`] writes `dissect.json` (GAN Dissection's layout) and `levels.json`,
//! [`report`] draws each unit's top samples with a heatmap and writes `dissect.html`, and
//! [`causal`] checks that painting a concept's top units really draws (or removes) it.
//!
//! ## Samples, seeds and shards
//! Sample `j` (for `j` in `0..samples`) is image id `seed · samples + j`: seed 0 is ids
//! `0..samples`, and different seeds use disjoint ids. Samples go through the model in
//! fixed batches of `--batch` (batch `b` is samples `b·batch .. (b+1)·batch`); shard
//! `i/n` takes batches `b ≡ i (mod n)`. Because a sample is always in the same batch,
//! whatever the sharding, every shard computes exactly the activations a single run would,
//! and the summed counts are **bit-identical** to a single run's (given the same
//! thresholds, `--batch` and device kind).
//!
//! Thresholds must be global for counts to add up, so a sharded dissection runs in two
//! rounds (a single run does both passes itself):
//!
//! ```text
//! round 1   ganpaint dissect --shard i/n --out S_i            → sketches
//!           ganpaint dissect merge S_0 … S_{n-1} --out T      → thresholds + levels
//! round 2   ganpaint dissect --shard i/n --thresholds T --out C_i   → counts
//!           ganpaint dissect merge C_0 … C_{n-1} --out FINAL  → dissect.json, report
//! ```
//!
//! Merges may also be partial (a subset of shards, merged again later).
//!
//! ## Files
//! A dissection folder (`dissect/<name>/`) holds:
//!
//! - `dissect.json`: GAN Dissection's layout. Top level: `netname`, `settings` (`model`
//!   and `segmenter` paths, relative to the repository root when inside it; `layers`,
//!   `samples`, `seed`, `quantile`, `batch`, `sketch_capacity`), `quantile_threshold`
//!   (`1 − quantile`, GAN Dissection's meaning), `iou_threshold` and `layers`. Each layer:
//!   `layer`, `shape` `[C, H, W]`, `units` (each `unit`, `iou`, `iou_label`, `iou_cat`,
//!   `iou_labelnum`, `level` (the 0.99 level), `interp` (`iou > 0.05`) and `top`
//!   (`[{imgnum, maxact}]`)) and `rankings` (one per concept:
//!   `{name: "<concept>-iou", concept, metric: "iou", score: [−iou per unit]}`, lower is
//!   better).
//! - `levels.json`: per layer, the levels painting uses:
//!   ```text
//!   {"layer4": {"quantiles": [0.99, 0.995, 0.999],
//!               "levels": [[l99, l995, l999], …],          one row per unit
//!               "threshold_quantile": 0.99, "thresholds": [t_u, …],
//!               "grid_quantiles": [0, 0.02, …, 0.98, 0.99, 0.995, 0.999, 1],
//!               "grid_levels": [[…], …],                   one row per unit
//!               "rank_error": ε, "threshold_rank_error": ε_t, "values": n}}
//!   ```
//!   `rank_error` is the sketches' worst-case rank error (a fraction of `values`, the
//!   activation values per unit); `threshold_rank_error` the bound at the thresholds. The
//!   grid lets a server answer any quantile (and map a value back to its quantile) by
//!   interpolation.
//! - `stats.json`: what merges read: settings, shard coverage, labels, timing, and per
//!   layer the level table, counts (`samples`, `pixels`, `activated[u]`, `labeled[c]`,
//!   `intersection[u][c]`) and top samples (`[[{id, act}]]`).
//! - `<layer>/sketch.bin`: the layer's sketches (round-1 shards and threshold folders
//!   only), in the binary form of [`quantile::layer_sketches_to_bytes`].
//! - `<layer>/s-image/<unit>-top.jpg`: the unit's top samples with its activation as a
//!   heatmap, the images GAN Dissection's `/api/units` lists; and `dissect.html`, the
//!   report.
//!
//! Reading a finished folder back (for the server, `eval-edits` and the commands that
//! work on a dissection), GAN Dissection's own folders included, is [`crate::project`]'s.

pub mod ace;
pub mod causal;
pub mod collect;
pub mod context;
pub mod levels;
pub mod optimize;
pub mod output;
pub mod quantile;
pub mod report;
pub mod stats;
pub mod tune;

use serde::{Deserialize, Serialize};

use crate::edit::EditError;
use crate::imageio::ImageError;
use crate::model::ModelError;
use crate::project::{ProjectError, Settings};
use crate::segment::SegmentError;

/// A unit counts as interpretable (`interp`) when its best IoU exceeds this.
pub const IOU_THRESHOLD: f64 = 0.05;
/// Top-activating samples kept (and drawn) per unit.
pub const TOP_SAMPLES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum DissectError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid {what}: {detail}")]
    Format {
        path: String,
        what: String,
        detail: String,
    },
    #[error("{what} differ: {detail}")]
    Mismatch { what: String, detail: String },
    #[error("bad shape for {what}: {detail}")]
    Shape { what: String, detail: String },
    #[error("layer `{layer}` is not in the dissection (it has: {available})")]
    UnknownLayer { layer: String, available: String },
    #[error("invalid settings: {0}")]
    Settings(String),
    /// Reading a project's (or a shard's) files.
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// [`Settings`] (what `dissect.json` records) as the sampling scheme reads them.
impl Settings {
    /// Checks the values that the sampling scheme depends on.
    pub fn validate(&self) -> Result<(), DissectError> {
        if self.samples == 0 {
            return Err(DissectError::Settings("samples must be at least 1".into()));
        }
        if self.batch == 0 {
            return Err(DissectError::Settings("batch must be at least 1".into()));
        }
        if !(self.quantile > 0.0 && self.quantile < 1.0) {
            return Err(DissectError::Settings(format!(
                "quantile {} is not strictly between 0 and 1",
                self.quantile
            )));
        }
        if self.layers.is_empty() {
            return Err(DissectError::Settings("no layers to dissect".into()));
        }
        if let Some(size) = self.segment_size {
            if size < crate::segment::MIN_SEGMENT_SIZE {
                return Err(DissectError::Settings(format!(
                    "segment size (--segment-size) {size} is below {}",
                    crate::segment::MIN_SEGMENT_SIZE
                )));
            }
        }
        let last = self
            .seed
            .checked_add(1)
            .and_then(|s| s.checked_mul(self.samples));
        match last {
            Some(end) if end <= crate::model::latent::MAX_ID + 1 => Ok(()),
            _ => Err(DissectError::Settings(format!(
                "seed {} with {} samples reaches past the largest image id {}",
                self.seed,
                self.samples,
                crate::model::latent::MAX_ID
            ))),
        }
    }

    /// The image id of sample `index`.
    pub fn id(&self, index: u64) -> u64 {
        self.seed * self.samples + index
    }

    /// GAN Dissection's `quantile_threshold`: the fraction of activations above `t_u`.
    pub fn quantile_threshold(&self) -> f64 {
        ((1.0 - self.quantile) * 1e12).round() / 1e12
    }
}

/// A deterministic slice of the samples: batches `b ≡ index (mod count)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// The sample-index ranges (batches) this shard processes, in order.
    pub fn batches(&self, samples: u64, batch: usize) -> Vec<std::ops::Range<u64>> {
        let batch = batch.max(1) as u64;
        (0..samples.div_ceil(batch))
            .filter(|b| b % self.count as u64 == self.index as u64)
            .map(|b| b * batch..((b + 1) * batch).min(samples))
            .collect()
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// Parses `i/n` with `i < n`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a shard like 0/4 (index/count, index < count)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), DissectError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| DissectError::Write {
            path: parent.display().to_string(),
            source,
        })?;
    }
    std::fs::write(path, bytes).map_err(|source| DissectError::Write {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_batches_round_robin() {
        let all: Vec<_> = Shard::WHOLE.batches(10, 3);
        assert_eq!(all, vec![0..3, 3..6, 6..9, 9..10]);
        let parts: Vec<Vec<_>> = (0..3)
            .map(|i| Shard { index: i, count: 3 }.batches(10, 3))
            .collect();
        assert_eq!(parts[0], vec![0..3, 9..10]);
        assert_eq!(parts[1], vec![3..6]);
        assert_eq!(parts[2], vec![6..9]);
    }

    #[test]
    fn shard_parses_index_over_count() {
        assert_eq!("2/5".parse::<Shard>(), Ok(Shard { index: 2, count: 5 }));
        assert!("5/5".parse::<Shard>().is_err());
        assert!("1-2".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
    }

    #[test]
    fn seed_offsets_ids_by_whole_sample_sets() {
        let settings = Settings {
            model: "m".into(),
            segmenter: "s".into(),
            layers: vec!["layer4".into()],
            samples: 100,
            seed: 2,
            quantile: 0.99,
            batch: 8,
            sketch_capacity: 64,
            segment_size: None,
            segment_precision: None,
            render_precision: None,
        };
        assert_eq!(settings.id(0), 200);
        assert_eq!(settings.id(99), 299);
        assert_eq!(settings.quantile_threshold(), 0.01);
        settings.validate().unwrap();
        let too_far = Settings {
            seed: 1 << 20,
            ..settings
        };
        assert!(too_far.validate().is_err());
    }
}
