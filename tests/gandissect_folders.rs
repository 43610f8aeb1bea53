//! GAN Dissection output folders served as they are: `settings.model` as the expression
//! its dissection ran (`netdissect.proggan.from_pth_file('…')`, or a constructor with
//! `settings.pthfile`), `dissect.json` with an empty `units` list, `<layer>/quantiles.npz`;
//! a folder that cannot load is logged in one line and skipped while the others are
//! served; `/api/features` and `/api/featuremaps` answer what the original computes.
//!
//! The generator is the tiny ProgGAN `.pth` fixture (`scripts/make_fixtures.py`: z 32,
//! 32×32 images, layer4 32×8×8); the sketch is written here, in the layout GAN Dissection
//! saves (`numpy.savez(path, **RunningQuantile.state_dict())`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use ganpaint::model::{DeviceChoice, Precision, ProgGan};
use ganpaint::serve::{app, AppState, ServeConfig};
use serde_json::{json, Value};
use tch::Device;
use tower::ServiceExt;

const UNITS: usize = 32;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/proggan")
        .join(name)
}

// ---------------------------------------------------------------------------------------
// The folders

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A GAN Dissection `dissect.json` for layer4 with these settings; `units` lists 16 units
/// (labels and levels) or none.
fn dissect_json(settings: Value, list_units: bool) -> Vec<u8> {
    let units: Vec<Value> = if list_units {
        (0..UNITS)
            .map(|u| json!({ "unit": u, "iou": 0.1, "iou_label": "tree", "level": 1.0 + u as f64 }))
            .collect()
    } else {
        Vec::new()
    };
    serde_json::to_vec_pretty(&json!({
        "netname": "tiny",
        "settings": settings,
        "layers": [{ "layer": "layer4", "units": units, "rankings": [] }]
    }))
    .unwrap()
}

/// One `.npy` (format 1.0) with this header dictionary and little-endian data.
fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

/// The sample values of every unit's sketch: level 0 holds these five (weight 1 each),
/// and the saved extremes are -3 and 3. So each unit's summary is -3 (weight 0), -2, -1,
/// 0, 1, 2, 3 (weight 0), at positions `(cumsum(w) − w/2) / 5`: 0, .1, .3, .5, .7, .9, 1.
const SAMPLES: [f32; 5] = [-2.0, -1.0, 0.0, 1.0, 2.0];
const EXTREMES: (f32, f32) = (-3.0, 3.0);

/// GAN Dissection's quantile for `x` in that sketch: `numpy.interp(x, values, positions)`
/// in f64 with the positions as torch keeps them (f32), narrowed to f32 and clamped.
fn original_quantile(x: f32) -> f32 {
    let values = [-3.0f64, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0];
    let positions = [0.0f32, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0].map(|p| p as f64);
    let x = x as f64;
    let q = if x <= values[0] {
        positions[0]
    } else if x >= values[6] {
        positions[6]
    } else {
        let j = values.iter().rposition(|&v| v <= x).unwrap();
        let slope = (positions[j + 1] - positions[j]) / (values[j + 1] - values[j]);
        slope * (x - values[j]) + positions[j]
    };
    (q as f32).clamp(0.0, 1.0)
}

/// The byte `/api/featuremaps` sends: `q.clamp(0, 1).mul(255).byte()` in torch.
fn original_byte(q: f32) -> u8 {
    (q * 255.0).floor() as u8
}

/// `layer4/quantiles.npz` as `numpy.savez` writes a RunningQuantile state whose one level
/// is not ragged (numpy stacks it into a plain `[levels, n, depth]` array).
fn quantiles_npz() -> Vec<u8> {
    let f32s = |values: &[f32]| {
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let data: Vec<f32> = SAMPLES
        .iter()
        .flat_map(|&v| std::iter::repeat_n(v, UNITS))
        .collect();
    let extremes: Vec<f32> = (0..UNITS).flat_map(|_| [EXTREMES.0, EXTREMES.1]).collect();
    let entries = [
        (
            "data",
            npy(
                "<f4",
                &format!("(1, {}, {UNITS})", SAMPLES.len()),
                &f32s(&data),
            ),
        ),
        (
            "extremes",
            npy("<f4", &format!("({UNITS}, 2)"), &f32s(&extremes)),
        ),
        ("depth", npy("<i8", "()", &(UNITS as i64).to_le_bytes())),
        (
            "size",
            npy("<i8", "()", &(SAMPLES.len() as i64).to_le_bytes()),
        ),
        ("sizes", npy("<i8", "(1,)", &8i64.to_le_bytes())),
    ];
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (key, bytes) in entries {
        zip.start_file(format!("{key}.npy"), options).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// A data folder of GAN Dissection projects, written once per test binary:
/// - `in_cwd`: `from_pth_file('models/demo_generator.safetensors')`, a file under the
///   working directory (the crate root, where cargo runs tests). The project folder holds
///   a broken file of the same name, so loading proves the working directory comes
///   first. Its `units` list is empty (a folder made only for serving).
/// - `in_folder`: `from_pth_file('weights/tiny.pth')`, only in the project folder.
/// - `pthfile`: a `ProgressiveGenerator(…)` constructor with `settings.pthfile`, an empty
///   `units` list, and the layer's `quantiles.npz`.
/// - `refused`: a model expression that is not a ProgGAN's.
/// - `missing`: `from_pth_file` of a file that is nowhere.
fn data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root =
            std::env::temp_dir().join(format!("ganpaint-gandissect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let data = root.join("dissect");
        let pth = std::fs::read(fixture("tiny_zip.pth")).unwrap();

        let in_cwd = data.join("in_cwd");
        assert!(Path::new("models/demo_generator.safetensors").is_file());
        write(
            &in_cwd.join("dissect.json"),
            &dissect_json(
                json!({ "model": "netdissect.proggan.from_pth_file('models/demo_generator.safetensors')", "pthfile": null }),
                false,
            ),
        );
        write(&in_cwd.join("models/demo_generator.safetensors"), b"not weights");

        let in_folder = data.join("in_folder");
        write(
            &in_folder.join("dissect.json"),
            &dissect_json(
                json!({ "model": "netdissect.proggan.from_pth_file('weights/tiny.pth')" }),
                true,
            ),
        );
        write(&in_folder.join("weights/tiny.pth"), &pth);

        let pthfile = data.join("pthfile");
        write(
            &pthfile.join("dissect.json"),
            &dissect_json(
                json!({ "model": "netdissect.proggan.ProgressiveGenerator(resolution=32)", "pthfile": "g.pth" }),
                false,
            ),
        );
        write(&pthfile.join("g.pth"), &pth);
        write(&pthfile.join("layer4/quantiles.npz"), &quantiles_npz());

        write(
            &data.join("refused/dissect.json"),
            &dissect_json(
                json!({ "model": "torchvision.models.alexnet(pretrained=True)" }),
                true,
            ),
        );
        write(
            &data.join("missing/dissect.json"),
            &dissect_json(
                json!({ "model": "netdissect.proggan.from_pth_file('models/nowhere.pth')" }),
                true,
            ),
        );
        data
    })
}

// ---------------------------------------------------------------------------------------
// The server, and what it logged while loading

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The server state over [`data_dir`] (exact f32 arithmetic on the CPU), and its log.
fn loaded() -> &'static (Arc<AppState>, String) {
    static STATE: OnceLock<(Arc<AppState>, String)> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut config = ServeConfig::with_data(data_dir().to_path_buf());
        config.device = DeviceChoice::Cpu;
        config.precision = Precision::Exact;
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let state = tracing::subscriber::with_default(subscriber, || AppState::load(config))
            .expect("the loadable projects load");
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        (Arc::new(state), log)
    })
}

async fn post_json(uri: &str, body: &Value) -> (StatusCode, Value) {
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(request).await
}

async fn get_json(uri: &str) -> (StatusCode, Value) {
    send(Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn send(request: Request<Body>) -> (StatusCode, Value) {
    let response = app(loaded().0.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), 64 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// layer4 of the tiny generator for `id`, computed here: `[C][H·W]`.
fn tiny_layer4(id: u64) -> Vec<Vec<f32>> {
    let _guard = tch::no_grad_guard();
    let model = ProgGan::load(&fixture("tiny_zip.pth"), Device::Cpu).unwrap();
    let z = model.z_for_ids(&[id]).unwrap();
    let acts = model.features(&z, "layer4").unwrap();
    let values = Vec::<f32>::try_from(acts.flatten(0, -1)).unwrap();
    values.chunks(64).map(<[f32]>::to_vec).collect()
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn loadable_folders_are_served_and_the_others_logged_in_one_line() {
    let (state, log) = loaded();
    let served: Vec<&str> = state.projects.keys().map(String::as_str).collect();
    assert_eq!(served, vec!["in_cwd", "in_folder", "pthfile"], "{log}");

    // Where each generator came from.
    let model = |id: &str| state.projects[id].spec.model.clone();
    assert_eq!(
        model("in_cwd"),
        PathBuf::from("models/demo_generator.safetensors")
    );
    assert_eq!(
        model("in_folder"),
        data_dir().join("in_folder/weights/tiny.pth")
    );
    assert_eq!(model("pthfile"), data_dir().join("pthfile/g.pth"));
    // The demo generator behind `in_cwd` (layer4: 256 units), the tiny one elsewhere.
    assert_eq!(state.projects["in_cwd"].layers[0].channels, 256);
    assert_eq!(state.projects["in_folder"].layers[0].channels, UNITS as i64);

    // One error line per folder that is not served, naming it and the way out.
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 2, "{log}");
    let refused = errors
        .iter()
        .find(|l| l.contains("refused"))
        .expect("refused logged");
    assert!(refused.contains("torchvision.models.alexnet"), "{refused}");
    assert!(refused.contains("never evaluates"), "{refused}");
    assert!(refused.contains("project.json"), "{refused}");
    let missing = errors
        .iter()
        .find(|l| l.contains("missing"))
        .expect("missing logged");
    assert!(missing.contains("models/nowhere.pth"), "{missing}");
    assert!(missing.contains("working directory"), "{missing}");
    assert!(missing.contains("project.json"), "{missing}");
    // Nothing else from those folders: no continuation lines, no stack.
    let stray: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains(" INFO ") && !l.contains("ERROR"))
        .collect();
    assert!(stray.is_empty(), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dissection_made_only_for_serving_lists_no_units() {
    let (status, all) = get_json("/api/all_projects").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["project"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["in_cwd", "in_folder", "pthfile"]);

    let (status, units) = get_json("/api/units?project=pthfile&layer=layer4").await;
    assert_eq!(status, StatusCode::OK, "{units}");
    assert_eq!(units["res"], json!([]));
    let (_, units) = get_json("/api/units?project=in_folder&layer=layer4").await;
    assert_eq!(units["res"].as_array().unwrap().len(), UNITS);

    // Its levels come from the sketch: the 0.5 quantile of -2 … 2 (positions .1 … .9).
    let (status, levels) = get_json("/api/levels?project=pthfile&layer=layer4&quantiles=0.5").await;
    assert_eq!(status, StatusCode::OK, "{levels}");
    assert_eq!(levels["res"][0], json!([0.0]));
    // And it renders edits.
    let edit = json!([{ "ablations": [{ "layer": "layer4", "unit": 0, "alpha": 1, "value": 0 }] }]);
    let (status, generated) = post_json(
        "/api/generate",
        &json!({ "project": "in_cwd", "ids": [2], "interventions": edit }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{generated}");
    assert!(generated["res"][0]["d"]
        .as_str()
        .unwrap()
        .starts_with("data:image/jpeg;base64,"));
}

#[tokio::test(flavor = "multi_thread")]
async fn featuremaps_are_the_originals_bytes_of_the_sketchs_quantiles() {
    let (status, answer) = post_json(
        "/api/featuremaps",
        &json!({ "project": "pthfile", "ids": [3], "layers": ["layer4"] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let maps = &answer["res"]["layer4"][0];
    let acts = tiny_layer4(3);
    let mut rounded_differently = 0;
    for (unit, cells) in acts.iter().enumerate() {
        for (cell, &a) in cells.iter().enumerate() {
            let q = original_quantile(a);
            let expected = original_byte(q);
            let got = maps[unit][cell / 8][cell % 8].as_u64().unwrap();
            assert_eq!(
                got, expected as u64,
                "unit {unit} cell {cell}: activation {a}, q {q}"
            );
            if (q * 255.0).round() as u64 != got {
                rounded_differently += 1;
            }
        }
    }
    // Rounding instead of truncating would have changed some of them.
    assert!(rounded_differently > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn features_max_is_the_originals_masked_max_and_never_negative() {
    // The mask covers the top-left 4×4 of an 8×8 grid, the layer's own grid, so the
    // pooled mask is 1 there and 0 elsewhere.
    let mask = json!({ "shape": [8, 8], "bitbounds": [0, 0, 4, 4], "bitstring": "1".repeat(16) });
    let (status, answer) = post_json(
        "/api/features",
        &json!({ "project": "pthfile", "ids": [5], "masks": [mask], "layers": ["layer4"] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let layer = &answer["res"]["layer4"];
    let acts = tiny_layer4(5);
    let mut negative_inside = 0;
    for (unit, cells) in acts.iter().enumerate() {
        let inside = (0..64)
            .filter(|cell| cell / 8 < 4 && cell % 8 < 4)
            .map(|cell| cells[cell])
            .fold(f32::NEG_INFINITY, f32::max);
        if inside < 0.0 {
            negative_inside += 1;
        }
        // (feature * mask).max(): cells outside the mask count as 0.
        let expected = cells
            .iter()
            .enumerate()
            .map(|(cell, &a)| if cell / 8 < 4 && cell % 8 < 4 { a } else { 0.0 })
            .fold(f32::NEG_INFINITY, f32::max);
        let max = layer["max"][unit].as_f64().unwrap() as f32;
        assert!(max >= 0.0, "unit {unit}: {max}");
        assert_eq!(max, expected, "unit {unit}");
        let q = layer["max_quantile"][unit].as_f64().unwrap() as f32;
        assert_eq!(q, original_quantile(expected), "unit {unit}");
    }
    // Units whose activations are all negative under the mask: the max over masked cells
    // alone would be negative there.
    assert!(negative_inside > 0);
}
