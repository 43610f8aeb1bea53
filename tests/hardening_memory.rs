//! Memory bounds of issue 13, measured on this test process's own peak RSS (VmHWM). Kept
//! in a binary of its own with one test, so that no other test shares the process while
//! the peak is measured.

mod common;

use common::http::{mask_bomb, post, state_with};
use serde_json::{json, Value};

/// The process's resident set: (current, peak) in MiB.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap()
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Item 1: sixteen 4096² mask bombs in one paint request (about 45 KB of body) decode
/// within +100 MB of peak RSS (the whole masks used to take +2.1 GB).
#[tokio::test(flavor = "multi_thread")]
async fn sixteen_mask_bombs_stay_within_100_mb() {
    let state = state_with(|c| c.max_mask_pixels = u64::MAX);
    let bomb = mask_bomb();
    let strokes: Vec<Value> = (0..16)
        .map(|_| json!({ "concept": "tree", "mode": "draw", "mask": bomb, "units": 4 }))
        .collect();
    let body = json!({ "project": "tiny", "seed": 3, "strokes": strokes });
    // Warm the path once with a small mask, so allocations that stay are not counted.
    let small = json!({ "project": "tiny", "seed": 3, "strokes": [{ "concept": "tree", "mode": "draw", "units": 4, "mask": ganpaint::edit::mask::encode_png_mask(8, 8, |_, _| true) }] });
    let (status, _, _) = post(state.clone(), "/api/v1/paint", &small, false).await;
    assert_eq!(status, 200);
    let (_, peak_before) = rss_mib();
    let started = std::time::Instant::now();
    let (status, _, _) = post(state.clone(), "/api/v1/paint", &body, false).await;
    let seconds = started.elapsed().as_secs_f64();
    let (_, peak_after) = rss_mib();
    assert_eq!(status, 200);
    eprintln!(
        "16 mask bombs ({} KB body): {seconds:.2} s, peak RSS +{:.1} MiB",
        body.to_string().len() / 1024,
        peak_after - peak_before
    );
    assert!(
        peak_after - peak_before < 100.0,
        "peak RSS grew by {:.0} MiB",
        peak_after - peak_before
    );
}
