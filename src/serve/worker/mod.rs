//! The inference worker: one `std::thread` per project owns its generator and runs every
//! forward pass; nothing model-related happens on the async runtime.
//!
//! Requests arrive on a bounded queue as plain data ([`jobs`]: z values, unit edits,
//! decoded mask pixels; no tensors cross threads). The worker takes the first waiting
//! job, then gathers more for up to `max_wait` or `max_batch` images, drops jobs whose
//! client has gone or whose deadline has passed ([`queue`]), and renders the rest
//! together, batched, through the edited render's routes ([`render`]). Images are encoded
//! (PNG or JPEG) there too, off the runtime. A full queue is answered at once with
//! Overloaded (HTTP 503 + Retry-After), so memory stays bounded.

mod jobs;
mod queue;
mod render;
mod uploads;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor};
use tokio::sync::oneshot;

use super::render_cache::RenderCache;
use crate::edit;
use crate::imageio;
use crate::model::{IncrementalStats, ProgGan, ProgGanConfig};

pub use jobs::{
    ActivationJob, ActivationOutput, DensePlanes, Encoding, InterventionSpec, LayerEdit, MaskData,
    Pending, RenderJob, RenderOutput, Source, StrokeSpec, UploadRef, WorkerCommand,
};
use queue::{job_queue, live_jobs, Gatherer, Gathering, JobQueue};

/// Errors the worker reports; `Clone` so one failure can answer a whole batch.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the request queue is full")]
    Overloaded,
    #[error("the request waited past its deadline")]
    Timeout,
    #[error("{0}")]
    BadRequest(String),
    /// Something the request names is not (or no longer) there.
    #[error("{0}")]
    NotFound(String),
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

/// The handle the HTTP side holds: the bounded queue plus the model's shape facts.
#[derive(Clone)]
pub struct WorkerHandle {
    queue: JobQueue<WorkerCommand>,
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
        let (queue, gatherer) = job_queue::<WorkerCommand>(
            batch.queue_depth,
            Gathering {
                max_batch: batch.max_batch,
                max_wait: batch.max_wait,
            },
        );
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let cache_bytes = batch.render_cache_bytes;
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
                run_loop(&model, gatherer, cache_bytes, observer.as_ref());
            })
            .expect("spawn worker thread");
        let (config, device) = ready_rx.recv().map_err(|_| {
            crate::model::ModelError::NotAProgGan("worker died while loading".into())
        })??;
        Ok(WorkerHandle {
            queue,
            config,
            device,
        })
    }

    pub fn queue_depth(&self) -> usize {
        self.queue.depth()
    }

    pub async fn render(
        &self,
        job: RenderJob,
        timeout: Duration,
    ) -> Result<RenderOutput, WorkerError> {
        self.request(timeout, |deadline, span, tx| {
            WorkerCommand::Render(Pending {
                job,
                deadline,
                span,
                tx,
            })
        })
        .await
    }

    pub async fn activations(
        &self,
        job: ActivationJob,
        timeout: Duration,
    ) -> Result<ActivationOutput, WorkerError> {
        self.request(timeout, |deadline, span, tx| {
            WorkerCommand::Activations(Pending {
                job,
                deadline,
                span,
                tx,
            })
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
        self.queue.submit(command(
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

/// The worker thread's loop: gather a batch, drop what nobody waits for, run the rest.
fn run_loop(
    model: &ProgGan,
    mut gatherer: Gatherer<WorkerCommand>,
    render_cache_bytes: usize,
    observer: &dyn WorkerObserver,
) {
    let mut cache = RenderCache::new(render_cache_bytes);
    let mut uploads = uploads::UploadModels::default();
    while let Some(batch) = gatherer.next_batch() {
        let mut renders = Vec::new();
        for command in live_jobs(batch, Instant::now()) {
            match command {
                WorkerCommand::Render(pending) => renders.push(pending),
                WorkerCommand::Activations(Pending { job, span, tx, .. }) => {
                    let _entered = span.enter();
                    let _ = tx.send(render::activations(model, &job));
                }
            }
        }
        if !renders.is_empty() {
            render::render_batch(model, &mut cache, &mut uploads, renders, observer);
        }
    }
}
