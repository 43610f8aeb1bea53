//! Painting on the user's own picture (GANPaint Studio's way, see [`crate::invert`]): the
//! server side of `POST /api/v1/images`.
//!
//! ```text
//! POST /api/v1/images ──► picture: checked, decoded, cropped and sized (off the runtime)
//!                         id = upload-<hash of project, generator, layer and pixels>
//!        stored? ──► answer at once        running? ──► wait with the others
//!        else ──► the project's inverter thread (its own bounded queue): encoder guess,
//!                 optimise the layer, adapt the weights after it; progress on a watch
//!                 channel; cancelled when nobody waits any longer
//!                 ──► the store (a folder per upload, LRU by --uploads-mb) ──► answer
//! POST /api/v1/paint {image: "upload-…"} ──► the render worker loads the stored fit and
//!                 paints it with its adapted generator (render cache as for ids)
//! ```
//!
//! Ids are content addresses: the same picture for the same project and generator is one
//! upload, inverted once. An id is only ever used as a path after [`UploadId::parse`].

pub mod api;
pub mod inverter;
pub mod picture;
pub mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa::ToSchema;

use super::error::ApiError;
pub use inverter::{InvertRequest, Inverter};
pub use store::{Stored, UploadStore};

/// An upload's id: `upload-` and 32 lower-case hex digits (128 bits of a SHA-256).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UploadId(String);

pub const ID_PREFIX: &str = "upload-";
const ID_HEX: usize = 32;

impl UploadId {
    /// Checks the exact form; nothing else ever becomes an upload's path.
    pub fn parse(text: &str) -> Result<UploadId, String> {
        let hex = text
            .strip_prefix(ID_PREFIX)
            .ok_or_else(|| format!("an upload id is `{ID_PREFIX}` and {ID_HEX} hex digits"))?;
        if hex.len() != ID_HEX || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "an upload id is `{ID_PREFIX}` and {ID_HEX} lower-case hex digits"
            ));
        }
        Ok(UploadId(text.to_string()))
    }

    /// The id of `pixels` (the picture at the model's resolution, RGB) inverted at `layer`
    /// of the generator whose weights hash to `generator` for `project`, painting from
    /// `paint_from` on when a z is fitted with it. (An inversion without a z keeps the id
    /// it had before z was fitted; a server that fits one inverts such a picture anew.)
    pub fn of(
        project: &str,
        generator: &str,
        layer: &str,
        paint_from: Option<&str>,
        resolution: u32,
        pixels: &[u8],
    ) -> Self {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in [project, generator, layer, &resolution.to_string()] {
            hash.update(part.as_bytes());
            hash.update([0u8]);
        }
        if let Some(first) = paint_from {
            hash.update(b"paint_from=");
            hash.update(first.as_bytes());
            hash.update([0u8]);
        }
        hash.update(pixels);
        let digest = hash.finalize();
        let hex: String = digest[..ID_HEX / 2]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        UploadId(format!("{ID_PREFIX}{hex}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reconstruction PSNR (dB) after each step of the inversion.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct UploadPsnr {
    pub encoder_db: f64,
    pub optimized_db: f64,
    pub adapted_db: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct UploadTiming {
    /// From the request's arrival to the inversion's end.
    pub total_ms: f64,
    /// Waiting for the inverter.
    pub queued_ms: f64,
    pub encode_ms: f64,
    pub optimize_ms: f64,
    /// The fit of z (0 when none was fitted, or for an upload stored before it was).
    #[serde(default)]
    pub z_ms: f64,
    pub adapt_ms: f64,
}

/// What is known of a stored upload (`upload.json`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct UploadInfo {
    /// The id to paint with: `image` in `/api/v1/paint`.
    pub image: String,
    pub project: String,
    #[serde(flatten)]
    pub figures: UploadFigures,
}

/// An inverted upload's sizes and figures.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct UploadFigures {
    /// The layer it was inverted at: it can be painted at this layer or a later one, and
    /// from `paint_from` on when that is given.
    pub layer: String,
    /// The first layer it can be painted at, when earlier than `layer`: a z was fitted to
    /// the inverted activations, and an edit of an earlier layer is carried to `layer`
    /// through it. Absent for pictures inverted without a z.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paint_from: Option<String>,
    /// The uploaded picture's size, before it was cropped to a square and resized.
    pub width: u32,
    pub height: u32,
    /// The model's resolution, the side of what is painted.
    pub resolution: i64,
    /// Reconstruction PSNR after the last step.
    pub psnr_db: f64,
    pub psnr: UploadPsnr,
    pub timing: UploadTiming,
}

/// The answer to an upload.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UploadResponse {
    #[serde(flatten)]
    pub info: UploadInfo,
    /// False when the same picture was already stored: no new inversion ran.
    pub stored: bool,
}

/// Where a running inversion is.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct UploadProgress {
    /// `queued`, `encode`, `optimize` (step 2) or `adapt` (step 3).
    pub stage: String,
    pub step: usize,
    pub steps: usize,
    /// Of the whole inversion, 0 to 1.
    pub fraction: f64,
}

/// `GET /api/v1/images/{image}`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UploadStatus {
    pub image: String,
    pub project: String,
    /// `running` (see `progress`) or `done` (with the upload's figures).
    pub status: String,
    pub progress: Option<UploadProgress>,
    /// Once done.
    #[serde(flatten)]
    pub figures: Option<UploadFigures>,
}

/// A running inversion's state, as its watchers see it.
#[derive(Clone, Debug)]
pub enum JobState {
    Working(UploadProgress),
    Done(UploadInfo),
    Failed(ApiError),
    Cancelled,
}

impl JobState {
    pub fn is_final(&self) -> bool {
        !matches!(self, JobState::Working(_))
    }
}

/// One inversion in flight, shared by everyone waiting for it.
pub struct Running {
    pub id: UploadId,
    pub project: String,
    state: watch::Sender<JobState>,
    cancel: AtomicBool,
    watchers: AtomicUsize,
}

impl Running {
    fn new(id: UploadId, project: String) -> Arc<Running> {
        let (state, _) = watch::channel(JobState::Working(UploadProgress {
            stage: "queued".into(),
            step: 0,
            steps: 0,
            fraction: 0.0,
        }));
        Arc::new(Running {
            id,
            project,
            state,
            cancel: AtomicBool::new(false),
            watchers: AtomicUsize::new(0),
        })
    }

    pub fn state(&self) -> JobState {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<JobState> {
        self.state.subscribe()
    }

    pub fn set(&self, state: JobState) {
        self.state.send_replace(state);
    }

    /// Set once nobody waits any longer; the inverter stops at its next step.
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }
}

/// Someone waiting for an inversion: when the last one goes (a client disconnects), the
/// inversion is cancelled.
pub struct Watching(Arc<Running>);

impl Watching {
    pub fn new(running: Arc<Running>) -> Self {
        running.watchers.fetch_add(1, Ordering::SeqCst);
        Watching(running)
    }

    pub fn running(&self) -> &Arc<Running> {
        &self.0
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if self.0.watchers.fetch_sub(1, Ordering::SeqCst) == 1 && !self.0.state().is_final() {
            tracing::info!(upload = %self.0.id, "nobody waits for the inversion any longer: cancelling it");
            self.0.cancel.store(true, Ordering::SeqCst);
        }
    }
}

/// Every project's uploads: the store, and the inversions in flight.
pub struct Uploads {
    pub store: UploadStore,
    running: Mutex<HashMap<UploadId, Arc<Running>>>,
}

/// What [`Uploads::begin`] found.
pub enum Begun {
    /// Already stored: its figures.
    Stored(UploadInfo),
    /// Being inverted: wait on it (`new` when this request started it).
    Running { watching: Watching, new: bool },
}

impl Uploads {
    pub fn new(store: UploadStore) -> Self {
        Uploads {
            store,
            running: Mutex::default(),
        }
    }

    /// The stored upload's figures, or the inversion in flight to wait on, or a new one
    /// registered (and handed to `start`, which queues it; its error unregisters it).
    /// The lock makes the three exclusive: an inversion finishing meanwhile is either
    /// already stored or still registered.
    pub fn begin(
        &self,
        id: &UploadId,
        project: &str,
        start: impl FnOnce(Arc<Running>) -> Result<(), ApiError>,
    ) -> Result<Begun, ApiError> {
        let mut running = self.running.lock().expect("uploads lock");
        // A job whose clients all left is stopping: this request starts afresh.
        if let Some(job) = running
            .get(id)
            .filter(|job| !job.cancel.load(Ordering::SeqCst))
        {
            return Ok(Begun::Running {
                watching: Watching::new(job.clone()),
                new: false,
            });
        }
        if let Some(info) = self.stored_info(id) {
            return Ok(Begun::Stored(info));
        }
        let job = Running::new(id.clone(), project.to_string());
        let watching = Watching::new(job.clone());
        start(job.clone())?;
        running.insert(id.clone(), job);
        Ok(Begun::Running {
            watching,
            new: true,
        })
    }

    /// Called by the inverter once a job is over (stored, failed or cancelled).
    pub fn finish(&self, running: &Arc<Running>, state: JobState) {
        let mut map = self.running.lock().expect("uploads lock");
        running.set(state);
        // Unless a new job for the same picture has taken its place.
        if map
            .get(&running.id)
            .is_some_and(|job| Arc::ptr_eq(job, running))
        {
            map.remove(&running.id);
        }
    }

    /// A running inversion, if `id` is one.
    pub fn running(&self, id: &UploadId) -> Option<Arc<Running>> {
        self.running.lock().expect("uploads lock").get(id).cloned()
    }

    /// A stored upload's figures (marks it used).
    pub fn stored_info(&self, id: &UploadId) -> Option<UploadInfo> {
        let stored = self.store.get(id)?;
        let text = std::fs::read(stored.dir.join(store::INFO_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_exactly_before_anything_else() {
        let good = format!("upload-{}", "0123456789abcdef".repeat(2));
        assert_eq!(UploadId::parse(&good).unwrap().as_str(), good);
        for bad in [
            "",
            "upload-",
            "upload-../../etc/passwd",
            &format!("upload-{}", "0123456789ABCDEF".repeat(2)),
            &format!("upload-{}0", "0123456789abcdef".repeat(2)),
            &format!("uploads-{}", "0123456789abcdef".repeat(2)),
            &format!("upload-{}/", &"0123456789abcdef".repeat(2)[..31]),
        ] {
            assert!(UploadId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_id_depends_on_every_part_and_only_on_them() {
        let a = UploadId::of("demo", "g1", "layer4", None, 64, &[1, 2, 3]);
        assert_eq!(
            a,
            UploadId::of("demo", "g1", "layer4", None, 64, &[1, 2, 3])
        );
        assert!(UploadId::parse(a.as_str()).is_ok());
        for other in [
            UploadId::of("church", "g1", "layer4", None, 64, &[1, 2, 3]),
            UploadId::of("demo", "g2", "layer4", None, 64, &[1, 2, 3]),
            UploadId::of("demo", "g1", "layer5", None, 64, &[1, 2, 3]),
            UploadId::of("demo", "g1", "layer4", Some("layer1"), 64, &[1, 2, 3]),
            UploadId::of("demo", "g1", "layer4", None, 128, &[1, 2, 3]),
            UploadId::of("demo", "g1", "layer4", None, 64, &[1, 2, 4]),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn the_last_watcher_leaving_cancels_a_running_inversion_but_not_a_finished_one() {
        let id = UploadId::of("demo", "g", "layer4", None, 8, &[0]);
        let job = Running::new(id.clone(), "demo".into());
        let first = Watching::new(job.clone());
        let second = Watching::new(job.clone());
        drop(first);
        assert!(!job.cancel_flag().load(Ordering::SeqCst));
        drop(second);
        assert!(job.cancel_flag().load(Ordering::SeqCst));

        let done = Running::new(id, "demo".into());
        let watcher = Watching::new(done.clone());
        done.set(JobState::Cancelled);
        drop(watcher);
        assert!(!done.cancel_flag().load(Ordering::SeqCst));
    }
}
