//! `ganpaint bench`: edit latency and throughput, side by side with PyTorch, in one run.
//!
//! For each model (the 256² church architecture with random weights, and the bundled demo
//! generator) it times the cases of [`cases`]: the exact f32 path, the fast path, each
//! with PNG encoding, and incremental re-renders of a 2×2-cell stroke, together with
//! `bench/torch_reference.py` (PyTorch eager, from the venv) on the same weights and the
//! same edited activation, kept alive as a subprocess that times on request
//! ([`reference`]). The compared cases alternate in rounds ([`rounds`]), and each ratio is
//! the median of per-round ratios, with its spread ([`stats`]): absolute times on a shared
//! machine drift, but two cases timed seconds apart see the same machine. It also measures
//! batch throughput and the fast path's PSNR against the exact one. Finally it serves the
//! bundled project in-process and drives `/api/v1/paint` and the compatible
//! `/api/generate` at several concurrencies ([`http`]), and compares painting an uploaded
//! picture with painting a sample ([`upload`]). The results are typed
//! ([`report`]), printed as a table and written as JSON.

mod cases;
mod http;
mod reference;
mod report;
mod rounds;
mod stats;
mod upload;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use tch::{Device, Tensor};

use crate::model::{DeviceChoice, Precision, ProgGan, ProgGanConfig, DEFAULT_MODEL};
use report::{BenchReport, Machine};

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
    /// Timed iterations per case on the 256² model, split over the rounds (the demo model
    /// gets 5×).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    iters: u64,
    /// Rounds the compared cases alternate in; each ratio is the median of per-round
    /// ratios.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
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
    /// Skip painting an uploaded picture against a sample.
    #[arg(long)]
    skip_upload: bool,
    /// Strokes per stack in the upload comparison (each round paints both stacks).
    #[arg(long, default_value_t = 8)]
    upload_strokes: usize,
}

fn machine(device: Device) -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_default();
    Machine {
        cpu,
        logical_cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        torch_threads: tch::get_num_threads(),
        cpu_fast_bf16: crate::model::fast::cpu_has_fast_bf16(),
        device: format!("{device:?}"),
    }
}

/// The model called `name`, computing exactly.
fn load_model(name: &str, device: Device) -> anyhow::Result<ProgGan> {
    Ok(match name {
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
    })
}

/// A second generator with `exact`'s weights, computing in `precision`: the rounds
/// alternate the two paths, and switching one model's precision would rebuild its plan.
fn twin(exact: &ProgGan, precision: Precision) -> anyhow::Result<ProgGan> {
    let mut twin = ProgGan::new(exact.config().clone(), exact.device());
    twin.copy_from(exact.named_tensors())?;
    twin.set_precision(precision)?;
    Ok(twin)
}

/// The folder the reference's inputs and logs go to, removed however the run ends.
struct Scratch(PathBuf);

impl Scratch {
    fn create() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("ganpaint-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let device = args.device.resolve()?;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let _guard = tch::no_grad_guard();
    let python = args
        .python
        .clone()
        .unwrap_or_else(|| crate::model::repo_path(".venv/bin/python"));
    let mut batches = args.batches.clone();
    if device.is_cuda() && !batches.contains(&32) {
        batches.push(32);
    }
    let rounds = args.rounds as usize;
    // The in-process passes run on a thread of their own that ends before the server
    // starts, so the server's worker computes as the only OpenMP pool, as in
    // `ganpaint serve` (see `crate::model::on_own_thread`).
    let models = crate::model::on_own_thread("bench-passes", || {
        bench_models(&args, device, &batches, &python)
    })?;
    let http = if args.skip_http {
        None
    } else {
        let mut http = http::bench_http(&http::HttpSettings {
            data: args.http_data.clone(),
            device: args.device,
            precision: args.precision,
            seconds: args.http_seconds,
            concurrency: args.concurrency.clone(),
            rounds,
        })?;
        http.compare_with(&models);
        Some(http)
    };

    let upload = if args.skip_upload {
        None
    } else {
        Some(upload::bench_upload(&upload::UploadSettings {
            data: args.http_data.clone(),
            device: args.device,
            precision: args.precision,
            rounds,
            strokes: args.upload_strokes,
        })?)
    };

    // Ratios on the 256² model (else the first one).
    let ratios_model = args
        .models
        .iter()
        .find(|name| *name == "church256")
        .or(args.models.first())
        .context("no model was benchmarked")?
        .clone();
    let ratio_spread = models[&ratios_model].ratios.clone();
    let report = BenchReport {
        machine: machine(device),
        precision: format!("{:?}", args.precision),
        rounds,
        ratios: ratio_spread.medians(),
        ratio_spread,
        ratios_model,
        psnr_db: models
            .iter()
            .map(|(name, m)| (format!("{name}_fast"), m.psnr_db_fast_vs_exact))
            .collect(),
        models,
        http,
        upload,
    };
    report::print_table(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Every model's in-process cases (`--models`), by name.
fn bench_models(
    args: &BenchArgs,
    device: tch::Device,
    batches: &[i64],
    python: &std::path::Path,
) -> anyhow::Result<BTreeMap<String, report::ModelReport>> {
    let scratch = Scratch::create()?;
    let rounds = args.rounds as usize;
    let mut models = BTreeMap::new();
    for name in &args.models {
        let exact = load_model(name, device)?;
        let fast = twin(&exact, args.precision)?;
        let iters = if name == "demo" {
            5 * args.iters as usize
        } else {
            args.iters as usize
        };
        let settings = cases::ModelSettings {
            name,
            layer: &args.layer,
            units: args.units,
            iters,
            rounds,
            batches,
            python: (!args.skip_torch).then_some(python),
            scratch: &scratch.0,
        };
        models.insert(name.clone(), cases::bench_model(&settings, &exact, &fast)?);
    }
    Ok(models)
}
