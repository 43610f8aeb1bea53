//! `ganpaint bench` end to end on the bundled demo model: every case runs, the PyTorch
//! reference computes the same pixels as our exact path, and the JSON carries the keys
//! the issue names. No timing is asserted (speed is measured by the command, not here).

use std::process::Command;

use serde_json::Value;

#[test]
fn bench_runs_every_case_and_writes_the_named_keys() {
    let dir = std::env::temp_dir().join(format!("ganpaint-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json_path = dir.join("bench.json");
    let output = Command::new(env!("CARGO_BIN_EXE_ganpaint"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "bench", "--device", "cpu", "--models", "demo", "--iters", "2",
        ])
        .args([
            "--batches",
            "1,2",
            "--concurrency",
            "1,4",
            "--http-seconds",
            "0.5",
        ])
        .arg("--json")
        .arg(&json_path)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("ours fast"), "{stdout}");
    let result: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    for key in [
        "fp32_vs_torch_fp32",
        "fast_vs_torch_fp32",
        "incremental_vs_fast",
    ] {
        let ratio = result["ratios"][key].as_f64();
        assert!(ratio.is_some_and(|r| r > 0.0), "ratios.{key}: {result}");
    }
    // Only the demo ran, so the ratios are the demo's, and they say so.
    assert_eq!(result["ratios_model"], "demo", "{result}");
    assert!(stdout.contains("ratios (demo, batch 1, p50)"), "{stdout}");
    let psnr = result["psnr_db"]["demo_fast"].as_f64().unwrap();
    assert!(psnr >= 40.0, "fast path PSNR {psnr} dB below 40");

    let demo = &result["models"]["demo"];
    // Same weights, same edit, same arithmetic: PyTorch's fp32 pixels equal ours.
    assert_eq!(demo["torch"]["fp32_max_pixel_diff_vs_ours"], 0, "{demo}");
    for case in [
        "exact_fp32",
        "fast",
        "fast_png",
        "incremental_2x2_centre",
        "incremental_2x2_any_place",
    ] {
        let p50 = demo["latency_ms"][case]["p50_ms"].as_f64().unwrap();
        let p95 = demo["latency_ms"][case]["p95_ms"].as_f64().unwrap();
        assert!(p50 > 0.0 && p95 >= p50, "{case}: {p50} / {p95}");
    }
    let fraction = demo["incremental_work_fraction"]["centre"]
        .as_f64()
        .unwrap();
    assert!(
        fraction > 0.0 && fraction < 1.0,
        "centre stroke work {fraction}"
    );
    assert!(demo["throughput_images_per_s_fast"]["2"].as_f64().unwrap() > 0.0);

    let cases = result["http"]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4, "two routes × two concurrencies");
    for case in cases {
        assert_eq!(case["errors"], 0, "{case}");
        assert!(case["requests"].as_u64().unwrap() > 0, "{case}");
    }
}
