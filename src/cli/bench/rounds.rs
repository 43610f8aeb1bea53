//! Timing compared cases in alternating rounds.
//!
//! Every case is warmed up once, then each round times every case in turn for a few
//! repetitions. Odd rounds run the cases in reverse order (A B C, C B A, A B C, …), so a
//! case that always ran first, right after the previous round's last case, or while the
//! machine warmed up, gains no steady edge. A ratio is then formed per round (see
//! [`super::stats::RatioStats`]).

use std::time::Instant;

use super::stats::RoundSamples;

/// Untimed repetitions of every case before the first round.
pub const WARM_UP_REPS: usize = 3;

/// A case that can be timed on request.
pub trait Timed {
    /// Runs the case `reps` times; returns each run's milliseconds.
    fn time(&mut self, reps: usize) -> anyhow::Result<Vec<f64>>;
}

/// One of our cases: a closure timed call by call on this side.
pub struct Ours<F>(pub F);

impl<F: FnMut() -> anyhow::Result<()>> Timed for Ours<F> {
    fn time(&mut self, reps: usize) -> anyhow::Result<Vec<f64>> {
        let mut ms = Vec::with_capacity(reps);
        for _ in 0..reps {
            let started = Instant::now();
            (self.0)()?;
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(ms)
    }
}

/// A case in the rounds: what it is, how many timed runs per round, and the runner.
pub struct RoundCase<'a, Id> {
    pub id: Id,
    pub reps: usize,
    pub timed: Box<dyn Timed + 'a>,
}

/// Timed runs per round, so that `rounds` rounds give at least `iters` runs in all.
pub fn reps_per_round(iters: usize, rounds: usize) -> usize {
    iters.div_ceil(rounds.max(1)).max(1)
}

/// Warms every case up, then times `rounds` rounds (reversing the order in odd ones).
/// `after_round` is called after each round (a progress bar). Returns each case's
/// samples, in the order of `cases`.
pub fn run_rounds<Id: Copy>(
    cases: &mut [RoundCase<'_, Id>],
    rounds: usize,
    mut after_round: impl FnMut(),
) -> anyhow::Result<Vec<(Id, RoundSamples)>> {
    for case in cases.iter_mut() {
        case.timed.time(WARM_UP_REPS)?;
    }
    let mut samples = vec![RoundSamples::default(); cases.len()];
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..cases.len()).collect()
        } else {
            (0..cases.len()).rev().collect()
        };
        for index in order {
            let case = &mut cases[index];
            samples[index].rounds.push(case.timed.time(case.reps)?);
        }
        after_round();
    }
    Ok(cases.iter().map(|c| c.id).zip(samples).collect())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// Records the order of calls and answers fixed times.
    struct Recorder {
        name: &'static str,
        log: Rc<RefCell<Vec<(&'static str, usize)>>>,
        ms: f64,
    }

    impl Timed for Recorder {
        fn time(&mut self, reps: usize) -> anyhow::Result<Vec<f64>> {
            self.log.borrow_mut().push((self.name, reps));
            Ok(vec![self.ms; reps])
        }
    }

    fn case<'a>(
        name: &'static str,
        reps: usize,
        log: &Rc<RefCell<Vec<(&'static str, usize)>>>,
    ) -> RoundCase<'a, &'static str> {
        RoundCase {
            id: name,
            reps,
            timed: Box::new(Recorder {
                name,
                log: log.clone(),
                ms: reps as f64,
            }),
        }
    }

    #[test]
    fn every_case_warms_up_then_rounds_alternate_their_order() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut cases = vec![case("a", 2, &log), case("b", 5, &log)];
        let mut rounds_done = 0;
        let samples = run_rounds(&mut cases, 3, || rounds_done += 1).unwrap();
        assert_eq!(
            *log.borrow(),
            vec![
                ("a", WARM_UP_REPS),
                ("b", WARM_UP_REPS),
                ("a", 2),
                ("b", 5),
                ("b", 5),
                ("a", 2),
                ("a", 2),
                ("b", 5),
            ]
        );
        assert_eq!(rounds_done, 3);
        assert_eq!(samples[0].0, "a");
        assert_eq!(samples[0].1.rounds, vec![vec![2.0; 2]; 3]);
        assert_eq!(samples[1].1.rounds, vec![vec![5.0; 5]; 3]);
    }

    #[test]
    fn a_failing_case_stops_the_rounds() {
        struct Failing;
        impl Timed for Failing {
            fn time(&mut self, _: usize) -> anyhow::Result<Vec<f64>> {
                anyhow::bail!("the reference died")
            }
        }
        let mut cases = vec![RoundCase {
            id: 0,
            reps: 1,
            timed: Box::new(Failing),
        }];
        let error = run_rounds(&mut cases, 2, || {}).unwrap_err();
        assert!(error.to_string().contains("the reference died"));
    }

    #[test]
    fn our_cases_are_timed_once_per_call() {
        let mut calls = 0;
        let ms = Ours(|| {
            calls += 1;
            Ok(())
        })
        .time(4)
        .unwrap();
        assert_eq!(ms.len(), 4);
        assert!(ms.iter().all(|t| *t >= 0.0));
        assert_eq!(calls, 4);
    }

    #[test]
    fn reps_per_round_covers_the_requested_iterations() {
        assert_eq!(reps_per_round(20, 5), 4);
        assert_eq!(reps_per_round(21, 5), 5);
        assert_eq!(reps_per_round(2, 5), 1);
        assert_eq!(reps_per_round(3, 0), 3);
    }
}
