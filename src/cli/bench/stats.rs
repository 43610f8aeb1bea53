//! Statistics of timed samples: the percentiles of one case, and the median of per-round
//! ratios that makes a comparison robust to a machine whose speed drifts.
//!
//! Two cases timed an hour apart on a shared machine can differ by a third for no reason
//! of their own. Timed in the same round, seconds apart, both see the same machine, so
//! their ratio is steady even when their absolute times are not. The bench therefore
//! takes one ratio per round (the median of our samples over the median of theirs) and
//! reports the median of those ratios, with the smallest and largest as the spread.

use serde::Serialize;

/// Rounds `x` to three decimals, as every figure in the report is written.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The median of `values` (the mean of the two middle ones for an even count), or `None`
/// for an empty sample.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The nearest-rank `q`-quantile of a sorted, non-empty sample.
fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50 and p95 of a sample of milliseconds, and its size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub samples: usize,
}

impl Latency {
    /// The sample's median and nearest-rank 95th percentile, rounded; `None` when empty.
    pub fn of(ms: &[f64]) -> Option<Self> {
        let p50 = median(ms)?;
        let mut sorted = ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Latency {
            p50_ms: round3(p50),
            p95_ms: round3(nearest_rank(&sorted, 0.95)),
            samples: ms.len(),
        })
    }
}

/// Every sample of one case, round by round (milliseconds).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoundSamples {
    pub rounds: Vec<Vec<f64>>,
}

impl RoundSamples {
    /// The median of each round's samples (rounds without samples are skipped).
    pub fn round_medians(&self) -> Vec<f64> {
        self.rounds.iter().filter_map(|r| median(r)).collect()
    }

    /// The latency over all rounds' samples pooled.
    pub fn latency(&self) -> Option<Latency> {
        let all: Vec<f64> = self.rounds.iter().flatten().copied().collect();
        Latency::of(&all)
    }
}

/// One ratio of two cases timed side by side: the median over rounds of each round's
/// ratio, the smallest and largest round, and every round's value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RatioStats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: usize,
    pub per_round: Vec<f64>,
}

impl RatioStats {
    /// `ours / theirs` per round, from each case's per-round times. `None` when there is
    /// no round, the two cases have different round counts, or a time is not positive
    /// (no ratio can be formed).
    pub fn of_rounds(ours: &[f64], theirs: &[f64]) -> Option<Self> {
        if ours.is_empty() || ours.len() != theirs.len() {
            return None;
        }
        let valid = |t: &f64| t.is_finite() && *t > 0.0;
        if !ours.iter().all(valid) || !theirs.iter().all(valid) {
            return None;
        }
        let per_round: Vec<f64> = ours.iter().zip(theirs).map(|(o, t)| o / t).collect();
        let min = per_round.iter().copied().fold(f64::INFINITY, f64::min);
        let max = per_round.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(RatioStats {
            median: round3(median(&per_round)?),
            min: round3(min),
            max: round3(max),
            rounds: per_round.len(),
            per_round: per_round.into_iter().map(round3).collect(),
        })
    }

    /// The ratio of two cases' samples, round by round.
    pub fn of(ours: &RoundSamples, theirs: &RoundSamples) -> Option<Self> {
        if ours.rounds.len() != theirs.rounds.len() {
            return None;
        }
        Self::of_rounds(&ours.round_medians(), &theirs.round_medians())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_count_is_the_middle_value() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
    }

    #[test]
    fn median_of_even_count_averages_the_two_middle_values() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn median_of_nothing_is_none() {
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn latency_takes_median_and_nearest_rank_p95() {
        // 1..=20 ms: the median is 10.5, the 95th percentile by nearest rank the 19th.
        let ms: Vec<f64> = (1..=20).map(f64::from).collect();
        let latency = Latency::of(&ms).unwrap();
        assert_eq!(latency.p50_ms, 10.5);
        assert_eq!(latency.p95_ms, 19.0);
        assert_eq!(latency.samples, 20);
    }

    #[test]
    fn latency_pools_every_round() {
        let samples = RoundSamples {
            rounds: vec![vec![1.0, 2.0], vec![3.0], vec![4.0, 5.0]],
        };
        assert_eq!(samples.latency().unwrap().p50_ms, 3.0);
        assert_eq!(samples.latency().unwrap().samples, 5);
        assert_eq!(samples.round_medians(), vec![1.5, 3.0, 4.5]);
    }

    #[test]
    fn ratio_is_the_median_of_per_round_ratios_not_the_ratio_of_medians() {
        // The machine slows down 2× in the last two rounds, for both cases alike: every
        // round's ratio is 0.5, although the pooled medians would say 20/20 = 1.
        let ours = [10.0, 10.0, 10.0, 20.0, 20.0];
        let theirs = [20.0, 20.0, 20.0, 40.0, 40.0];
        let stats = RatioStats::of_rounds(&ours, &theirs).unwrap();
        assert_eq!(stats.median, 0.5);
        assert_eq!(stats.min, 0.5);
        assert_eq!(stats.max, 0.5);
        assert_eq!(stats.rounds, 5);
    }

    #[test]
    fn ratio_spread_is_the_smallest_and_largest_round() {
        let stats = RatioStats::of_rounds(&[1.0, 3.0, 2.0, 9.0], &[4.0, 4.0, 4.0, 4.0]).unwrap();
        assert_eq!(stats.per_round, vec![0.25, 0.75, 0.5, 2.25]);
        assert_eq!(stats.median, 0.625);
        assert_eq!(stats.min, 0.25);
        assert_eq!(stats.max, 2.25);
    }

    #[test]
    fn ratio_of_mismatched_or_empty_rounds_is_none() {
        assert_eq!(RatioStats::of_rounds(&[], &[]), None);
        assert_eq!(RatioStats::of_rounds(&[1.0, 2.0], &[1.0]), None);
        assert_eq!(RatioStats::of_rounds(&[1.0], &[0.0]), None);
        assert_eq!(RatioStats::of_rounds(&[f64::NAN], &[1.0]), None);
    }

    #[test]
    fn ratio_of_samples_uses_each_rounds_median() {
        let ours = RoundSamples {
            rounds: vec![vec![1.0, 3.0, 2.0], vec![10.0, 30.0, 20.0]],
        };
        let theirs = RoundSamples {
            rounds: vec![vec![4.0], vec![40.0]],
        };
        let stats = RatioStats::of(&ours, &theirs).unwrap();
        assert_eq!(stats.per_round, vec![0.5, 0.5]);
    }

    #[test]
    fn ratio_stats_serialise_with_median_min_max_rounds() {
        let stats = RatioStats::of_rounds(&[1.0, 2.0, 3.0], &[2.0, 2.0, 2.0]).unwrap();
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "median": 1.0, "min": 0.5, "max": 1.5, "rounds": 3,
                "per_round": [0.5, 1.0, 1.5]
            })
        );
    }
}
