//! The HTTP API end to end: every endpoint with the original client's request shapes,
//! every error case, batching under concurrency, backpressure and path safety.
//! Most tests drive the router in-process; the concurrency test uses a real socket.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::http::{call, decode_data_url, quarter_mask, state_with};
use ganpaint::edit::mask::encode_png_mask;
use ganpaint::serve::{app, AppState};
use serde_json::{json, Value};
use tower::ServiceExt;

fn state() -> Arc<AppState> {
    static STATE: std::sync::OnceLock<Arc<AppState>> = std::sync::OnceLock::new();
    STATE.get_or_init(|| state_with(|_| {})).clone()
}

async fn get_json(uri: &str) -> (StatusCode, Value) {
    let (status, _, body) = common::http::get(state(), uri).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn post(
    uri: &str,
    body: &Value,
    accept_json: bool,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    common::http::post(state(), uri, body, accept_json).await
}

async fn post_json(uri: &str, body: &Value) -> (StatusCode, Value) {
    let (status, _, bytes) = post(uri, body, true).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn all_projects_is_a_bare_sorted_array() {
    let (status, body) = get_json("/api/all_projects").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!([{ "project": "tiny", "info": { "layers": ["layer4"] } }])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn layers_units_rankings_channels_echo_the_request() {
    let (status, body) = get_json("/api/layers?project=tiny").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["request"], json!({ "project": "tiny" }));
    assert_eq!(
        body["res"],
        json!([{ "layer": "layer4", "channels": 16, "shape": [8, 8] }])
    );

    let (_, body) = get_json("/api/units?project=tiny&layer=layer4").await;
    let units = body["res"].as_array().unwrap();
    assert_eq!(units.len(), 16);
    assert_eq!(units[3]["unit"], 3);
    assert_eq!(units[3]["img"], "/data/tiny/layer4/s-image/3-top.jpg");
    assert!(units[3]["label"].is_string());

    let (_, body) = get_json("/api/rankings?project=tiny&layer=layer4").await;
    let rankings = body["res"].as_array().unwrap();
    assert!(!rankings.is_empty());
    assert!(rankings
        .iter()
        .all(|r| r["scores"].as_array().unwrap().len() == 16));
    // The IoU rankings, and the causal ones the dissection added (the client lists both;
    // the tiny project's untrained segmenter gives signal for some concepts only).
    assert!(rankings
        .iter()
        .any(|r| r["name"] == "tree-iou" && r["metric"] == "iou"));
    let causal: Vec<&Value> = rankings
        .iter()
        .filter(|r| r["metric"].as_str().unwrap().starts_with("causal-"))
        .collect();
    assert!(!causal.is_empty(), "no causal ranking");
    for r in causal {
        let name = r["name"].as_str().unwrap();
        assert!(name.ends_with(r["metric"].as_str().unwrap()), "{name}");
    }

    let (_, body) = get_json("/api/channels?project=tiny&layer=layer4").await;
    let channels = body["res"].as_array().unwrap();
    assert_eq!(channels.len(), 16);
    assert!(channels[0]["iou"].is_number() && channels[0]["label"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn levels_answer_c_by_q_and_grow_with_the_quantile() {
    let (status, body) =
        get_json("/api/levels?project=tiny&layer=layer4&quantiles=0.5&quantiles=0.99").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["request"]["quantiles"], json!(["0.5", "0.99"]));
    let rows = body["res"].as_array().unwrap();
    assert_eq!(rows.len(), 16);
    for row in rows {
        let (q50, q99) = (row[0].as_f64().unwrap(), row[1].as_f64().unwrap());
        assert!(q50 <= q99, "{row}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_by_ids_answers_cache_urls_that_serve_jpegs() {
    let body = json!({ "project": "tiny", "ids": [3, 104], "wantz": 0, "return_urls": 0 });
    let (status, answer) = post_json("/api/generate", &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["request"], body);
    assert_eq!(
        answer["res"][1],
        json!({ "id": 104, "d": "/data/tiny/cache/img/id/104.jpg" })
    );
    let (status, headers, jpeg) = call(
        state(),
        Request::get("/data/tiny/cache/img/id/104.jpg")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/jpeg");
    let image = image::load_from_memory(&jpeg).unwrap();
    assert_eq!((image.width(), image.height()), (16, 16));
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_with_the_clients_intervention_shape_changes_only_near_the_mask() {
    let ablations: Vec<Value> = (0..16)
        .map(|u| json!({ "layer": "layer4", "unit": u, "alpha": 1, "value": 8.25 }))
        .collect();
    let body = json!({ "project": "tiny", "ids": [104], "wantz": 0, "return_urls": 0,
        "interventions": [{ "ablations": ablations, "mask": { "bitbounds": [], "bitstring": quarter_mask(), "shape": [] } }] });
    let (status, answer) = post_json("/api/generate", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let url = answer["res"][0]["d"].as_str().unwrap();
    assert!(url.starts_with("data:image/jpeg;base64,"));
    let edited = decode_data_url(url);
    // The same image without edits, via zs (the model's own z for id 104).
    let plain_body =
        json!({ "project": "tiny", "ids": [104], "interventions": [{ "ablations": [] }] });
    let (_, plain) = post_json("/api/generate", &plain_body).await;
    let plain = decode_data_url(plain["res"][0]["d"].as_str().unwrap());
    let diff = |x0: u32, x1: u32, y0: u32, y1: u32| -> f64 {
        let mut total = 0.0;
        for y in y0..y1 {
            for x in x0..x1 {
                for c in 0..3 {
                    total +=
                        (edited.get_pixel(x, y)[c] as f64 - plain.get_pixel(x, y)[c] as f64).abs();
                }
            }
        }
        total / ((x1 - x0) * (y1 - y0)) as f64
    };
    let inside = diff(0, 8, 0, 8);
    let far = diff(12, 16, 12, 16);
    assert!(inside > 1.0, "painting changed nothing inside ({inside})");
    assert!(inside > far, "inside {inside} vs far corner {far}");
}

#[tokio::test(flavor = "multi_thread")]
async fn return_urls_with_edits_writes_cached_jpegs() {
    let body = json!({ "project": "tiny", "ids": [5], "return_urls": 1,
        "interventions": [{ "ablations": [{ "layer": "layer4", "unit": 2, "alpha": null, "value": 3.0 }] }] });
    let (status, answer) = post_json("/api/generate", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let url = answer["res"][0]["d"].as_str().unwrap().to_string();
    assert!(url.starts_with("/data/tiny/cache/img/edit/"), "{url}");
    let (status, _, jpeg) = call(
        state(),
        Request::get(url.as_str()).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(image::load_from_memory(&jpeg).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn features_and_featuremaps_cover_many_ids() {
    let ids: Vec<u64> = (0..12).collect(); // the original crashed above 10
    let body = json!({ "project": "tiny", "ids": ids, "masks": [{ "bitbounds": [], "bitstring": quarter_mask(), "shape": [] }], "layers": ["layer4"] });
    let (status, answer) = post_json("/api/features", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let layer = &answer["res"]["layer4"];
    for key in ["max", "mean", "max_quantile", "mean_quantile"] {
        assert_eq!(layer[key].as_array().unwrap().len(), 16, "{key}");
    }
    let (max, mean) = (
        layer["max"][0].as_f64().unwrap(),
        layer["mean"][0].as_f64().unwrap(),
    );
    assert!(max >= mean, "max {max} < mean {mean}");

    let body = json!({ "project": "tiny", "ids": [1, 2] });
    let (status, answer) = post_json("/api/featuremaps", &body).await;
    assert_eq!(status, StatusCode::OK);
    let maps = answer["res"]["layer4"].as_array().unwrap();
    assert_eq!(maps.len(), 2);
    assert_eq!(maps[0].as_array().unwrap().len(), 16);
    assert_eq!(maps[0][0].as_array().unwrap().len(), 8);
    assert_eq!(maps[0][0][0].as_array().unwrap().len(), 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn native_projects_generate_and_paint() {
    let (status, projects) = get_json("/api/v1/projects").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(projects[0]["name"], "tiny");
    assert_eq!(projects[0]["resolution"], 16);
    assert_eq!(projects[0]["default_layer"], "layer4");
    assert_eq!(projects[0]["layers"][0]["grid"], json!([8, 8]));

    let (status, headers, png) = post(
        "/api/v1/generate",
        &json!({ "project": "tiny", "seeds": [42] }),
        false,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/png");
    let plain = image::load_from_memory(&png).unwrap().to_rgb8();

    let (status, many) = post_json(
        "/api/v1/generate",
        &json!({ "project": "tiny", "ids": [0, 1, 2] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(many["images"].as_array().unwrap().len(), 3);

    let paint = json!({ "project": "tiny", "seed": 42, "strokes": [{ "concept": "tree", "mode": "draw", "mask": quarter_mask(), "units": 8, "strength": 2.0 }] });
    let (status, answer) = post_json("/api/v1/paint", &paint).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["units"][0].as_array().unwrap().len(), 8);
    assert!(answer["timing"]["total_ms"].as_f64().unwrap() > 0.0);
    let painted = decode_data_url(answer["image"].as_str().unwrap());
    assert_ne!(painted, plain, "draw changed nothing");

    // No strokes: exactly the generated image.
    let (_, _, png) = post(
        "/api/v1/paint",
        &json!({ "project": "tiny", "seed": 42, "strokes": [] }),
        false,
    )
    .await;
    assert_eq!(image::load_from_memory(&png).unwrap().to_rgb8(), plain);

    let (status, _) = get_json("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_documents_the_native_routes() {
    let (_, doc) = get_json("/api/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/projects",
        "/api/v1/generate",
        "/api/v1/paint",
        "/api/v1/images",
        "/api/v1/images/{image}",
        "/api/v1/images/{image}/picture.png",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    let paint = &doc["paths"]["/api/v1/paint"]["post"]["responses"]["200"]["content"];
    assert!(paint["image/png"].is_object() && paint["application/json"].is_object());
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["PaintRequest"]["properties"]["project"]["enum"],
        json!(["tiny"])
    );
    assert_eq!(
        schemas["PaintRequest"]["oneOf"],
        json!([{ "required": ["id"] }, { "required": ["seed"] }, { "required": ["image"] }])
    );
    assert_eq!(
        schemas["PaintRequest"]["properties"]["image"]["pattern"],
        "^upload-[0-9a-f]{32}$"
    );
    assert_eq!(
        schemas["GenerateRequest"]["properties"]["seeds"]["items"]["format"],
        "uint64"
    );
    assert!(schemas["PaintResponse"]["properties"]["edit"].is_object());
    assert!(schemas["PaintRequest"]["properties"]["base_edit"].is_object());
}

async fn expect_error(uri: &str, body: Value, status: StatusCode, field: &str) {
    let (got, answer) = post_json(uri, &body).await;
    assert_eq!(got, status, "{uri} {body}: {answer}");
    assert!(answer["error"].is_string(), "{answer}");
    let detail = answer["detail"].as_str().unwrap();
    assert!(
        detail.contains(field),
        "detail `{detail}` does not name `{field}`"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_get_4xx_naming_the_field() {
    let bad = StatusCode::BAD_REQUEST;
    expect_error(
        "/api/generate",
        json!({ "project": "nope", "ids": [1] }),
        bad,
        "project",
    )
    .await;
    expect_error(
        "/api/generate",
        json!({ "project": "tiny", "ids": [1], "zs": [[0.0]] }),
        bad,
        "ids",
    )
    .await;
    expect_error("/api/generate", json!({ "project": "tiny" }), bad, "ids").await;
    expect_error(
        "/api/generate",
        json!({ "project": "tiny", "zs": [[0.5, 0.1]] }),
        bad,
        "zs[0]",
    )
    .await;
    expect_error(
        "/api/generate",
        json!({ "project": "tiny", "ids": [-1] }),
        bad,
        "ids",
    )
    .await;
    expect_error(
        "/api/generate",
        json!({ "project": "tiny", "ids": [1u64 << 40] }),
        bad,
        "ids",
    )
    .await;
    expect_error(
        "/api/generate",
        json!({ "project": "tiny", "ids": (0..65).collect::<Vec<_>>() }),
        bad,
        "ids",
    )
    .await;
    let unit_out = json!({ "project": "tiny", "ids": [1], "interventions": [{ "ablations": [{ "layer": "layer4", "unit": 99, "alpha": 1, "value": 1 }] }] });
    expect_error("/api/generate", unit_out, bad, "unit").await;
    let layer_bad = json!({ "project": "tiny", "ids": [1], "interventions": [{ "ablations": [{ "layer": "layer77", "unit": 1 }] }] });
    expect_error("/api/generate", layer_bad, bad, "layer").await;
    let mask_bad = json!({ "project": "tiny", "ids": [1], "interventions": [{ "ablations": [{ "layer": "layer4", "unit": 1 }], "mask": { "bitstring": "data:image/png;base64,AAAA" } }] });
    expect_error("/api/generate", mask_bad, bad, "mask").await;

    let stroke = |concept: &str, mask: String| json!({ "concept": concept, "mode": "draw", "mask": mask, "units": 4 });
    expect_error(
        "/api/v1/paint",
        json!({ "project": "tiny", "seed": 1, "strokes": [stroke("unicorn", quarter_mask())] }),
        bad,
        "strokes[0].concept",
    )
    .await;
    expect_error(
        "/api/v1/paint",
        json!({ "project": "tiny", "seed": 1, "strokes": [stroke("tree", "not a png".into())] }),
        bad,
        "strokes[0].mask",
    )
    .await;
    let huge = encode_png_mask(4097, 1, |_, _| true);
    expect_error(
        "/api/v1/paint",
        json!({ "project": "tiny", "seed": 1, "strokes": [stroke("tree", huge)] }),
        bad,
        "mask",
    )
    .await;
    expect_error(
        "/api/v1/paint",
        json!({ "project": "tiny", "seed": 1, "layer": "layer9", "strokes": [] }),
        bad,
        "layer",
    )
    .await;
    expect_error(
        "/api/v1/paint",
        json!({ "project": "tiny", "id": 1, "seed": 1, "strokes": [] }),
        bad,
        "id",
    )
    .await;
    let many: Vec<Value> = (0..65).map(|_| stroke("tree", quarter_mask())).collect();
    expect_error(
        "/api/v1/paint",
        json!({ "project": "tiny", "seed": 1, "strokes": many }),
        bad,
        "strokes",
    )
    .await;
    expect_error("/api/v1/paint", json!({ "project": "tiny", "seed": 1, "strokes": [{ "concept": "tree", "mode": "erase", "mask": quarter_mask() }] }), bad, "body").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_and_oversized_bodies_are_refused() {
    let request = Request::post("/api/v1/paint")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let (status, _, body) = call(state(), request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        answer["detail"].as_str().unwrap().contains("body"),
        "{answer}"
    );

    let big = format!(
        "{{\"project\":\"tiny\",\"pad\":\"{}\"}}",
        "x".repeat(9 << 20)
    );
    let request = Request::post("/api/generate")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(big))
        .unwrap();
    let (status, _, _) = call(state(), request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_project_and_layer_in_queries_are_400() {
    let (status, body) = get_json("/api/layers?project=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("project"));
    let (status, body) = get_json("/api/units?project=tiny&layer=layer99").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("layer"));
    let (status, _) = get_json("/api/levels?project=tiny&layer=layer4&quantiles=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn path_traversal_is_refused() {
    for uri in [
        "/data/../Cargo.toml",
        "/data/%2e%2e/g.safetensors",
        "/client/../Cargo.toml",
        "/client/%2e%2e/%2e%2e/etc/passwd",
        "/data/tiny/cache/img/id/..%2f..%2fg.safetensors",
    ] {
        let (status, _, body) = call(state(), Request::get(uri).body(Body::empty()).unwrap()).await;
        assert!(status.is_client_error(), "{uri} answered {status}");
        assert!(
            !String::from_utf8_lossy(&body).contains("[package]"),
            "{uri} leaked a file"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_metrics() {
    let (status, body) = get_json("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let _ = post_json(
        "/api/v1/generate",
        &json!({ "project": "tiny", "seeds": [1, 2] }),
    )
    .await;
    let (status, _, text) = call(
        state(),
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("ganpaint_http_requests_total{method=\"POST\",route=\"/api/v1/generate\",status=\"200\"}"), "{text}");
    assert!(text.contains("ganpaint_queue_depth{project=\"tiny\"}"));
    assert!(text.contains("ganpaint_batch_size_count"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_answers_503_with_retry_after_and_is_counted() {
    let state = state_with(|c| {
        c.queue_depth = 1;
        c.max_batch = 1;
    });
    let ablations: Vec<Value> = (0..16)
        .map(|u| json!({ "layer": "layer4", "unit": u, "value": 5.0 }))
        .collect();
    let body = json!({ "project": "tiny", "ids": (0..64).collect::<Vec<_>>(), "interventions": [{ "ablations": ablations }] });
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (state, body) = (state.clone(), body.to_string());
        tasks.push(tokio::spawn(async move {
            let request = Request::post("/api/generate")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap();
            let response = app(state).oneshot(request).await.unwrap();
            (
                response.status(),
                response.headers().get(header::RETRY_AFTER).cloned(),
            )
        }));
    }
    let mut overloaded = 0;
    for task in tasks {
        let (status, retry) = task.await.unwrap();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            overloaded += 1;
            assert!(retry.is_some(), "503 without Retry-After");
        } else {
            assert_eq!(status, StatusCode::OK);
        }
    }
    assert!(
        overloaded > 0,
        "40 simultaneous requests never filled a queue of 1"
    );
    // Issue 13.14: each 503 is counted (and logged at most once per interval).
    let (_, _, text) = call(state, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(&format!("ganpaint_overloaded_total {overloaded}")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_two_concurrent_paints_match_sequential_pixels() {
    let state = state();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
    let client = reqwest::Client::new();
    let url = format!("http://{address}/api/v1/paint");
    let request = |i: u64| {
        let mask = encode_png_mask(32, 32, move |x, y| (x + y + i as u32).is_multiple_of(5));
        json!({ "project": "tiny", "seed": i, "strokes": [{ "concept": "tree", "mode": if i.is_multiple_of(2) { "draw" } else { "remove" }, "mask": mask, "units": 4 }] })
    };
    let mut sequential = Vec::new();
    for i in 0..32 {
        let response = client.post(&url).json(&request(i)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        sequential.push(response.bytes().await.unwrap());
    }
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let (client, url, body) = (client.clone(), url.clone(), request(i));
            tokio::spawn(async move {
                let response = client.post(&url).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap()
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let concurrent = handle.await.unwrap();
        let a = image::load_from_memory(&concurrent).unwrap().to_rgb8();
        let b = image::load_from_memory(&sequential[i]).unwrap().to_rgb8();
        assert_eq!(a, b, "paint {i} differs when batched");
    }
}

/// The next stroke of a stack is re-rendered incrementally from the kept render, and the
/// image equals what a server without the render cache computes from scratch.
#[tokio::test(flavor = "multi_thread")]
async fn next_stroke_renders_incrementally_and_equals_a_full_render() {
    let cached = state_with(|_| {});
    let uncached = state_with(|c| c.render_cache_mb = 0);
    let stroke = |concept: &str, mode: &str, mask: String| json!({ "concept": concept, "mode": mode, "mask": mask, "units": 8, "strength": 2.0 });
    let first = stroke("tree", "draw", quarter_mask());
    let corner = encode_png_mask(32, 32, |x, y| x >= 28 && y >= 28);
    let second = stroke("grass", "remove", corner);
    let stacks = [
        vec![first.clone()],
        vec![first.clone(), second.clone()],
        vec![first.clone()],
    ];
    let paint = |state: Arc<AppState>, strokes: Vec<Value>| async move {
        let body = json!({ "project": "tiny", "seed": 7, "strokes": strokes });
        let request = Request::post("/api/v1/paint")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, _, bytes) = call(state, request).await;
        assert_eq!(status, StatusCode::OK);
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        (
            decode_data_url(answer["image"].as_str().unwrap()),
            answer["timing"]["recomputed"].as_f64().unwrap(),
        )
    };
    let mut previous = None;
    for (step, stack) in stacks.into_iter().enumerate() {
        let (incremental, share) = paint(cached.clone(), stack.clone()).await;
        let (full, full_share) = paint(uncached.clone(), stack).await;
        assert_eq!(full_share, 1.0);
        if step == 0 {
            assert_eq!(share, 1.0, "the first render of an image is whole");
        } else {
            assert!(share > 0.0 && share < 1.0, "step {step} recomputed {share}");
        }
        let worst = incremental
            .as_raw()
            .iter()
            .zip(full.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        // Only the rounding of differently tiled bf16 convolutions may differ.
        assert!(worst <= 3, "incremental differs from full by {worst}/255");
        assert_ne!(
            previous.as_ref(),
            Some(&incremental),
            "stroke changed nothing"
        );
        previous = Some(incremental);
    }
    let (_, _, metrics) = call(
        cached,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    let metrics = String::from_utf8(metrics).unwrap();
    let count: f64 = metrics
        .lines()
        .find(|l| l.starts_with("ganpaint_incremental_work_fraction_count"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(count, 2.0, "the second and third strokes are incremental");
}

/// An edit of the output layer itself leaves no later block to keep: repeating it must
/// neither crash the worker nor stop the project from answering.
#[tokio::test(flavor = "multi_thread")]
async fn repeated_edits_of_the_output_layer_keep_the_worker_alive() {
    let body = json!({ "project": "tiny", "ids": [3], "interventions": [{ "ablations": [
        { "layer": "output_16x16", "unit": 1, "alpha": 1, "value": 0.5 }] }] });
    for _ in 0..3 {
        let (status, answer) = post_json("/api/generate", &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let (status, answer) = post_json(
        "/api/generate",
        &json!({ "project": "tiny", "ids": [4], "interventions": [{ "ablations": [] }] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}
