//! End to end through the router: uploading a picture (`POST /api/v1/images`), its
//! progress and figures, painting it like a sample (`image` in `/api/v1/paint`), its
//! storage across a restart, cancelling by disconnecting, every refusal, and painting an
//! earlier layer than the inverted one through the fitted z. The tiny project of
//! `tests/common` (a random 16² generator) gets an encoder trained for a few steps by the
//! same command a user runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::http::{call, decode_data_url, get, post, state_with};
use ganpaint::edit::mask::encode_png_mask;
use ganpaint::serve::{AppState, ServeConfig};
use http_body_util::BodyExt;
use serde_json::{json, Value};

/// The tiny project with an encoder (trained once per test binary) named by its
/// `project.json`.
fn data_with_encoder() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let data = common::tiny_data_dir();
        let project = data.join("tiny");
        train_tiny_encoder(&project, &project.join("encoder.safetensors"), &[]);
        std::fs::write(
            project.join("project.json"),
            json!({ "model": "../../g.safetensors", "encoder": "encoder.safetensors" }).to_string(),
        )
        .unwrap();
        data.to_path_buf()
    })
}

/// Trains the tiny encoder into `out` (with `extra` arguments) by the user's command.
fn train_tiny_encoder(project: &Path, out: &Path, extra: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_ganpaint"))
        .args([
            "train-demo",
            "encoder",
            "--device",
            "cpu",
            "--steps",
            "20",
            "--batch",
            "8",
        ])
        .args(["--width", "8", "--max-width", "16"])
        .args(extra)
        .arg("--project")
        .arg(project)
        .arg("--out")
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "training the tiny encoder failed");
}

/// A data folder with two projects of the tiny generator dissected at `layer2` and
/// `layer4`: `layers` with the tiny encoder (which predicts z), and `layers-noz` with an
/// encoder trained without a z head.
fn data_with_layers() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let with_encoder = data_with_encoder();
        let root = with_encoder.parent().unwrap();
        let data = root.join("data-layers");
        for (name, extra) in [
            ("layers", &[][..]),
            ("layers-noz", &["--z-weight", "0"][..]),
        ] {
            let project = data.join(name);
            common::dissect_tiny(&project, &["layer2", "layer4"]);
            train_tiny_encoder(&project, &project.join("encoder.safetensors"), extra);
            std::fs::write(
                project.join("project.json"),
                json!({ "model": "../../g.safetensors", "encoder": "encoder.safetensors" })
                    .to_string(),
            )
            .unwrap();
        }
        data
    })
}

fn fresh_uploads(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ganpaint-uploads-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn state(uploads: &Path, adjust: impl FnOnce(&mut ServeConfig)) -> Arc<AppState> {
    let data = data_with_encoder().to_path_buf();
    let uploads = uploads.to_path_buf();
    state_with(move |config| {
        config.data = data;
        config.uploads = uploads;
        adjust(config);
    })
}

/// A picture the generator did not make, of another size and shape than its 16².
fn picture(variant: u8) -> image::RgbImage {
    image::RgbImage::from_fn(30, 24, |x, y| {
        image::Rgb([
            (x * 8) as u8,
            (y * 10) as u8,
            if (x / 6 + y / 6) % 2 == 0 {
                200
            } else {
                variant
            },
        ])
    })
}

fn png_bytes(image: &image::RgbImage) -> Vec<u8> {
    ganpaint::imageio::encode_png(image).unwrap()
}

fn data_url(bytes: &[u8]) -> String {
    ganpaint::formats::data_url::encode("image/png", bytes)
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

async fn upload_json(state: &Arc<AppState>, image: &image::RgbImage) -> (StatusCode, Value) {
    let body = json!({ "project": "tiny", "image": data_url(&png_bytes(image)) });
    let (status, _, body) = post(state.clone(), "/api/v1/images", &body, true).await;
    (status, json_of(&body))
}

/// A small stroke over the top-left 4×4 pixels (the top-left 2×2 cells of layer4).
fn corner_stroke(concept: &str) -> Value {
    json!({ "concept": concept, "mode": "draw", "mask": encode_png_mask(16, 16, |x, y| x < 4 && y < 4), "units": 8, "strength": 3.0 })
}

async fn first_concept(state: &Arc<AppState>) -> String {
    let (_, _, body) = get(state.clone(), "/api/v1/projects").await;
    let projects = json_of(&body);
    projects[0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "layer4")
        .unwrap()["concepts"][0]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_picture_is_inverted_stored_and_painted_like_a_sample() {
    let uploads = fresh_uploads("paint");
    let state = state(&uploads, |_| {});
    let original = picture(30);
    let (status, answer) = upload_json(&state, &original).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let id = answer["image"].as_str().unwrap().to_string();
    assert!(id.starts_with("upload-") && id.len() == 39, "{id}");
    assert_eq!(answer["project"], "tiny");
    assert_eq!(answer["layer"], "layer4");
    assert_eq!(
        (answer["width"].as_u64(), answer["height"].as_u64()),
        (Some(30), Some(24))
    );
    assert_eq!(answer["resolution"], 16);
    assert_eq!(answer["stored"], true);
    // Each step reconstructs better than the encoder's guess alone.
    let psnr = &answer["psnr"];
    let (encoder, adapted) = (
        psnr["encoder_db"].as_f64().unwrap(),
        psnr["adapted_db"].as_f64().unwrap(),
    );
    assert!(adapted > encoder + 1.0, "{psnr}");
    assert_eq!(answer["psnr_db"], psnr["adapted_db"]);
    assert!(answer["timing"]["total_ms"].as_f64().unwrap() > 0.0);

    // The same picture again, now as the raw body: the same id, from storage.
    let request = Request::post("/api/v1/images?project=tiny")
        .header(header::CONTENT_TYPE, "image/png")
        .body(Body::from(png_bytes(&original)))
        .unwrap();
    let (status, _, body) = call(state.clone(), request).await;
    let again = json_of(&body);
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["image"], id.as_str());
    assert_eq!(again["stored"], false);
    assert_eq!(again["psnr"], answer["psnr"]);

    // Its figures, and its picture as painted on: cropped to the centre square and sized.
    let (status, _, body) = get(state.clone(), &format!("/api/v1/images/{id}")).await;
    let figures = json_of(&body);
    assert_eq!(status, StatusCode::OK, "{figures}");
    // Each key once (the figures are flattened beside the id).
    let text = String::from_utf8_lossy(&body);
    assert_eq!(text.matches("\"image\"").count(), 1, "{text}");
    assert_eq!(text.matches("\"project\"").count(), 1, "{text}");
    assert_eq!(figures["status"], "done");
    assert_eq!(figures["psnr_db"], answer["psnr_db"]);
    let (status, headers, png) =
        get(state.clone(), &format!("/api/v1/images/{id}/picture.png")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/png");
    let fitted = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!(
        fitted,
        ganpaint::invert::fit_picture(&original, 16).unwrap()
    );

    // No strokes: exactly the uploaded pixels.
    let paint = |strokes: Value| json!({ "project": "tiny", "image": id, "strokes": strokes });
    let (status, _, body) = post(state.clone(), "/api/v1/paint", &paint(json!([])), true).await;
    let unedited = json_of(&body);
    assert_eq!(status, StatusCode::OK, "{unedited}");
    assert_eq!(decode_data_url(unedited["image"].as_str().unwrap()), fitted);
    let (status, _, body) = post(
        state.clone(),
        "/api/v1/generate",
        &json!({ "project": "tiny", "images": [id] }),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        decode_data_url(json_of(&body)["images"][0].as_str().unwrap()),
        fitted
    );

    // A stroke in the corner changes pixels there and keeps the far corner as uploaded.
    let concept = first_concept(&state).await;
    let (status, _, body) = post(
        state.clone(),
        "/api/v1/paint",
        &paint(json!([corner_stroke(&concept)])),
        true,
    )
    .await;
    let painted = json_of(&body);
    assert_eq!(status, StatusCode::OK, "{painted}");
    assert_eq!(painted["timing"]["recomputed"], 1.0);
    let edited = decode_data_url(painted["image"].as_str().unwrap());
    let changed = |x0: u32, y0: u32, side: u32| {
        (y0..y0 + side)
            .flat_map(|y| (x0..x0 + side).map(move |x| (x, y)))
            .filter(|&(x, y)| edited.get_pixel(x, y) != fitted.get_pixel(x, y))
            .count()
    };
    assert!(changed(0, 0, 4) > 0, "the stroke changed nothing under it");
    assert_eq!(changed(12, 12, 4), 0, "the stroke changed the far corner");

    // The next stroke on the same upload updates the kept render: less than a full pass.
    let strokes = json!([corner_stroke(&concept), { "concept": concept, "mode": "remove", "mask": encode_png_mask(16, 16, |x, y| x >= 12 && y >= 12), "units": 8 }]);
    let (status, _, body) = post(state.clone(), "/api/v1/paint", &paint(strokes), true).await;
    let second = json_of(&body);
    assert_eq!(status, StatusCode::OK, "{second}");
    let recomputed = second["timing"]["recomputed"].as_f64().unwrap();
    assert!(recomputed < 1.0, "{recomputed}");
    assert!(second["edit"]["units"]
        .as_array()
        .is_some_and(|u| !u.is_empty()));

    // After a restart on the same folder the upload is still there and paints the same.
    drop(state);
    let restarted = self::state(&uploads, |_| {});
    let (status, _, body) = post(
        restarted.clone(),
        "/api/v1/paint",
        &paint(json!([corner_stroke(&concept)])),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let replayed = decode_data_url(json_of(&body)["image"].as_str().unwrap());
    let diff = replayed
        .pixels()
        .zip(edited.pixels())
        .map(|(a, b)| {
            (0..3)
                .map(|c| (a[c] as i32 - b[c] as i32).abs())
                .max()
                .unwrap()
        })
        .max()
        .unwrap();
    assert!(
        diff <= 1,
        "the restarted server paints differently by {diff}"
    );
    std::fs::remove_dir_all(&uploads).unwrap();
}

/// The first concept `/api/v1/projects` lists for `project` at `layer`.
async fn concept_at(state: &Arc<AppState>, project: &str, layer: &str) -> String {
    let (_, _, body) = get(state.clone(), "/api/v1/projects").await;
    let projects = json_of(&body);
    let project = projects
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == project)
        .unwrap();
    project["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == layer)
        .unwrap()["concepts"][0]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_paints_at_an_earlier_layer_through_its_fitted_z() {
    let uploads = fresh_uploads("layers");
    let data = data_with_layers().to_path_buf();
    let state = state_with(move |config| {
        config.data = data;
        config.uploads = uploads.clone();
    });
    let body = json!({ "project": "layers", "image": data_url(&png_bytes(&picture(7))) });
    let (status, _, body) = post(state.clone(), "/api/v1/images", &body, true).await;
    let answer = json_of(&body);
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["layer"], "layer4");
    // The project's first dissected layer (it has no layer1).
    assert_eq!(answer["paint_from"], "layer2", "{answer}");
    let id = answer["image"].as_str().unwrap().to_string();
    let fitted = decode_data_url(
        json_of(
            &post(
                state.clone(),
                "/api/v1/paint",
                &json!({ "project": "layers", "image": id, "strokes": [] }),
                true,
            )
            .await
            .2,
        )["image"]
            .as_str()
            .unwrap(),
    );

    // A layer2 stroke (4×4 cells on the 16² picture) over the left half changes the picture.
    let concept = concept_at(&state, "layers", "layer2").await;
    let stroke = json!({ "concept": concept, "mode": "draw", "units": 8, "strength": 3.0,
        "mask": encode_png_mask(16, 16, |x, _| x < 8) });
    let paint = json!({ "project": "layers", "image": id, "layer": "layer2", "strokes": [stroke] });
    let (status, _, body) = post(state.clone(), "/api/v1/paint", &paint, true).await;
    let painted = json_of(&body);
    assert_eq!(status, StatusCode::OK, "{painted}");
    let edited = decode_data_url(painted["image"].as_str().unwrap());
    let changed = edited
        .pixels()
        .zip(fitted.pixels())
        .filter(|(a, b)| a != b)
        .count();
    assert!(changed > 0, "the layer2 stroke changed nothing");
    // A layer2 stroke whose mask paints nothing goes through z and changes nothing:
    // exactly the uploaded pixels.
    let empty = json!({ "concept": concept, "mode": "draw", "units": 8, "strength": 3.0,
        "mask": encode_png_mask(16, 16, |_, _| false) });
    let none = json!({ "project": "layers", "image": id, "layer": "layer2", "strokes": [empty] });
    let (status, _, body) = post(state.clone(), "/api/v1/paint", &none, true).await;
    let unchanged = json_of(&body);
    assert_eq!(status, StatusCode::OK, "{unchanged}");
    assert_eq!(
        decode_data_url(unchanged["image"].as_str().unwrap()),
        fitted
    );

    // An upload inverted by an encoder without a z head has no `paint_from`, and a layer2
    // stroke on it is refused naming `layer`.
    let body = json!({ "project": "layers-noz", "image": data_url(&png_bytes(&picture(7))) });
    let (status, _, body) = post(state.clone(), "/api/v1/images", &body, true).await;
    let answer = json_of(&body);
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.get("paint_from").is_none(), "{answer}");
    let id = answer["image"].as_str().unwrap().to_string();
    let concept = concept_at(&state, "layers-noz", "layer2").await;
    let stroke = json!({ "concept": concept, "mode": "draw", "units": 8,
        "mask": encode_png_mask(16, 16, |x, _| x < 8) });
    let paint =
        json!({ "project": "layers-noz", "image": id, "layer": "layer2", "strokes": [stroke] });
    let (status, _, body) = post(state.clone(), "/api/v1/paint", &paint, true).await;
    let refused = json_of(&body);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("layer: ") && detail.contains("inverted at layer4;"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_naming_the_field_and_nothing_is_written() {
    let uploads = fresh_uploads("refused");
    let state = state(&uploads, |c| c.max_upload_pixels = 500);
    let expect = |status: StatusCode, body: Vec<u8>, want: StatusCode, field: &str| {
        let error = json_of(&body);
        assert_eq!(status, want, "{error}");
        let detail = error["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(field) || detail.contains(field),
            "{field}: {detail}"
        );
    };
    let small = png_bytes(&image::RgbImage::from_pixel(20, 20, image::Rgb([9, 9, 9])));
    let mut animated = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut animated, 4, 4);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_animated(2, 0).unwrap();
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[0u8; 48]).unwrap();
        writer.write_image_data(&[90u8; 48]).unwrap();
        writer.finish().unwrap();
    }
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "project": "tiny", "image": "data:image/png;base64,aGVsbG8=" }),
            "image: the file is not a picture",
        ),
        (
            json!({ "project": "tiny", "image": "data:image/gif;base64,R0lGODlhAQABAAAAACw=" }),
            "GIF",
        ),
        (
            json!({ "project": "tiny", "image": data_url(&small[..40]) }),
            "corrupt",
        ),
        (
            json!({ "project": "tiny", "image": data_url(&animated) }),
            "animated",
        ),
        (
            json!({ "project": "tiny", "image": data_url(&png_bytes(&picture(1))) }),
            "--max-upload-pixels",
        ),
        (
            json!({ "project": "tiny", "image": "not a data url" }),
            "image",
        ),
        (
            json!({ "project": "nope", "image": data_url(&small) }),
            "project",
        ),
        (json!({ "project": "tiny" }), "body"),
        (
            json!({ "project": "tiny", "image": data_url(&small), "extra": 1 }),
            "body",
        ),
    ];
    for (body, field) in cases {
        let (status, _, answer) = post(state.clone(), "/api/v1/images", &body, true).await;
        expect(status, answer, StatusCode::BAD_REQUEST, field);
    }
    // A raw body needs ?project= and a picture content type.
    for (uri, content_type, want, field) in [
        (
            "/api/v1/images",
            "image/png",
            StatusCode::BAD_REQUEST,
            "project",
        ),
        (
            "/api/v1/images?project=tiny&x=1",
            "image/png",
            StatusCode::BAD_REQUEST,
            "x",
        ),
        (
            "/api/v1/images?project=tiny",
            "image/gif",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (
            "/api/v1/images?project=tiny",
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
    ] {
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(small.clone()))
            .unwrap();
        let (status, _, body) = call(state.clone(), request).await;
        expect(status, body, want, field);
    }
    // Ids are checked before they are looked up; unknown ones are 404.
    let unknown = format!("upload-{}", "ab".repeat(16));
    for (uri, want) in [
        (
            "/api/v1/images/upload-..%2F..%2Fetc".to_string(),
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/images/42".to_string(), StatusCode::BAD_REQUEST),
        (format!("/api/v1/images/{unknown}"), StatusCode::NOT_FOUND),
        (
            format!("/api/v1/images/{unknown}/picture.png"),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, _, body) = get(state.clone(), &uri).await;
        expect(status, body, want, "image");
    }
    for (body, want) in [
        (
            json!({ "project": "tiny", "image": unknown, "strokes": [] }),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({ "project": "tiny", "image": "upload-x", "strokes": [] }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "project": "tiny", "image": unknown, "seed": 3, "strokes": [] }),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, _, answer) = post(state.clone(), "/api/v1/paint", &body, true).await;
        let field = if want == StatusCode::NOT_FOUND {
            "image"
        } else {
            "id"
        };
        let field = if body["image"] == "upload-x" {
            "image"
        } else {
            field
        };
        expect(status, answer, want, field);
    }
    // Nothing was written for any refusal.
    assert!(!uploads.exists() || std::fs::read_dir(&uploads).unwrap().count() == 0);
    assert!(state.uploads.store.is_empty());
}

/// The events of a server-sent event stream so far: (event, data).
fn parse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = Some(name.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim());
                }
            }
            Some((event?, serde_json::from_str(&data).ok()?))
        })
        .collect()
}

fn sse_upload(image: &image::RgbImage) -> Request<Body> {
    Request::post("/api/v1/images")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "text/event-stream")
        .body(Body::from(
            json!({ "project": "tiny", "image": data_url(&png_bytes(image)) }).to_string(),
        ))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_streams_as_events_and_a_disconnect_cancels_the_inversion() {
    use tower::ServiceExt;
    let uploads = fresh_uploads("events");
    let state = state(&uploads, |_| {});
    let response = ganpaint::serve::app(state.clone())
        .oneshot(sse_upload(&picture(60)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let events = parse_events(&text);
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done", "{text}");
    let id = done["image"].as_str().unwrap();
    let progress: Vec<&Value> = events
        .iter()
        .filter(|(e, _)| e == "progress")
        .map(|(_, d)| d)
        .collect();
    assert!(!progress.is_empty(), "{text}");
    assert!(progress.iter().all(|p| p["image"] == id));
    let fractions: Vec<f64> = progress
        .iter()
        .map(|p| p["fraction"].as_f64().unwrap())
        .collect();
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
    assert!(progress.iter().any(|p| p["stage"] == "adapt"), "{text}");

    // A long inversion (a queue of one behind it): a third upload is refused, and
    // dropping the streams cancels both; nothing of them is stored.
    let slow = self::state(&fresh_uploads("slow"), |c| {
        c.invert_adapt_steps = 1_000_000;
        c.invert_queue = 1;
    });
    let app = ganpaint::serve::app(slow.clone());
    let first = app.clone().oneshot(sse_upload(&picture(70))).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let mut body = first.into_body();
    // Wait until it is past the queue and inverting.
    let mut seen = String::new();
    while !seen.contains("\"stage\":\"adapt\"") {
        let frame = body.frame().await.unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    let id = parse_events(&seen)[0].1["image"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, _, answer) = get(slow.clone(), &format!("/api/v1/images/{id}")).await;
    let running = json_of(&answer);
    assert_eq!(running["status"], "running", "{running}");
    assert_eq!(running["progress"]["stage"], "adapt");
    // Painting it, or asking for its picture, before it is done: 409, not "gone".
    let (status, _, answer) = post(
        slow.clone(),
        "/api/v1/paint",
        &json!({ "project": "tiny", "image": id, "strokes": [] }),
        true,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let (status, _, _) = get(slow.clone(), &format!("/api/v1/images/{id}/picture.png")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let second = app.clone().oneshot(sse_upload(&picture(80))).await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let (status, headers, _) = call(slow.clone(), sse_upload(&picture(90))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key(header::RETRY_AFTER));
    drop(body);
    drop(second);
    // The inverter notices at its next step; then the upload is neither running nor stored.
    let mut gone = false;
    for _ in 0..200 {
        let (status, _, _) = get(slow.clone(), &format!("/api/v1/images/{id}")).await;
        if status == StatusCode::NOT_FOUND {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the cancelled inversion still runs");
    assert!(slow.uploads.store.is_empty());
}
