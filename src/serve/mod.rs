//! `ganpaint serve`: the HTTP front of the editor.
//!
//! ```text
//! HTTP (axum, tokio) ──► handlers: compat (/api/*) · native (/api/v1/*)
//!                          │ build plain-data jobs (z rows, unit edits, decoded masks)
//!                          ▼
//!                     bounded queue per project ──► worker thread: owns the ProgGan,
//!                                                   micro-batches, renders, encodes
//! ```
//! Handlers never touch tensors. Cross-cutting concerns are tower layers: tracing, CORS,
//! body limit, timeout, and metrics. Static files: the bundled UI at `/`, `--client` at
//! `/client/*`, the data folder (dissection images, the image cache) at `/data/*`.

pub mod compat;
pub mod connections;
pub mod disk_cache;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod native;
pub mod project;
pub mod render_cache;
pub mod uploads;
pub mod worker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower::ServiceExt;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

use error::{ApiError, ErrorType};
use project::{Project, ProjectLayer};
use worker::{BatchConfig, Encoding, RenderJob, Source, WorkerError, WorkerHandle};

use crate::model::{latent, DeviceChoice, Precision, ProgGan};

/// Server settings. Every limit has a documented default.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeConfig {
    /// Address to bind (the container uses 0.0.0.0).
    #[arg(long, env = "GANPAINT_ADDRESS", default_value = "127.0.0.1")]
    pub address: String,
    #[arg(long, env = "GANPAINT_PORT", default_value_t = 5001)]
    pub port: u16,
    /// Folder searched (two levels deep) for projects: folders holding a dissect.json.
    #[arg(long, env = "GANPAINT_DATA", default_value = "dissect")]
    pub data: PathBuf,
    /// Folder served at /client/ (and / when it has an index.html).
    #[arg(long, env = "GANPAINT_CLIENT", default_value = "static")]
    pub client: PathBuf,
    #[arg(long, value_enum, env = "GANPAINT_DEVICE", default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// How the generator computes: `fast` (bf16 or f16 where the hardware has it, folded
    /// weights, channels-last) or `exact` (the reference f32 arithmetic).
    #[arg(long, value_enum, env = "GANPAINT_PRECISION", default_value_t = Precision::Fast)]
    pub precision: Precision,
    /// Megabytes of recent renders kept per project for incremental re-rendering of the
    /// next stroke (a 256² church render takes about 32 MB; 0 turns it off).
    #[arg(long, env = "GANPAINT_RENDER_CACHE_MB", default_value_t = 1024)]
    pub render_cache_mb: usize,
    /// Most images in one batched forward pass.
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// How long (ms) a request waits for others to batch with, while requests overlap (a
    /// lone request never waits).
    #[arg(long, env = "GANPAINT_MAX_WAIT_MS", default_value_t = 2)]
    pub max_wait_ms: u64,
    /// Requests waiting per project before new ones get 503.
    #[arg(long, default_value_t = 64)]
    pub queue_depth: usize,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most ids (or zs, or seeds) per request.
    #[arg(long, default_value_t = 64)]
    pub max_ids: usize,
    /// Most strokes (or interventions) per request.
    #[arg(long, default_value_t = 64)]
    pub max_strokes: usize,
    /// Deadline for a request's model work, in seconds.
    #[arg(long, default_value_t = 30)]
    pub request_timeout_s: u64,
    /// Most mask pixels decoded per request, all masks together (a 4096² mask is 16.8M;
    /// the UI sends masks at the image's resolution). Beyond it: 400 naming the mask.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_mask_pixels: u64,
    /// Most values in a query string (`quantiles=…` repeated, and every other parameter).
    #[arg(long, default_value_t = 64)]
    pub max_query_values: usize,
    /// Megabytes of generated images kept on disk under each project's `cache/` (cached
    /// ids and `return_urls` edits), least recently used out first.
    #[arg(long, env = "GANPAINT_DISK_CACHE_MB", default_value_t = 512)]
    pub disk_cache_mb: u64,
    /// Seconds a client may take to send a request's headers; also how long a kept-alive
    /// connection may wait for its next request's headers once they start arriving.
    #[arg(long, default_value_t = 10)]
    pub header_timeout_s: u64,
    /// Longest pause, in seconds, while a request body arrives; after that long the body
    /// must also average `--body-min-rate`. Else 408 and the connection is closed.
    #[arg(long, default_value_t = 10)]
    pub body_timeout_s: u64,
    /// Slowest average body upload accepted, in bytes per second.
    #[arg(long, default_value_t = 16 << 10)]
    pub body_min_rate: u64,
    /// Seconds an idle connection (no request in progress) stays open.
    #[arg(long, default_value_t = 30)]
    pub keep_alive_s: u64,
    /// Most open connections; more wait in the listen backlog.
    #[arg(long, env = "GANPAINT_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// On SIGTERM, seconds to let in-flight requests finish before exiting anyway.
    #[arg(long, env = "GANPAINT_SHUTDOWN_GRACE_S", default_value_t = 30)]
    pub shutdown_grace_s: u64,
    /// Folder where uploaded pictures and their inversions are kept (one folder each,
    /// under the project's name), across restarts.
    #[arg(long, env = "GANPAINT_UPLOADS", default_value = "uploads")]
    pub uploads: PathBuf,
    /// Megabytes of stored uploads, all projects together; past it the least recently
    /// used are deleted (a demo upload takes 2.4 MB).
    #[arg(long, env = "GANPAINT_UPLOADS_MB", default_value_t = 1024)]
    pub uploads_mb: u64,
    /// Most pixels (width × height) of an uploaded file, checked before it is decoded.
    #[arg(long, default_value_t = 4096 * 4096)]
    pub max_upload_pixels: u64,
    /// Uploads waiting per project for the inverter (one inverts at a time) before new
    /// ones get 503.
    #[arg(long, default_value_t = 4)]
    pub invert_queue: usize,
    /// Inversion step 2: optimisation steps of the layer's activations.
    #[arg(long, default_value_t = crate::invert::OptimizeSettings::default().steps)]
    pub invert_optimize_steps: usize,
    /// Inversion step 3: adaptation steps of the weights after the layer.
    #[arg(long, default_value_t = crate::invert::AdaptSettings::default().steps)]
    pub invert_adapt_steps: usize,
    /// Inversion: steps of the fit of z (when the encoder predicts z), which lets the layers
    /// before the inverted one paint the picture; 0 fits none.
    #[arg(long, default_value_t = crate::invert::ZFitSettings::default().steps)]
    pub invert_z_steps: usize,
}

impl ServeConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_s)
    }

    /// Defaults with a given data folder (for tests and embedding).
    pub fn with_data(data: PathBuf) -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: ServeConfig,
        }
        let mut config = Wrapper::parse_from(["ganpaint"]).config;
        config.data = data;
        config
    }
}

pub struct AppState {
    pub config: ServeConfig,
    pub projects: BTreeMap<String, Arc<Project>>,
    pub metrics: Arc<metrics::Metrics>,
    /// Generated images on disk (every project's `cache/`), bounded by `--disk-cache-mb`.
    pub disk_cache: Arc<disk_cache::DiskCache>,
    /// Open client connections (the accept loop counts them).
    pub open_connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Stored uploads and the inversions in flight, every project's.
    pub uploads: Arc<uploads::Uploads>,
}

impl AppState {
    /// Finds projects under `config.data`, loads each one's generator on its worker
    /// thread and runs a warm-up pass. Returns when all are ready. A project that cannot
    /// load is logged in one line and left out; it is an error only when none loads.
    ///
    /// The loading runs on a thread of its own that ends with it
    /// ([`crate::model::on_own_thread`]): whatever reading the projects computes leaves no
    /// OpenMP pool behind, and each worker's pool is the only one that renders.
    pub fn load(config: ServeConfig) -> anyhow::Result<AppState> {
        crate::model::on_own_thread("load-projects", move || AppState::load_here(config))
    }

    fn load_here(config: ServeConfig) -> anyhow::Result<AppState> {
        let metrics = Arc::new(metrics::Metrics::default());
        let device = config.device.resolve()?;
        let mut projects = BTreeMap::new();
        let store = uploads::UploadStore::open(&config.uploads, config.uploads_mb << 20)
            .map_err(|e| anyhow::anyhow!("--uploads {}: {e}", config.uploads.display()))?;
        let uploads = Arc::new(uploads::Uploads::new(store));
        let dirs = crate::project::discover(&config.data);
        if dirs.is_empty() {
            anyhow::bail!(
                "no projects: no folder under {} holds a dissect.json",
                config.data.display()
            );
        }
        // A project that cannot load is reported in one line and skipped; the others
        // are served.
        let mut failed = Vec::new();
        for dir in dirs {
            match load_project(&config, device, &metrics, &uploads, &dir, &projects) {
                Ok(Some(project)) => {
                    projects.insert(project.id().to_string(), Arc::new(project));
                }
                Ok(None) => {}
                Err(e) => {
                    let line = one_line(&e);
                    tracing::error!(dir = %dir.display(), "project not served: {line}");
                    tracing::debug!(dir = %dir.display(), "project not served: {e:?}");
                    failed.push(line);
                }
            }
        }
        if projects.is_empty() {
            anyhow::bail!(
                "no project could be loaded from {}: {}",
                config.data.display(),
                failed.join("; ")
            );
        }
        let cache_dirs: Vec<PathBuf> = projects
            .values()
            .map(|p| p.spec.dir.join("cache"))
            .collect();
        let disk_cache = Arc::new(disk_cache::DiskCache::new(
            config.disk_cache_mb << 20,
            &cache_dirs,
        ));
        Ok(AppState {
            config,
            projects,
            metrics,
            disk_cache,
            open_connections: Arc::default(),
            uploads,
        })
    }

    pub fn project(&self, id: &str) -> Result<&Arc<Project>, ApiError> {
        self.projects.get(id).ok_or_else(|| {
            let known: Vec<&str> = self.projects.keys().map(String::as_str).collect();
            ApiError::bad(
                "project",
                format!("unknown project `{id}`; known: {}", known.join(", ")),
            )
        })
    }

    pub fn layer<'a>(
        &self,
        project: &'a Project,
        name: &str,
    ) -> Result<&'a ProjectLayer, ApiError> {
        project.layer(name).ok_or_else(|| {
            let known: Vec<&str> = project.layers.iter().map(|l| l.name.as_str()).collect();
            ApiError::bad(
                "layer",
                format!(
                    "unknown layer `{name}` in project {}; dissected: {}",
                    project.id(),
                    known.join(", ")
                ),
            )
        })
    }

    /// The decoded-pixel budget of one request's masks.
    pub fn pixel_budget(&self) -> crate::edit::mask::PixelBudget {
        crate::edit::mask::PixelBudget::new(self.config.max_mask_pixels)
    }

    pub fn check_count(&self, field: &str, count: usize) -> Result<(), ApiError> {
        if count == 0 || count > self.config.max_ids {
            return Err(ApiError::bad(
                field,
                format!("give 1 to {} values, got {count}", self.config.max_ids),
            ));
        }
        Ok(())
    }

    /// The URL prefix of a project's folder under `/data`.
    pub fn data_url(&self, project: &Project) -> String {
        let relative = project
            .spec
            .dir
            .strip_prefix(&self.config.data)
            .unwrap_or(Path::new(project.id()));
        let relative = relative.to_string_lossy().replace('\\', "/");
        if relative.is_empty() {
            "/data".to_string()
        } else {
            format!("/data/{relative}")
        }
    }
}

/// Reads and loads one project folder: its dissection, its generator (on a new worker
/// thread, warmed up) and its layers. `None` for a second project with a known id.
fn load_project(
    config: &ServeConfig,
    device: tch::Device,
    metrics: &Arc<metrics::Metrics>,
    uploads: &Arc<uploads::Uploads>,
    dir: &Path,
    known: &BTreeMap<String, Arc<Project>>,
) -> anyhow::Result<Option<Project>> {
    let spec = crate::project::read_spec(dir)?;
    if known.contains_key(&spec.id) {
        tracing::warn!(id = %spec.id, dir = %dir.display(), "skipping a second project with the same id");
        return Ok(None);
    }
    let model_path = spec.model.clone();
    let batch = BatchConfig {
        max_batch: config.max_batch,
        max_wait: Duration::from_millis(config.max_wait_ms),
        queue_depth: config.queue_depth,
        render_cache_bytes: config.render_cache_mb << 20,
    };
    let precision = config.precision;
    let worker = WorkerHandle::spawn(
        spec.id.clone(),
        move || {
            if device.is_cuda() {
                // Fixed shapes per batch size: let cuDNN pick the fastest kernels.
                tch::Cuda::cudnn_set_benchmark(true);
            }
            let mut model = ProgGan::load(&model_path, device)?;
            model.set_precision(precision)?;
            Ok(model)
        },
        batch,
        metrics.clone(),
    )
    .map_err(|e| anyhow::anyhow!("project {}: loading {}: {e}", spec.id, spec.model.display()))?;
    let mut layers = Vec::new();
    for dissected in &spec.dissection.layers {
        let (c, h, w) = worker
            .config
            .layer_specs()
            .iter()
            .find(|s| s.name == dissected.layer)
            .map(|s| (s.out_channels, s.resolution, s.resolution))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "project {}: the model has no layer `{}`",
                    spec.id,
                    dissected.layer
                )
            })?;
        // A dissect.json made only for serving may list no units.
        if dissected.units != 0 && c != dissected.units as i64 {
            anyhow::bail!(
                "project {}: dissection of {} has {} units but the model has {c}",
                spec.id,
                dissected.layer,
                dissected.units
            );
        }
        let normalizer = spec.normalizers.get(&dissected.layer).cloned();
        if let Some(n) = normalizer.as_ref().filter(|n| n.units() as i64 != c) {
            anyhow::bail!(
                "project {}: the quantiles.npz of {} has {} units but the model has {c}",
                spec.id,
                dissected.layer,
                n.units()
            );
        }
        layers.push(ProjectLayer {
            name: dissected.layer.clone(),
            channels: c,
            height: h,
            width: w,
            dissection: dissected.clone(),
            normalizer,
        });
    }
    if layers.is_empty() {
        anyhow::bail!("project {}: its dissect.json lists no layers", spec.id);
    }
    let generator_fingerprint = file_fingerprint(&spec.model)?;
    // As `Project::default_layer` chooses it.
    let default_layer = spec
        .dissection
        .default_layer()
        .ok()
        .map(|l| l.layer.clone())
        .filter(|name| layers.iter().any(|l: &ProjectLayer| l.name == *name))
        .unwrap_or_else(|| layers[0].name.clone());
    let inverter = start_inverter(config, device, &spec, &worker, &default_layer, uploads);
    match &inverter {
        Ok(_) => {
            tracing::info!(project = %spec.id, layer = %default_layer, "uploads are inverted at {default_layer}")
        }
        Err(reason) => tracing::info!(project = %spec.id, "takes no uploads: {reason}"),
    }
    tracing::info!(project = %spec.id, model = %spec.model.display(), ?device, "project ready");
    Ok(Some(Project {
        spec,
        layers,
        worker,
        inverter,
        generator_fingerprint,
    }))
}

/// A SHA-256 of a file's bytes, in hex.
fn file_fingerprint(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash)?;
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The project's inverter, when it has an encoder that fits its generator at `layer`;
/// else why not.
fn start_inverter(
    config: &ServeConfig,
    device: tch::Device,
    spec: &crate::project::ProjectSpec,
    worker: &WorkerHandle,
    layer: &str,
    uploads: &Arc<uploads::Uploads>,
) -> Result<Arc<uploads::Inverter>, String> {
    let encoder = crate::project::encoder_file(&spec.dissection, crate::invert::DEFAULT_ENCODER)
        .map_err(|e| e.to_string())?;
    if !encoder.is_file() {
        return Err(format!(
            "no encoder ({} does not exist; train one with `ganpaint train-demo encoder`)",
            encoder.display()
        ));
    }
    let loaded = crate::invert::Encoder::load(&encoder, tch::Device::Cpu)
        .map_err(|e| format!("encoder {}: {e}", encoder.display()))?;
    loaded
        .check_fits_config(&worker.config, layer)
        .map_err(|e| format!("encoder {}: {e}", encoder.display()))?;
    // With a z fitted, an upload paints from the project's first dissected layer on (when
    // that comes before the inverted one).
    let fits_z = loaded.config().z_dim.is_some() && config.invert_z_steps > 0;
    let order = worker.config.layer_specs();
    let index = |name: &str| order.iter().position(|s| s.name == name);
    let paint_from = spec
        .dissection
        .layers
        .iter()
        .map(|l| l.layer.clone())
        .filter(|name| fits_z && index(name) < index(layer))
        .min_by_key(|name| index(name));
    let inverter = uploads::inverter::InverterConfig {
        project: spec.id.clone(),
        paint_from,
        generator: spec.model.clone(),
        encoder,
        layer: layer.to_string(),
        device,
        settings: crate::invert::InvertSettings {
            optimize: crate::invert::OptimizeSettings {
                steps: config.invert_optimize_steps,
                ..Default::default()
            },
            adapt: crate::invert::AdaptSettings {
                steps: config.invert_adapt_steps,
                ..Default::default()
            },
            z: crate::invert::ZFitSettings {
                steps: config.invert_z_steps,
                ..Default::default()
            },
        },
        queue_depth: config.invert_queue,
    };
    uploads::Inverter::spawn(inverter, uploads.clone())
        .map(Arc::new)
        .map_err(|e| format!("starting the inverter: {e}"))
}

/// An error as one line: its causes joined with `: `, cut at the first line break (libtorch
/// appends a C++ stack to its messages; `RUST_LOG=debug` logs it whole).
fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

impl From<WorkerError> for ApiError {
    fn from(e: WorkerError) -> Self {
        let kind = match e {
            WorkerError::Overloaded => ErrorType::Overloaded,
            WorkerError::Timeout => ErrorType::Timeout,
            WorkerError::BadRequest(_) => ErrorType::BadRequest,
            WorkerError::Stopped => ErrorType::Unavailable,
            WorkerError::NotFound(_) => ErrorType::NotFound,
            WorkerError::Inference(_) => ErrorType::Internal,
        };
        ApiError::new(kind, e.to_string())
    }
}

/// Runs CPU work (mask decoding, latents, large answers) on the blocking pool, so the
/// async runtime stays free to answer other requests (`/healthz` among them).
pub async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)
}

/// Writes a generated image into the bounded disk cache, off the runtime.
pub async fn write_cache_file(
    state: &AppState,
    dir: &Path,
    name: &str,
    bytes: Vec<u8>,
) -> Result<(), ApiError> {
    let (cache, dir, name) = (
        state.disk_cache.clone(),
        dir.to_path_buf(),
        name.to_string(),
    );
    off_runtime(move || cache.write(&dir, &name, &bytes))
        .await?
        .map_err(ApiError::internal)
}

/// Refuses a path the file system could not even look up: a name over 255 bytes (or a
/// path over 4096) would fail with ENAMETOOLONG, which the file server answers with 500.
fn check_path_names(path: &str) -> Result<(), ApiError> {
    let decoded_len = |segment: &str| segment.len() - 2 * segment.matches('%').count();
    if path.len() > 4096 || path.split('/').any(|segment| decoded_len(segment) > 255) {
        return Err(ApiError::not_found(
            "path",
            "no such file (a name in it is longer than 255 bytes)",
        ));
    }
    Ok(())
}

/// `/client/*` and `/`: the UI's static files.
async fn client_files(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    check_path_names(request.uri().path())?;
    let mut request = request;
    if let Some(rest) = request.uri().path().strip_prefix("/client") {
        let rest = if rest.is_empty() { "/" } else { rest };
        let query = request
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        *request.uri_mut() = format!("{rest}{query}")
            .parse()
            .map_err(|_| ApiError::not_found("path", "bad path"))?;
    }
    let response = ServeDir::new(&state.config.client)
        .oneshot(request)
        .await
        .map_err(ApiError::internal)?;
    Ok(response.map(Body::new))
}

/// `/data/*`: static files from the data folder, except gandissect's image cache
/// (`<project>/cache/img/id/<id>.jpg`), which is generated on first request.
async fn data_files(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let path = request.uri().path().trim_start_matches("/data").to_string();
    check_path_names(&path)?;
    if let Some((prefix, file)) = path.rsplit_once("/cache/img/id/") {
        if let Some(project) = state
            .projects
            .values()
            .find(|p| state.data_url(p) == format!("/data{prefix}"))
        {
            let id: i64 = file
                .strip_suffix(".jpg")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ApiError::not_found("path", "no such cached image"))?;
            let id = state.check_ids(&[id])?[0];
            let dir = project.spec.dir.join("cache/img/id");
            let name = format!("{id}.jpg");
            if name != file {
                // `0009.jpg` names id 9, but only `9.jpg` is ever served: do not render.
                return Err(ApiError::not_found(
                    "path",
                    format!("no such cached image; id {id} is cached as {name}"),
                ));
            }
            if !dir.join(&name).is_file() {
                let dim = project.worker.config.z_dim as usize;
                let z = off_runtime(move || latent::z_for_ids(&[id], dim)).await?;
                let output = project
                    .worker
                    .render(
                        RenderJob {
                            source: Source::Latents(vec![z]),
                            edits: Vec::new(),
                            encoding: Encoding::Jpeg(95),
                            return_edits: false,
                        },
                        state.config.request_timeout(),
                    )
                    .await?;
                let jpeg = output.images.into_iter().next().unwrap_or_default();
                write_cache_file(&state, &dir, &name, jpeg.clone()).await?;
                // Answer from memory: the file may already be evicted by a tight budget.
                return Ok(([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response());
            } else {
                state.disk_cache.touch(&dir.join(&name));
            }
        }
    }
    if path.contains("/cache/img/edit/") {
        state
            .disk_cache
            .touch(&state.config.data.join(path.trim_start_matches('/')));
    }
    let (parts, body) = request.into_parts();
    let mut inner = Request::from_parts(parts, body);
    *inner.uri_mut() = path
        .parse()
        .map_err(|_| ApiError::not_found("path", "bad path"))?;
    let response = ServeDir::new(&state.config.data)
        .oneshot(inner)
        .await
        .map_err(ApiError::internal)?;
    Ok(response.map(Body::new))
}

async fn healthz(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(
        serde_json::json!({ "status": "ok", "projects": state.projects.keys().collect::<Vec<_>>() }),
    )
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let queues: Vec<(String, usize)> = state
        .projects
        .iter()
        .map(|(id, p)| (id.clone(), p.worker.queue_depth()))
        .collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(
            &queues,
            &[
                (
                    "ganpaint_open_connections",
                    "Open client connections.",
                    state
                        .open_connections
                        .load(std::sync::atomic::Ordering::Relaxed) as f64,
                ),
                (
                    "ganpaint_disk_cache_bytes",
                    "Bytes of generated images kept on disk.",
                    state.disk_cache.total_bytes() as f64,
                ),
            ],
        ),
    )
        .into_response()
}

async fn openapi(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let names: Vec<&str> = state.projects.keys().map(String::as_str).collect();
    Json(native::openapi_document(&names))
}

/// Counts requests and their latency per matched route (unmatched paths count as one).
async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    state.metrics.request(
        method.as_str(),
        &route,
        status.as_u16(),
        started.elapsed().as_secs_f64(),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // Overload is counted, and logged at most once per interval: a crowd of 503s
        // must not flood the log.
        if let Some(since_last) = state.metrics.overloaded() {
            tracing::warn!(
                refused = since_last,
                route = %route,
                "overloaded: answering 503 (counted in ganpaint_overloaded_total)"
            );
        }
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("path", "no such API route")
}

/// The whole application; kept apart from `serve` so tests can drive it in-process.
pub fn app(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/api/all_projects", get(compat::all_projects))
        .route("/api/layers", get(compat::layers))
        .route("/api/units", get(compat::units))
        .route("/api/rankings", get(compat::rankings))
        .route("/api/levels", get(compat::levels))
        .route("/api/channels", get(compat::channels))
        .route("/api/generate", post(compat::generate))
        .route("/api/features", post(compat::features))
        .route("/api/featuremaps", post(compat::featuremaps))
        .route("/api/v1/projects", get(native::projects))
        .route("/api/v1/generate", post(native::generate))
        .route("/api/v1/paint", post(native::paint))
        .route("/api/v1/images", post(uploads::api::upload))
        .route("/api/v1/images/{image}", get(uploads::api::status))
        .route(
            "/api/v1/images/{image}/picture.png",
            get(uploads::api::picture),
        )
        .route("/api/openapi.json", get(openapi))
        .route("/api/{*rest}", get(not_found).post(not_found))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/data/{*path}", get(data_files));
    api.route("/client", get(client_files))
        .route("/client/{*path}", get(client_files))
        .fallback(client_files)
        // Innermost first: limits, then every error as JSON, then metrics of what the
        // client finally gets.
        .layer(middleware::from_fn_with_state(state.clone(), limits::guard))
        .layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.max_body_bytes,
        ))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([header::CONTENT_TYPE]),
        )
        // 5xx are logged where they arise (internal errors with their cause; overload
        // rate-limited in `track`), not once more per response here.
        .layer(
            TraceLayer::new_for_http().on_failure(
                tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
            ),
        )
        .with_state(state)
}

/// Loads every project, then binds and serves until SIGTERM or Ctrl-C, finishing
/// in-flight requests for at most `--shutdown-grace-s`.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let address: SocketAddr = format!("{}:{}", config.address, config.port)
        .parse()
        .map_err(|e| anyhow::anyhow!("--address/--port: {e}"))?;
    let state = Arc::new(tokio::task::block_in_place(|| AppState::load(config))?);
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(%address, projects = state.projects.len(), "listening");
    let limits = connections::ConnectionLimits::from_config(&state.config);
    let open = state.open_connections.clone();
    connections::serve_on(listener, app(state), limits, open, shutdown_signal()).await;
    tracing::info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
