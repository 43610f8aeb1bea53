//! The inference worker: one `std::thread` per project owns its generator and runs every
//! forward pass; nothing model-related happens on the async runtime.
//!
//! Requests arrive on a bounded queue as plain data (z values, unit edits, decoded mask
//! pixels; no tensors cross threads). The worker takes the first waiting job, then gathers
//! more for up to `max_wait` or `max_batch` images, drops jobs whose client has gone or
//! whose deadline has passed, and renders them all in one batched forward pass with
//! per-image edit planes. Images are encoded (PNG or JPEG) here too, off the runtime.
//! A full queue is answered at once with Overloaded (HTTP 503 + Retry-After), so memory
//! stays bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor};
use tokio::sync::oneshot;

use super::render_cache::{RenderCache, RenderEntry, RenderKey};
use crate::edit::{self, EditPlanes, Pooling, ResolvedStroke, StrokeMode, UnitEdit};
use crate::imageio;
use crate::model::{IncrementalStats, ProgGan, ProgGanConfig};

/// Errors the worker reports; `Clone` so one failure can answer a whole batch.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the request queue is full")]
    Overloaded,
    #[error("the request waited past its deadline")]
    Timeout,
    #[error("{0}")]
    BadRequest(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("the model worker has stopped")]
    Stopped,
}

impl From<edit::EditError> for WorkerError {
    fn from(e: edit::EditError) -> Self {
        match e {
            edit::EditError::UnitOutOfRange { .. }
            | edit::EditError::BadMask(_)
            | edit::EditError::UnknownConcept { .. } => WorkerError::BadRequest(e.to_string()),
            other => WorkerError::Inference(other.to_string()),
        }
    }
}

impl From<crate::model::ModelError> for WorkerError {
    fn from(e: crate::model::ModelError) -> Self {
        WorkerError::Inference(e.to_string())
    }
}

impl From<tch::TchError> for WorkerError {
    fn from(e: tch::TchError) -> Self {
        WorkerError::Inference(e.to_string())
    }
}

impl From<imageio::ImageError> for WorkerError {
    fn from(e: imageio::ImageError) -> Self {
        WorkerError::Inference(e.to_string())
    }
}

/// A mask pooled to the edited layer's grid: `h × w` values in [0, 1], row-major (the
/// HTTP side decodes masks straight to the grid; see [`crate::edit::mask`]).
#[derive(Clone, Debug)]
pub struct MaskData {
    pub height: i64,
    pub width: i64,
    pub values: Vec<f32>,
}

impl MaskData {
    fn to_tensor(&self) -> Result<Tensor, WorkerError> {
        Ok(Tensor::f_from_slice(&self.values)?.f_view([self.height, self.width])?)
    }
}

/// A layer edit as plain data: the alpha and value planes, `[C, H, W]` row-major each.
#[derive(Clone, Debug, PartialEq)]
pub struct DensePlanes {
    pub layer: String,
    pub shape: [i64; 3],
    pub alpha: Vec<f32>,
    pub value: Vec<f32>,
}

impl DensePlanes {
    fn from_planes(layer: &str, planes: &EditPlanes) -> Result<Self, WorkerError> {
        let read = |t: &Tensor| -> Result<Vec<f32>, WorkerError> {
            let flat = t
                .f_to_kind(Kind::Float)?
                .f_to_device(Device::Cpu)?
                .f_contiguous()?
                .f_flatten(0, -1)?;
            Ok(Vec::<f32>::try_from(flat)?)
        };
        let size = planes.alpha.size();
        Ok(DensePlanes {
            layer: layer.to_string(),
            shape: [size[0], size[1], size[2]],
            alpha: read(&planes.alpha)?,
            value: read(&planes.value)?,
        })
    }

    fn to_planes(&self, device: Device) -> Result<EditPlanes, WorkerError> {
        let plane = |v: &[f32]| -> Result<Tensor, WorkerError> {
            Ok(Tensor::f_from_slice(v)?
                .f_view(self.shape)?
                .f_to_device(device)?)
        };
        Ok(EditPlanes {
            alpha: plane(&self.alpha)?,
            value: plane(&self.value)?,
        })
    }
}

/// One gandissect intervention.
#[derive(Clone, Debug)]
pub struct InterventionSpec {
    pub edits: Vec<UnitEdit>,
    pub mask: Option<MaskData>,
    pub pooling: Pooling,
}

/// One paint stroke, already resolved to units, levels and alphas (see
/// [`edit::ResolvedStroke`]).
#[derive(Clone, Debug)]
pub struct StrokeSpec {
    pub units: Vec<i64>,
    pub levels: Vec<f32>,
    pub alphas: Vec<f32>,
    pub mode: StrokeMode,
    pub strength: f32,
    pub mask: MaskData,
}

/// The edit of one layer, in either vocabulary.
#[derive(Clone, Debug)]
pub enum LayerEdit {
    Interventions {
        layer: String,
        list: Vec<InterventionSpec>,
    },
    /// Paint strokes, composited in order over `base` (an earlier request's flattened
    /// edit) or over no edit.
    Strokes {
        layer: String,
        strokes: Vec<StrokeSpec>,
        base: Option<DensePlanes>,
    },
}

impl LayerEdit {
    fn layer(&self) -> &str {
        match self {
            LayerEdit::Interventions { layer, .. } | LayerEdit::Strokes { layer, .. } => layer,
        }
    }

    fn planes(&self, model: &ProgGan, device: Device) -> Result<EditPlanes, WorkerError> {
        let shape = model.layer_shape(self.layer())?;
        match self {
            LayerEdit::Interventions { layer, list } => {
                let mut planes = EditPlanes::empty(shape, device);
                for item in list {
                    let mask = item.mask.as_ref().map(MaskData::to_tensor).transpose()?;
                    let new = edit::intervention_planes(
                        layer,
                        shape,
                        &item.edits,
                        mask.as_ref(),
                        item.pooling,
                        device,
                    )?;
                    planes.over(&new)?;
                }
                Ok(planes)
            }
            LayerEdit::Strokes {
                layer,
                strokes,
                base,
            } => {
                let resolved = strokes
                    .iter()
                    .map(|s| {
                        Ok(ResolvedStroke {
                            units: s.units.clone(),
                            levels: s.levels.clone(),
                            alphas: s.alphas.clone(),
                            mode: s.mode,
                            strength: s.strength,
                            mask: s.mask.to_tensor()?,
                        })
                    })
                    .collect::<Result<Vec<_>, WorkerError>>()?;
                let start = match base {
                    Some(base) if base.shape != [shape.0, shape.1, shape.2] => {
                        return Err(WorkerError::BadRequest(format!(
                            "base_edit.shape: {:?} is not {layer}'s shape {shape:?}",
                            base.shape
                        )))
                    }
                    Some(base) => base.to_planes(device)?,
                    None => EditPlanes::empty(shape, device),
                };
                Ok(edit::paint_planes_over(
                    start, layer, shape, &resolved, device,
                )?)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Png,
    Jpeg(u8),
}

/// Render `z` (one row per image) with `edits` applied to every image of the job.
pub struct RenderJob {
    pub z: Vec<Vec<f32>>,
    pub edits: Vec<LayerEdit>,
    pub encoding: Encoding,
    /// Also answer each edit's composed planes ([`RenderOutput::edits`]).
    pub return_edits: bool,
}

pub struct RenderOutput {
    /// Encoded images, in the job's order.
    pub images: Vec<Vec<u8>>,
    /// Seconds spent in the forward pass of the batch this job rode in.
    pub forward_seconds: f64,
    pub encode_seconds: f64,
    pub batch_images: usize,
    /// The share of a full suffix pass this job's render recomputed: 1 for a full render,
    /// less when a kept render was updated incrementally (0 when nothing changed).
    pub recomputed: f64,
    /// Each edited layer's composed planes, when the job asked for them.
    pub edits: Vec<DensePlanes>,
}

/// Activation statistics and maps for `/api/features` and `/api/featuremaps`.
pub struct ActivationJob {
    pub z: Vec<Vec<f32>>,
    pub edits: Vec<LayerEdit>,
    pub layers: Vec<String>,
}

/// Per layer: activations `[N, C, H, W]` as f32, row-major.
pub struct ActivationOutput {
    pub layers: Vec<(String, [i64; 4], Vec<f32>)>,
}

pub enum WorkerCommand {
    Render {
        job: RenderJob,
        deadline: Instant,
        span: tracing::Span,
        tx: oneshot::Sender<Result<RenderOutput, WorkerError>>,
    },
    Activations {
        job: ActivationJob,
        deadline: Instant,
        span: tracing::Span,
        tx: oneshot::Sender<Result<ActivationOutput, WorkerError>>,
    },
}

impl WorkerCommand {
    fn is_abandoned(&self) -> bool {
        match self {
            WorkerCommand::Render { tx, .. } => tx.is_closed(),
            WorkerCommand::Activations { tx, .. } => tx.is_closed(),
        }
    }

    fn deadline(&self) -> Instant {
        match self {
            WorkerCommand::Render { deadline, .. }
            | WorkerCommand::Activations { deadline, .. } => *deadline,
        }
    }

    fn fail(self, error: WorkerError) {
        match self {
            WorkerCommand::Render { tx, .. } => {
                let _ = tx.send(Err(error));
            }
            WorkerCommand::Activations { tx, .. } => {
                let _ = tx.send(Err(error));
            }
        }
    }

    fn images(&self) -> usize {
        match self {
            WorkerCommand::Render { job, .. } => job.z.len(),
            WorkerCommand::Activations { job, .. } => job.z.len(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    /// Most images in one forward pass.
    pub max_batch: usize,
    /// How long the first job of a batch waits for company.
    pub max_wait: Duration,
    /// Jobs waiting beyond this are refused with Overloaded.
    pub queue_depth: usize,
    /// Bytes of kept renders for incremental re-rendering (0 turns it off).
    pub render_cache_bytes: usize,
}

/// Observations the server exports as metrics.
pub trait WorkerObserver: Send + Sync {
    fn batch(&self, images: usize, seconds: f64);
    /// A kept render was updated incrementally.
    fn incremental(&self, _stats: &IncrementalStats) {}
}

/// The handle the HTTP side holds: a bounded sender plus the model's shape facts.
#[derive(Clone)]
pub struct WorkerHandle {
    tx: SyncSender<WorkerCommand>,
    queued: Arc<AtomicUsize>,
    pub config: ProgGanConfig,
    pub device: Device,
}

impl WorkerHandle {
    /// Loads the generator on a new thread, runs one warm-up pass, and returns once it is
    /// ready (or failed to load).
    pub fn spawn(
        name: String,
        load: impl FnOnce() -> Result<ProgGan, crate::model::ModelError> + Send + 'static,
        batch: BatchConfig,
        observer: Arc<dyn WorkerObserver>,
    ) -> Result<WorkerHandle, crate::model::ModelError> {
        let (tx, rx) = sync_channel::<WorkerCommand>(batch.queue_depth);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let queued_worker = queued.clone();
        std::thread::Builder::new()
            .name(format!("worker-{name}"))
            .spawn(move || {
                // Grad mode is per thread: this thread only ever does inference.
                let _no_grad = tch::no_grad_guard();
                // So is OpenMP's thread count: set it for this thread too.
                crate::model::fit_threads_to_cpus();
                let model = match load() {
                    Ok(model) => model,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let warm = Tensor::zeros([1, model.z_dim()], (Kind::Float, model.device()));
                if let Err(e) = model.forward(&warm) {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                let _ = ready_tx.send(Ok((model.config().clone(), model.device())));
                run_loop(&model, rx, batch, &queued_worker, observer.as_ref());
            })
            .expect("spawn worker thread");
        let (config, device) = ready_rx.recv().map_err(|_| {
            crate::model::ModelError::NotAProgGan("worker died while loading".into())
        })??;
        Ok(WorkerHandle {
            tx,
            queued,
            config,
            device,
        })
    }

    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn submit(&self, command: WorkerCommand) -> Result<(), WorkerError> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(command) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => WorkerError::Overloaded,
                    TrySendError::Disconnected(_) => WorkerError::Stopped,
                })
            }
        }
    }

    pub async fn render(
        &self,
        job: RenderJob,
        timeout: Duration,
    ) -> Result<RenderOutput, WorkerError> {
        self.request(timeout, |deadline, span, tx| WorkerCommand::Render {
            job,
            deadline,
            span,
            tx,
        })
        .await
    }

    pub async fn activations(
        &self,
        job: ActivationJob,
        timeout: Duration,
    ) -> Result<ActivationOutput, WorkerError> {
        self.request(timeout, |deadline, span, tx| WorkerCommand::Activations {
            job,
            deadline,
            span,
            tx,
        })
        .await
    }

    /// Queues a command built around a fresh reply channel and waits for the answer, at
    /// most `timeout` (the worker also drops the command once its deadline has passed).
    async fn request<T>(
        &self,
        timeout: Duration,
        command: impl FnOnce(
            Instant,
            tracing::Span,
            oneshot::Sender<Result<T, WorkerError>>,
        ) -> WorkerCommand,
    ) -> Result<T, WorkerError> {
        let (tx, rx) = oneshot::channel();
        self.submit(command(
            Instant::now() + timeout,
            tracing::Span::current(),
            tx,
        ))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(WorkerError::Stopped),
            Err(_) => Err(WorkerError::Timeout),
        }
    }
}

fn run_loop(
    model: &ProgGan,
    rx: Receiver<WorkerCommand>,
    config: BatchConfig,
    queued: &AtomicUsize,
    observer: &dyn WorkerObserver,
) {
    let mut cache = RenderCache::new(config.render_cache_bytes);
    // Waiting for company only pays when requests overlap: a lone user (the last batch
    // had one image) gets no added latency, and a crowd gets full batches.
    let mut last_batch_images = 1;
    while let Ok(first) = rx.recv() {
        queued.fetch_sub(1, Ordering::Relaxed);
        let mut batch = vec![first];
        let mut images = batch[0].images();
        let wait = if last_batch_images > 1 {
            config.max_wait
        } else {
            Duration::ZERO
        };
        let gather_until = Instant::now() + wait;
        while images < config.max_batch {
            // Whatever is already queued joins at once.
            let next = match rx.try_recv() {
                Ok(command) => Some(command),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= gather_until {
                        break;
                    }
                    match rx.recv_timeout(gather_until - now) {
                        Ok(command) => Some(command),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => None,
                    }
                }
            };
            let Some(command) = next else { break };
            queued.fetch_sub(1, Ordering::Relaxed);
            images += command.images();
            batch.push(command);
        }
        last_batch_images = images;
        let now = Instant::now();
        let mut renders = Vec::new();
        for command in batch {
            if command.is_abandoned() {
                continue; // the user already painted again
            }
            if command.deadline() <= now {
                command.fail(WorkerError::Timeout);
                continue;
            }
            match command {
                WorkerCommand::Render { job, span, tx, .. } => renders.push((job, span, tx)),
                WorkerCommand::Activations { job, span, tx, .. } => {
                    let _entered = span.enter();
                    let _ = tx.send(activations(model, &job));
                }
            }
        }
        if !renders.is_empty() {
            render_batch(model, &mut cache, renders, observer);
        }
    }
}

type PendingRender = (
    RenderJob,
    tracing::Span,
    oneshot::Sender<Result<RenderOutput, WorkerError>>,
);

fn z_tensor(model: &ProgGan, rows: &[&Vec<f32>]) -> Result<Tensor, WorkerError> {
    let dim = model.z_dim();
    let mut flat = Vec::with_capacity(rows.len() * dim as usize);
    for row in rows {
        if row.len() as i64 != dim {
            return Err(WorkerError::BadRequest(format!(
                "z has {} values; this model's z has {dim}",
                row.len()
            )));
        }
        flat.extend_from_slice(row);
    }
    Ok(Tensor::f_from_slice(&flat)?
        .f_view([rows.len() as i64, dim])?
        .f_to_device(model.device())?)
}

/// A job whose edits are valid, with its planes built (and read back, when it asked).
type Accepted = (
    RenderJob,
    tracing::Span,
    oneshot::Sender<Result<RenderOutput, WorkerError>>,
    Vec<(String, EditPlanes)>,
    Vec<DensePlanes>,
);

/// Renders a batch of jobs and answers each. Jobs with one image and one edited layer go
/// through the render cache: a kept render is updated incrementally, and a new one is
/// rendered (batched with the other new ones) and kept. Everything else is rendered in
/// one batched pass with per-image planes.
fn render_batch(
    model: &ProgGan,
    cache: &mut RenderCache,
    renders: Vec<PendingRender>,
    observer: &dyn WorkerObserver,
) {
    let device = model.device();
    let mut accepted: Vec<Accepted> = Vec::new();
    for (job, span, tx) in renders {
        let planes = job
            .edits
            .iter()
            .map(|e| Ok((e.layer().to_string(), e.planes(model, device)?)))
            .collect::<Result<Vec<(String, EditPlanes)>, WorkerError>>()
            .and_then(|planes| {
                let flat = if job.return_edits {
                    planes
                        .iter()
                        .map(|(layer, p)| DensePlanes::from_planes(layer, p))
                        .collect::<Result<Vec<_>, WorkerError>>()?
                } else {
                    Vec::new()
                };
                Ok((planes, flat))
            });
        match planes {
            Ok((planes, flat)) => accepted.push((job, span, tx, planes, flat)),
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    }
    if accepted.is_empty() {
        return;
    }
    let started = Instant::now();
    let mut images: Vec<Option<Result<Vec<Vec<u8>>, WorkerError>>> =
        (0..accepted.len()).map(|_| None).collect();
    let mut recomputed = vec![1.0f64; accepted.len()];
    let caching = cache.enabled();
    let last_layer = model.layer_names().len() - 1;
    // One image, one edited layer, and at least one block after it to keep.
    let cacheable = |(job, _, _, planes, _): &Accepted| {
        caching
            && job.z.len() == 1
            && planes.len() == 1
            && model
                .layer_index(&planes[0].0)
                .is_ok_and(|index| index < last_layer)
    };
    // Kept renders: update in place.
    let mut fresh: Vec<usize> = Vec::new();
    let mut rest: Vec<usize> = Vec::new();
    for (i, item) in accepted.iter().enumerate() {
        if !cacheable(item) {
            rest.push(i);
            continue;
        }
        let (job, span, _, planes, _) = item;
        let key = RenderKey::new(&job.z[0], &planes[0].0);
        match cache.take(&key) {
            Some(mut entry) => {
                let _entered = span.enter();
                let result = rerender(model, &mut entry, &planes[0].1, observer);
                if let Ok((_, fraction)) = &result {
                    recomputed[i] = *fraction;
                    cache.insert(key, entry);
                }
                images[i] = Some(result.map(|(one, _)| vec![one]));
            }
            None => fresh.push(i),
        }
    }
    // New cacheable renders, batched per edited layer, and kept.
    let mut layers: Vec<&str> = fresh.iter().map(|&i| accepted[i].3[0].0.as_str()).collect();
    layers.sort();
    layers.dedup();
    for layer in layers {
        let group: Vec<usize> = fresh
            .iter()
            .copied()
            .filter(|&i| accepted[i].3[0].0 == layer)
            .collect();
        let items: Vec<&Accepted> = group.iter().map(|&i| &accepted[i]).collect();
        match render_and_keep(model, cache, layer, &items) {
            Ok(rendered) => {
                for (&i, one) in group.iter().zip(rendered) {
                    images[i] = Some(Ok(vec![one]));
                }
            }
            Err(e) => {
                for &i in &group {
                    images[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    // Everything else: one batched pass.
    if !rest.is_empty() {
        let items: Vec<&Accepted> = rest.iter().map(|&i| &accepted[i]).collect();
        match render_stacked(model, &items) {
            Ok(rendered) => {
                let mut rendered = rendered.into_iter();
                for (&i, item) in rest.iter().zip(&items) {
                    images[i] = Some(Ok(rendered.by_ref().take(item.0.z.len()).collect()));
                }
            }
            Err(e) => {
                for &i in &rest {
                    images[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    let forward_seconds = started.elapsed().as_secs_f64();
    let total_images: usize = accepted.iter().map(|(job, ..)| job.z.len()).sum();
    observer.batch(total_images, forward_seconds);
    let resolution = model.resolution() as u32;
    for (((job, span, tx, _, edits), result), recomputed) in
        accepted.into_iter().zip(images).zip(recomputed)
    {
        let _entered = span.enter();
        let encode_started = Instant::now();
        let encoded = result.expect("every job was rendered").and_then(|raw| {
            raw.into_iter()
                .map(|pixels| {
                    let image = image::RgbImage::from_raw(resolution, resolution, pixels)
                        .expect("sized by the model");
                    Ok(match job.encoding {
                        Encoding::Png => imageio::encode_png(&image)?,
                        Encoding::Jpeg(quality) => imageio::encode_jpeg(&image, quality)?,
                    })
                })
                .collect::<Result<Vec<_>, WorkerError>>()
        });
        let _ = tx.send(encoded.map(|images| RenderOutput {
            images,
            forward_seconds,
            encode_seconds: encode_started.elapsed().as_secs_f64(),
            batch_images: total_images,
            recomputed,
            edits,
        }));
    }
}

/// Raw RGB bytes of each image of `[N, 3, R, R]`.
fn rgb_bytes(images: &Tensor) -> Result<Vec<Vec<u8>>, WorkerError> {
    Ok(imageio::to_rgb_images(images)?
        .into_iter()
        .map(|i| i.into_raw())
        .collect())
}

/// A kept render, re-rendered under new planes: only what changed is recomputed.
/// Returns the image and the share of a full pass that was recomputed.
fn rerender(
    model: &ProgGan,
    entry: &mut RenderEntry,
    planes: &EditPlanes,
    observer: &dyn WorkerObserver,
) -> Result<(Vec<u8>, f64), WorkerError> {
    let edited = planes.apply(&entry.prefix)?;
    let (image, stats) = model.forward_from_incremental(&mut entry.suffix, &edited)?;
    observer.incremental(&stats);
    let work = if stats.changed_cells == 0 {
        0.0
    } else {
        stats.work_fraction
    };
    Ok((rgb_bytes(&image)?.pop().expect("one image"), work))
}

/// Renders one-image jobs that all edit `layer`, in one batch, and keeps each render.
fn render_and_keep(
    model: &ProgGan,
    cache: &mut RenderCache,
    layer: &str,
    items: &[&Accepted],
) -> Result<Vec<Vec<u8>>, WorkerError> {
    let rows: Vec<&Vec<f32>> = items.iter().map(|(job, ..)| &job.z[0]).collect();
    let z = z_tensor(model, &rows)?;
    let prefix = model.features(&z, layer)?;
    let alphas: Vec<Tensor> = items
        .iter()
        .map(|i| i.3[0].1.alpha.shallow_clone())
        .collect();
    let values: Vec<Tensor> = items
        .iter()
        .map(|i| i.3[0].1.value.shallow_clone())
        .collect();
    let planes = EditPlanes {
        alpha: Tensor::f_stack(&alphas, 0)?,
        value: Tensor::f_stack(&values, 0)?,
    };
    let edited = planes.apply(&prefix)?;
    let (images, kept) = model.forward_from_recorded(layer, &edited)?;
    for (i, (suffix, row)) in kept.into_iter().zip(&rows).enumerate() {
        let slice = prefix.f_narrow(0, i as i64, 1)?;
        let mut own_prefix = slice.f_empty_like()?;
        own_prefix.f_copy_(&slice)?;
        cache.insert(
            RenderKey::new(row, layer),
            RenderEntry {
                prefix: own_prefix,
                suffix,
            },
        );
    }
    rgb_bytes(&images)
}

/// Renders jobs in one pass, stacking each job's planes per layer into `[N, C, H, W]`
/// (identity planes for images whose job does not edit that layer).
fn render_stacked(model: &ProgGan, items: &[&Accepted]) -> Result<Vec<Vec<u8>>, WorkerError> {
    let device = model.device();
    let rows: Vec<&Vec<f32>> = items.iter().flat_map(|(job, ..)| job.z.iter()).collect();
    let z = z_tensor(model, &rows)?;
    let mut layers: Vec<String> = items
        .iter()
        .flat_map(|(_, _, _, planes, _)| planes.iter().map(|(l, _)| l.clone()))
        .collect();
    layers.sort();
    layers.dedup();
    let mut stacked = Vec::new();
    for layer in layers {
        let shape = model.layer_shape(&layer)?;
        let mut alphas = Vec::new();
        let mut values = Vec::new();
        for (job, _, _, planes, _) in items {
            let own = planes.iter().find(|(l, _)| *l == layer).map(|(_, p)| p);
            let identity;
            let p = match own {
                Some(p) => p,
                None => {
                    identity = EditPlanes::empty(shape, device);
                    &identity
                }
            };
            for _ in 0..job.z.len() {
                alphas.push(p.alpha.shallow_clone());
                values.push(p.value.shallow_clone());
            }
        }
        stacked.push((
            layer,
            EditPlanes {
                alpha: Tensor::f_stack(&alphas, 0)?,
                value: Tensor::f_stack(&values, 0)?,
            },
        ));
    }
    let images = edit::render(model, &z, &stacked)?;
    rgb_bytes(&images)
}

fn activations(model: &ProgGan, job: &ActivationJob) -> Result<ActivationOutput, WorkerError> {
    let device = model.device();
    let rows: Vec<&Vec<f32>> = job.z.iter().collect();
    let z = z_tensor(model, &rows)?;
    let planes: Vec<(String, EditPlanes)> = job
        .edits
        .iter()
        .map(|e| Ok((e.layer().to_string(), e.planes(model, device)?)))
        .collect::<Result<_, WorkerError>>()?;
    let mut layers = Vec::new();
    for layer in &job.layers {
        // Activations as the edited model computes them at that layer.
        let index = model.layer_index(layer)?;
        let earlier: Vec<(String, EditPlanes)> = planes
            .iter()
            .filter(|(l, _)| model.layer_index(l).map(|i| i <= index).unwrap_or(false))
            .map(|(l, p)| {
                (
                    l.clone(),
                    EditPlanes {
                        alpha: p.alpha.shallow_clone(),
                        value: p.value.shallow_clone(),
                    },
                )
            })
            .collect();
        let acts = edit::features_with_edits(model, &z, layer, &earlier)?
            .f_to_kind(Kind::Float)?
            .f_to_device(Device::Cpu)?;
        let size = acts.size();
        let values = Vec::<f32>::try_from(acts.f_flatten(0, -1)?)?;
        layers.push((layer.clone(), [size[0], size[1], size[2], size[3]], values));
    }
    Ok(ActivationOutput { layers })
}
