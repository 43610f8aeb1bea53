//! The inverter: one thread per project that inverts uploaded pictures, one at a time,
//! from its own bounded queue (an inversion takes seconds; painting must not wait behind
//! it, so the render worker never runs one). It holds its own copy of the generator in
//! exact arithmetic (the inversion needs gradients) and the project's encoder, both
//! loaded on the first upload.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use tch::Device;

use super::picture::Picture;
use super::store::{FIT_FILE, INFO_FILE, PICTURE_FILE};
use super::{
    JobState, Running, UploadFigures, UploadInfo, UploadProgress, UploadPsnr, UploadTiming, Uploads,
};
use crate::invert::{self, Encoder, InvertError, InvertSettings, Stage};
use crate::model::ProgGan;
use crate::serve::error::{ApiError, ErrorType};

/// One picture to invert.
pub struct InvertRequest {
    pub running: Arc<Running>,
    pub picture: Picture,
    pub arrived: Instant,
}

/// What the inverter thread needs to know about its project.
#[derive(Clone, Debug)]
pub struct InverterConfig {
    pub project: String,
    pub generator: PathBuf,
    pub encoder: PathBuf,
    /// The layer pictures are inverted at.
    pub layer: String,
    /// The first layer an inverted picture paints at when it is earlier than `layer`: the
    /// project's first dissected layer, when a z is fitted (the encoder predicts z and the
    /// z fit has steps).
    pub paint_from: Option<String>,
    pub device: Device,
    pub settings: InvertSettings,
    /// Inversions waiting beyond the running one before new uploads get 503.
    pub queue_depth: usize,
}

/// The handle the HTTP side holds.
pub struct Inverter {
    tx: SyncSender<InvertRequest>,
    pub layer: String,
    pub paint_from: Option<String>,
    pub queue_depth: usize,
}

impl Inverter {
    pub fn spawn(config: InverterConfig, uploads: Arc<Uploads>) -> std::io::Result<Inverter> {
        let (tx, rx) = sync_channel::<InvertRequest>(config.queue_depth);
        let (layer, paint_from, queue_depth) = (
            config.layer.clone(),
            config.paint_from.clone(),
            config.queue_depth,
        );
        std::thread::Builder::new()
            .name(format!("invert-{}", config.project))
            .spawn(move || {
                share_cpus_with_the_worker();
                let mut models: Option<(ProgGan, Encoder)> = None;
                while let Ok(request) = rx.recv() {
                    let running = request.running.clone();
                    let _span =
                        tracing::info_span!("invert", upload = %running.id, project = %config.project)
                            .entered();
                    let state = run_one(&config, &mut models, request, &uploads);
                    match &state {
                        JobState::Done(info) => tracing::info!(
                            psnr_db = info.figures.psnr_db,
                            seconds = info.figures.timing.total_ms / 1e3,
                            "upload inverted and stored"
                        ),
                        JobState::Cancelled => tracing::info!("inversion cancelled"),
                        JobState::Failed(e) => tracing::warn!(error = %e, "inversion failed"),
                        JobState::Working(_) => {}
                    }
                    uploads.finish(&running, state);
                }
            })?;
        Ok(Inverter {
            tx,
            layer,
            paint_from,
            queue_depth,
        })
    }

    /// Queues an inversion; a full queue is Overloaded (503, retry later).
    pub fn submit(&self, request: InvertRequest) -> Result<(), ApiError> {
        self.tx.try_send(request).map_err(|e| match e {
            TrySendError::Full(_) => ApiError::new(
                ErrorType::Overloaded,
                format!(
                    "image: {} pictures are already waiting to be inverted (--invert-queue); try again shortly",
                    self.queue_depth
                ),
            ),
            TrySendError::Disconnected(_) => {
                ApiError::new(ErrorType::Unavailable, "the inverter has stopped")
            }
        })
    }
}

/// The inverter computes with half the CPUs (at least one; `OMP_NUM_THREADS` wins), so
/// painting keeps the other half while a picture is inverted. It is also faster: with the
/// render worker's threads and the inverter's together outnumbering the cores, OpenMP
/// stops spinning between the many small operations of a training step and sleeps
/// instead; on 2 cores, adapting a demo picture took 3.5 s on two threads and 2.5 s on one.
fn share_cpus_with_the_worker() {
    if std::env::var_os("OMP_NUM_THREADS").is_some() {
        return;
    }
    if let Ok(cpus) = std::thread::available_parallelism() {
        tch::set_num_threads((cpus.get() / 2).max(1) as i32);
    }
}

fn load_models(config: &InverterConfig) -> Result<(ProgGan, Encoder), String> {
    let generator = ProgGan::load(&config.generator, config.device)
        .map_err(|e| format!("loading {}: {e}", config.generator.display()))?;
    let encoder = Encoder::load(&config.encoder, config.device)
        .map_err(|e| format!("loading {}: {e}", config.encoder.display()))?;
    encoder
        .check_fits(&generator, &config.layer)
        .map_err(|e| e.to_string())?;
    Ok((generator, encoder))
}

/// Inverts one picture and stores it; the job's final state.
fn run_one(
    config: &InverterConfig,
    models: &mut Option<(ProgGan, Encoder)>,
    request: InvertRequest,
    uploads: &Uploads,
) -> JobState {
    let InvertRequest {
        running,
        picture,
        arrived,
    } = request;
    if running.cancel_flag().load(Ordering::SeqCst) {
        return JobState::Cancelled;
    }
    let queued_ms = arrived.elapsed().as_secs_f64() * 1e3;
    if models.is_none() {
        running.set(JobState::Working(UploadProgress {
            stage: "encode".into(),
            step: 0,
            steps: 0,
            fraction: 0.0,
        }));
        match load_models(config) {
            Ok(loaded) => *models = Some(loaded),
            Err(e) => return JobState::Failed(ApiError::internal(e)),
        }
    }
    let (generator, encoder) = models.as_ref().expect("loaded above");
    let resolution = generator.resolution();
    let target = match invert::picture_tensor(&picture.fitted, resolution, config.device) {
        Ok(t) => t,
        Err(e) => return JobState::Failed(ApiError::internal(e)),
    };
    let settings = &config.settings;
    let total = (settings.optimize.steps + settings.adapt.steps).max(1);
    let mut progress = |stage: Stage, step: usize, steps: usize| {
        let (name, done) = match stage {
            Stage::Optimize => ("optimize", step),
            Stage::Adapt => ("adapt", settings.optimize.steps + step),
        };
        running.set(JobState::Working(UploadProgress {
            stage: name.into(),
            step,
            steps,
            fraction: done as f64 / total as f64,
        }));
    };
    let inversion = match invert::invert(
        generator,
        encoder,
        &config.layer,
        &target,
        settings,
        &mut progress,
        running.cancel_flag(),
    ) {
        Ok(inversion) => inversion,
        Err(InvertError::Cancelled) => return JobState::Cancelled,
        Err(e) => return JobState::Failed(ApiError::internal(e)),
    };
    let report = &inversion.report;
    let info = UploadInfo {
        image: running.id.to_string(),
        project: config.project.clone(),
        figures: UploadFigures {
            layer: config.layer.clone(),
            paint_from: config
                .paint_from
                .clone()
                .filter(|_| inversion.fit.z.is_some()),
            width: picture.width,
            height: picture.height,
            resolution,
            psnr_db: report.psnr_adapted_db,
            psnr: UploadPsnr {
                encoder_db: report.psnr_encoder_db,
                optimized_db: report.psnr_optimized_db,
                adapted_db: report.psnr_adapted_db,
            },
            timing: UploadTiming {
                total_ms: arrived.elapsed().as_secs_f64() * 1e3,
                queued_ms,
                encode_ms: report.encode_s * 1e3,
                optimize_ms: report.optimize_s * 1e3,
                z_ms: report.z_s * 1e3,
                adapt_ms: report.adapt_s * 1e3,
            },
        },
    };
    let stored = uploads.store.insert(&config.project, &running.id, |dir| {
        inversion
            .fit
            .save(&dir.join(FIT_FILE))
            .map_err(std::io::Error::other)?;
        let png = crate::imageio::encode_png(&picture.fitted).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(PICTURE_FILE), png)?;
        let json = serde_json::to_vec_pretty(&info).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(INFO_FILE), json)
    });
    match stored {
        Ok(_) => JobState::Done(info),
        Err(e) => JobState::Failed(ApiError::internal(e)),
    }
}
