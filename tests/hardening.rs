//! The server under hostile or unlucky use (issue 13): concurrent first requests for one
//! cached image, numbers that overflow f32, mask bombs, work kept off the async runtime,
//! amplifying queries, slow and oversized uploads, exact error bodies, bounded disk and
//! memory, and shutdown with a stalled client. Every test is bounded in time and count and
//! talks to 127.0.0.1 only.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::http::{get, mask_bomb, post, quarter_mask, state_with};
use ganpaint::serve::AppState;
use serde_json::{json, Value};

fn state() -> Arc<AppState> {
    static STATE: std::sync::OnceLock<Arc<AppState>> = std::sync::OnceLock::new();
    STATE.get_or_init(|| state_with(|_| {})).clone()
}

async fn post_json(state: Arc<AppState>, uri: &str, body: &Value) -> (StatusCode, Value) {
    let (status, _, bytes) = post(state, uri, body, true).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Asserts a 4xx JSON error whose detail names `field`.
fn assert_names(status: StatusCode, answer: &Value, expected: StatusCode, field: &str) {
    assert_eq!(status, expected, "{answer}");
    assert!(answer["error"].is_string(), "{answer}");
    let detail = answer["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(field),
        "detail `{detail}` does not name `{field}`"
    );
}

/// Item 9: 320 concurrent first requests for ten new cached images, and 320 concurrent
/// `return_urls` requests over ten bodies, all answer 200 (they used to share one temporary
/// file, and the second rename failed with a 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_requests_for_one_cached_image_all_succeed() {
    // A queue deep enough for all of them: this test is about the files, not overload.
    let state = state_with(|c| c.queue_depth = 1024);
    let mut tasks = Vec::new();
    for round in 0..32 {
        for id in 900..910u64 {
            let for_get = state.clone();
            tasks.push(tokio::spawn(async move {
                let uri = format!("/data/tiny/cache/img/id/{id}.jpg");
                let (status, _, body) = get(for_get, &uri).await;
                (status, body.len(), round)
            }));
            let state = state.clone();
            tasks.push(tokio::spawn(async move {
                let body = json!({ "project": "tiny", "ids": [id], "return_urls": 1,
                    "interventions": [{ "ablations": [{ "layer": "layer4", "unit": 3, "alpha": 1, "value": 2.5 }] }] });
                let (status, answer) = post_json(state, "/api/generate", &body).await;
                (status, answer.to_string().len(), round)
            }));
        }
    }
    let mut failures = std::collections::BTreeMap::new();
    for task in tasks {
        let (status, _, _) = task.await.unwrap();
        if status != StatusCode::OK {
            *failures.entry(status.as_u16()).or_insert(0) += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "failed statuses of 640 requests: {failures:?}"
    );
}

/// Item 12: numbers finite in f64 but not in f32 are refused, naming the field.
#[tokio::test(flavor = "multi_thread")]
async fn numbers_beyond_f32_are_refused_naming_the_field() {
    let bad = StatusCode::BAD_REQUEST;
    for (field, ablation) in [
        (
            "alpha",
            json!({ "layer": "layer4", "unit": 1, "alpha": 1e39, "value": 1 }),
        ),
        (
            "value",
            json!({ "layer": "layer4", "unit": 1, "alpha": 1, "value": -1e300 }),
        ),
    ] {
        let body = json!({ "project": "tiny", "ids": [1], "interventions": [{ "ablations": [ablation] }] });
        let (status, answer) = post_json(state(), "/api/generate", &body).await;
        assert_names(
            status,
            &answer,
            bad,
            &format!("interventions[0].ablations[0].{field}"),
        );
    }
    let mut z = vec![0.0f64; 16];
    z[5] = 1e39;
    let (status, answer) = post_json(
        state(),
        "/api/generate",
        &json!({ "project": "tiny", "zs": [z], "interventions": [{ "ablations": [] }] }),
    )
    .await;
    assert_names(status, &answer, bad, "zs[0][5]");
    let (status, answer) = post_json(
        state(),
        "/api/v1/paint",
        &json!({ "project": "tiny", "seed": 1, "strokes": [{ "concept": "tree", "mode": "draw", "mask": quarter_mask(), "units": 4, "strength": 1e39 }] }),
    )
    .await;
    assert_names(status, &answer, bad, "strokes[0].strength");
}

/// Six strokes over several masks, concepts and modes.
fn six_strokes() -> Vec<Value> {
    (0..6u32)
        .map(|k| {
            let mask = ganpaint::edit::mask::encode_png_mask(32, 32, move |x, y| {
                (x / 4 + y / 4 + k) % 3 == 0 || (x > 8 * k && y < 4 * k)
            });
            json!({ "concept": if k % 2 == 0 { "tree" } else { "grass" },
                "mode": if k % 3 == 2 { "remove" } else { "draw" },
                "mask": mask, "units": 4 + k as usize, "strength": 0.5 + k as f64 * 0.7 })
        })
        .collect()
}

/// The flattened-edit item: N strokes at once equal the first half, its `edit` sent back
/// as `base_edit`, and the second half: the same PNG bytes and the same `edit`.
#[tokio::test(flavor = "multi_thread")]
async fn base_edit_plus_the_rest_equals_all_strokes_at_once() {
    // Without the render cache both answers are full renders, so bytes can be compared.
    let state = state_with(|c| c.render_cache_mb = 0);
    let strokes = six_strokes();
    let paint = |body: Value| {
        let state = state.clone();
        async move {
            let (status, answer) = post_json(state, "/api/v1/paint", &body).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            answer
        }
    };
    let all = paint(json!({ "project": "tiny", "seed": 11, "strokes": strokes })).await;
    assert_eq!(all["edit"]["layer"], "layer4");
    assert_eq!(all["edit"]["shape"], json!([16, 8, 8]));
    assert!(!all["edit"]["units"].as_array().unwrap().is_empty());
    let half = paint(json!({ "project": "tiny", "seed": 11, "strokes": strokes[..3] })).await;
    let rest = paint(json!({ "project": "tiny", "seed": 11, "strokes": strokes[3..], "base_edit": half["edit"] })).await;
    assert_eq!(
        rest["image"], all["image"],
        "base_edit + rest differs from all at once"
    );
    assert_eq!(rest["edit"], all["edit"]);
    assert_eq!(rest["units"].as_array().unwrap().len(), 3);
    // The base alone gives the first half's image; no strokes and no base, an empty edit.
    let again =
        paint(json!({ "project": "tiny", "seed": 11, "strokes": [], "base_edit": half["edit"] }))
            .await;
    assert_eq!(again["image"], half["image"]);
    let plain = paint(json!({ "project": "tiny", "seed": 11, "strokes": [] })).await;
    assert_eq!(
        plain["edit"],
        json!({ "layer": "layer4", "shape": [16, 8, 8], "units": [] })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_base_edit_is_refused_naming_its_path() {
    let bad = StatusCode::BAD_REQUEST;
    let cases = [
        (
            json!({ "layer": "layer4", "units": [{ "unit": 16, "cells": [] }] }),
            "base_edit.units[0].unit",
        ),
        (
            json!({ "layer": "layer4", "units": [{ "unit": 1, "cells": [[64, 1, 2]] }] }),
            "base_edit.units[0].cells[0][0]",
        ),
        (
            json!({ "layer": "layer4", "units": [{ "unit": 1, "cells": [[3, 1, 1e39]] }] }),
            "base_edit.units[0].cells[0][2]",
        ),
        (
            json!({ "layer": "layer4", "units": [{ "unit": 1, "cells": [[3, 1.5, 1]] }] }),
            "base_edit.units[0].cells[0][1]",
        ),
        (
            json!({ "layer": "layer4", "units": [{ "unit": 1, "cells": [[3, 1, 1], [3, 1, 1]] }] }),
            "base_edit.units[0].cells[1][0]",
        ),
        (
            json!({ "layer": "layer4", "units": [{ "unit": 1, "cells": [[3, 1]] }] }),
            "base_edit.units[0].cells[0]",
        ),
        (
            json!({ "layer": "layer4", "units": [{ "unit": 2, "cells": [] }, { "unit": 2, "cells": [] }] }),
            "base_edit.units[1].unit",
        ),
        (
            json!({ "layer": "layer4", "shape": [16, 4, 4], "units": [] }),
            "base_edit.shape",
        ),
        (
            json!({ "layer": "layer4", "units": [], "extra": 1 }),
            "base_edit.extra",
        ),
        (json!({ "layer": "layer9", "units": [] }), "layer"),
        (json!({ "units": [] }), "base_edit.layer"),
        (json!([1, 2]), "base_edit"),
    ];
    for (base, field) in cases {
        let body = json!({ "project": "tiny", "seed": 1, "strokes": [], "base_edit": base });
        let (status, answer) = post_json(state(), "/api/v1/paint", &body).await;
        assert_names(status, &answer, bad, field);
    }
    // A layer given twice must agree.
    let body = json!({ "project": "tiny", "seed": 1, "layer": "layer4", "strokes": [],
        "base_edit": { "layer": "layer3", "units": [] } });
    let (status, answer) = post_json(state(), "/api/v1/paint", &body).await;
    assert_names(status, &answer, bad, "base_edit.layer");
}

/// Item 1: the default budget (64 Mi decoded pixels per request) takes four 4096² masks;
/// the fifth is refused, naming it.
#[tokio::test(flavor = "multi_thread")]
async fn mask_bombs_past_the_pixel_budget_are_refused_naming_the_mask() {
    let bomb = mask_bomb();
    assert!(bomb.len() < 16 << 10, "the bomb is {} bytes", bomb.len());
    let strokes: Vec<Value> = (0..16)
        .map(|_| json!({ "concept": "tree", "mode": "draw", "mask": bomb, "units": 4 }))
        .collect();
    let (status, answer) = post_json(
        state(),
        "/api/v1/paint",
        &json!({ "project": "tiny", "seed": 1, "strokes": strokes }),
    )
    .await;
    assert_names(status, &answer, StatusCode::BAD_REQUEST, "strokes[4].mask");
    let interventions: Vec<Value> = (0..16)
        .map(|_| json!({ "ablations": [{ "layer": "layer4", "unit": 1, "value": 2 }], "mask": { "bitstring": bomb, "shape": [], "bitbounds": [] } }))
        .collect();
    let (status, answer) = post_json(
        state(),
        "/api/generate",
        &json!({ "project": "tiny", "ids": [1], "interventions": interventions }),
    )
    .await;
    assert_names(
        status,
        &answer,
        StatusCode::BAD_REQUEST,
        "interventions[4].mask",
    );
}

/// Item 2: mask decoding and latents run off the async runtime. On a one-thread runtime,
/// `/healthz` is answered while a request decodes three 4096² masks (or walks the random
/// stream to id 2²⁰); both of those requests then fail validation after the work, so if
/// the work ran on the runtime they would have finished within their first poll.
#[tokio::test(flavor = "current_thread")]
async fn decoding_and_latents_leave_the_runtime_free() {
    let state = state();
    let bomb = mask_bomb();
    let mut interventions: Vec<Value> = (0..3)
        .map(|_| json!({ "ablations": [{ "layer": "layer4", "unit": 1, "value": 2 }], "mask": { "bitstring": bomb, "shape": [], "bitbounds": [] } }))
        .collect();
    interventions.push(json!({ "ablations": [{ "layer": "layer4", "unit": 1 }], "mask": { "bitstring": "data:image/png;base64,AAAA" } }));
    let heavy_bodies = [
        (
            json!({ "project": "tiny", "ids": [1], "interventions": interventions }),
            "interventions[3].mask",
        ),
        (
            json!({ "project": "tiny", "ids": [1 << 20], "interventions": [{ "ablations": [{ "layer": "layer4", "unit": 99 }] }] }),
            "unit",
        ),
    ];
    for (body, field) in heavy_bodies {
        let for_heavy = state.clone();
        let heavy = tokio::spawn(async move { post_json(for_heavy, "/api/generate", &body).await });
        // Let the heavy request start (and, were its work on the runtime, finish).
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let (status, _, _) = get(state.clone(), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert!(!heavy.is_finished(), "the {field} work ran on the runtime");
        let (status, answer) = heavy.await.unwrap();
        assert_names(status, &answer, StatusCode::BAD_REQUEST, field);
    }
}

/// Item 3: a query with more values than `--max-query-values` is refused, naming them.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_query_values_are_capped() {
    let many: String = (0..100).map(|i| format!("&quantiles=0.{i:02}")).collect();
    let (status, _, body) = get(
        state(),
        &format!("/api/levels?project=tiny&layer=layer4{many}"),
    )
    .await;
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_names(status, &answer, StatusCode::BAD_REQUEST, "quantiles");
    let (status, _, _) = get(
        state(),
        "/api/levels?project=tiny&layer=layer4&quantiles=0.5",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// Items 11 and 13: every error answer of every layer is our JSON body, with its status
/// (and `Allow` for 405); names too long for the file system are 404, not 500.
#[tokio::test(flavor = "multi_thread")]
async fn every_error_answer_is_json_with_the_right_status() {
    use axum::body::Body;
    use axum::http::{header, Request};
    let long = "a".repeat(300);
    let mut cases: Vec<(Request<Body>, StatusCode)> = vec![
        (
            Request::get(format!("/data/{long}"))
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
        ),
        (
            Request::get(format!("/client/{long}"))
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
        ),
        (
            Request::get(format!("/{long}"))
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
        ),
        (
            Request::get(format!("/data/tiny/{}", "%41".repeat(200)))
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
        ),
        (
            Request::get("/client/no-such-file.js")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
        ),
        (
            Request::get("/data/tiny/no-such-file.jpg")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
        ),
        (
            Request::get("/api/v1/paint").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Request::post("/healthz").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Request::post("/api/v1/paint")
                .header(header::CONTENT_LENGTH, "99999999999")
                .body(Body::empty())
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Request::get(format!("/api/layers?project={}", "x".repeat(9000)))
                .body(Body::empty())
                .unwrap(),
            StatusCode::URI_TOO_LONG,
        ),
    ];
    let mut many_headers = Request::get("/healthz");
    for i in 0..150 {
        many_headers = many_headers.header(format!("x-h{i}"), "1");
    }
    cases.push((
        many_headers.body(Body::empty()).unwrap(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    ));
    for (request, expected) in cases {
        let uri = request.uri().to_string();
        let (status, headers, body) = common::http::call(state(), request).await;
        assert_eq!(status, expected, "{uri}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{uri}");
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            answer["error"].is_string() && answer["detail"].is_string(),
            "{uri}: {answer}"
        );
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(
                headers.contains_key(header::ALLOW),
                "{uri}: 405 without Allow"
            );
        }
    }
}

/// A copy of the tiny project's data folder, so a test can change its cache freely.
fn private_data_dir(name: &str) -> std::path::PathBuf {
    let source = common::tiny_data_dir().join("tiny");
    let root = std::env::temp_dir().join(format!("ganpaint-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let target = root.join("tiny");
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == "cache") {
                continue;
            }
            if path.is_dir() {
                copy(&path, &to.join(entry.file_name()));
            } else {
                std::fs::copy(&path, to.join(entry.file_name())).unwrap();
            }
        }
    }
    copy(&source, &target);
    root
}

fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        files_under(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Item 10: the disk cache stays within `--disk-cache-mb`; `return_urls` files are named
/// by the edit, not the body; `0009.jpg` is refused without writing anything.
#[tokio::test(flavor = "multi_thread")]
async fn the_disk_cache_is_bounded_and_keyed_by_the_edit() {
    let data = private_data_dir("disk-cache");
    let cache = data.join("tiny/cache");
    let state = state_with(|c| {
        c.data = data.clone();
        c.disk_cache_mb = 0;
    });
    for id in 0..5 {
        let (status, headers, jpeg) =
            get(state.clone(), &format!("/data/tiny/cache/img/id/{id}.jpg")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "image/jpeg");
        assert!(image::load_from_memory(&jpeg).is_ok());
    }
    assert_eq!(files_under(&cache), 0, "a zero budget keeps no file");
    let (status, _, _) = get(state.clone(), "/data/tiny/cache/img/id/0009.jpg").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(files_under(&cache), 0);

    let roomy = state_with(|c| c.data = data.clone());
    let edit =
        json!([{ "ablations": [{ "layer": "layer4", "unit": 2, "alpha": 1, "value": 3.0 }] }]);
    let mut urls = Vec::new();
    for extra in 0..3 {
        let body = json!({ "project": "tiny", "ids": [5], "return_urls": 1, "extra": extra, "interventions": edit });
        let (status, answer) = post_json(roomy.clone(), "/api/generate", &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        urls.push(answer["res"][0]["d"].as_str().unwrap().to_string());
    }
    assert!(urls.iter().all(|u| *u == urls[0]), "{urls:?}");
    assert_eq!(files_under(&cache.join("img/edit")), 1);
    let _ = std::fs::remove_dir_all(&data);
}
