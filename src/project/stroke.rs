//! How a painted stroke becomes units and values: a concept, a mode, how many units and
//! how strongly, resolved against one dissected layer ([`ProjectLayer::resolve_stroke`]).
//! The server paints every stroke of `/api/v1/paint` this way, and `ganpaint figure`
//! draws its strokes so; which units a concept paints with is
//! [`ProjectLayer::stroke_edits`]'s rule.

use serde::{Deserialize, Serialize};

use super::{ProjectLayer, UnitChoice};
use crate::edit::{StrokeMode, UnitEdit};

/// The default number of a concept's top units a stroke edits.
pub const DEFAULT_UNITS: usize = 20;
/// The quantile whose level a draw stroke of strength 1 writes.
pub const DRAW_QUANTILE: f64 = 0.99;
/// A stroke's strength lies in `[0, MAX_STRENGTH]`.
pub const MAX_STRENGTH: f32 = 10.0;

/// How many units and how strongly a stroke of one concept and mode paints when the
/// stroke leaves them out: [`DEFAULT_UNITS`] at strength 1, unless the dissection was
/// tuned (`ganpaint dissect tune`), which writes the setting that painted the concept
/// best on its own samples into the layer's `paint` entry of `dissect.json`:
/// `{"tree": {"draw": {"units": 40, "strength": 1.5, …}, "remove": {"units": 60, …}}}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrokeDefault {
    pub units: usize,
    #[serde(default = "unit_strength")]
    pub strength: f32,
    /// The draw gain or remove cut the tuning measured with it (for the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The share of far pixels it changed in the tuning (for the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub far_change: Option<f64>,
    /// The samples the tuning measured it on (for a remove: those with the concept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
}

fn unit_strength() -> f32 {
    1.0
}

/// A concept's tuned strokes, per mode (see [`StrokeDefault`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConceptPaint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draw: Option<StrokeDefault>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<StrokeDefault>,
}

impl ConceptPaint {
    pub fn get(&self, mode: StrokeMode) -> Option<StrokeDefault> {
        match mode {
            StrokeMode::Draw => self.draw,
            StrokeMode::Remove => self.remove,
        }
    }

    pub fn set(&mut self, mode: StrokeMode, value: StrokeDefault) {
        match mode {
            StrokeMode::Draw => self.draw = Some(value),
            StrokeMode::Remove => self.remove = Some(value),
        }
    }
}

/// A stroke resolved to units, before its mask: a draw sets unit `units[i]` to
/// `strength × levels[i]` (a remove to 0), blended with weight `alphas[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct StrokeUnits {
    /// Best first, as the concept's ranking takes them.
    pub units: Vec<i64>,
    /// Each unit's level at [`DRAW_QUANTILE`].
    pub levels: Vec<f32>,
    pub alphas: Vec<f32>,
    pub mode: StrokeMode,
    pub strength: f32,
}

impl StrokeUnits {
    /// The value and alpha the stroke sets each unit to.
    pub fn edits(&self) -> Vec<UnitEdit> {
        self.units
            .iter()
            .zip(&self.levels)
            .zip(&self.alphas)
            .map(|((&unit, &level), &alpha)| UnitEdit {
                unit,
                alpha,
                value: match self.mode {
                    StrokeMode::Draw => self.strength * level,
                    StrokeMode::Remove => 0.0,
                },
            })
            .collect()
    }
}

/// Why a stroke cannot be painted. Each message reads after the name of the stroke's
/// field at fault ([`StrokeError::field`]).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StrokeError {
    #[error("unknown concept `{concept}` at {layer}; known: {}", known.join(", "))]
    UnknownConcept {
        concept: String,
        layer: String,
        /// The layer's paintable (IoU-ranked) concepts.
        known: Vec<String>,
    },
    #[error("must be 1..={units}")]
    Units { units: usize },
    #[error("must be a number in [0, 10]")]
    Strength,
    /// The dissection has no finite level for a unit it ranks: the project is at fault,
    /// not the stroke.
    #[error("no 0.99 level for unit {unit} of {layer}")]
    NoLevel { unit: i64, layer: String },
}

impl StrokeError {
    /// The stroke's field at fault: `concept`, `units` or `strength`; `None` when the
    /// dissection is.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            StrokeError::UnknownConcept { .. } => Some("concept"),
            StrokeError::Units { .. } => Some("units"),
            StrokeError::Strength => Some("strength"),
            StrokeError::NoLevel { .. } => None,
        }
    }
}

impl ProjectLayer {
    /// The units and strength a stroke of `concept` in `mode` takes when it gives none:
    /// the tuned setting ([`StrokeDefault`]) where the dissection has one, else
    /// [`DEFAULT_UNITS`] (or all of a smaller layer's) at strength 1.
    pub fn stroke_default(&self, concept: &str, mode: StrokeMode) -> StrokeDefault {
        self.tuned_stroke(concept, mode).unwrap_or(StrokeDefault {
            units: DEFAULT_UNITS.min(self.units),
            strength: 1.0,
            score: None,
            far_change: None,
            samples: None,
        })
    }

    /// The tuned setting of `concept` in `mode`, when the dissection has one.
    pub fn tuned_stroke(&self, concept: &str, mode: StrokeMode) -> Option<StrokeDefault> {
        self.paint.get(concept).and_then(|p| p.get(mode))
    }

    /// A stroke of `mode` painting `concept` with its `units` best units at `strength`
    /// (each, when left out, as [`ProjectLayer::stroke_default`] says): the
    /// units and alphas of [`ProjectLayer::stroke_units`], and each unit's level at
    /// [`DRAW_QUANTILE`]. Paintable concepts are the IoU-ranked ones.
    pub fn resolve_stroke(
        &self,
        concept: &str,
        mode: StrokeMode,
        units: Option<usize>,
        strength: Option<f32>,
    ) -> Result<StrokeUnits, StrokeError> {
        let unknown_concept = || StrokeError::UnknownConcept {
            concept: concept.to_string(),
            layer: self.layer.clone(),
            known: self.concepts().into_iter().map(String::from).collect(),
        };
        if self.ranking(concept).is_err() {
            return Err(unknown_concept());
        }
        let tuned = self.stroke_default(concept, mode);
        let count = units.unwrap_or(tuned.units);
        if count == 0 || count > self.units {
            return Err(StrokeError::Units { units: self.units });
        }
        let strength = strength.unwrap_or(tuned.strength);
        if !strength.is_finite() || !(0.0..=MAX_STRENGTH).contains(&strength) {
            return Err(StrokeError::Strength);
        }
        let (units, alphas): (Vec<i64>, Vec<f32>) = self
            .stroke_units(concept, mode, count)
            .ok_or_else(unknown_concept)?
            .into_iter()
            .map(|(unit, alpha)| (unit as i64, alpha))
            .unzip();
        let levels = units
            .iter()
            .map(|&unit| {
                self.level(unit as usize, DRAW_QUANTILE)
                    .ok_or_else(|| StrokeError::NoLevel {
                        unit,
                        layer: self.layer.clone(),
                    })
            })
            .collect::<Result<Vec<f32>, StrokeError>>()?;
        Ok(StrokeUnits {
            units,
            levels,
            alphas,
            mode,
            strength,
        })
    }

    /// The units (at most `k`, best first) and their alphas that a stroke of `mode`
    /// paints for `concept`: the learned weights of an optimized intervention when the
    /// dissection has one, else the causal ranking's top units for that mode, else the
    /// IoU ranking's (see [`ProjectLayer::stroke_edits`]). `None` when the concept is not
    /// ranked by IoU here, or its units have no level.
    pub fn stroke_units(
        &self,
        concept: &str,
        mode: StrokeMode,
        k: usize,
    ) -> Option<Vec<(usize, f32)>> {
        // Paintable concepts are the IoU-ranked ones.
        self.ranking(concept).ok()?;
        let edits = self
            .stroke_edits(concept, mode, k, 1.0, DRAW_QUANTILE, UnitChoice::Optimized)
            .ok()?;
        Some(edits.iter().map(|e| (e.unit as usize, e.alpha)).collect())
    }

    /// A concept's units, best first, with their IoU; `None` when it is not ranked here.
    pub fn concept_units(&self, concept: &str) -> Option<Vec<(usize, f64)>> {
        let ranking = self.ranking(concept).ok()?;
        Some(
            ranking
                .units
                .iter()
                .map(|&u| (u as usize, -ranking.scores[u as usize]))
                .collect(),
        )
    }

    /// The level of `unit` at `quantile` ([`DRAW_QUANTILE`] is painting's), when finite.
    pub fn level(&self, unit: usize, quantile: f64) -> Option<f32> {
        self.levels.level(unit, quantile).filter(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::{ConceptRanking, LevelTable};

    /// Three units at levels 1, 2, 3 (0.99); `tree` ranks them 2, 0, 1 by IoU, and its
    /// learned draw weights are 0.5 for unit 1 and 0.01 (too light) for unit 0.
    fn layer() -> ProjectLayer {
        let ranking = |metric: &str, scores: Vec<f64>, units: Vec<i64>| ConceptRanking {
            concept: "tree".into(),
            metric: metric.into(),
            scores,
            units,
        };
        ProjectLayer {
            layer: "layer4".into(),
            units: 3,
            unit_labels: vec!["tree".into(); 3],
            unit_iou: vec![0.2, 0.1, 0.3],
            rankings: vec![
                ranking("iou", vec![-0.2, -0.1, -0.3], vec![2, 0, 1]),
                ranking("ace-draw", vec![-0.01, -0.5, 0.0], vec![1, 0, 2]),
            ],
            paint: Default::default(),
            levels: LevelTable::at_099(&[1.0, 2.0, 3.0]),
        }
    }

    #[test]
    fn a_draw_takes_the_learned_units_and_a_remove_the_ranked_ones() {
        let layer = layer();
        let draw = layer
            .resolve_stroke("tree", StrokeMode::Draw, None, Some(2.0))
            .unwrap();
        assert_eq!(
            (draw.units.clone(), draw.levels.clone(), draw.alphas.clone()),
            (vec![1], vec![2.0], vec![0.5])
        );
        assert_eq!(
            draw.edits(),
            vec![UnitEdit {
                unit: 1,
                alpha: 0.5,
                value: 4.0
            }]
        );
        let remove = layer
            .resolve_stroke("tree", StrokeMode::Remove, Some(2), None)
            .unwrap();
        assert_eq!(remove.units, vec![2, 0]);
        assert_eq!(remove.levels, vec![3.0, 1.0]);
        assert!(remove
            .edits()
            .iter()
            .all(|e| e.value == 0.0 && e.alpha == 1.0));
    }

    #[test]
    fn bad_strokes_name_the_field_at_fault() {
        let layer = layer();
        let error = |concept, units, strength| {
            let e = layer
                .resolve_stroke(concept, StrokeMode::Draw, units, strength)
                .unwrap_err();
            (e.field(), e.to_string())
        };
        assert_eq!(
            error("dome", None, None),
            (
                Some("concept"),
                "unknown concept `dome` at layer4; known: tree".into()
            )
        );
        assert_eq!(
            error("tree", Some(0), None),
            (Some("units"), "must be 1..=3".into())
        );
        assert_eq!(error("tree", Some(4), None).0, Some("units"));
        for strength in [-0.5, 10.5, f32::NAN] {
            assert_eq!(
                error("tree", None, Some(strength)),
                (Some("strength"), "must be a number in [0, 10]".into())
            );
        }
    }

    #[test]
    fn a_stroke_that_gives_no_count_or_strength_takes_the_tuned_ones() {
        let mut layer = layer();
        // Untuned: every unit of this 3-unit layer (fewer than DEFAULT_UNITS), strength 1.
        let plain = layer
            .resolve_stroke("tree", StrokeMode::Remove, None, None)
            .unwrap();
        assert_eq!((plain.units.len(), plain.strength), (3, 1.0));
        let tuned = |units, strength| StrokeDefault {
            units,
            strength,
            score: Some(0.4),
            far_change: Some(0.01),
            samples: Some(100),
        };
        layer.paint.insert(
            "tree".into(),
            ConceptPaint {
                draw: Some(tuned(1, 2.5)),
                remove: Some(tuned(2, 1.0)),
            },
        );
        let remove = layer
            .resolve_stroke("tree", StrokeMode::Remove, None, None)
            .unwrap();
        assert_eq!(remove.units, vec![2, 0]);
        let draw = layer
            .resolve_stroke("tree", StrokeMode::Draw, None, None)
            .unwrap();
        assert_eq!((draw.units.clone(), draw.strength), (vec![1], 2.5));
        assert_eq!(draw.edits()[0].value, 2.5 * 2.0);
        // What a stroke gives wins over the tuned setting.
        let given = layer
            .resolve_stroke("tree", StrokeMode::Draw, None, Some(1.0))
            .unwrap();
        assert_eq!(given.strength, 1.0);
        let given = layer
            .resolve_stroke("tree", StrokeMode::Remove, Some(3), None)
            .unwrap();
        assert_eq!(given.units.len(), 3);
    }

    #[test]
    fn a_unit_without_a_finite_level_is_the_projects_fault() {
        let mut layer = layer();
        layer.levels.levels[1][0] = f32::NAN;
        let e = layer
            .resolve_stroke("tree", StrokeMode::Draw, None, None)
            .unwrap_err();
        assert_eq!(e.field(), None);
        assert_eq!(e.to_string(), "no 0.99 level for unit 1 of layer4");
    }
}
