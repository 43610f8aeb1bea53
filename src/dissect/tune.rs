//! Tuning a dissection's strokes (`ganpaint dissect tune`): for each concept and mode,
//! the number of units and the draw strength that paint it best.
//!
//! Each setting of a grid (unit counts × strengths) is measured with the causal check of
//! [`super::causal`] on samples of its own (by default disjoint from `eval-edits`'), on the
//! units strokes really take (learned weights, else causal, else IoU rankings). A draw is
//! scored by its gain, a remove by its cut. [`choose`] keeps the settings whose change far
//! from the brush was measured and stays within a budget, and of those whose score is
//! within a tolerance of the best, the cheapest (fewest units, then the lowest strength): a
//! larger edit that paints no better is not worth its side effects. The untuned setting
//! (20 units at strength 1) is in the grid, so when it is within the budget the kept one
//! scores at least as well, less the tolerance. A stroke stays untuned when no setting
//! paints it (every score at or below 0), when no setting's side effects could be measured
//! (no pixel far from the region: a 3×3-cell region on a 4×4 grid), and, for a remove,
//! when too few samples had the concept to remove.

use crate::project::StrokeDefault;

/// One measured setting of one concept and mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trial {
    /// Units asked for.
    pub asked: usize,
    /// Units the stroke edited (an optimized intervention may have fewer than asked).
    pub units: usize,
    pub strength: f32,
    /// Draw gain, or remove cut.
    pub score: f64,
    /// Share of far pixels whose class changed; `None` when there was no far pixel.
    pub far_change: Option<f64>,
    /// Samples it was measured on.
    pub samples: u64,
}

/// The trial to keep, or `None` when none with a measured far change within `max_far`
/// paints at all (scores above 0): a stroke no setting makes work is left untuned rather
/// than made stronger.
pub fn choose(trials: &[Trial], max_far: f64, tolerance: f64) -> Option<Trial> {
    let eligible: Vec<&Trial> = trials
        .iter()
        .filter(|t| t.units > 0 && t.score > 0.0 && t.far_change.is_some_and(|f| f <= max_far))
        .collect();
    let best = eligible
        .iter()
        .map(|t| t.score)
        .fold(f64::NEG_INFINITY, f64::max);
    eligible
        .into_iter()
        .filter(|t| t.score >= best - tolerance)
        .min_by(|a, b| {
            a.units.cmp(&b.units).then(
                a.strength
                    .partial_cmp(&b.strength)
                    .unwrap_or(std::cmp::Ordering::Equal),
            )
        })
        .copied()
}

impl From<Trial> for StrokeDefault {
    fn from(t: Trial) -> Self {
        StrokeDefault {
            units: t.units,
            strength: t.strength,
            score: Some((t.score * 1e4).round() / 1e4),
            far_change: t.far_change.map(|f| (f * 1e5).round() / 1e5),
            samples: Some(t.samples),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(units: usize, strength: f32, score: f64, far_change: f64) -> Trial {
        Trial {
            asked: units,
            units,
            strength,
            score,
            far_change: Some(far_change),
            samples: 100,
        }
    }

    #[test]
    fn the_cheapest_setting_near_the_best_within_the_far_budget_wins() {
        let trials = [
            trial(20, 1.0, 0.20, 0.010),
            trial(20, 2.0, 0.34, 0.012),
            trial(40, 1.0, 0.345, 0.013),
            trial(60, 3.0, 0.50, 0.030), // best, but changes too much far away
            trial(40, 2.0, 0.20, 0.011),
        ];
        // 0.34 is within 0.01 of the best eligible 0.345, and cheaper (20 units).
        assert_eq!(choose(&trials, 0.015, 0.01), Some(trials[1]));
        // With no tolerance the best eligible wins.
        assert_eq!(choose(&trials, 0.015, 0.0), Some(trials[2]));
        // A larger budget admits the far-reaching one.
        assert_eq!(choose(&trials, 0.05, 0.01), Some(trials[3]));
        // Among equal scores, fewer units then lower strength.
        let ties = [
            trial(40, 1.0, 0.3, 0.0),
            trial(20, 2.0, 0.3, 0.0),
            trial(20, 1.5, 0.3, 0.0),
        ];
        assert_eq!(choose(&ties, 0.1, 0.0), Some(ties[2]));
    }

    #[test]
    fn nothing_is_chosen_when_every_setting_breaks_the_budget_or_paints_nothing() {
        let trials = [
            trial(20, 1.0, 0.4, 0.03),
            trial(0, 1.0, 0.9, 0.0),
            trial(40, 1.0, f64::NAN, 0.0),
            trial(60, 1.0, 0.0, 0.0),
            trial(100, 2.0, -0.3, 0.0),
            Trial {
                far_change: None,
                ..trial(20, 1.0, 0.5, 0.0)
            },
        ];
        assert_eq!(choose(&trials, 0.02, 0.01), None);
        assert_eq!(choose(&[], 0.02, 0.01), None);
    }

    #[test]
    fn a_kept_trial_records_its_figures_rounded() {
        let kept = StrokeDefault::from(trial(40, 1.5, 0.123456, 0.0123456));
        assert_eq!(
            kept,
            StrokeDefault {
                units: 40,
                strength: 1.5,
                score: Some(0.1235),
                far_change: Some(0.01235),
                samples: Some(100),
            }
        );
    }
}
