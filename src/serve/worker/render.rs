//! Rendering a gathered batch on the worker thread, through [`edit::render_edited`]'s
//! routes, and answering each job.
//!
//! A job with one image and one edited layer (with blocks after it) is what painting
//! sends, stroke after stroke on the same image, so it goes through the render cache:
//! when its image is kept, the kept render is updated incrementally
//! ([`Route::Update`]); when not, it is rendered with the other new ones of the same
//! layer in one batch and kept ([`Route::Record`]). Every other job is rendered in one
//! batched pass with per-image edit planes ([`edit::render`]). Images are encoded (PNG or
//! JPEG) here too, off the async runtime.

use std::time::Instant;

use tch::{Device, Kind, Tensor};

use super::super::render_cache::{RenderCache, RenderEntry, RenderKey};
use super::jobs::{
    ActivationJob, ActivationOutput, DensePlanes, Encoding, Pending, RenderJob, RenderOutput,
    Source,
};
use super::uploads::UploadModels;
use super::{WorkerError, WorkerObserver};
use crate::edit::{self, EditPlanes, LayerPlanes, Route};
use crate::imageio;
use crate::model::{IncrementalStats, ProgGan};

pub(super) type PendingRender = Pending<RenderJob, RenderOutput>;

/// A render job whose edits are valid, with its planes built.
struct Accepted {
    pending: PendingRender,
    planes: Vec<LayerPlanes>,
    /// The planes read back as data, when the job asked for them.
    returned: Vec<DensePlanes>,
}

/// How one job of a batch is rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
enum JobRoute {
    /// Its image is kept: update that render.
    Kept,
    /// Cacheable but not kept: render with the other new ones of `layer`, and keep.
    Record { layer: String },
    /// Everything else: the batched pass with per-image planes.
    Stacked,
    /// An uploaded picture: its own adapted generator, alone.
    Upload,
}

/// New renders of one edited layer, rendered together.
#[derive(Debug, PartialEq)]
struct RecordGroup {
    layer: String,
    jobs: Vec<usize>,
}

/// A batch's jobs by route, as indices into the batch (each list in batch order).
#[derive(Debug, Default, PartialEq)]
struct BatchPlan {
    kept: Vec<usize>,
    /// One group per edited layer, in layer-name order.
    record: Vec<RecordGroup>,
    stacked: Vec<usize>,
    uploads: Vec<usize>,
}

impl BatchPlan {
    fn new(routes: &[JobRoute]) -> Self {
        let mut plan = BatchPlan::default();
        for (i, route) in routes.iter().enumerate() {
            match route {
                JobRoute::Kept => plan.kept.push(i),
                JobRoute::Stacked => plan.stacked.push(i),
                JobRoute::Upload => plan.uploads.push(i),
                JobRoute::Record { layer } => {
                    match plan.record.iter_mut().find(|g| g.layer == *layer) {
                        Some(group) => group.jobs.push(i),
                        None => plan.record.push(RecordGroup {
                            layer: layer.clone(),
                            jobs: vec![i],
                        }),
                    }
                }
            }
        }
        plan.record.sort_by(|a, b| a.layer.cmp(&b.layer));
        plan
    }
}

/// What one job's render came to.
struct JobResult {
    /// Raw RGB bytes per image.
    images: Result<Vec<Vec<u8>>, WorkerError>,
    /// The share of a full suffix pass recomputed.
    recomputed: f64,
}

impl JobResult {
    fn full(images: Result<Vec<Vec<u8>>, WorkerError>) -> Self {
        JobResult {
            images,
            recomputed: 1.0,
        }
    }
}

/// Renders a batch of jobs and answers each.
pub(super) fn render_batch(
    model: &ProgGan,
    cache: &mut RenderCache,
    uploads: &mut UploadModels,
    renders: Vec<PendingRender>,
    observer: &dyn WorkerObserver,
) {
    let accepted = accept(model, renders);
    if accepted.is_empty() {
        return;
    }
    let started = Instant::now();
    // Route each job; kept renders are taken out of the cache while they are updated.
    let last_layer = model.layer_names().len() - 1;
    let mut taken: Vec<Option<(RenderKey, RenderEntry)>> = Vec::with_capacity(accepted.len());
    let mut routes = Vec::with_capacity(accepted.len());
    for item in &accepted {
        if let Source::Upload(_) = item.pending.job.source {
            routes.push(JobRoute::Upload);
            taken.push(None);
            continue;
        }
        let cacheable = cache.enabled()
            && item.pending.job.source.count() == 1
            && item.planes.len() == 1
            && model
                .layer_index(&item.planes[0].layer)
                .is_ok_and(|index| index < last_layer);
        if !cacheable {
            routes.push(JobRoute::Stacked);
            taken.push(None);
            continue;
        }
        let layer = &item.planes[0].layer;
        let key = RenderKey::new(&rows_of(item)[0], layer);
        match cache.take(&key) {
            Some(entry) => {
                routes.push(JobRoute::Kept);
                taken.push(Some((key, entry)));
            }
            None => {
                routes.push(JobRoute::Record {
                    layer: layer.clone(),
                });
                taken.push(None);
            }
        }
    }
    let plan = BatchPlan::new(&routes);
    let mut results: Vec<Option<JobResult>> = (0..accepted.len()).map(|_| None).collect();
    for &i in &plan.kept {
        let (key, mut entry) = taken[i].take().expect("kept jobs were taken");
        let item = &accepted[i];
        let _entered = item.pending.span.enter();
        let result = rerender(model, &mut entry, &item.planes[0], observer);
        results[i] = Some(match result {
            Ok((image, recomputed)) => {
                cache.insert(key, entry);
                JobResult {
                    images: Ok(vec![image]),
                    recomputed,
                }
            }
            Err(e) => JobResult::full(Err(e)),
        });
    }
    for group in &plan.record {
        let items: Vec<&Accepted> = group.jobs.iter().map(|&i| &accepted[i]).collect();
        match render_and_keep(model, cache, &group.layer, &items) {
            Ok(rendered) => {
                for (&i, image) in group.jobs.iter().zip(rendered) {
                    results[i] = Some(JobResult::full(Ok(vec![image])));
                }
            }
            Err(e) => {
                for &i in &group.jobs {
                    results[i] = Some(JobResult::full(Err(e.clone())));
                }
            }
        }
    }
    if !plan.stacked.is_empty() {
        let items: Vec<&Accepted> = plan.stacked.iter().map(|&i| &accepted[i]).collect();
        match render_stacked(model, &items) {
            Ok(rendered) => {
                let mut rendered = rendered.into_iter();
                for (&i, item) in plan.stacked.iter().zip(&items) {
                    let images = rendered.by_ref().take(rows_of(item).len()).collect();
                    results[i] = Some(JobResult::full(Ok(images)));
                }
            }
            Err(e) => {
                for &i in &plan.stacked {
                    results[i] = Some(JobResult::full(Err(e.clone())));
                }
            }
        }
    }
    for &i in &plan.uploads {
        let item = &accepted[i];
        let _entered = item.pending.span.enter();
        let Source::Upload(upload) = &item.pending.job.source else {
            unreachable!("routed as an upload")
        };
        let rendered = uploads.render(model, cache, upload, &item.planes);
        results[i] = Some(match rendered {
            Ok(r) => {
                let recomputed = match &r.incremental {
                    Some(stats) => {
                        observer.incremental(stats);
                        recomputed_share(stats)
                    }
                    None if item.planes.is_empty() => 0.0,
                    None => 1.0,
                };
                JobResult {
                    images: rgb_bytes(&r.image),
                    recomputed,
                }
            }
            Err(e) => JobResult::full(Err(e)),
        });
    }
    let forward_seconds = started.elapsed().as_secs_f64();
    let total_images: usize = accepted.iter().map(|a| a.pending.job.source.count()).sum();
    observer.batch(total_images, forward_seconds);
    let resolution = model.resolution() as u32;
    for (item, result) in accepted.into_iter().zip(results) {
        let result = result.expect("every job was routed");
        let Accepted {
            pending, returned, ..
        } = item;
        let _entered = pending.span.enter();
        let encode_started = Instant::now();
        let encoding = pending.job.encoding;
        let encoded = result.images.and_then(|raw| {
            raw.into_iter()
                .map(|pixels| encode(resolution, pixels, encoding))
                .collect::<Result<Vec<_>, WorkerError>>()
        });
        let _ = pending.tx.send(encoded.map(|images| RenderOutput {
            images,
            forward_seconds,
            encode_seconds: encode_started.elapsed().as_secs_f64(),
            batch_images: total_images,
            recomputed: result.recomputed,
            edits: returned,
        }));
    }
}

/// Builds each job's planes; a job whose edits are invalid is answered here.
fn accept(model: &ProgGan, renders: Vec<PendingRender>) -> Vec<Accepted> {
    let device = model.device();
    let mut accepted = Vec::with_capacity(renders.len());
    for pending in renders {
        let built = pending
            .job
            .edits
            .iter()
            .map(|e| e.planes(model, device))
            .collect::<Result<Vec<LayerPlanes>, WorkerError>>()
            .and_then(|planes| {
                let returned = if pending.job.return_edits {
                    planes
                        .iter()
                        .map(|p| DensePlanes::from_planes(&p.layer, &p.planes))
                        .collect::<Result<Vec<_>, WorkerError>>()?
                } else {
                    Vec::new()
                };
                Ok((planes, returned))
            });
        match built {
            Ok((planes, returned)) => accepted.push(Accepted {
                pending,
                planes,
                returned,
            }),
            Err(e) => {
                let _ = pending.tx.send(Err(e));
            }
        }
    }
    accepted
}

fn encode(resolution: u32, pixels: Vec<u8>, encoding: Encoding) -> Result<Vec<u8>, WorkerError> {
    let image =
        image::RgbImage::from_raw(resolution, resolution, pixels).expect("sized by the model");
    Ok(match encoding {
        Encoding::Png => imageio::encode_png(&image)?,
        Encoding::Jpeg(quality) => imageio::encode_jpeg(&image, quality)?,
    })
}

/// The z rows of a job of generated images (none for an upload).
fn rows_of(item: &Accepted) -> &[Vec<f32>] {
    match &item.pending.job.source {
        Source::Latents(rows) => rows,
        Source::Upload(_) => &[],
    }
}

/// z rows → `[N, D]` on the model's device.
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

/// Raw RGB bytes of each image of `[N, 3, R, R]`.
fn rgb_bytes(images: &Tensor) -> Result<Vec<Vec<u8>>, WorkerError> {
    Ok(imageio::to_rgb_images(images)?
        .into_iter()
        .map(|i| i.into_raw())
        .collect())
}

/// Planes of several edits stacked into `[N, C, H, W]`.
fn stack(planes: &[&EditPlanes]) -> Result<EditPlanes, WorkerError> {
    let alphas: Vec<&Tensor> = planes.iter().map(|p| &p.alpha).collect();
    let values: Vec<&Tensor> = planes.iter().map(|p| &p.value).collect();
    Ok(EditPlanes {
        alpha: Tensor::f_stack(&alphas, 0)?,
        value: Tensor::f_stack(&values, 0)?,
    })
}

/// A kept render, re-rendered under new planes: only what changed is recomputed.
/// Returns the image and the share of a full pass that was recomputed.
fn rerender(
    model: &ProgGan,
    entry: &mut RenderEntry,
    edit: &LayerPlanes,
    observer: &dyn WorkerObserver,
) -> Result<(Vec<u8>, f64), WorkerError> {
    let rendered = edit::render_edited(
        model,
        &edit.layer,
        &entry.prefix,
        &edit.planes,
        Route::Update(&mut entry.suffix),
    )?;
    let stats = rendered.incremental.unwrap_or_default();
    observer.incremental(&stats);
    let work = recomputed_share(&stats);
    Ok((rgb_bytes(&rendered.images)?.pop().expect("one image"), work))
}

/// The share of a full pass an incremental update recomputed (0 when nothing changed).
fn recomputed_share(stats: &IncrementalStats) -> f64 {
    if stats.changed_cells == 0 {
        0.0
    } else {
        stats.work_fraction
    }
}

/// Renders one-image jobs that all edit `layer`, in one batch, and keeps each render.
fn render_and_keep(
    model: &ProgGan,
    cache: &mut RenderCache,
    layer: &str,
    items: &[&Accepted],
) -> Result<Vec<Vec<u8>>, WorkerError> {
    let rows: Vec<&Vec<f32>> = items.iter().map(|a| &rows_of(a)[0]).collect();
    let z = z_tensor(model, &rows)?;
    let prefix = model.features(&z, layer)?;
    let planes: Vec<&EditPlanes> = items.iter().map(|a| &a.planes[0].planes).collect();
    let rendered = edit::render_edited(model, layer, &prefix, &stack(&planes)?, Route::Record)?;
    for (i, (suffix, row)) in rendered.kept.into_iter().zip(&rows).enumerate() {
        // A copy, so that each kept image owns exactly its own memory.
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
    rgb_bytes(&rendered.images)
}

/// Renders jobs in one pass, stacking each job's planes per layer into `[N, C, H, W]`
/// (identity planes for images whose job does not edit that layer).
fn render_stacked(model: &ProgGan, items: &[&Accepted]) -> Result<Vec<Vec<u8>>, WorkerError> {
    let device = model.device();
    let rows: Vec<&Vec<f32>> = items.iter().flat_map(|a| rows_of(a).iter()).collect();
    let z = z_tensor(model, &rows)?;
    let mut layers: Vec<&str> = items
        .iter()
        .flat_map(|a| a.planes.iter().map(|p| p.layer.as_str()))
        .collect();
    layers.sort();
    layers.dedup();
    let mut stacked = Vec::with_capacity(layers.len());
    for layer in layers {
        let identity = EditPlanes::empty(model.layer_shape(layer)?, device);
        let mut per_image: Vec<&EditPlanes> = Vec::with_capacity(rows.len());
        for item in items {
            let own = item.planes.iter().find(|p| p.layer == layer);
            let planes = own.map_or(&identity, |p| &p.planes);
            per_image.extend(std::iter::repeat_n(planes, rows_of(item).len()));
        }
        stacked.push(LayerPlanes {
            layer: layer.to_string(),
            planes: stack(&per_image)?,
        });
    }
    rgb_bytes(&edit::render(model, &z, &stacked)?)
}

/// Activations of the edited model at each asked-for layer.
pub(super) fn activations(
    model: &ProgGan,
    job: &ActivationJob,
) -> Result<ActivationOutput, WorkerError> {
    let device = model.device();
    let rows: Vec<&Vec<f32>> = job.z.iter().collect();
    let z = z_tensor(model, &rows)?;
    let planes: Vec<LayerPlanes> = job
        .edits
        .iter()
        .map(|e| e.planes(model, device))
        .collect::<Result<_, WorkerError>>()?;
    let mut layers = Vec::new();
    for layer in &job.layers {
        // As the edited model computes them there: edits at later layers do not count.
        let acts = edit::features_with_edits(model, &z, layer, &planes)?
            .f_to_kind(Kind::Float)?
            .f_to_device(Device::Cpu)?;
        let size = acts.size();
        let values = Vec::<f32>::try_from(acts.f_flatten(0, -1)?)?;
        layers.push((layer.clone(), [size[0], size[1], size[2], size[3]], values));
    }
    Ok(ActivationOutput { layers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(layer: &str) -> JobRoute {
        JobRoute::Record {
            layer: layer.to_string(),
        }
    }

    #[test]
    fn new_renders_of_one_layer_are_grouped_and_the_rest_keep_their_order() {
        let routes = [
            record("layer6"),
            JobRoute::Stacked,
            record("layer4"),
            JobRoute::Kept,
            record("layer6"),
            JobRoute::Stacked,
            JobRoute::Kept,
            JobRoute::Upload,
        ];
        let plan = BatchPlan::new(&routes);
        assert_eq!(
            plan,
            BatchPlan {
                kept: vec![3, 6],
                record: vec![
                    RecordGroup {
                        layer: "layer4".into(),
                        jobs: vec![2],
                    },
                    RecordGroup {
                        layer: "layer6".into(),
                        jobs: vec![0, 4],
                    },
                ],
                stacked: vec![1, 5],
                uploads: vec![7],
            }
        );
    }

    #[test]
    fn an_empty_batch_plans_nothing() {
        assert_eq!(BatchPlan::new(&[]), BatchPlan::default());
    }
}
