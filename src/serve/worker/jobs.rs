//! What the HTTP side hands the worker, and what it gets back: plain data (z values, unit
//! edits, decoded mask pixels, encoded images), never tensors, which stay on the worker
//! thread. [`LayerEdit::planes`] is where a request's edit becomes [`EditPlanes`], on the
//! worker.

use std::time::Instant;

use tch::{Device, Kind, Tensor};
use tokio::sync::oneshot;

use super::queue::Queued;
use super::WorkerError;
use crate::edit::{self, EditPlanes, Pooling, ResolvedStroke, StrokeMode, UnitEdit};
use crate::model::ProgGan;

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
    pub(super) fn from_planes(layer: &str, planes: &EditPlanes) -> Result<Self, WorkerError> {
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
    pub(super) fn layer(&self) -> &str {
        match self {
            LayerEdit::Interventions { layer, .. } | LayerEdit::Strokes { layer, .. } => layer,
        }
    }

    /// The edit's planes `[C, H, W]` on `device`.
    pub(super) fn planes(
        &self,
        model: &ProgGan,
        device: Device,
    ) -> Result<edit::LayerPlanes, WorkerError> {
        let shape = model.layer_shape(self.layer())?;
        let planes = match self {
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
                planes
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
                edit::paint_planes_over(start, layer, shape, &resolved, device)?
            }
        };
        Ok(edit::LayerPlanes {
            layer: self.layer().to_string(),
            planes,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Png,
    Jpeg(u8),
}

/// An uploaded picture, inverted and stored ([`crate::serve::uploads`]): its id and the
/// file holding its [`crate::invert::Fit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRef {
    pub id: String,
    pub file: std::path::PathBuf,
}

/// What a job renders.
#[derive(Clone, Debug)]
pub enum Source {
    /// Generated images: one z row each.
    Latents(Vec<Vec<f32>>),
    /// One uploaded picture, rendered by its adapted generator.
    Upload(UploadRef),
}

impl Source {
    /// How many images the job renders.
    pub fn count(&self) -> usize {
        match self {
            Source::Latents(rows) => rows.len(),
            Source::Upload(_) => 1,
        }
    }
}

/// Render `source` with `edits` applied to every image of the job.
pub struct RenderJob {
    pub source: Source,
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

/// A job waiting for the worker, with what it needs to be answered.
pub struct Pending<J, O> {
    pub job: J,
    /// Past this instant the client has given up: the job is answered with a timeout.
    pub deadline: Instant,
    pub span: tracing::Span,
    pub tx: oneshot::Sender<Result<O, WorkerError>>,
}

impl<J, O> Pending<J, O> {
    /// The client went away (for a paint: the user already painted again).
    fn is_abandoned(&self) -> bool {
        self.tx.is_closed()
    }

    fn fail(self, error: WorkerError) {
        let _ = self.tx.send(Err(error));
    }
}

/// What travels on the worker's queue.
pub enum WorkerCommand {
    Render(Pending<RenderJob, RenderOutput>),
    Activations(Pending<ActivationJob, ActivationOutput>),
}

impl Queued for WorkerCommand {
    fn images(&self) -> usize {
        match self {
            WorkerCommand::Render(p) => p.job.source.count(),
            WorkerCommand::Activations(p) => p.job.z.len(),
        }
    }

    fn is_abandoned(&self) -> bool {
        match self {
            WorkerCommand::Render(p) => p.is_abandoned(),
            WorkerCommand::Activations(p) => p.is_abandoned(),
        }
    }

    fn deadline(&self) -> Instant {
        match self {
            WorkerCommand::Render(p) => p.deadline,
            WorkerCommand::Activations(p) => p.deadline,
        }
    }

    fn fail(self, error: WorkerError) {
        match self {
            WorkerCommand::Render(p) => p.fail(error),
            WorkerCommand::Activations(p) => p.fail(error),
        }
    }
}
