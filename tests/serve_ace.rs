//! Painting with optimized interventions (`ganpaint dissect ace`): where a dissection has
//! learned weights for a concept and mode, a stroke paints the units of weight at least
//! `MIN_WEIGHT`, heaviest first, each with its weight as alpha; elsewhere it paints the
//! ranking's top units at alpha 1.

mod common;

use std::path::Path;

use common::http::{post, quarter_mask};
use ganpaint::serve::{AppState, ServeConfig};
use serde_json::{json, Value};

/// A copy of the tiny project whose `dissect.json` also holds a learned draw edit for
/// `tree`: unit 5 at 0.9, unit 3 at 0.6, unit 7 at 0.01 (too light to paint).
fn project_with_learned_tree(name: &str) -> std::path::PathBuf {
    let source = common::tiny_data_dir().join("tiny");
    let root = std::env::temp_dir().join(format!("ganpaint-{name}-data-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let project = root.join("tiny");
    std::fs::create_dir_all(&project).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, project.join(path.file_name().unwrap())).unwrap();
        }
    }
    let file = project.join("dissect.json");
    let mut json: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let mut score = vec![0.0f64; 16];
    score[5] = -0.9;
    score[3] = -0.6;
    score[7] = -0.01;
    json["layers"][0]["rankings"].as_array_mut().unwrap().push(
        json!({"name": "tree-ace-draw", "concept": "tree", "metric": "ace-draw", "score": score}),
    );
    std::fs::write(&file, serde_json::to_string(&json).unwrap()).unwrap();
    root
}

/// The `[alpha, value]` of `unit` at grid cell `cell` in a flattened `edit` (`None` when
/// not listed).
fn cell_of(edit: &Value, unit: i64, cell: i64) -> Option<(f64, f64)> {
    edit["units"]
        .as_array()?
        .iter()
        .find(|u| u["unit"] == unit)?["cells"]
        .as_array()?
        .iter()
        .find(|c| c[0] == cell)
        .map(|c| (c[1].as_f64().unwrap(), c[2].as_f64().unwrap()))
}

/// The alpha of `unit` at grid cell `cell` in a flattened `edit` (0 when not listed).
fn alpha_at(edit: &Value, unit: i64, cell: i64) -> f64 {
    edit["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["unit"] == unit)
        .and_then(|u| {
            u["cells"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c[0] == cell)
                .map(|c| c[1].as_f64().unwrap())
        })
        .unwrap_or(0.0)
}

fn state(data: &Path) -> std::sync::Arc<AppState> {
    let mut config = ServeConfig::with_data(data.to_path_buf());
    config.device = ganpaint::model::DeviceChoice::Cpu;
    std::sync::Arc::new(AppState::load(config).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn strokes_paint_learned_units_with_their_weights_and_rankings_elsewhere() {
    let data = project_with_learned_tree("ace");
    let state = state(&data);

    let paint = |mode: &str| json!({ "project": "tiny", "seed": 3, "strokes": [{ "concept": "tree", "mode": mode, "mask": quarter_mask() }] });
    let (status, _, body) = post(state.clone(), "/api/v1/paint", &paint("draw"), true).await;
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["units"],
        json!([[5, 3]]),
        "heaviest first, light ones left out"
    );
    // Cell 0 (top-left) is under the quarter mask; cell 63 (bottom-right) is not.
    let edit = &answer["edit"];
    assert!((alpha_at(edit, 5, 0) - 0.9).abs() < 1e-6, "{edit}");
    assert!((alpha_at(edit, 3, 0) - 0.6).abs() < 1e-6, "{edit}");
    assert_eq!(alpha_at(edit, 5, 63), 0.0);
    assert_eq!(alpha_at(edit, 7, 0), 0.0);

    // `units` caps the learned set.
    let capped = json!({ "project": "tiny", "seed": 3, "strokes": [{ "concept": "tree", "mode": "draw", "mask": quarter_mask(), "units": 1 }] });
    let (_, _, body) = post(state.clone(), "/api/v1/paint", &capped, true).await;
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["units"], json!([[5]]));

    // Removal has no learned edit here: the ranking's top 20 (of 16) units, at alpha 1.
    let (status, _, body) = post(state.clone(), "/api/v1/paint", &paint("remove"), true).await;
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{answer}");
    let units = answer["units"][0].as_array().unwrap();
    assert_eq!(units.len(), 16);
    let first = units[0].as_i64().unwrap();
    assert_eq!(alpha_at(&answer["edit"], first, 0), 1.0);

    // The projects API lists what strokes take.
    let (_, _, body) = common::http::get(state.clone(), "/api/v1/projects").await;
    let projects: Value = serde_json::from_slice(&body).unwrap();
    let tree = projects[0]["layers"][0]["concepts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tree")
        .unwrap()
        .clone();
    let listed: Vec<i64> = tree["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, vec![5, 3]);
    assert_eq!(tree["remove_units"].as_array().unwrap().len(), 16);
    // And which ranking each mode takes them from, so no client keeps the rule: the
    // learned weights for draw; remove has no learned edit here.
    assert_eq!(tree["draw_ranking"], "tree-ace-draw");
    let remove = tree["remove_ranking"].as_str().unwrap();
    assert!(
        remove == "tree-causal-remove" || remove == "tree-iou",
        "{remove}"
    );
    let _ = std::fs::remove_dir_all(&data);
}

/// `dissect tune` writes each concept's best stroke into the layer's `paint`: a stroke that
/// gives no `units` or `strength` paints with it, and the projects API says what it is.
#[tokio::test(flavor = "multi_thread")]
async fn strokes_that_give_no_count_or_strength_paint_the_tuned_setting() {
    let data = project_with_learned_tree("tuned");
    let file = data.join("tiny/dissect.json");
    let mut json: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    json["layers"][0]["paint"] = json!({
        "tree": {"draw": {"units": 1, "strength": 2.5, "score": 0.4, "far_change": 0.01},
                 "remove": {"units": 3, "strength": 1.0}}
    });
    std::fs::write(&file, serde_json::to_string(&json).unwrap()).unwrap();
    let state = state(&data);
    let stroke = |mode: &str, extra: Value| {
        let mut s = json!({ "concept": "tree", "mode": mode, "mask": quarter_mask() });
        s.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({ "project": "tiny", "seed": 3, "strokes": [s] })
    };
    let paint = |body: Value| {
        let state = state.clone();
        async move {
            let (status, _, body) = post(state, "/api/v1/paint", &body, true).await;
            let answer: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(status, 200, "{answer}");
            answer
        }
    };
    // The tuned draw: one unit (the heaviest learned one), at 2.5 × its level.
    let tuned = paint(stroke("draw", json!({}))).await;
    assert_eq!(tuned["units"], json!([[5]]));
    let (alpha, value) = cell_of(&tuned["edit"], 5, 0).unwrap();
    let plain = paint(stroke("draw", json!({"units": 1, "strength": 1.0}))).await;
    let (_, level) = cell_of(&plain["edit"], 5, 0).unwrap();
    assert!((alpha - 0.9).abs() < 1e-6);
    assert!(
        level > 0.0 && (value - 2.5 * level).abs() < 1e-4 * level,
        "{value} vs {level}"
    );
    // What the stroke gives wins.
    let given = paint(stroke("draw", json!({"units": 2, "strength": 1.0}))).await;
    assert_eq!(given["units"], json!([[5, 3]]));
    // The tuned remove: three units instead of the untuned 16.
    let removed = paint(stroke("remove", json!({}))).await;
    assert_eq!(removed["units"][0].as_array().unwrap().len(), 3);

    let (_, _, body) = common::http::get(state.clone(), "/api/v1/projects").await;
    let projects: Value = serde_json::from_slice(&body).unwrap();
    let concepts = projects[0]["layers"][0]["concepts"].as_array().unwrap();
    let tree = concepts.iter().find(|c| c["name"] == "tree").unwrap();
    assert_eq!(
        tree["draw_default"],
        json!({"units": 1, "strength": 2.5, "tuned": true, "score": 0.4})
    );
    assert_eq!(tree["remove_default"]["units"], 3);
    assert_eq!(tree["remove_default"]["tuned"], true);
    // An untuned concept: the plain defaults (20 units, or all 16 of this layer).
    let other = concepts.iter().find(|c| c["name"] != "tree").unwrap();
    assert_eq!(
        other["draw_default"],
        json!({"units": 16, "strength": 1.0, "tuned": false, "score": null})
    );
    let _ = std::fs::remove_dir_all(&data);
}

/// A tuned setting no request could ask for stops the project with a message naming it.
#[test]
fn a_tuned_setting_out_of_range_is_named() {
    let data = project_with_learned_tree("badtuned");
    let file = data.join("tiny/dissect.json");
    let mut json: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    json["layers"][0]["paint"] = json!({"tree": {"remove": {"units": 17}}});
    std::fs::write(&file, serde_json::to_string(&json).unwrap()).unwrap();
    let error = ganpaint::project::read_project(&data.join("tiny"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("paint.tree.remove: units 17 is not in 1..=16"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&data);
}
