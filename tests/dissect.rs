//! End-to-end: `ganpaint dissect` (single and sharded two-round runs), `dissect merge` and
//! `eval-edits`, on a tiny random generator (16², layer4 = 16×8×8) and an untrained demo
//! segmenter, both written to a temporary folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use ganpaint::model::{latent, ProgGan, ProgGanConfig};
use ganpaint::segment::demo::DemoSegmenter;
use ganpaint::segment::Segmenter;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

struct Fixture {
    dir: PathBuf,
    model: PathBuf,
    segmenter: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ganpaint-dissect-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        tch::manual_seed(11);
        let model = dir.join("generator.safetensors");
        tiny_model().save_safetensors(&model).unwrap();
        let segmenter = dir.join("segmenter.safetensors");
        DemoSegmenter::new(Device::Cpu).save(&segmenter).unwrap();
        Fixture {
            dir,
            model,
            segmenter,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The flags every run of one dissection shares.
    fn common(&self, samples: u64) -> Vec<String> {
        [
            "--model",
            &self.model.display().to_string(),
            "--segmenter",
            &self.segmenter.display().to_string(),
            "--samples",
            &samples.to_string(),
            "--batch",
            "2",
            "--sketch-capacity",
            "64",
            "--device",
            "cpu",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tiny_model() -> ProgGan {
    ProgGan::new(
        ProgGanConfig {
            z_dim: 16,
            channels: vec![32, 16, 8],
        },
        Device::Cpu,
    )
}

/// Runs the binary; returns stdout, failing the test with stderr on error.
fn ganpaint(args: &[String]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ganpaint"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ganpaint {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn args(parts: &[&str], common: &[String]) -> Vec<String> {
    parts
        .iter()
        .map(|s| s.to_string())
        .chain(common.iter().cloned())
        .collect()
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The part of stats.json that must not depend on sharding (not timing).
fn counts_and_top(stats: &Value) -> Vec<(Value, Value)> {
    stats["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["counts"].clone(), l["top"].clone()))
        .collect()
}

#[test]
fn sharded_two_round_merge_equals_a_single_run_with_the_same_thresholds() {
    let fx = Fixture::new("shards");
    let common = fx.common(12);
    // Round 1: sketches per shard, then merged into thresholds.
    for i in 0..3 {
        let out = fx.path(&format!("r1-{i}"));
        ganpaint(&args(
            &["dissect", "--shard", &format!("{i}/3"), "--out", &out],
            &common,
        ));
        assert!(Path::new(&out).join("layer4/sketch.bin").exists());
    }
    let thresholds = fx.path("thresholds");
    // Argument order does not matter: merges go in shard order.
    ganpaint(&args(
        &[
            "dissect",
            "merge",
            &fx.path("r1-2"),
            &fx.path("r1-0"),
            &fx.path("r1-1"),
            "--out",
            &thresholds,
        ],
        &[],
    ));
    assert!(Path::new(&thresholds).join("levels.json").exists());
    // Round 2: counts per shard against the merged thresholds, then the final merge.
    for i in 0..3 {
        let out = fx.path(&format!("r2-{i}"));
        ganpaint(&args(
            &[
                "dissect",
                "--shard",
                &format!("{i}/3"),
                "--thresholds",
                &thresholds,
                "--out",
                &out,
            ],
            &common,
        ));
        assert!(
            !Path::new(&out).join("dissect.json").exists(),
            "a shard is not final"
        );
    }
    let merged = fx.path("merged");
    ganpaint(&args(
        &[
            "dissect",
            "merge",
            &fx.path("r2-0"),
            &fx.path("r2-1"),
            &fx.path("r2-2"),
            "--out",
            &merged,
            "--device",
            "cpu",
        ],
        &[],
    ));
    // A single run with the same thresholds.
    let single = fx.path("single");
    // (Its causal rankings are checked below, on the merged folder.)
    let printed = ganpaint(&args(
        &[
            "dissect",
            "--thresholds",
            &thresholds,
            "--out",
            &single,
            "--causal-samples",
            "0",
        ],
        &common,
    ));
    assert!(printed.contains("ms per sample"), "{printed}");

    let (m, s) = (Path::new(&merged), Path::new(&single));
    let (m_stats, s_stats) = (json(&m.join("stats.json")), json(&s.join("stats.json")));
    assert_eq!(counts_and_top(&m_stats), counts_and_top(&s_stats));
    let counts = &m_stats["layers"][0]["counts"];
    assert_eq!(counts["samples"], 12);
    assert_eq!(counts["pixels"], 12 * 16 * 16);
    let labeled: u64 = counts["labeled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(labeled, 12 * 16 * 16);
    assert_eq!(json(&m.join("levels.json")), json(&s.join("levels.json")));
    let (m_dissect, s_dissect) = (json(&m.join("dissect.json")), json(&s.join("dissect.json")));
    assert_eq!(m_dissect["layers"], s_dissect["layers"]);
    assert_eq!(m_dissect["netname"], "merged");
    assert_eq!(m_dissect["settings"]["samples"], 12);
    let layer = &m_dissect["layers"][0];
    assert_eq!(layer["layer"], "layer4");
    assert_eq!(layer["units"].as_array().unwrap().len(), 16);
    let rankings = layer["rankings"].as_array().unwrap();
    assert_eq!(
        rankings.len(),
        DemoSegmenter::new(Device::Cpu).labels().len()
    );
    assert!(rankings
        .iter()
        .all(|r| r["name"].as_str().unwrap().ends_with("-iou") && r["metric"] == "iou"));

    // Every unit has its image, and the report links them.
    for unit in 0..16 {
        assert!(
            m.join(format!("layer4/s-image/{unit}-top.jpg")).exists(),
            "unit {unit}"
        );
    }
    let html = std::fs::read_to_string(m.join("dissect.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("layer4/s-image/"));

    // After a sharded run, `dissect causal` adds a draw and a remove ranking per concept,
    // one score per unit, and keeps the IoU rankings.
    let printed = ganpaint(&[
        "dissect".into(),
        "causal".into(),
        merged.clone(),
        "--causal-samples".into(),
        "2".into(),
        "--device".into(),
        "cpu".into(),
    ]);
    assert!(printed.contains("best draw"), "{printed}");
    let causal = json(&m.join("dissect.json"));
    let rankings = causal["layers"][0]["rankings"].as_array().unwrap();
    let concepts = DemoSegmenter::new(Device::Cpu).labels().len();
    let count = |metric: &str| rankings.iter().filter(|r| r["metric"] == metric).count();
    assert_eq!(count("iou"), concepts);
    // Rankings without signal (no unit with a positive effect) are left out.
    assert!(count("causal-draw") <= concepts && count("causal-remove") <= concepts);
    assert!(
        count("causal-draw") + count("causal-remove") > 0,
        "no causal ranking at all: {printed}"
    );
    assert!(rankings
        .iter()
        .all(|r| r["score"].as_array().unwrap().len() == 16));
    assert_eq!(
        causal["layers"][0]["units"],
        m_dissect["layers"][0]["units"]
    );
}

#[test]
fn thresholds_are_within_the_reported_bound_of_exact_quantiles() {
    let fx = Fixture::new("bound");
    let out = fx.path("single");
    // Rendered exactly, so that the activations below are the ones the sketch saw.
    ganpaint(&args(
        &[
            "dissect",
            "--out",
            &out,
            "--no-images",
            "--render-precision",
            "exact",
        ],
        &fx.common(12),
    ));
    let levels = json(&Path::new(&out).join("levels.json"));
    let table = &levels["layer4"];
    let n = table["values"].as_u64().unwrap();
    assert_eq!(n, 12 * 64);
    let bound = (table["threshold_rank_error"].as_f64().unwrap() * n as f64).ceil() as u64;
    // The exact activations of ids 0..12, as the CLI computed them (same batches of 2).
    let model = ProgGan::load(&fx.model, Device::Cpu).unwrap();
    let _guard = tch::no_grad_guard();
    let batches: Vec<Tensor> = (0..6u64)
        .map(|b| {
            let z = latent::z_for_ids(&[2 * b, 2 * b + 1], 16);
            let z = Tensor::from_slice(&z).view([2, 16]);
            model.features(&z, "layer4").unwrap()
        })
        .collect();
    let all = Tensor::cat(&batches, 0)
        .transpose(0, 1)
        .reshape([16, -1])
        .to_kind(Kind::Float);
    let target = (0.99 * n as f64).ceil() as u64;
    for unit in 0..16 {
        let values = Vec::<f32>::try_from(all.get(unit)).unwrap();
        let t = table["thresholds"][unit as usize].as_f64().unwrap() as f32;
        let below = values.iter().filter(|&&v| v < t).count() as u64;
        let at_most = values.iter().filter(|&&v| v <= t).count() as u64;
        assert!(
            below < target + bound && at_most + bound >= target,
            "unit {unit}: t = {t}, true ranks [{below}, {at_most}], target {target}, bound {bound}"
        );
    }
}

#[test]
fn eval_edits_prints_one_json_line_with_the_figures_per_concept() {
    let fx = Fixture::new("edits");
    let project = fx.path("project");
    ganpaint(&args(
        &["dissect", "--out", &project, "--no-images"],
        &fx.common(8),
    ));
    // Four samples of sky and tree, three units a stroke, and `extra`.
    let eval = |extra: &[&str]| {
        let base = [
            "eval-edits",
            "--project",
            &project,
            "--samples",
            "4",
            "--units",
            "3",
            "--batch",
            "2",
            "--concepts",
            "sky,tree",
            "--device",
            "cpu",
        ];
        ganpaint(&args(
            &base,
            &extra.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ))
    };
    let printed = eval(&[]);
    let last = printed.lines().last().unwrap();
    let report: Value = serde_json::from_str(last).unwrap();
    let concepts = report["concepts"].as_object().unwrap();
    assert_eq!(concepts.keys().collect::<Vec<_>>(), vec!["sky", "tree"]);
    for (concept, figures) in concepts {
        for key in ["draw_gain", "remove_cut", "far_change", "samples"] {
            assert!(figures.get(key).is_some(), "{concept} lacks {key}: {last}");
        }
        assert_eq!(figures["samples"], 4);
        // What the strokes painted with: `--units 3`, and strength 1 (untuned).
        assert!(figures["draw_units"].as_u64().unwrap() <= 3, "{last}");
        assert!(figures["remove_units"].as_u64().unwrap() <= 3, "{last}");
        assert_eq!(figures["strength"], 1.0);
        let far = figures["far_change"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&far));
    }
    assert!(
        printed.lines().next().unwrap().contains("concept"),
        "a table comes first"
    );
    assert_eq!(report["regions"], "random");

    // Draws where each concept fits: at most one per sample (none where the concept
    // already covers half of every region); removes as before, on the random regions.
    let printed = eval(&["--regions", "context", "--context-samples", "4"]);
    let context: Value = serde_json::from_str(printed.lines().last().unwrap()).unwrap();
    // No images to learn the surroundings from is refused, naming the flag.
    let refused = Command::new(env!("CARGO_BIN_EXE_ganpaint"))
        .args(["eval-edits", "--project", &project, "--regions", "context"])
        .args(["--context-samples", "0", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--context-samples"), "{stderr}");
    assert_eq!(context["regions"], "context");
    for concept in ["sky", "tree"] {
        let (c, r) = (&context["concepts"][concept], &report["concepts"][concept]);
        assert!(c["samples"].as_u64().unwrap() <= 4, "{printed}");
        assert_eq!(c["remove_samples"], r["remove_samples"], "{concept}");
        assert_eq!(c["remove_cut"], r["remove_cut"], "{concept}");
    }

    // The CLI finds the project's generator as the server does: once the recorded file is
    // gone, it refuses (naming project.json) instead of scoring another model…
    let moved = fx.dir.join("project/weights.safetensors");
    std::fs::rename(&fx.model, &moved).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_ganpaint"))
        .args(sky_args(&project))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("project.json"), "{stderr}");
    // …and project.json names the one to use, relative to the folder.
    std::fs::write(
        fx.dir.join("project/project.json"),
        r#"{"model": "weights.safetensors"}"#,
    )
    .unwrap();
    eval_sky(&project);
}

/// The arguments of a tiny `eval-edits` run over `project` (two samples of sky).
fn sky_args(project: &str) -> [String; 13] {
    [
        "eval-edits",
        "--project",
        project,
        "--samples",
        "2",
        "--units",
        "3",
        "--batch",
        "2",
        "--concepts",
        "sky",
        "--device",
        "cpu",
    ]
    .map(String::from)
}

/// [`sky_args`] run, checked to have run; returns the arguments.
fn eval_sky(project: &str) -> [String; 13] {
    let eval = sky_args(project);
    let printed = ganpaint(&eval);
    let report: Value = serde_json::from_str(printed.lines().last().unwrap()).unwrap();
    assert_eq!(report["concepts"]["sky"]["samples"], 2);
    eval
}

/// With `settings.<key>` of the project's dissect.json set to `value`, `eval` fails and
/// names the field.
fn refused_with_setting(fx: &Fixture, dissection: &Value, eval: &[String], key: &str, value: &str) {
    let mut broken = dissection.clone();
    broken["settings"][key] = Value::from(value);
    std::fs::write(
        fx.dir.join("project/dissect.json"),
        serde_json::to_vec(&broken).unwrap(),
    )
    .unwrap();
    let failed = Command::new(env!("CARGO_BIN_EXE_ganpaint"))
        .args(eval)
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains(&format!("settings.{key}")), "{stderr}");
}

#[test]
fn a_dissection_segmented_scaled_down_records_the_size_for_its_later_passes() {
    let fx = Fixture::new("segsize");
    let project = fx.path("project");
    // Too small a size is refused before any work.
    let refused = Command::new(env!("CARGO_BIN_EXE_ganpaint"))
        .args(args(
            &["dissect", "--out", &project, "--segment-size", "4"],
            &fx.common(4),
        ))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--segment-size"), "{stderr}");
    assert!(!fx.dir.join("project/dissect.json").exists());

    ganpaint(&args(
        &[
            "dissect",
            "--out",
            &project,
            "--no-images",
            "--segment-size",
            "8",
        ],
        &fx.common(8),
    ));
    let dissection = json(&fx.dir.join("project/dissect.json"));
    assert_eq!(dissection["settings"]["segment_size"], 8);
    let eval = eval_sky(&project);

    // A size that is not one stops the later passes, naming the field.
    refused_with_setting(&fx, &dissection, &eval, "segment_size", "half");
}

#[test]
fn a_dissection_records_the_precisions_it_segments_and_renders_in_for_its_later_passes() {
    let fx = Fixture::new("segprecision");
    let project = fx.path("project");
    // Without the flag: the fastest arithmetic this machine has.
    ganpaint(&args(
        &["dissect", "--out", &project, "--no-images"],
        &fx.common(4),
    ));
    let dissection = json(&fx.dir.join("project/dissect.json"));
    let fastest = if ganpaint::model::fast::cpu_has_fast_bf16() {
        "bf16"
    } else {
        "f32"
    };
    assert_eq!(dissection["settings"]["segment_precision"], fastest);
    assert_eq!(
        dissection["settings"]["render_precision"],
        format!("fast-{fastest}")
    );

    // Asked for: recorded, and the later passes run with it.
    ganpaint(&args(
        &[
            "dissect",
            "--out",
            &project,
            "--no-images",
            "--segment-precision",
            "bf16",
            "--render-precision",
            "exact",
        ],
        &fx.common(4),
    ));
    let dissection = json(&fx.dir.join("project/dissect.json"));
    assert_eq!(dissection["settings"]["segment_precision"], "bf16");
    assert_eq!(dissection["settings"]["render_precision"], "exact");
    let eval = eval_sky(&project);

    // A value that is not a precision stops the later passes, naming the field.
    refused_with_setting(&fx, &dissection, &eval, "segment_precision", "half");

    refused_with_setting(&fx, &dissection, &eval, "render_precision", "quick");
}

/// The learned rankings (`<concept>-ace-<mode>`) of a dissection's first layer.
fn learned_rankings(project: &str) -> Vec<Value> {
    let json: Value =
        serde_json::from_slice(&std::fs::read(Path::new(project).join("dissect.json")).unwrap())
            .unwrap();
    json["layers"][0]["rankings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["metric"] == "ace-draw" || r["metric"] == "ace-remove")
        .cloned()
        .collect()
}

#[test]
fn dissect_ace_adds_learned_edits_that_eval_edits_paints_with() {
    let fx = Fixture::new("ace");
    let project = fx.path("project");
    ganpaint(&args(
        &["dissect", "--out", &project, "--no-images"],
        &fx.common(8),
    ));
    let learn = |extra: &[&str]| {
        let mut argv = vec![
            "dissect", "ace", &project, "--steps", "3", "--batch", "2", "--l1", "0", "--lr", "0.2",
            "--device", "cpu",
        ];
        argv.extend_from_slice(extra);
        ganpaint(&argv.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    // Every ranked concept, both modes. Which edits keep a unit depends on the (random)
    // generator and segmenter; an edit that kept none is left out, so every written
    // ranking has one weight per unit of layer4, in [0, 1], and one at least 0.02.
    let printed = learn(&[]);
    assert!(
        printed.contains("draw") && printed.contains("remove"),
        "{printed}"
    );
    let learned = learned_rankings(&project);
    assert!(!learned.is_empty(), "no edit learned anything: {printed}");
    for ranking in &learned {
        let weights: Vec<f64> = ranking["score"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| -s.as_f64().unwrap())
            .collect();
        assert_eq!(weights.len(), 16, "one weight per unit of layer4");
        assert!(weights.iter().all(|w| (0.0..=1.0).contains(w)));
        assert!(weights.iter().any(|&w| w >= 0.02), "{}", ranking["name"]);
    }
    // A second run replaces the learned rankings instead of adding to them.
    learn(&[]);
    let again = learned_rankings(&project);
    let mut names: Vec<&str> = again.iter().map(|r| r["name"].as_str().unwrap()).collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count, "repeated rankings: {names:?}");
    // eval-edits reports each way of choosing units, learned edits included. It runs while
    // the concept surely has learned edits: the later runs below may learn none for it.
    assert!(!again.is_empty(), "the second run learned nothing");
    let concept = again[0]["concept"].as_str().unwrap().to_string();
    let printed = ganpaint(
        &[
            "eval-edits",
            "--project",
            &project,
            "--samples",
            "2",
            "--batch",
            "2",
            "--concepts",
            &concept,
            "--ranking",
            "iou,ace",
            "--device",
            "cpu",
        ]
        .map(String::from),
    );
    let reports: Vec<Value> = printed
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = reports
        .iter()
        .map(|r| r["ranking"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["iou", "ace"]);
    for report in &reports {
        assert_eq!(report["concepts"][&concept]["samples"], 2);
    }
    // Learning one mode leaves the other mode's edits as they were.
    let draws = |rankings: &[Value]| -> Vec<Value> {
        rankings
            .iter()
            .filter(|r| r["metric"] == "ace-draw")
            .cloned()
            .collect()
    };
    learn(&["--modes", "remove"]);
    assert_eq!(draws(&learned_rankings(&project)), draws(&again));
    // Draws learned where each concept fits are written the same way.
    let printed = learn(&[
        "--modes",
        "draw",
        "--regions",
        "context",
        "--context-samples",
        "4",
    ]);
    assert!(printed.contains("draw"), "{printed}");
    for ranking in draws(&learned_rankings(&project)) {
        let weights = ranking["score"].as_array().unwrap();
        assert_eq!(weights.len(), 16, "{}", ranking["name"]);
        assert!(weights
            .iter()
            .all(|s| (-1.0..=0.0).contains(&s.as_f64().unwrap())));
    }
}

#[test]
fn several_layers_are_dissected_compared_in_the_report_and_the_report_can_be_rewritten() {
    let fx = Fixture::new("layers");
    let out = fx.path("m");
    ganpaint(&args(
        &[
            "dissect",
            "--layer",
            "layer1",
            "--layer",
            "layer4",
            "--out",
            &out,
            "--causal-samples",
            "0",
        ],
        &fx.common(4),
    ));
    let m = Path::new(&out);
    let dissect = json(&m.join("dissect.json"));
    let layers: Vec<&str> = dissect["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["layer"].as_str().unwrap())
        .collect();
    assert_eq!(layers, ["layer1", "layer4"]);
    for layer in dissect["layers"].as_array().unwrap() {
        assert!(!layer["rankings"].as_array().unwrap().is_empty());
    }
    let html = std::fs::read_to_string(m.join("dissect.html")).unwrap();
    assert!(html.contains("<h2>Layers compared</h2>"), "{html}");
    assert!(html.contains("<th>layer1 (4×4)</th><th>layer4 (8×8)</th>"));

    // `dissect report` writes the same report again from the folder's files.
    std::fs::remove_file(m.join("dissect.html")).unwrap();
    let printed = ganpaint(&["dissect".into(), "report".into(), out.clone()]);
    assert!(printed.contains("dissect.html"), "{printed}");
    assert_eq!(
        std::fs::read_to_string(m.join("dissect.html")).unwrap(),
        html
    );
}

#[test]
fn dissect_tune_writes_the_best_stroke_per_concept_and_mode_that_strokes_then_take() {
    let fx = Fixture::new("tune");
    let project = fx.path("project");
    ganpaint(&args(
        &["dissect", "--out", &project, "--no-images"],
        &fx.common(8),
    ));
    let tune = |extra: &[&str]| {
        let mut argv = vec![
            "dissect",
            "tune",
            &project,
            "--layer",
            "layer4",
            "--samples",
            "4",
            "--batch",
            "2",
            "--units",
            "2,3",
            "--strengths",
            "1,2",
            "--max-far",
            "1",
            "--min-remove-samples",
            "1",
            "--device",
            "cpu",
        ];
        argv.extend_from_slice(extra);
        argv.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let printed = ganpaint(&tune(&[]));
    let dissect = json(&fx.dir.join("project/dissect.json"));
    let layer = dissect["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "layer4")
        .unwrap();
    assert_eq!(layer["paint_tuning"]["samples"], 4);
    assert_eq!(
        layer["paint_tuning"]["units"],
        serde_json::json!([2, 3, 16])
    );
    assert_eq!(
        layer["paint_tuning"]["strengths"],
        serde_json::json!([1.0, 2.0])
    );
    // Every ranked concept gets a line per mode: its setting, or why it stays untuned.
    let project_read = ganpaint::project::read_project(&fx.dir.join("project")).unwrap();
    let concepts = project_read.layer("layer4").unwrap().concepts();
    for concept in &concepts {
        for mode in ["draw", "remove"] {
            let line = printed
                .lines()
                .find(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    words.len() > 2 && words[0] == *concept && words[1] == mode
                })
                .unwrap_or_else(|| panic!("no line for {concept} {mode}:\n{printed}"));
            let tuned = &layer["paint"][concept][mode];
            if line.contains("untuned:") {
                assert!(tuned.is_null(), "{line} but {tuned}");
                continue;
            }
            // A kept setting comes from the grid, painted its concept (score > 0) and
            // was measured on this run's samples.
            let units = tuned["units"].as_u64().unwrap();
            assert!((1..=16).contains(&units), "{tuned}");
            assert!([1.0, 2.0].contains(&tuned["strength"].as_f64().unwrap()));
            assert!(tuned["score"].as_f64().unwrap() > 0.0, "{tuned}");
            assert!(tuned["samples"].as_u64().unwrap() <= 4);
        }
    }
    // The project reads back with them, and eval-edits paints a tuned draw with its count.
    let layer4 = project_read.layer("layer4").unwrap();
    if let Some((concept, draw)) = layer4
        .paint
        .iter()
        .find_map(|(c, p)| p.draw.map(|d| (c.clone(), d)))
    {
        let printed = ganpaint(
            &[
                "eval-edits",
                "--project",
                &project,
                "--samples",
                "2",
                "--batch",
                "2",
                "--concepts",
                &concept,
                "--ranking",
                "causal",
                "--device",
                "cpu",
            ]
            .map(String::from),
        );
        let last: Value = serde_json::from_str(printed.lines().last().unwrap()).unwrap();
        let figures = &last["concepts"][&concept];
        assert!(figures["draw_units"].as_u64().unwrap() as usize <= draw.units);
        assert_eq!(figures["strength"].as_f64().unwrap() as f32, draw.strength);
    }
    // Nothing to measure with: refused before any work, naming the flag.
    for (extra, flag) in [
        (&["--samples", "0"][..], "--samples"),
        (&["--concepts", "nosuch"][..], "--concepts"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_ganpaint"))
            .args(tune(extra))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{stderr}");
    }
}
