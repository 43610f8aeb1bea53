//! `ganpaint bench` end to end on the bundled demo model: every case runs in alternating
//! rounds against the live PyTorch reference, the reference computes the same pixels as
//! our exact path, and the JSON carries the recorded keys plus each ratio's per-round
//! spread. No timing is asserted (speed is measured by the command, not here).

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
            "bench", "--device", "cpu", "--models", "demo", "--iters", "2", "--rounds", "3",
        ])
        .args([
            "--batches",
            "1,2",
            "--concurrency",
            "1,4",
            "--http-seconds",
            "0.5",
            "--upload-strokes",
            "3",
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
        "fast_vs_torch_low_precision",
        "fp32_vs_torch_fp32_tuned_malloc",
        "incremental_vs_fast",
        "incremental_centre_vs_fast",
    ] {
        let ratio = result["ratios"][key].as_f64();
        assert!(ratio.is_some_and(|r| r > 0.0), "ratios.{key}: {result}");
        // The ratio is the median of one ratio per round, and the spread comes with it.
        let spread = &result["ratio_spread"][key];
        assert_eq!(spread["median"].as_f64(), ratio, "{spread}");
        assert_eq!(spread["rounds"], 3, "{spread}");
        let per_round: Vec<f64> = spread["per_round"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_f64().unwrap())
            .collect();
        assert_eq!(per_round.len(), 3, "{spread}");
        let (min, max) = (
            spread["min"].as_f64().unwrap(),
            spread["max"].as_f64().unwrap(),
        );
        assert!(
            per_round.iter().all(|r| (min..=max).contains(r)),
            "{spread}"
        );
        assert!(min <= ratio.unwrap() && ratio.unwrap() <= max, "{spread}");
    }
    assert_eq!(result["rounds"], 3, "{result}");
    assert_eq!(result["models"]["demo"]["ratios"], result["ratio_spread"]);
    // Only the demo ran, so the ratios are the demo's, and they say so.
    assert_eq!(result["ratios_model"], "demo", "{result}");
    assert!(stdout.contains("ratios (demo, batch 1, p50)"), "{stdout}");
    assert!(stdout.contains("median of per-round ratios"), "{stdout}");
    let psnr = result["psnr_db"]["demo_fast"].as_f64().unwrap();
    assert!(psnr >= 40.0, "fast path PSNR {psnr} dB below 40");

    let demo = &result["models"]["demo"];
    // Same weights, same edit, same arithmetic: PyTorch's fp32 pixels equal ours.
    assert_eq!(demo["torch"]["fp32_max_pixel_diff_vs_ours"], 0, "{demo}");
    // Each reference case was timed in every round: 3 rounds of ⌈10 / 3⌉ runs.
    for case in [
        &demo["torch"]["fp32"],
        &demo["torch"]["bf16"],
        &demo["torch"]["tuned_malloc"]["fp32"],
    ] {
        assert_eq!(case["samples"], 12, "{case}");
    }
    for case in [
        "exact_fp32",
        "fast",
        "fast_png",
        "fast_from_z",
        "png_encode",
        "jpeg_encode",
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

    // One demo picture uploaded, then 3 rounds × 3 strokes painted on it and on a sample.
    let upload = &result["upload"];
    assert_eq!(upload["project"], "demo", "{upload}");
    assert!(upload["psnr_db"].as_f64().unwrap() > 20.0, "{upload}");
    assert!(
        upload["inversion"]["adapt_ms"].as_f64().unwrap() > 0.0,
        "{upload}"
    );
    for case in ["sample_paint", "upload_paint"] {
        assert_eq!(upload[case]["samples"], 9, "{upload}");
    }
    assert_eq!(upload["upload_over_sample"]["rounds"], 3, "{upload}");
    assert!(stdout.contains("on the upload"), "{stdout}");

    let cases = result["http"]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4, "two routes × two concurrencies");
    for case in cases {
        assert_eq!(case["errors"], 0, "{case}");
        assert!(case["requests"].as_u64().unwrap() > 0, "{case}");
    }
    // The routes alternated in the bench's 3 rounds at each concurrency, and are set
    // against each other round by round.
    assert_eq!(result["http"]["rounds"], 3, "{}", result["http"]);
    let route_ratios = result["http"]["generate_vs_paint"].as_array().unwrap();
    let concurrencies: Vec<u64> = route_ratios
        .iter()
        .map(|r| r["concurrency"].as_u64().unwrap())
        .collect();
    assert_eq!(concurrencies, [1, 4], "{route_ratios:?}");
    for r in route_ratios {
        let stats = &r["generate_vs_paint"];
        assert_eq!(stats["rounds"], 3, "{r}");
        assert!(stats["median"].as_f64().unwrap() > 0.0, "{r}");
    }
    // The served project is the benchmarked model: each route at one client is set
    // against its two passes.
    let against = result["http"]["against_passes"].as_array().unwrap();
    let routes: Vec<&str> = against
        .iter()
        .map(|a| a["route"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["/api/v1/paint", "/api/generate"], "{against:?}");
    for a in against {
        assert_eq!(a["model"], "demo", "{a}");
        for ratio in ["vs_fast", "vs_fast_from_z"] {
            assert!(a[ratio].as_f64().unwrap() > 0.0, "{a}");
        }
    }
    assert!(stdout.contains("over demo's fast pass"), "{stdout}");

    // One person painting: strokes on shown images, each image's first stroke left out,
    // set against the served model's incremental re-render and fast pass.
    let editing = &result["http"]["editing"];
    assert_eq!(editing["strokes_per_image"], 8, "{editing}");
    assert_eq!(editing["case"]["route"], "/api/generate", "{editing}");
    assert_eq!(editing["case"]["concurrency"], 1, "{editing}");
    assert_eq!(editing["case"]["errors"], 0, "{editing}");
    assert!(
        editing["case"]["requests"].as_u64().unwrap() > 0,
        "{editing}"
    );
    assert_eq!(
        editing["round_p50"].as_array().unwrap().len(),
        3,
        "{editing}"
    );
    for ratio in ["vs_incremental", "vs_fast"] {
        assert!(editing[ratio].as_f64().unwrap() > 0.0, "{editing}");
    }
    assert!(
        stdout.contains("editing: a stroke on a shown image"),
        "{stdout}"
    );
}
