//! The HTTP load test: the bundled project served in-process, both paint routes driven
//! at several concurrencies by our own client.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::report::{HttpCase, HttpEditing, HttpReport, HttpRouteRatio};
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

/// Strokes each image gets in the editing case: a person paints this many strokes on a
/// picture before taking the next.
pub const EDIT_STROKES: u64 = 8;

/// The editing case's request `n`: image id `n / EDIT_STROKES` (low ids, whose z is cheap
/// to reach: id `i` costs `i·D` normal draws the first time), carrying its first
/// `n % EDIT_STROKES + 1` strokes, as GAN Dissection's client resends the whole stroke
/// stack with every stroke. Each stroke is a 2×2-cell square of the layer's grid at its
/// own place, so each request adds exactly one such stroke to the one before.
fn editing_body(
    project: String,
    ablations: Vec<Value>,
    resolution: u32,
    grid: u32,
) -> impl Fn(u64) -> Value + Send + Sync {
    let cell = (resolution / grid.max(1)).max(1);
    let places = grid.saturating_sub(1).max(1) as u64;
    // Square k of image i sits at cell ((3k + i) mod places, (5k + 2i) mod places).
    let masks: Vec<Vec<String>> = (0..places)
        .map(|i| {
            (0..EDIT_STROKES)
                .map(|k| {
                    let cx = ((3 * k + i) % places) as u32 * cell;
                    let cy = ((5 * k + 2 * i) % places) as u32 * cell;
                    crate::edit::mask::encode_png_mask(resolution, resolution, |x, y| {
                        x >= cx && x < cx + 2 * cell && y >= cy && y < cy + 2 * cell
                    })
                })
                .collect()
        })
        .collect();
    move |n| {
        let (image, strokes) = (n / EDIT_STROKES, n % EDIT_STROKES + 1);
        let masks = &masks[(image % places) as usize];
        let interventions: Vec<Value> = masks[..strokes as usize]
            .iter()
            .map(|mask| {
                json!({ "ablations": ablations,
                    "mask": { "bitbounds": [], "bitstring": mask, "shape": [] } })
            })
            .collect();
        json!({ "project": project, "ids": [image], "wantz": 0, "return_urls": 0,
            "interventions": interventions })
    }
}

/// What `concurrency` clients posting for `seconds` got: the milliseconds of each success
/// whose request number `timed` accepts, and the count of failures.
async fn load(
    client: &reqwest::Client,
    url: String,
    body: Body,
    concurrency: usize,
    seconds: f64,
    counter: Arc<AtomicU64>,
    timed: fn(u64) -> bool,
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
                if !ok {
                    errors += 1;
                } else if timed(n) {
                    ok_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
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
    /// Adds one round: what [`load`] got from a run that began at `started`.
    fn add_round(&mut self, started: Instant, (ms, errors): (Vec<f64>, u64)) {
        self.seconds += started.elapsed().as_secs_f64();
        self.round_p50
            .push(Latency::of(&ms).map_or(f64::NAN, |l| l.p50_ms));
        self.ms.extend(ms);
        self.errors += errors;
    }

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
    // The editing case's server keeps renders, as a served editor does (its default
    // cache).
    let editing_state = Arc::new(crate::serve::AppState::load(config.clone())?);
    // For the load cases every request is a full render: this measures the batched
    // forward path. (The render cache's speed-up is the editing case.)
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
    let grid = layer.height.min(layer.width).max(1) as u32;
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
        let editing_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let editing_address = editing_listener.local_addr()?;
        let editing_server = tokio::spawn(async move {
            let _ = axum::serve(editing_listener, crate::serve::app(editing_state)).await;
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
        let editing: Body = Arc::new(editing_body(
            project.clone(),
            units.clone(),
            resolution,
            grid,
        ));
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
                    let got = load(
                        &client,
                        format!("http://{address}{route}"),
                        body.clone(),
                        c,
                        settings.seconds / rounds as f64,
                        counter.clone(),
                        |_| true,
                    )
                    .await;
                    gathered[i].add_round(started, got);
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
        // One person painting, after the load cases (its server is separate, so their
        // images do not crowd its cache). Each image's first stroke is a full render,
        // which keeps the image for the strokes after it; those later strokes are timed.
        let mut edited = Gathered::default();
        let edit_counter = Arc::new(AtomicU64::new(0));
        for _ in 0..rounds {
            let started = Instant::now();
            let got = load(
                &client,
                format!("http://{editing_address}/api/generate"),
                editing.clone(),
                1,
                settings.seconds / rounds as f64,
                edit_counter.clone(),
                |n| !n.is_multiple_of(EDIT_STROKES),
            )
            .await;
            edited.add_round(started, got);
        }
        server.abort();
        editing_server.abort();
        Ok(HttpReport {
            project,
            rounds,
            cases,
            generate_vs_paint: route_ratios,
            against_passes: Vec::new(),
            editing: Some(HttpEditing {
                strokes_per_image: EDIT_STROKES,
                case: edited.case("/api/generate", 1),
                round_p50: edited.round_p50.iter().map(|&v| round3(v)).collect(),
                vs_incremental: None,
                vs_fast: None,
            }),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoded mask of one intervention: the set pixels' bounding box and count.
    fn mask_box(intervention: &Value) -> (u32, u32, u32, u32, usize) {
        let url = intervention["mask"]["bitstring"].as_str().unwrap();
        use crate::edit::mask::{pool_png_mask, PixelBudget};
        let grids = pool_png_mask(url, &[(64, 64)], &mut PixelBudget::new(u64::MAX)).unwrap();
        let mask = grids[0].pooled(crate::edit::Pooling::Max);
        let (mut x0, mut y0, mut x1, mut y1, mut n) = (u32::MAX, u32::MAX, 0, 0, 0);
        for y in 0..64u32 {
            for x in 0..64u32 {
                if mask[(y * 64 + x) as usize] > 0.5 {
                    (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
                    n += 1;
                }
            }
        }
        (x0, y0, x1, y1, n)
    }

    #[test]
    fn an_editor_session_adds_one_two_by_two_cell_stroke_per_request() {
        let ablations = vec![json!({ "layer": "layer4", "unit": 3, "alpha": 1, "value": 2.0 })];
        let body = editing_body("demo".into(), ablations.clone(), 64, 8);
        for image in 0..3u64 {
            let mut seen = Vec::new();
            for k in 0..EDIT_STROKES {
                let request = body(image * EDIT_STROKES + k);
                assert_eq!(request["ids"], json!([image]));
                let interventions = request["interventions"].as_array().unwrap();
                // The whole stack so far, the earlier strokes unchanged.
                assert_eq!(interventions.len() as u64, k + 1);
                assert_eq!(&interventions[..k as usize], &seen[..]);
                assert_eq!(interventions[k as usize]["ablations"], json!(ablations));
                // Each stroke: 2×2 cells of 8 px, on the cell grid, inside the picture.
                let (x0, y0, x1, y1, n) = mask_box(&interventions[k as usize]);
                assert_eq!((x1 + 1 - x0, y1 + 1 - y0, n), (16, 16, 256));
                assert_eq!((x0 % 8, y0 % 8), (0, 0));
                seen.push(interventions[k as usize].clone());
            }
            // The strokes of an image are at different places.
            let boxes: std::collections::HashSet<_> = seen.iter().map(mask_box).collect();
            assert!(boxes.len() >= 6, "{boxes:?}");
        }
    }
}
