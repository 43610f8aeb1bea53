//! The HTTP load test: the bundled project served in-process, both paint routes driven
//! at several concurrencies by our own client.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::report::{HttpCase, HttpReport};
use super::stats::{round3, Latency};
use crate::model::{DeviceChoice, Precision};

/// What the load test serves and how hard it drives it.
pub struct HttpSettings {
    pub data: PathBuf,
    pub device: DeviceChoice,
    pub precision: Precision,
    pub seconds: f64,
    pub concurrency: Vec<usize>,
}

type Body = Arc<dyn Fn(u64) -> Value + Send + Sync>;

/// One HTTP case: `concurrency` clients posting for `seconds`.
async fn load(
    client: &reqwest::Client,
    route: &str,
    url: String,
    body: Body,
    concurrency: usize,
    seconds: f64,
    counter: Arc<AtomicU64>,
) -> HttpCase {
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body, counter) =
            (client.clone(), url.clone(), body.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok_ms, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < until {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                let response = client.post(&url).json(&body(n)).send().await;
                let ok = match response {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                if ok {
                    ok_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors += 1;
                }
            }
            (ok_ms, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for task in tasks {
        if let Ok((ms, e)) = task.await {
            all.extend(ms);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    HttpCase {
        route: route.to_string(),
        concurrency,
        requests: all.len(),
        errors,
        requests_per_s: round3(all.len() as f64 / elapsed),
        latency_ms: Latency::of(&all),
    }
}

/// Serves `settings.data` in-process on a free port and drives both paint routes.
pub fn bench_http(settings: &HttpSettings) -> anyhow::Result<HttpReport> {
    let mut config = crate::serve::ServeConfig::with_data(settings.data.clone());
    config.device = settings.device;
    config.precision = settings.precision;
    // Every request is a full render: this measures the batched forward path. (The
    // render cache's speed-up is the incremental case.)
    config.render_cache_mb = 0;
    let state = Arc::new(crate::serve::AppState::load(config)?);
    let Some((project, layer)) = state
        .projects
        .iter()
        .next()
        .map(|(id, p)| (id.clone(), p.default_layer().clone()))
    else {
        bail!("no project under {}", settings.data.display());
    };
    let concept = paintable_concept(&layer)?;
    let resolution = state.projects[&project].resolution() as u32;
    let mask = crate::edit::mask::encode_png_mask(resolution, resolution, |x, y| {
        x >= resolution / 4 && x < resolution / 2 && y >= resolution / 4 && y < resolution / 2
    });
    let units: Vec<Value> = layer
        .concept_units(&concept)
        .unwrap_or_default()
        .into_iter()
        .take(20)
        .map(|(u, _)| {
            let level = layer.level(u, 0.99).unwrap_or(1.0);
            json!({ "layer": layer.name, "unit": u, "alpha": 1, "value": level })
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, crate::serve::app(state)).await;
        });
        let client = reqwest::Client::builder().build()?;
        let mut cases = Vec::new();
        // One counter across every case, so no two requests ask for the same image.
        let counter = Arc::new(AtomicU64::new(0));
        let paint_project = project.clone();
        let paint: Body = Arc::new(move |n| {
            json!({ "project": paint_project, "seed": 1_000_000 + n, "strokes": [
                { "concept": concept, "mode": "draw", "mask": mask, "units": 20 }] })
        });
        let mask_compat = crate::edit::mask::encode_png_mask(resolution, resolution, |x, y| {
            x < resolution / 2 && y < resolution / 2
        });
        let compat_project = project.clone();
        let compat: Body = Arc::new(move |n| {
            json!({ "project": compat_project, "ids": [n % 10_000], "wantz": 0, "return_urls": 0,
                "interventions": [{ "ablations": units,
                    "mask": { "bitbounds": [], "bitstring": mask_compat, "shape": [] } }] })
        });
        for (route, body) in [("/api/v1/paint", paint), ("/api/generate", compat)] {
            for &c in &settings.concurrency {
                let url = format!("http://{address}{route}");
                let case = load(
                    &client,
                    route,
                    url,
                    body.clone(),
                    c,
                    settings.seconds,
                    counter.clone(),
                )
                .await;
                cases.push(case);
            }
        }
        server.abort();
        Ok(HttpReport {
            project,
            cases,
            against_passes: Vec::new(),
        })
    })
}

/// The first concept of `layer` that some unit overlaps (one a stroke can paint).
pub(super) fn paintable_concept(
    layer: &crate::serve::project::ProjectLayer,
) -> anyhow::Result<String> {
    layer
        .concepts()
        .map(|c| c.concept.clone())
        .find(|c| {
            layer
                .concept_units(c)
                .is_some_and(|u| u.first().is_some_and(|&(_, iou)| iou > 0.0))
        })
        .context("the project has no paintable concept")
}
