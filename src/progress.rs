//! Progress for long jobs, shared by the command line and the library rooms that run
//! them (training, evaluation, dissection), so that no room needs the command line.

/// A progress bar on stderr for long CLI jobs. When stderr is not a terminal (a log file,
/// a CI job, a Kubernetes pod), the bar cannot draw, so a plain progress line is logged
/// instead every [`PLAIN_PROGRESS_EVERY`] while the job runs.
pub fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    progress_bar_from(len, 0, what)
}

/// [`progress_bar`] for a job resumed at `start` (a training run continued from its
/// checkpoint): the bar starts there, and the time to go follows the rate since then.
pub fn progress_bar_from(len: u64, start: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_position(start.min(len));
    bar.reset_eta();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        log_plain_progress(bar.downgrade(), start.min(len), what.to_string());
    }
    bar
}

/// How often a bar that cannot draw logs a progress line.
pub const PLAIN_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// The time left at the average rate so far (indicatif's own estimate follows the
/// latest steps, which swings wildly on a busy machine).
/// `start` is where the job stood when the clock started.
fn time_to_go(start: u64, pos: u64, len: u64, elapsed: f64) -> String {
    let done = pos.saturating_sub(start);
    if done == 0 || elapsed <= 0.0 {
        return "time to go not known yet".to_string();
    }
    let left = elapsed / done as f64 * len.saturating_sub(pos) as f64;
    format!("about {left:.0} s to go")
}

/// Logs `what: pos/len (p%), elapsed, eta` for the bar until it finishes or is dropped.
fn log_plain_progress(bar: indicatif::WeakProgressBar, start: u64, what: String) {
    std::thread::spawn(move || loop {
        std::thread::sleep(PLAIN_PROGRESS_EVERY);
        let Some(bar) = bar.upgrade() else { return };
        if bar.is_finished() {
            return;
        }
        let (pos, len) = (bar.position(), bar.length().unwrap_or(0));
        let elapsed = bar.elapsed().as_secs_f64();
        tracing::info!(
            "{what}: {pos}/{len} ({:.0}%), {elapsed:.0} s so far, {}",
            100.0 * pos as f64 / len.max(1) as f64,
            time_to_go(start, pos, len, elapsed)
        );
    });
}

#[cfg(test)]
mod tests {
    use super::time_to_go;

    #[test]
    fn time_to_go_follows_the_average_rate() {
        assert_eq!(time_to_go(0, 0, 100, 30.0), "time to go not known yet");
        assert_eq!(time_to_go(0, 10, 100, 30.0), "about 270 s to go");
        assert_eq!(time_to_go(0, 100, 100, 30.0), "about 0 s to go");
        // A position past the length (a bar that grew) never goes negative.
        assert_eq!(time_to_go(0, 120, 100, 30.0), "about 0 s to go");
    }

    #[test]
    fn a_resumed_job_is_timed_from_where_it_resumed() {
        // Resumed at 5800 of 20000: 70 steps in 390 s leave 14130 steps at that rate.
        assert_eq!(time_to_go(5800, 5870, 20000, 390.0), "about 78724 s to go");
        assert_eq!(
            time_to_go(5800, 5800, 20000, 390.0),
            "time to go not known yet"
        );
    }
}
