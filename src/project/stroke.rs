//! Which units a stroke paints: a concept's units and alphas for a mode, and the levels
//! a draw writes. Which units a concept paints with is [`ProjectLayer::stroke_edits`]'s
//! rule.

use super::{ProjectLayer, UnitChoice};
use crate::edit::StrokeMode;

/// The quantile whose level a draw stroke of strength 1 writes.
pub const DRAW_QUANTILE: f64 = 0.99;

impl ProjectLayer {
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
