//! The dissection's files: `stats.json` (what merges read), `levels.json` and
//! `dissect.json` ([`dissect_json`]), as the dissection writes them. The formats are
//! described in the [module docs](super); reading a finished folder back is
//! [`crate::project::read_project`]'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::quantile::{layer_sketches_from_bytes, layer_sketches_to_bytes, QuantileSketch};
use super::stats::{LayerCounts, TopSamples};
use super::{write_file, DissectError, Shard, IOU_THRESHOLD};
use crate::project::{
    metric, read_file, read_json, DissectJson, DissectLayer, DissectUnit, LevelTable, Ranking,
    Settings, TopImage, LEVELS_FILE, LEVEL_QUANTILES,
};

pub const STATS_FILE: &str = "stats.json";
pub const SKETCH_FILE: &str = "sketch.bin";
const STATS_FORMAT: &str = "ganpaint-dissect-stats/1";

/// Labels that name no concept (a background class) and get no ranking.
pub fn is_concept(label: &str) -> bool {
    !label.is_empty() && label != "-"
}

/// Which stage a stats folder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Round {
    /// Pass-1 sketches (`<layer>/sketch.bin`), of some shards.
    Sketches,
    /// All shards' sketches merged, with the thresholds and levels they give.
    Thresholds,
    /// Pass-2 counts and top samples (with the thresholds and levels used), of some shards.
    Counts,
}

/// Which shards of `count` a folder covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub count: u32,
    pub done: Vec<u32>,
}

impl Coverage {
    pub fn of(shard: Shard) -> Self {
        Coverage {
            count: shard.count,
            done: vec![shard.index],
        }
    }

    pub fn is_complete(&self) -> bool {
        self.done.len() == self.count as usize
    }

    /// Adds another folder's shards; shard counts must agree and shards may not repeat.
    pub fn add(&mut self, other: &Coverage) -> Result<(), DissectError> {
        if other.count != self.count {
            return Err(DissectError::Mismatch {
                what: "shard counts".into(),
                detail: format!("{} vs {}", self.count, other.count),
            });
        }
        for &index in &other.done {
            if self.done.contains(&index) {
                return Err(DissectError::Mismatch {
                    what: "shard sets".into(),
                    detail: format!("shard {index}/{} appears twice", self.count),
                });
            }
            self.done.push(index);
        }
        self.done.sort_unstable();
        Ok(())
    }

    pub fn missing(&self) -> Vec<u32> {
        (0..self.count).filter(|i| !self.done.contains(i)).collect()
    }
}

/// Compute time, summed over shards.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub sketch_seconds: f64,
    pub count_seconds: f64,
}

/// One layer in `stats.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    pub layer: String,
    /// `[C, H, W]`.
    pub shape: [i64; 3],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<LevelTable>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<LayerCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<TopSamples>,
}

/// `stats.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsFile {
    pub format: String,
    pub round: Round,
    pub settings: Settings,
    pub shards: Coverage,
    /// The segmenter's labels (counts only).
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub timing: Timing,
    pub layers: Vec<LayerStats>,
}

impl StatsFile {
    pub fn new(round: Round, settings: Settings, shards: Coverage) -> Self {
        StatsFile {
            format: STATS_FORMAT.into(),
            round,
            settings,
            shards,
            labels: Vec::new(),
            timing: Timing::default(),
            layers: Vec::new(),
        }
    }

    pub fn read(dir: &Path) -> Result<Self, DissectError> {
        let path = dir.join(STATS_FILE);
        let stats: StatsFile = read_json(&path, "dissection stats file")?;
        if stats.format != STATS_FORMAT {
            return Err(DissectError::Format {
                path: path.display().to_string(),
                what: "dissection stats file".into(),
                detail: format!("format `{}`, expected `{STATS_FORMAT}`", stats.format),
            });
        }
        Ok(stats)
    }

    pub fn write(&self, dir: &Path) -> Result<(), DissectError> {
        write_json(&dir.join(STATS_FILE), self)
    }

    pub fn layer(&self, name: &str) -> Result<&LayerStats, DissectError> {
        self.layers
            .iter()
            .find(|l| l.layer == name)
            .ok_or_else(|| DissectError::UnknownLayer {
                layer: name.to_string(),
                available: self.layer_names().join(", "),
            })
    }

    fn layer_names(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.layer.clone()).collect()
    }
}

pub fn sketch_path(dir: &Path, layer: &str) -> PathBuf {
    dir.join(layer).join(SKETCH_FILE)
}

pub fn write_layer_sketches(
    dir: &Path,
    layer: &str,
    sketches: &[QuantileSketch],
) -> Result<(), DissectError> {
    write_file(&sketch_path(dir, layer), &layer_sketches_to_bytes(sketches))
}

pub fn read_layer_sketches(dir: &Path, layer: &str) -> Result<Vec<QuantileSketch>, DissectError> {
    let path = sketch_path(dir, layer);
    layer_sketches_from_bytes(&read_file(&path)?).map_err(|detail| DissectError::Format {
        path: path.display().to_string(),
        what: "layer sketch file".into(),
        detail,
    })
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), DissectError> {
    let text = serde_json::to_string(value).map_err(|e| DissectError::Format {
        path: path.display().to_string(),
        what: "JSON value".into(),
        detail: e.to_string(),
    })?;
    write_file(path, text.as_bytes())
}

/// `levels.json`: layer → level table.
pub fn write_levels(dir: &Path, stats: &StatsFile) -> Result<(), DissectError> {
    let levels: BTreeMap<&str, &LevelTable> = stats
        .layers
        .iter()
        .filter_map(|l| Some((l.layer.as_str(), l.levels.as_ref()?)))
        .collect();
    write_json(&dir.join(LEVELS_FILE), &levels)
}

// ---------------------------------------------------------------------------------------
// dissect.json

/// Builds `dissect.json` from complete counts. Every layer needs levels, counts and top
/// samples.
pub fn dissect_json(netname: &str, stats: &StatsFile) -> Result<DissectJson, DissectError> {
    let concepts: Vec<usize> = (0..stats.labels.len())
        .filter(|&c| is_concept(&stats.labels[c]))
        .collect();
    let mut layers = Vec::new();
    for layer in &stats.layers {
        let incomplete = || {
            DissectError::Settings(format!(
                "layer `{}` lacks levels, counts or top samples: merge the count shards first",
                layer.layer
            ))
        };
        let levels = layer.levels.as_ref().ok_or_else(incomplete)?;
        let counts = layer.counts.as_ref().ok_or_else(incomplete)?;
        let top = layer.top.as_ref().ok_or_else(incomplete)?;
        let units = (0..counts.units())
            .map(|u| {
                let mut best: Option<(usize, f64)> = None;
                for &c in &concepts {
                    let iou = counts.iou(u, c);
                    if best.is_none_or(|(_, b)| iou > b) {
                        best = Some((c, iou));
                    }
                }
                let (label, iou) = best.unwrap_or((0, 0.0));
                DissectUnit {
                    unit: u,
                    iou,
                    iou_label: stats
                        .labels
                        .get(label)
                        .cloned()
                        .unwrap_or_else(|| "-".into()),
                    iou_cat: "object".into(),
                    iou_labelnum: label,
                    level: levels.level(u, LEVEL_QUANTILES[0]).unwrap_or(f32::NAN),
                    interp: iou > IOU_THRESHOLD,
                    top: top.units[u]
                        .iter()
                        .map(|s| TopImage {
                            imgnum: s.id,
                            maxact: s.act,
                        })
                        .collect(),
                }
            })
            .collect();
        let rankings = concepts
            .iter()
            .map(|&c| Ranking {
                name: format!("{}-iou", stats.labels[c]),
                concept: stats.labels[c].clone(),
                metric: metric::IOU.into(),
                score: (0..counts.units())
                    .map(|u| {
                        let iou = counts.iou(u, c);
                        if iou == 0.0 {
                            0.0
                        } else {
                            -iou
                        }
                    })
                    .collect(),
            })
            .collect();
        layers.push(DissectLayer {
            layer: layer.layer.clone(),
            shape: layer.shape,
            units,
            rankings,
        });
    }
    Ok(DissectJson {
        netname: netname.to_string(),
        settings: stats.settings.clone(),
        quantile_threshold: stats.settings.quantile_threshold(),
        iou_threshold: IOU_THRESHOLD,
        layers,
    })
}

#[cfg(test)]
mod tests {
    //! Round trips: what the dissection writes, as a project reads it back.

    use super::*;
    use crate::dissect::stats::TopSample;
    use crate::edit::{StrokeMode, UnitEdit};
    use crate::project::{read_project, UnitChoice, DISSECT_FILE};

    fn settings() -> Settings {
        Settings {
            model: "models/g.safetensors".into(),
            segmenter: "models/s.safetensors".into(),
            layers: vec!["layer4".into()],
            samples: 10,
            seed: 0,
            quantile: 0.99,
            batch: 4,
            sketch_capacity: 64,
            segment_size: None,
            segment_precision: None,
            render_precision: None,
        }
    }

    /// Three units, labels [-, sky, tree]; unit 0 matches tree best, unit 1 sky, unit 2
    /// nothing.
    fn stats() -> StatsFile {
        let mut counts = LayerCounts::new(3, 3);
        counts.activated = vec![10, 10, 5];
        counts.labeled = vec![50, 20, 10];
        counts.intersection = vec![vec![0, 2, 8], vec![1, 9, 0], vec![5, 0, 0]];
        let mut sketches = vec![QuantileSketch::new(2048); 3]; // exact: no compaction
        for (u, s) in sketches.iter_mut().enumerate() {
            s.extend(&(0..1000).map(|i| (i * (u + 1)) as f32).collect::<Vec<_>>());
        }
        let mut top = TopSamples::new(3, 2);
        top.units[0] = vec![TopSample { id: 4, act: 9.0 }, TopSample { id: 1, act: 3.0 }];
        let mut stats = StatsFile::new(
            Round::Counts,
            settings(),
            Coverage {
                count: 1,
                done: vec![0],
            },
        );
        stats.labels = vec!["-".into(), "sky".into(), "tree".into()];
        stats.layers.push(LayerStats {
            layer: "layer4".into(),
            shape: [3, 8, 8],
            levels: Some(LevelTable::from_sketches(&sketches, 0.99)),
            counts: Some(counts),
            top: Some(top),
        });
        stats
    }

    #[test]
    fn dissect_json_has_gandissect_keys_and_rankings_are_negative_iou() {
        let json = dissect_json("demo", &stats()).unwrap();
        let value = serde_json::to_value(&json).unwrap();
        for key in ["netname", "settings", "quantile_threshold", "layers"] {
            assert!(value.get(key).is_some(), "missing {key}");
        }
        for key in [
            "model",
            "segmenter",
            "layers",
            "samples",
            "seed",
            "quantile",
        ] {
            assert!(
                value["settings"].get(key).is_some(),
                "missing settings.{key}"
            );
        }
        assert_eq!(value["quantile_threshold"], 0.01);
        let layer = &value["layers"][0];
        assert_eq!(layer["layer"], "layer4");
        for key in ["unit", "iou", "iou_label", "iou_cat", "level", "interp"] {
            assert!(layer["units"][0].get(key).is_some(), "missing unit.{key}");
        }
        // The background label "-" gets no ranking; unit 0: tree IoU 8 / (10 + 10 − 8).
        let names: Vec<&str> = json.layers[0]
            .rankings
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, vec!["sky-iou", "tree-iou"]);
        let tree = &json.layers[0].rankings[1];
        assert_eq!(tree.metric, "iou");
        assert_eq!(tree.score, vec![-8.0 / 12.0, 0.0, 0.0]);
        let unit0 = &json.layers[0].units[0];
        assert_eq!((unit0.iou_label.as_str(), unit0.iou), ("tree", 8.0 / 12.0));
        assert!(unit0.interp);
        assert_eq!(json.layers[0].units[1].iou_label, "sky");
        assert!(!json.layers[0].units[2].interp);
        assert_eq!(unit0.top[0].imgnum, 4);
    }

    #[test]
    fn strokes_paint_with_learned_weights_else_causal_else_iou() {
        let dir = std::env::temp_dir().join(format!("ganpaint-edits-{}", std::process::id()));
        let stats = stats();
        let mut json = dissect_json("demo", &stats).unwrap();
        json.layers[0].rankings.push(Ranking {
            name: "tree-causal-draw".into(),
            concept: "tree".into(),
            metric: "causal-draw".into(),
            score: vec![0.0, -0.5, -0.1],
        });
        json.layers[0].rankings.push(Ranking {
            name: "tree-ace-remove".into(),
            concept: "tree".into(),
            metric: "ace-remove".into(),
            score: vec![-0.01, 0.0, 0.0],
        });
        json.layers[0].rankings.push(Ranking {
            name: "tree-ace-draw".into(),
            concept: "tree".into(),
            metric: "ace-draw".into(),
            score: vec![-0.25, -0.01, -0.75],
        });
        write_json(&dir.join(DISSECT_FILE), &json).unwrap();
        write_levels(&dir, &stats).unwrap();
        let layer = read_project(&dir).unwrap().layers.remove(0);
        let level = |u: i64| layer.levels_for(&[u], 0.99).unwrap()[0];
        let edits = |mode, choice| {
            layer
                .stroke_edits("tree", mode, 3, 2.0, 0.99, choice)
                .unwrap()
        };
        // Learned: units of weight ≥ MIN_WEIGHT, heaviest first, alpha = weight.
        assert_eq!(
            edits(StrokeMode::Draw, UnitChoice::Optimized),
            vec![
                UnitEdit {
                    unit: 2,
                    alpha: 0.75,
                    value: 2.0 * level(2)
                },
                UnitEdit {
                    unit: 0,
                    alpha: 0.25,
                    value: 2.0 * level(0)
                },
            ]
        );
        // A learned removal too light to paint, or none: the causal ranking's mode, then
        // IoU, with alpha 1.
        let remove = edits(StrokeMode::Remove, UnitChoice::Optimized);
        assert_eq!(
            remove.iter().map(|e| e.unit).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(remove.iter().all(|e| e.alpha == 1.0 && e.value == 0.0));
        let causal = edits(StrokeMode::Draw, UnitChoice::Causal);
        assert_eq!(
            causal.iter().map(|e| e.unit).collect::<Vec<_>>(),
            vec![1, 2, 0]
        );
        let iou = edits(StrokeMode::Draw, UnitChoice::Iou);
        assert_eq!(iou[0].unit, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn project_reads_back_rankings_best_first_and_levels() {
        let dir = std::env::temp_dir().join(format!("ganpaint-project-{}", std::process::id()));
        let stats = stats();
        write_json(
            &dir.join(DISSECT_FILE),
            &dissect_json("demo", &stats).unwrap(),
        )
        .unwrap();
        write_levels(&dir, &stats).unwrap();
        let project = read_project(&dir).unwrap();
        let layer = project.layer("layer4").unwrap();
        assert_eq!(layer.concepts(), vec!["sky", "tree"]);
        // sky IoU: unit 0 2/28, unit 1 9/21, unit 2 0 → order 1, 0, 2.
        assert_eq!(layer.top_units("sky", 3).unwrap(), vec![1, 0, 2]);
        assert_eq!(layer.top_units("tree", 1).unwrap(), vec![0]);
        assert!(layer.top_units("dome", 1).is_err());
        let table = stats.layers[0].levels.as_ref().unwrap();
        assert_eq!(
            layer.levels_for(&[0, 2], 0.99).unwrap(),
            vec![table.levels[0][0], table.levels[2][0]]
        );
        // Unit 1 saw 0, 2, …, 1998: the 0.99 quantile is the 990th value.
        assert_eq!(table.levels[1][0], 1978.0);
        // Between grid points, levels interpolate; quantile_of inverts.
        assert_eq!(table.grid_quantiles[25], 0.5);
        let mid = layer.levels.level(1, 0.51).unwrap();
        assert!(mid > table.grid_levels[1][25] && mid < table.grid_levels[1][26]);
        let q = layer.levels.quantile_of(1, mid).unwrap();
        assert!((q - 0.51).abs() < 1e-6, "{q}");
        assert_eq!(project.setting("model"), Some("models/g.safetensors"));
        assert!(project.layer("layer9").is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn causal_rankings_pick_painting_units_and_iou_is_the_fallback() {
        let dir = std::env::temp_dir().join(format!("ganpaint-causal-{}", std::process::id()));
        let stats = stats();
        let mut json = dissect_json("demo", &stats).unwrap();
        // As `dissect causal` writes them: −effect per unit.
        json.layers[0].rankings.push(Ranking {
            name: "sky-causal-draw".into(),
            concept: "sky".into(),
            metric: crate::dissect::ace::DRAW_METRIC.into(),
            score: vec![-0.01, -0.02, -0.30],
        });
        write_json(&dir.join(DISSECT_FILE), &json).unwrap();
        write_levels(&dir, &stats).unwrap();
        let project = read_project(&dir).unwrap();
        let layer = project.layer("layer4").unwrap();
        // Concepts still come from the IoU rankings only.
        assert_eq!(layer.concepts(), vec!["sky", "tree"]);
        let draw = crate::dissect::ace::DRAW_METRIC;
        let remove = crate::dissect::ace::REMOVE_METRIC;
        assert_eq!(layer.top_units_by("sky", draw, 3).unwrap(), vec![2, 1, 0]);
        // No causal-remove ranking, and none for tree: the IoU order.
        assert_eq!(layer.top_units_by("sky", remove, 3).unwrap(), vec![1, 0, 2]);
        assert_eq!(layer.top_units_by("tree", draw, 1).unwrap(), vec![0]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn tuned_strokes_are_read_from_dissect_json_and_checked() {
        let dir = std::env::temp_dir().join(format!("ganpaint-paint-{}", std::process::id()));
        let stats = stats();
        write_levels(&dir, &stats).unwrap();
        let mut json = serde_json::to_value(dissect_json("demo", &stats).unwrap()).unwrap();
        json["layers"][0]["paint"] = serde_json::json!({
            "sky": {"draw": {"units": 2, "strength": 1.5, "score": 0.3, "far_change": 0.01},
                    "remove": {"units": 3}}
        });
        write_json(&dir.join(DISSECT_FILE), &json).unwrap();
        let project = read_project(&dir).unwrap();
        let layer = project.layer("layer4").unwrap();
        let draw = layer.stroke_default("sky", StrokeMode::Draw);
        assert_eq!((draw.units, draw.strength, draw.score), (2, 1.5, Some(0.3)));
        let remove = layer.stroke_default("sky", StrokeMode::Remove);
        assert_eq!((remove.units, remove.strength), (3, 1.0));
        // Untuned concepts: DEFAULT_UNITS, or all of this 3-unit layer's.
        assert_eq!(layer.stroke_default("tree", StrokeMode::Draw).units, 3);
        // A setting no request could ask for names the layer, concept, mode and field.
        json["layers"][0]["paint"]["sky"]["draw"]["units"] = 4.into();
        write_json(&dir.join(DISSECT_FILE), &json).unwrap();
        let error = read_project(&dir).unwrap_err().to_string();
        assert!(
            error.contains("layer `layer4` paint.sky.draw: units 4 is not in 1..=3"),
            "{error}"
        );
        json["layers"][0]["paint"]["sky"]["draw"] = serde_json::json!({"units": 1, "strength": 11});
        write_json(&dir.join(DISSECT_FILE), &json).unwrap();
        let error = read_project(&dir).unwrap_err().to_string();
        assert!(
            error.contains("paint.sky.draw: strength 11 is not in [0, 10]"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn coverage_rejects_repeated_shards_and_reports_missing_ones() {
        let mut c = Coverage::of(Shard { index: 2, count: 3 });
        c.add(&Coverage::of(Shard { index: 0, count: 3 })).unwrap();
        assert_eq!(c.missing(), vec![1]);
        assert!(c.add(&Coverage::of(Shard { index: 0, count: 3 })).is_err());
        assert!(c.add(&Coverage::of(Shard { index: 1, count: 4 })).is_err());
        c.add(&Coverage::of(Shard { index: 1, count: 3 })).unwrap();
        assert!(c.is_complete());
    }
}
