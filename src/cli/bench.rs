//! `ganpaint bench`: edit latency and throughput, side by side with PyTorch, in one run.
//!
//! For each model (the 256² church architecture with random weights, and the bundled demo
//! generator) it caches the prefix at `layer4`, builds one intervention (20 units under a
//! mask), and times the suffix through to u8 pixels: the exact f32 path, the fast path,
//! the fast path plus PNG encoding, and an incremental re-render of a 2×2-cell stroke
//! (centre, the worst case, and corner). It measures batch throughput, the fast path's
//! PSNR against the exact one, then runs `bench/torch_reference.py` on the same weights and
//! the same edited activation (via the venv's PyTorch) and reports our/torch ratios.
//! Finally it starts the server in-process on the bundled project and drives
//! `/api/v1/paint` and the compatible `/api/generate` at several concurrencies.
//!
//! Absolute times on a shared machine drift; the ratios are measured in the same run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

use crate::edit::{self, EditPlanes, Pooling, UnitEdit};
use crate::imageio;
use crate::model::{DeviceChoice, Precision, ProgGan, ProgGanConfig, DEFAULT_MODEL};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// The fast path's precision (what `serve` uses by default).
    #[arg(long, value_enum, default_value_t = Precision::Fast)]
    precision: Precision,
    /// Also write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Timed iterations per case on the 256² model (the demo model gets 5×).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    iters: u64,
    /// Batch sizes for the throughput case (32 is added on CUDA).
    #[arg(long, value_delimiter = ',', default_value = "1,4,8,16")]
    batches: Vec<i64>,
    /// Which models: `church256` (random weights) and/or `demo` (the bundled generator).
    #[arg(long, value_delimiter = ',', default_value = "church256,demo")]
    models: Vec<String>,
    /// The edited layer.
    #[arg(long, default_value = "layer4")]
    layer: String,
    /// Units in the intervention.
    #[arg(long, default_value_t = 20)]
    units: i64,
    /// Skip the PyTorch reference.
    #[arg(long)]
    skip_torch: bool,
    /// Python with torch and safetensors (default: the project's .venv).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Skip the HTTP load test.
    #[arg(long)]
    skip_http: bool,
    /// Projects folder the HTTP test serves (the bundled demo by default).
    #[arg(long, default_value = "dissect")]
    http_data: PathBuf,
    /// Seconds per HTTP case.
    #[arg(long, default_value_t = 4.0)]
    http_seconds: f64,
    /// Concurrency levels for the HTTP cases.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    concurrency: Vec<usize>,
}

/// p50 and p95 of a sample, in milliseconds.
#[derive(Clone, Copy, Debug)]
struct Latency {
    p50: f64,
    p95: f64,
}

impl Latency {
    fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Latency {
            p50: at(0.5),
            p95: at(0.95),
        }
    }

    fn json(&self) -> Value {
        json!({ "p50_ms": round3(self.p50), "p95_ms": round3(self.p95) })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs `f` a few times untimed, then `iters` times timed.
fn time_it(iters: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Latency> {
    for _ in 0..3 {
        f()?;
    }
    let mut ms = Vec::with_capacity(iters);
    for _ in 0..iters {
        let started = Instant::now();
        f()?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(Latency::of(ms))
}

/// u8 pixels of `[N, 3, R, R]`, as the server produces them (this copies to the host, so
/// it also waits for the GPU).
fn pixels(images: &Tensor) -> anyhow::Result<Vec<image::RgbImage>> {
    Ok(imageio::to_rgb_images(images)?)
}

fn psnr(a: &[image::RgbImage], b: &[image::RgbImage]) -> f64 {
    let (mut sum, mut count) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.as_raw().iter().zip(y.as_raw()) {
            let d = *p as f64 - *q as f64;
            sum += d * d;
            count += 1.0;
        }
    }
    let mse = (sum / count).max(1e-10);
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// The bench's intervention on one model: the cached prefix and the planes.
struct Scene {
    /// Exact prefix activations of 8 images `[8, C, H, W]`.
    prefix: Tensor,
    planes: EditPlanes,
    /// A second stroke on top of `planes`, covering 2×2 cells at the centre / a corner.
    centre_stroke: EditPlanes,
    corner_stroke: EditPlanes,
    /// The same stroke at every placement of a 2×2 window on the grid.
    every_stroke: Vec<EditPlanes>,
}

fn grid_mask(h: i64, w: i64, rows: (i64, i64), cols: (i64, i64), device: Device) -> Tensor {
    let mask = Tensor::zeros([h, w], (Kind::Float, device));
    let _ = mask
        .narrow(0, rows.0, rows.1 - rows.0)
        .narrow(1, cols.0, cols.1 - cols.0)
        .fill_(1.0);
    mask
}

fn scene(model: &ProgGan, layer: &str, units: i64) -> anyhow::Result<Scene> {
    let z = model.z_for_ids(&(0..8).collect::<Vec<u64>>())?;
    let prefix = model.features(&z, layer)?;
    let shape = model.layer_shape(layer)?;
    let (c, h, w) = shape;
    // The `units` most active units, drawn at their highest activation over the images:
    // a strong, visible edit, like painting a concept at its 0.99 level.
    let peak = prefix.f_amax([0i64, 2, 3].as_slice(), false)?;
    let (values, order) = peak.f_sort(0, true)?;
    let count = units.min(c) as usize;
    let values = Vec::<f32>::try_from(values.f_to_device(Device::Cpu)?)?;
    let order = Vec::<i64>::try_from(order.f_to_device(Device::Cpu)?)?;
    let draw: Vec<UnitEdit> = (0..count)
        .map(|i| UnitEdit {
            unit: order[i],
            alpha: 1.0,
            value: values[i],
        })
        .collect();
    let remove: Vec<UnitEdit> = draw.iter().map(|e| UnitEdit { value: 0.0, ..*e }).collect();
    let device = model.device();
    let half = grid_mask(h, w, (h / 4, 3 * h / 4), (w / 4, 3 * w / 4), device);
    let planes = edit::intervention_planes(layer, shape, &draw, Some(&half), Pooling::Max, device)?;
    let stroke = |rows, cols| -> anyhow::Result<EditPlanes> {
        let mask = grid_mask(h, w, rows, cols, device);
        let mut both = EditPlanes {
            alpha: planes.alpha.copy(),
            value: planes.value.copy(),
        };
        let new =
            edit::intervention_planes(layer, shape, &remove, Some(&mask), Pooling::Max, device)?;
        both.over(&new)?;
        Ok(both)
    };
    let mut every_stroke = Vec::new();
    for y in 0..h - 1 {
        for x in 0..w - 1 {
            every_stroke.push(stroke((y, y + 2), (x, x + 2))?);
        }
    }
    Ok(Scene {
        centre_stroke: stroke((h / 2 - 1, h / 2 + 1), (w / 2 - 1, w / 2 + 1))?,
        corner_stroke: stroke((0, 2), (0, 2))?,
        every_stroke,
        prefix,
        planes,
    })
}

/// Everything measured on one model.
struct ModelReport {
    name: String,
    json: Value,
    exact: Latency,
    fast: Latency,
    incremental_centre: Latency,
    incremental_any: Latency,
    torch: Option<Value>,
}

fn bench_model(
    name: &str,
    mut model: ProgGan,
    args: &BenchArgs,
    iters: usize,
    scratch: &Path,
) -> anyhow::Result<ModelReport> {
    let layer = args.layer.as_str();
    let bar = super::progress_bar(9, &format!("bench {name}"));
    model.set_precision(Precision::Exact)?;
    let scene = scene(&model, layer, args.units)?;
    let one = scene.prefix.narrow(0, 0, 1);
    let edited =
        |planes: &EditPlanes, x: &Tensor| -> anyhow::Result<Tensor> { Ok(planes.apply(x)?) };
    let suffix = |model: &ProgGan, png: bool| -> anyhow::Result<()> {
        let image = model.forward_from(layer, &edited(&scene.planes, &one)?)?;
        let rgb = pixels(&image)?;
        if png {
            imageio::encode_png(&rgb[0])?;
        }
        Ok(())
    };

    let exact = time_it(iters, || suffix(&model, false))?;
    bar.inc(1);
    let exact_png = time_it(iters, || suffix(&model, true))?;
    bar.inc(1);
    let all_edited = edited(&scene.planes, &scene.prefix)?;
    let exact_images = pixels(&model.forward_from(layer, &all_edited)?)?;

    model.set_precision(args.precision)?;
    let fast = time_it(iters, || suffix(&model, false))?;
    bar.inc(1);
    let fast_png = time_it(iters, || suffix(&model, true))?;
    bar.inc(1);
    let fast_images = pixels(&model.forward_from(layer, &all_edited)?)?;
    let psnr_db = psnr(&fast_images, &exact_images);
    let image = &fast_images[0];
    let encode = time_it(iters, || {
        imageio::encode_png(image)?;
        Ok(())
    })?;

    // Incremental: alternate between the edit and the edit plus one 2×2-cell stroke (at
    // one place, or cycling through every place), so every render changes exactly those
    // cells, as a brush stroke does.
    let incremental = |strokes: &[&EditPlanes], iters: usize| -> anyhow::Result<(Latency, f64)> {
        let (_, mut kept) = model.forward_from_recorded(layer, &edited(&scene.planes, &one)?)?;
        let mut kept = kept.pop().expect("one image");
        let mut fractions = Vec::new();
        let mut step = 0usize;
        let latency = time_it(iters, || {
            step += 1;
            // The planes are applied inside the timed call, as in the fast case.
            let planes = if step % 2 == 1 {
                strokes[(step / 2) % strokes.len()]
            } else {
                &scene.planes
            };
            let features = edited(planes, &one)?;
            let (image, stats) = model.forward_from_incremental(&mut kept, &features)?;
            fractions.push(stats.work_fraction);
            pixels(&image)?;
            Ok(())
        })?;
        let mean = fractions.iter().sum::<f64>() / fractions.len().max(1) as f64;
        Ok((latency, mean))
    };
    let (incremental_centre, centre_fraction) = incremental(&[&scene.centre_stroke], iters)?;
    let (incremental_corner, corner_fraction) = incremental(&[&scene.corner_stroke], iters)?;
    bar.inc(1);
    let every: Vec<&EditPlanes> = scene.every_stroke.iter().collect();
    let (incremental_any, any_fraction) = incremental(&every, 2 * every.len())?;
    bar.inc(1);

    let mut throughput = serde_json::Map::new();
    let mut batches = args.batches.clone();
    if model.device().is_cuda() && !batches.contains(&32) {
        batches.push(32);
    }
    for &n in &batches {
        let x = edited(&scene.planes, &one.repeat([n, 1, 1, 1]))?;
        let latency = time_it(iters.div_ceil(2).max(3), || {
            pixels(&model.forward_from(layer, &x)?)?;
            Ok(())
        })?;
        throughput.insert(
            n.to_string(),
            json!(round3(n as f64 * 1000.0 / latency.p50)),
        );
    }
    bar.inc(1);

    let torch = if args.skip_torch {
        None
    } else {
        let case = TorchCase {
            name,
            layer,
            features: &one,
            planes: &scene.planes,
            iters,
            scratch,
        };
        let run = |tuned| torch_reference(&model, &case, tuned);
        let mut result = with_pixel_check(run(false)?, &exact_images[0], scratch, name)?;
        // The same, with glibc set up as `keep_freed_memory` sets up ours: how much of
        // the difference is the allocator.
        result["tuned_malloc"] = run(true)?;
        Some(result)
    };
    bar.inc(2);
    bar.finish_and_clear();

    let json = json!({
        "resolution": model.resolution(),
        "layer": layer,
        "compute_kind": format!("{:?}", model.compute_kind()),
        "latency_ms": {
            "exact_fp32": exact.json(),
            "exact_fp32_png": exact_png.json(),
            "fast": fast.json(),
            "fast_png": fast_png.json(),
            "png_encode": encode.json(),
            "incremental_2x2_centre": incremental_centre.json(),
            "incremental_2x2_corner": incremental_corner.json(),
            "incremental_2x2_any_place": incremental_any.json(),
        },
        "incremental_work_fraction": {
            "centre": round3(centre_fraction),
            "corner": round3(corner_fraction),
            "any_place_mean": round3(any_fraction),
        },
        "throughput_images_per_s_fast": throughput,
        "psnr_db_fast_vs_exact": round3(psnr_db),
        "torch": torch.clone().unwrap_or(Value::Null),
    });
    Ok(ModelReport {
        name: name.to_string(),
        json,
        exact,
        fast,
        incremental_centre,
        incremental_any,
        torch,
    })
}

/// What the PyTorch reference runs: the same edit of the same weights.
struct TorchCase<'a> {
    name: &'a str,
    layer: &'a str,
    features: &'a Tensor,
    planes: &'a EditPlanes,
    iters: usize,
    scratch: &'a Path,
}

/// Runs bench/torch_reference.py on the same weights and edited activation.
fn torch_reference(model: &ProgGan, case: &TorchCase, tuned_malloc: bool) -> anyhow::Result<Value> {
    let TorchCase {
        name,
        layer,
        features,
        planes,
        iters,
        scratch,
    } = *case;
    let weights = scratch.join(format!("{name}-weights.safetensors"));
    let cpu = |t: &Tensor| t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let named: Vec<(String, Tensor)> = model
        .named_tensors()
        .iter()
        .map(|(k, t)| (k.clone(), cpu(t)))
        .collect();
    Tensor::write_safetensors(&named, &weights)?;
    let edit_file = scratch.join(format!("{name}-edit.safetensors"));
    Tensor::write_safetensors(
        &[
            ("features", cpu(features)),
            ("alpha", cpu(&planes.alpha)),
            ("value", cpu(&planes.value)),
        ],
        &edit_file,
    )?;
    let script = crate::model::repo_path("bench/torch_reference.py");
    let python = crate::model::repo_path(".venv/bin/python");
    let device = if model.device().is_cuda() {
        "cuda"
    } else {
        "cpu"
    };
    let mut command = std::process::Command::new(&python);
    if tuned_malloc {
        command.env(
            "GLIBC_TUNABLES",
            "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647",
        );
    }
    let output = command
        .arg(&script)
        .args(["--weights", &weights.to_string_lossy()])
        .args(["--edit", &edit_file.to_string_lossy()])
        .args(["--layer", layer, "--device", device])
        .args(["--iters", &iters.to_string()])
        .args(["--threads", &tch::get_num_threads().to_string()])
        .args([
            "--pixels-out",
            &scratch.join(format!("{name}-torch.u8")).to_string_lossy(),
        ])
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !output.status.success() {
        bail!(
            "torch reference failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("torch reference printed `{line}`"))
}

/// Adds how far PyTorch's fp32 pixels are from ours (same weights, same edit).
fn with_pixel_check(
    mut result: Value,
    ours: &image::RgbImage,
    scratch: &Path,
    name: &str,
) -> anyhow::Result<Value> {
    let theirs = std::fs::read(scratch.join(format!("{name}-torch.u8")))?;
    if theirs.len() != ours.as_raw().len() {
        bail!(
            "torch reference wrote {} pixel bytes, ours has {}",
            theirs.len(),
            ours.as_raw().len()
        );
    }
    let worst = ours
        .as_raw()
        .iter()
        .zip(&theirs)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(u8::MAX);
    result["fp32_max_pixel_diff_vs_ours"] = json!(worst);
    Ok(result)
}

fn p50(torch: &Option<Value>, key: &str) -> Option<f64> {
    torch.as_ref()?.get(key)?.get("p50_ms")?.as_f64()
}

/// One HTTP case: `concurrency` clients posting for `seconds`.
async fn load(
    client: &reqwest::Client,
    url: String,
    body: Arc<dyn Fn(u64) -> Value + Send + Sync>,
    concurrency: usize,
    seconds: f64,
    counter: Arc<std::sync::atomic::AtomicU64>,
) -> Value {
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body, counter) =
            (client.clone(), url.clone(), body.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok_ms, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < until {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    let requests = all.len();
    let latency = if all.is_empty() {
        Value::Null
    } else {
        Latency::of(all).json()
    };
    json!({
        "concurrency": concurrency,
        "requests": requests,
        "errors": errors,
        "requests_per_s": round3(requests as f64 / elapsed),
        "latency_ms": latency,
    })
}

/// Serves `--http-data` in-process on a free port and drives both paint routes.
fn bench_http(args: &BenchArgs) -> anyhow::Result<Value> {
    let mut config = crate::serve::ServeConfig::with_data(args.http_data.clone());
    config.device = args.device;
    config.precision = args.precision;
    // Every request is a full render: this measures the batched forward path. (The
    // render cache's speed-up is the incremental case above.)
    config.render_cache_mb = 0;
    let state = Arc::new(crate::serve::AppState::load(config)?);
    let Some((project, layer)) = state
        .projects
        .iter()
        .next()
        .map(|(id, p)| (id.clone(), p.default_layer().clone()))
    else {
        bail!("no project under {}", args.http_data.display());
    };
    let concept = layer
        .concepts()
        .map(|c| c.concept.clone())
        .find(|c| {
            layer
                .concept_units(c)
                .is_some_and(|u| u.first().is_some_and(|&(_, iou)| iou > 0.0))
        })
        .context("the project has no paintable concept")?;
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
        let mut results = Vec::new();
        // One counter across every case, so no two requests ask for the same image.
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let paint_project = project.clone();
        let paint: Arc<dyn Fn(u64) -> Value + Send + Sync> = Arc::new(move |n| {
            json!({ "project": paint_project, "seed": 1_000_000 + n, "strokes": [
                { "concept": concept, "mode": "draw", "mask": mask, "units": 20 }] })
        });
        let mask_compat = crate::edit::mask::encode_png_mask(resolution, resolution, |x, y| {
            x < resolution / 2 && y < resolution / 2
        });
        let compat_project = project.clone();
        let compat: Arc<dyn Fn(u64) -> Value + Send + Sync> = Arc::new(move |n| {
            json!({ "project": compat_project, "ids": [n % 10_000], "wantz": 0, "return_urls": 0,
                "interventions": [{ "ablations": units,
                    "mask": { "bitbounds": [], "bitstring": mask_compat, "shape": [] } }] })
        });
        for (route, body) in [("/api/v1/paint", paint), ("/api/generate", compat)] {
            for &c in &args.concurrency {
                let url = format!("http://{address}{route}");
                let mut result = load(
                    &client,
                    url,
                    body.clone(),
                    c,
                    args.http_seconds,
                    counter.clone(),
                )
                .await;
                result["route"] = json!(route);
                results.push(result);
            }
        }
        server.abort();
        Ok::<Value, anyhow::Error>(json!({ "project": project, "cases": results }))
    })
}

fn machine(device: Device) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_default();
    json!({
        "cpu": cpu,
        "logical_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "torch_threads": tch::get_num_threads(),
        "cpu_fast_bf16": crate::model::fast::cpu_has_fast_bf16(),
        "device": format!("{device:?}"),
    })
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let device = args.device.resolve()?;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let _guard = tch::no_grad_guard();
    let scratch = std::env::temp_dir().join(format!("ganpaint-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let mut reports = Vec::new();
    for name in &args.models {
        let model = match name.as_str() {
            "church256" => {
                // Random weights: N(0, 1) kernels (WScale scales them at run time) and small
                // random biases, seeded, so every run measures the same network.
                tch::manual_seed(256);
                let model = ProgGan::new(ProgGanConfig::lsun256(), device);
                for (key, mut t) in model.named_tensors() {
                    if key.ends_with("wscale.b") {
                        t.f_copy_(&(Tensor::randn_like(&t) * 0.1))?;
                    }
                }
                model
            }
            "demo" => ProgGan::load(&crate::model::repo_path(DEFAULT_MODEL), device)?,
            other => bail!("--models: unknown model `{other}` (church256, demo)"),
        };
        let iters = if name == "demo" {
            5 * args.iters as usize
        } else {
            args.iters as usize
        };
        reports.push(bench_model(name, model, &args, iters, &scratch)?);
    }
    let http = if args.skip_http {
        Value::Null
    } else {
        bench_http(&args)?
    };
    let _ = std::fs::remove_dir_all(&scratch);

    // Ratios on the 256² model (else the first one), batch 1, p50.
    let main = reports
        .iter()
        .find(|r| r.name == "church256")
        .or(reports.first())
        .context("no model was benchmarked")?;
    let torch_fp32 = p50(&main.torch, "fp32");
    let torch_low = p50(&main.torch, "bf16").or(p50(&main.torch, "fp16"));
    let ratio = |ours: f64, theirs: Option<f64>| theirs.map(|t| round3(ours / t));
    let tuned = main.torch.as_ref().map(|t| Some(t["tuned_malloc"].clone()));
    let tuned_fp32 = tuned.as_ref().and_then(|t| p50(t, "fp32"));
    let ratios = json!({
        "fp32_vs_torch_fp32": ratio(main.exact.p50, torch_fp32),
        "fast_vs_torch_fp32": ratio(main.fast.p50, torch_fp32),
        "fast_vs_torch_low_precision": ratio(main.fast.p50, torch_low),
        "fp32_vs_torch_fp32_tuned_malloc": ratio(main.exact.p50, tuned_fp32),
        "fast_vs_torch_fp32_tuned_malloc": ratio(main.fast.p50, tuned_fp32),
        "incremental_vs_fast": round3(main.incremental_any.p50 / main.fast.p50),
        "incremental_centre_vs_fast": round3(main.incremental_centre.p50 / main.fast.p50),
    });
    let mut psnr = serde_json::Map::new();
    let mut models = serde_json::Map::new();
    for report in &reports {
        psnr.insert(
            format!("{}_fast", report.name),
            report.json["psnr_db_fast_vs_exact"].clone(),
        );
        models.insert(report.name.clone(), report.json.clone());
    }
    let result = json!({
        "machine": machine(device),
        "precision": format!("{:?}", args.precision),
        "ratios": ratios,
        "ratios_model": main.name,
        "psnr_db": psnr,
        "models": models,
        "http": http,
    });
    print_table(&result);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn print_table(result: &Value) {
    let ms = |v: &Value| {
        v.get("p50_ms")
            .and_then(Value::as_f64)
            .map_or("-".to_string(), |p50| {
                format!(
                    "{p50:9.2} / {:9.2}",
                    v["p95_ms"].as_f64().unwrap_or(f64::NAN)
                )
            })
    };
    println!("machine: {}", result["machine"]);
    for (name, model) in result["models"].as_object().into_iter().flatten() {
        println!(
            "\n== {name} ({}², edit at {}, fast kind {}) — batch 1, ms p50 / p95",
            model["resolution"], model["layer"], model["compute_kind"]
        );
        let latency = &model["latency_ms"];
        let torch = &model["torch"];
        let rows = [
            ("torch eager fp32", &torch["fp32"]),
            (
                "torch eager fp32, our malloc settings",
                &torch["tuned_malloc"]["fp32"],
            ),
            ("torch eager bf16/fp16 (weights cast once)", {
                if torch["bf16"].is_null() {
                    &torch["fp16"]
                } else {
                    &torch["bf16"]
                }
            }),
            ("ours exact fp32", &latency["exact_fp32"]),
            ("ours exact fp32 + PNG", &latency["exact_fp32_png"]),
            ("ours fast", &latency["fast"]),
            ("ours fast + PNG", &latency["fast_png"]),
            (
                "ours incremental, 2×2 cells at centre",
                &latency["incremental_2x2_centre"],
            ),
            (
                "ours incremental, 2×2 cells at corner",
                &latency["incremental_2x2_corner"],
            ),
            (
                "ours incremental, 2×2 cells, every place",
                &latency["incremental_2x2_any_place"],
            ),
            ("PNG encode alone", &latency["png_encode"]),
        ];
        for (label, value) in rows {
            println!("  {label:<44} {}", ms(value));
        }
        println!(
            "  fast vs exact PSNR {} dB; incremental recomputes {} (centre) / {} (corner) / {} (mean, every place) of a pass",
            model["psnr_db_fast_vs_exact"],
            model["incremental_work_fraction"]["centre"],
            model["incremental_work_fraction"]["corner"],
            model["incremental_work_fraction"]["any_place_mean"]
        );
        if let Some(diff) = torch.get("fp32_max_pixel_diff_vs_ours") {
            println!("  torch fp32 vs ours exact: max pixel difference {diff}");
        }
        println!(
            "  throughput (fast, images/s by batch): {}",
            model["throughput_images_per_s_fast"]
        );
    }
    println!(
        "\nratios ({}, batch 1, p50): {}",
        result["ratios_model"].as_str().unwrap_or("?"),
        result["ratios"]
    );
    println!("PSNR fast vs exact (dB): {}", result["psnr_db"]);
    if let Some(cases) = result["http"]["cases"].as_array() {
        println!(
            "\n== HTTP, project {} — requests/s, latency ms p50 / p95, errors",
            result["http"]["project"]
        );
        for case in cases {
            println!(
                "  {:<16} c={:<3} {:>9.1} req/s  {}  errors {}",
                case["route"].as_str().unwrap_or(""),
                case["concurrency"],
                case["requests_per_s"].as_f64().unwrap_or(0.0),
                ms(&case["latency_ms"]),
                case["errors"]
            );
        }
    }
}
