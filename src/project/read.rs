//! [`read_project`]: a project folder's dissection as painting reads it, from our
//! `dissect.json` and `levels.json` or from GAN Dissection's own folder; and the rules
//! that pick a stroke's units from its rankings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::quantiles::{gandissect_quantiles_path, read_gandissect_quantiles, QUANTILES_WHAT};
use super::stroke::{ConceptPaint, MAX_STRENGTH};
use super::{metric, read_json, LevelTable, ProjectError, DISSECT_FILE, LEVELS_FILE, MIN_WEIGHT};
use crate::edit::{StrokeMode, UnitEdit};

/// A dissection folder, as the server and `eval-edits` use it. Reads our `dissect.json`
/// and `levels.json`, and also GAN Dissection's own `dissect.json` (whose units carry one
/// `level`, at quantile `1 − quantile_threshold`).
#[derive(Clone, Debug)]
pub struct Project {
    pub dir: PathBuf,
    pub netname: String,
    /// `dissect.json`'s settings as written (ours: [`Settings`](super::Settings)).
    pub settings: serde_json::Value,
    pub layers: Vec<ProjectLayer>,
}

#[derive(Clone, Debug)]
pub struct ProjectLayer {
    pub layer: String,
    pub units: usize,
    /// Each unit's best concept and its IoU.
    pub unit_labels: Vec<String>,
    pub unit_iou: Vec<f64>,
    /// Concept rankings in file order.
    pub rankings: Vec<ConceptRanking>,
    pub levels: LevelTable,
    /// Tuned strokes per concept (`dissect.json`'s `paint`; see [`StrokeDefault`]).
    pub paint: BTreeMap<String, ConceptPaint>,
}

/// Which units (and weights) a stroke paints with: see [`ProjectLayer::stroke_edits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitChoice {
    /// The top units by IoU with the concept.
    Iou,
    /// The top units by causal effect for the stroke's mode, else by IoU.
    Causal,
    /// The learned weights of an optimized intervention, else as `Causal`.
    Optimized,
}

#[derive(Clone, Debug)]
pub struct ConceptRanking {
    pub concept: String,
    pub metric: String,
    /// The file's scores, one per unit (lower is better).
    pub scores: Vec<f64>,
    /// Units best first: by score, ties to the lower unit.
    pub units: Vec<i64>,
}

impl ConceptRanking {
    /// The name the dissection lists it under: `<concept>-<metric>` (`tree-causal-draw`).
    pub fn name(&self) -> String {
        format!("{}-{}", self.concept, self.metric)
    }

    /// Learned weights of an optimized intervention (scores are −weight), not a ranking
    /// of the units by a measure.
    pub fn is_learned(&self) -> bool {
        self.metric == metric::LEARNED_DRAW || self.metric == metric::LEARNED_REMOVE
    }
}

#[derive(Deserialize)]
struct RawProject {
    #[serde(default)]
    netname: Option<String>,
    #[serde(default)]
    settings: serde_json::Value,
    #[serde(default)]
    quantile_threshold: serde_json::Value,
    layers: Vec<RawLayer>,
}

#[derive(Deserialize)]
struct RawLayer {
    layer: String,
    #[serde(default)]
    units: Vec<RawUnit>,
    #[serde(default)]
    rankings: Vec<RawRanking>,
    #[serde(default)]
    paint: BTreeMap<String, ConceptPaint>,
}

#[derive(Deserialize)]
struct RawUnit {
    #[serde(default)]
    iou: Option<f64>,
    #[serde(default)]
    iou_label: Option<String>,
    #[serde(default)]
    level: Option<f32>,
}

#[derive(Deserialize)]
struct RawRanking {
    name: String,
    #[serde(default)]
    concept: Option<String>,
    #[serde(default)]
    metric: Option<String>,
    score: Vec<Option<f64>>,
}

/// Reads `dir/dissect.json` and, when present, `dir/levels.json`. A layer that
/// `levels.json` lacks (or every layer, without one) takes its levels from GAN
/// Dissection's sketch `dir/<layer>/quantiles.npz` when there is one
/// ([`read_gandissect_quantiles`]), and
/// otherwise from each unit's one `level` in `dissect.json`.
pub fn read_project(dir: &Path) -> Result<Project, ProjectError> {
    let raw: RawProject = read_json(&dir.join(DISSECT_FILE), "dissect.json")?;
    let levels_path = dir.join(LEVELS_FILE);
    let mut tables: BTreeMap<String, LevelTable> = if levels_path.exists() {
        read_json(&levels_path, "levels file")?
    } else {
        BTreeMap::new()
    };
    let fallback_quantile = 1.0 - raw.quantile_threshold.as_f64().unwrap_or(0.01);
    let mut layers = Vec::new();
    for layer in raw.layers {
        let units = layer.units.len();
        let rankings = layer
            .rankings
            .iter()
            .filter_map(|r| {
                let metric = r.metric.clone().unwrap_or_default();
                let concept = match &r.concept {
                    Some(c) => c.clone(),
                    None => r.name.strip_suffix(&format!("-{metric}"))?.to_string(),
                };
                if metric.is_empty() || r.score.len() != units {
                    return None;
                }
                let scores: Vec<f64> = r.score.iter().map(|s| s.unwrap_or(f64::NAN)).collect();
                let mut order: Vec<i64> = (0..units as i64).collect();
                order.sort_by(|&a, &b| {
                    let (sa, sb) = (scores[a as usize], scores[b as usize]);
                    // NaN (no score) ranks last.
                    sa.is_nan()
                        .cmp(&sb.is_nan())
                        .then(sa.partial_cmp(&sb).unwrap_or(std::cmp::Ordering::Equal))
                        .then(a.cmp(&b))
                });
                Some(ConceptRanking {
                    concept,
                    metric,
                    scores,
                    units: order,
                })
            })
            .collect();
        let levels = match tables.remove(&layer.layer) {
            Some(table) => table,
            // A GAN Dissection folder: the layer's quantile sketch gives full levels.
            None => match gandissect_quantiles_path(dir, &layer.layer).filter(|p| p.is_file()) {
                Some(npz_path) => {
                    let table = read_gandissect_quantiles(&npz_path)?;
                    if units != 0 && table.levels.len() != units {
                        return Err(ProjectError::Format {
                            path: npz_path.display().to_string(),
                            what: QUANTILES_WHAT.into(),
                            detail: format!(
                                "{} units, but dissect.json lists {units} for layer `{}`",
                                table.levels.len(),
                                layer.layer
                            ),
                        });
                    }
                    table
                }
                // Otherwise each unit's one `level` from dissect.json.
                None => {
                    let rows: Vec<Vec<f32>> = layer
                        .units
                        .iter()
                        .map(|u| vec![u.level.unwrap_or(f32::NAN)])
                        .collect();
                    LevelTable {
                        quantiles: vec![fallback_quantile],
                        thresholds: rows.iter().map(|r| r[0]).collect(),
                        levels: rows,
                        threshold_quantile: fallback_quantile,
                        grid_quantiles: Vec::new(),
                        grid_levels: Vec::new(),
                        rank_error: f64::NAN,
                        threshold_rank_error: f64::NAN,
                        values: 0,
                    }
                }
            },
        };
        // A dissect.json made only for serving may list no units: then the levels (the
        // layer's quantile sketch, or levels.json) say how many there are.
        let units = if units == 0 {
            levels.levels.len()
        } else {
            units
        };
        if levels.levels.len() != units {
            return Err(ProjectError::Format {
                path: levels_path.display().to_string(),
                what: "levels file".into(),
                detail: format!(
                    "layer `{}` has {} level rows for {units} units",
                    layer.layer,
                    levels.levels.len()
                ),
            });
        }
        check_paint(&dir.join(DISSECT_FILE), &layer.layer, units, &layer.paint)?;
        layers.push(ProjectLayer {
            paint: layer.paint,
            unit_labels: layer
                .units
                .iter()
                .map(|u| u.iou_label.clone().unwrap_or_default())
                .collect(),
            unit_iou: layer.units.iter().map(|u| u.iou.unwrap_or(0.0)).collect(),
            layer: layer.layer,
            units,
            rankings,
            levels,
        });
    }
    Ok(Project {
        dir: dir.to_path_buf(),
        netname: raw.netname.unwrap_or_else(|| {
            dir.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        }),
        settings: raw.settings,
        layers,
    })
}

impl Project {
    pub fn layer(&self, name: &str) -> Result<&ProjectLayer, ProjectError> {
        self.layers
            .iter()
            .find(|l| l.layer == name)
            .ok_or_else(|| ProjectError::UnknownLayer {
                layer: name.to_string(),
                available: self
                    .layers
                    .iter()
                    .map(|l| l.layer.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The layer painted when none is named: `layer4` when it was dissected (GAN
    /// Dissection's painting layer for its church model), else the first layer. The
    /// server, `eval-edits` and `figure` all default to it.
    pub fn default_layer(&self) -> Result<&ProjectLayer, ProjectError> {
        self.layers
            .iter()
            .find(|l| l.layer == "layer4")
            .or(self.layers.first())
            .ok_or_else(|| ProjectError::UnknownLayer {
                layer: "(the default layer)".into(),
                available: "none: the dissection has no layers".into(),
            })
    }

    /// A string setting, e.g. `model` or `segmenter`.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key)?.as_str()
    }
}

impl ProjectLayer {
    /// Ranked concepts, in file order.
    pub fn concepts(&self) -> Vec<&str> {
        self.rankings
            .iter()
            .filter(|r| r.metric == metric::IOU)
            .map(|r| r.concept.as_str())
            .collect()
    }

    /// The concept's IoU ranking.
    pub fn ranking(&self, concept: &str) -> Result<&ConceptRanking, ProjectError> {
        self.rankings
            .iter()
            .find(|r| r.concept == concept && r.metric == metric::IOU)
            .ok_or_else(|| ProjectError::UnknownConcept {
                concept: concept.to_string(),
                layer: self.layer.clone(),
                available: self.concepts().join(", "),
            })
    }

    /// The concept's `k` best units, best first.
    pub fn top_units(&self, concept: &str, k: usize) -> Result<Vec<i64>, ProjectError> {
        Ok(self
            .ranking(concept)?
            .units
            .iter()
            .take(k)
            .copied()
            .collect())
    }

    /// The `k` best units for painting `concept` with `metric` (for example
    /// `causal-draw`), falling back to the IoU ranking when the dissection lacks it.
    pub fn top_units_by(
        &self,
        concept: &str,
        metric: &str,
        k: usize,
    ) -> Result<Vec<i64>, ProjectError> {
        match self
            .rankings
            .iter()
            .find(|r| r.concept == concept && r.metric == metric)
        {
            Some(ranking) => Ok(ranking.units.iter().take(k).copied().collect()),
            None => self.top_units(concept, k),
        }
    }

    /// The ranking a stroke of `mode` for `concept` takes its units from, as
    /// [`Self::stroke_edits`] describes: the learned weights (with `Optimized`) when at
    /// least one unit weighs [`MIN_WEIGHT`] or more, else the causal ranking for the mode
    /// (with `Causal` and up) when there is one, else the IoU ranking. The server serves
    /// its name with each concept, so no client keeps a copy of this rule.
    pub fn stroke_ranking(
        &self,
        concept: &str,
        mode: StrokeMode,
        choice: UnitChoice,
    ) -> Result<&ConceptRanking, ProjectError> {
        let (causal_metric, ace_metric) = match mode {
            StrokeMode::Draw => (metric::CAUSAL_DRAW, metric::LEARNED_DRAW),
            StrokeMode::Remove => (metric::CAUSAL_REMOVE, metric::LEARNED_REMOVE),
        };
        let find = |metric: &str| {
            self.rankings
                .iter()
                .find(|r| r.concept == concept && r.metric == metric)
        };
        // A learned edit without a unit heavy enough to paint is no edit at all.
        let learned = (choice == UnitChoice::Optimized)
            .then(|| find(ace_metric))
            .flatten()
            .filter(|r| {
                r.units
                    .first()
                    .is_some_and(|&u| -r.scores[u as usize] as f32 >= MIN_WEIGHT)
            });
        let causal = (choice != UnitChoice::Iou)
            .then(|| find(causal_metric))
            .flatten();
        match learned.or(causal) {
            Some(ranking) => Ok(ranking),
            None => self.ranking(concept),
        }
    }

    /// The unit edits (alpha and value per unit) a stroke of `mode` for `concept` makes:
    ///
    /// - [`UnitChoice::Optimized`], where the dissection has learned weights for the
    ///   concept and mode (`<concept>-ace-<mode>`, learned by `ganpaint dissect ace`): the units
    ///   of weight at least [`MIN_WEIGHT`], heaviest first, at most `k`,
    ///   each with `alpha` = its weight (when there is at least one);
    /// - else [`UnitChoice::Causal`] and up: the top `k` units of the causal ranking for
    ///   the mode, else of the IoU ranking, each with `alpha` = 1.
    ///
    /// Draw values are `strength ×` the unit's level at `quantile`; remove values are 0.
    pub fn stroke_edits(
        &self,
        concept: &str,
        mode: StrokeMode,
        k: usize,
        strength: f32,
        quantile: f64,
        choice: UnitChoice,
    ) -> Result<Vec<UnitEdit>, ProjectError> {
        let ranking = self.stroke_ranking(concept, mode, choice)?;
        let weighted: Vec<(i64, f32)> = if ranking.is_learned() {
            ranking
                .units
                .iter()
                .map(|&u| (u, -ranking.scores[u as usize] as f32))
                .take_while(|&(_, w)| w >= MIN_WEIGHT)
                .take(k)
                .collect()
        } else {
            ranking.units.iter().take(k).map(|&u| (u, 1.0)).collect()
        };
        let units: Vec<i64> = weighted.iter().map(|&(u, _)| u).collect();
        let levels = self.levels_for(&units, quantile)?;
        Ok(weighted
            .into_iter()
            .zip(levels)
            .map(|((unit, alpha), level)| UnitEdit {
                unit,
                alpha,
                value: match mode {
                    StrokeMode::Draw => strength * level,
                    StrokeMode::Remove => 0.0,
                },
            })
            .collect())
    }

    /// Each unit's level at `quantile` (see [`LevelTable::level`]).
    pub fn levels_for(&self, units: &[i64], quantile: f64) -> Result<Vec<f32>, ProjectError> {
        units
            .iter()
            .map(|&u| {
                usize::try_from(u)
                    .ok()
                    .and_then(|u| self.levels.level(u, quantile))
                    .ok_or_else(|| ProjectError::NoLevel {
                        layer: self.layer.clone(),
                        quantile,
                        available: format!("{:?} for {} units", self.levels.quantiles, self.units),
                    })
            })
            .collect()
    }
}

/// A tuned stroke must be one a request could ask for: 1..=units units, strength in
/// `[0, MAX_STRENGTH]`.
fn check_paint(
    path: &Path,
    layer: &str,
    units: usize,
    paint: &BTreeMap<String, ConceptPaint>,
) -> Result<(), ProjectError> {
    for (concept, modes) in paint {
        for (mode, tuned) in [("draw", modes.draw), ("remove", modes.remove)] {
            let Some(tuned) = tuned else { continue };
            let field = format!("layer `{layer}` paint.{concept}.{mode}");
            let bad = |detail: String| ProjectError::Format {
                path: path.display().to_string(),
                what: "dissect.json".into(),
                detail: format!("{field}: {detail}"),
            };
            if tuned.units == 0 || tuned.units > units {
                return Err(bad(format!("units {} is not in 1..={units}", tuned.units)));
            }
            if !tuned.strength.is_finite() || !(0.0..=MAX_STRENGTH).contains(&tuned.strength) {
                return Err(bad(format!(
                    "strength {} is not in [0, {MAX_STRENGTH}]",
                    tuned.strength
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_layer_is_layer4_when_dissected_else_the_first() {
        let mut project = Project {
            dir: PathBuf::from("p"),
            netname: "p".into(),
            settings: serde_json::Value::Null,
            layers: Vec::new(),
        };
        assert!(project.default_layer().is_err());
        let layer = |name: &str| ProjectLayer {
            layer: name.into(),
            units: 0,
            unit_labels: Vec::new(),
            unit_iou: Vec::new(),
            rankings: Vec::new(),
            paint: BTreeMap::new(),
            levels: LevelTable::at_099(&[]),
        };
        project.layers = vec![layer("layer1"), layer("layer7")];
        assert_eq!(project.default_layer().unwrap().layer, "layer1");
        project.layers.insert(1, layer("layer4"));
        assert_eq!(project.default_layer().unwrap().layer, "layer4");
    }
}
