//! The HTTP load test: the bundled project served in-process, both paint routes driven
//! at several concurrencies by our own client.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::report::{HttpCase, HttpReport, HttpRouteRatio};
use super::stats::{round3, Latency, RatioStats};
use crate::model::{DeviceChoice, Precision};

/// What the load test serves and how hard it drives it.
pub struct HttpSettings {
    pub data: PathBuf,
    pub device: DeviceChoice,
    pub precision: Precision,
    pub seconds: f64,
    pub concurrency: Vec<usize>,
    /// At each concurrency the two routes alternate in this many rounds (the order
    /// reversed every other round), each driven `seconds / rounds` per round, so that a
    /// machine whose speed drifts does not favour the route that ran first.
    pub rounds: usize,
}

type Body = Arc<dyn Fn(u64) -> Value + Send + Sync>;

/// What `concurrency` clients posting for `seconds` got: each success's milliseconds and
/// the count of failures.
async fn load(
    client: &reqwest::Client,
    url: String,
    body: Body,
    concurrency: usize,
    seconds: f64,
    counter: Arc<AtomicU64>,
) -> (Vec<f64>, u64) {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
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
    (all, errors)
}

/// One route's samples at one concurrency, gathered over the rounds.
#[derive(Default)]
struct Gathered {
    ms: Vec<f64>,
    errors: u64,
    seconds: f64,
    /// Each round's median (NaN for a round without a success).
    round_p50: Vec<f64>,
}

impl Gathered {
    fn case(&self, route: &str, concurrency: usize) -> HttpCase {
        HttpCase {
            route: route.to_string(),
            concurrency,
            requests: self.ms.len(),
            errors: self.errors,
            requests_per_s: round3(self.ms.len() as f64 / self.seconds.max(1e-9)),
            latency_ms: Latency::of(&self.ms),
        }
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
        let routes = [("/api/v1/paint", paint), ("/api/generate", compat)];
        let rounds = settings.rounds.max(1);
        let mut route_ratios = Vec::new();
        for &c in &settings.concurrency {
            let mut gathered: Vec<Gathered> = routes.iter().map(|_| Gathered::default()).collect();
            for round in 0..rounds {
                let mut order: Vec<usize> = (0..routes.len()).collect();
                if round % 2 == 1 {
                    order.reverse();
                }
                for i in order {
                    let (route, body) = &routes[i];
                    let started = Instant::now();
                    let (ms, errors) = load(
                        &client,
                        format!("http://{address}{route}"),
                        body.clone(),
                        c,
                        settings.seconds / rounds as f64,
                        counter.clone(),
                    )
                    .await;
                    let g = &mut gathered[i];
                    g.seconds += started.elapsed().as_secs_f64();
                    g.round_p50
                        .push(Latency::of(&ms).map_or(f64::NAN, |l| l.p50_ms));
                    g.ms.extend(ms);
                    g.errors += errors;
                }
            }
            for ((route, _), g) in routes.iter().zip(&gathered) {
                cases.push(g.case(route, c));
            }
            if let Some(stats) =
                RatioStats::of_rounds(&gathered[1].round_p50, &gathered[0].round_p50)
            {
                route_ratios.push(HttpRouteRatio {
                    concurrency: c,
                    generate_vs_paint: stats,
                });
            }
        }
        server.abort();
        Ok(HttpReport {
            project,
            rounds,
            cases,
            generate_vs_paint: route_ratios,
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
