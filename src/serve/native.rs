//! The native API under `/api/v1`, for the bundled UI and for scripts. Documented in
//! OpenAPI 3 at `/api/openapi.json`, generated from these types and handlers.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, AppJson, ErrorBody};
use super::project::ProjectLayer;
use super::uploads::api as upload_api;
use super::uploads::{UploadId, Uploads};
use super::worker::UploadRef;
use super::worker::{DensePlanes, Encoding, LayerEdit, MaskData, RenderJob, Source, StrokeSpec};
use super::{off_runtime, AppState};
use crate::edit::{mask, Pooling, StrokeMode};
use crate::model::latent;

#[derive(Serialize, ToSchema)]
pub struct ConceptInfo {
    pub name: String,
    /// The units a draw stroke edits, in the order it takes them (up to 40, or the
    /// tuned count when larger), with each
    /// unit's IoU with the concept: the causal draw ranking when the dissection has one,
    /// else the IoU ranking.
    pub units: Vec<UnitScore>,
    /// The units a remove stroke takes, in order (up to 40, or the tuned count when
    /// larger; a learned set may list fewer).
    pub remove_units: Vec<usize>,
    /// What a draw stroke that gives no `units` or `strength` paints with: the setting
    /// `ganpaint dissect tune` found best for the concept, else 20 units at strength 1.
    pub draw_default: StrokeSetting,
    /// Likewise for a remove stroke (its strength is unused).
    pub remove_default: StrokeSetting,
    /// The ranking (as `/api/rankings` names it) whose order a draw stroke takes: the
    /// optimized intervention's learned weights (`tree-ace-draw`) where the dissection has
    /// them, else `tree-causal-draw`, else `tree-iou`.
    pub draw_ranking: String,
    /// Likewise for a remove stroke.
    pub remove_ranking: String,
}

#[derive(Serialize, ToSchema)]
pub struct StrokeSetting {
    pub units: usize,
    pub strength: f32,
    /// Whether the dissection was tuned for it (else these are the plain defaults).
    pub tuned: bool,
    /// The tuning's draw gain or remove cut, when tuned.
    pub score: Option<f64>,
}

impl StrokeSetting {
    fn of(layer: &ProjectLayer, concept: &str, mode: StrokeMode) -> Self {
        let setting = layer.dissection.stroke_default(concept, mode);
        StrokeSetting {
            units: setting.units,
            strength: setting.strength,
            tuned: layer.dissection.tuned_stroke(concept, mode).is_some(),
            score: setting.score,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UnitScore {
    pub unit: usize,
    pub iou: f64,
}

#[derive(Serialize, ToSchema)]
pub struct LayerInfo {
    pub name: String,
    pub units: i64,
    /// `[height, width]` of the layer's grid.
    pub grid: [i64; 2],
    pub concepts: Vec<ConceptInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct ProjectInfo {
    pub name: String,
    pub resolution: i64,
    pub default_layer: String,
    pub layers: Vec<LayerInfo>,
}

/// Every project, its layers and the concepts painting can use.
#[utoipa::path(get, path = "/api/v1/projects", responses((status = 200, body = [ProjectInfo])))]
pub async fn projects(State(state): State<Arc<AppState>>) -> Json<Vec<ProjectInfo>> {
    let list = state
        .projects
        .values()
        .map(|p| ProjectInfo {
            name: p.id().to_string(),
            resolution: p.resolution(),
            default_layer: p.default_layer().name.clone(),
            layers: p
                .layers
                .iter()
                .map(|l| LayerInfo {
                    name: l.name.clone(),
                    units: l.channels,
                    grid: [l.height, l.width],
                    concepts: l
                        .concepts()
                        .filter_map(|c| {
                            let by_iou = l.concept_units(&c.concept)?;
                            // A concept no unit overlaps cannot be painted.
                            let best = by_iou.first().map_or(0.0, |&(_, iou)| iou);
                            if best <= 0.0 {
                                return None;
                            }
                            let iou_of = |unit: usize| {
                                by_iou
                                    .iter()
                                    .find(|&&(u, _)| u == unit)
                                    .map_or(0.0, |&(_, iou)| iou)
                            };
                            let draw_default = StrokeSetting::of(l, &c.concept, StrokeMode::Draw);
                            let remove_default =
                                StrokeSetting::of(l, &c.concept, StrokeMode::Remove);
                            let shown = 40.max(draw_default.units).max(remove_default.units);
                            let listed = |mode| {
                                l.stroke_units(&c.concept, mode, shown)
                                    .map(|units| units.into_iter().map(|(u, _)| u))
                            };
                            let draw = listed(StrokeMode::Draw)?;
                            let remove = listed(StrokeMode::Remove)?;
                            Some(ConceptInfo {
                                name: c.concept.clone(),
                                units: draw
                                    .map(|unit| UnitScore {
                                        unit,
                                        iou: iou_of(unit),
                                    })
                                    .collect(),
                                remove_units: remove.collect(),
                                draw_default,
                                remove_default,
                                draw_ranking: l.stroke_ranking(&c.concept, StrokeMode::Draw)?,
                                remove_ranking: l.stroke_ranking(&c.concept, StrokeMode::Remove)?,
                            })
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Json(list)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    pub project: String,
    /// Arbitrary 64-bit seeds.
    pub seeds: Option<Vec<u64>>,
    /// GAN Dissection image ids.
    pub ids: Option<Vec<u64>>,
    /// Uploaded pictures (`upload-…`, from `POST /api/v1/images`), as they are painted on.
    pub images: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct ImagesResponse {
    /// PNG data URLs, in request order.
    pub images: Vec<String>,
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn png_data_url(png: &[u8]) -> String {
    crate::formats::data_url::encode("image/png", png)
}

fn png_response(png: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        png,
    )
        .into_response()
}

/// Which image a paint request edits.
#[derive(Clone)]
enum Latent {
    Id(u64),
    Seed(u64),
    Upload(UploadId),
}

impl Latent {
    /// Exactly one of `id`, `seed` and `image`, checked without computing anything.
    fn pick(id: Option<u64>, seed: Option<u64>, image: Option<&str>) -> Result<Latent, ApiError> {
        match (id, seed, image) {
            (Some(id), None, None) if id > latent::MAX_ID => Err(ApiError::bad(
                "id",
                format!("id {id} is above {}", latent::MAX_ID),
            )),
            (Some(id), None, None) => Ok(Latent::Id(id)),
            (None, Some(seed), None) => Ok(Latent::Seed(seed)),
            (None, None, Some(image)) => Ok(Latent::Upload(upload_api::parse_id(image)?)),
            _ => Err(ApiError::bad(
                "id",
                "give exactly one of `id`, `seed` and `image`",
            )),
        }
    }

    /// What the worker renders (CPU work: a large id walks the random stream, and an
    /// upload is looked up on disk; run it off the runtime).
    fn source(self, dim: usize, uploads: &Uploads, project: &str) -> Result<Source, ApiError> {
        Ok(match self {
            Latent::Id(id) => Source::Latents(vec![latent::z_for_ids(&[id], dim)]),
            Latent::Seed(seed) => Source::Latents(vec![latent::z_for_seeds(&[seed], dim)]),
            Latent::Upload(id) => Source::Upload(upload_ref(uploads, &id, project)?),
        })
    }
}

/// A stored upload of `project`, for the worker.
fn upload_ref(uploads: &Uploads, id: &UploadId, project: &str) -> Result<UploadRef, ApiError> {
    let stored = match uploads.store.get(id) {
        Some(stored) => stored,
        None if uploads.running(id).is_some() => return Err(upload_api::still_inverting(id)),
        None => return Err(upload_api::not_stored(id)),
    };
    if stored.project != project {
        return Err(ApiError::bad(
            "image",
            format!(
                "{id} was uploaded for project {}, not {project}",
                stored.project
            ),
        ));
    }
    Ok(UploadRef {
        id: id.to_string(),
        file: stored.fit_file(),
    })
}

/// Unedited images by seed or id: one image answers `image/png`; several (or
/// `Accept: application/json`) answer JSON with PNG data URLs.
#[utoipa::path(post, path = "/api/v1/generate", request_body = GenerateRequest,
    responses(
        (status = 200, description = "One image as image/png; several, or with Accept: application/json, JSON",
            content((ImagesResponse = "application/json"), (Vec<u8> = "image/png"))),
        (status = 400, description = "bad input", body = ErrorBody),
        (status = 404, description = "an upload in `images` is not stored", body = ErrorBody),
        (status = 409, description = "an upload in `images` is still being inverted", body = ErrorBody),
        (status = 503, description = "queue full", body = ErrorBody)))]
pub async fn generate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppJson(request): AppJson<GenerateRequest>,
) -> Result<Response, ApiError> {
    let project = state.project(&request.project)?.clone();
    let dim = project.worker.config.z_dim as usize;
    let z: Vec<f32> = match (request.ids, request.seeds, request.images) {
        (None, None, Some(images)) => {
            return generate_uploads(&state, &project, &headers, images).await;
        }
        (Some(ids), None, None) => {
            state.check_count("ids", ids.len())?;
            let ids: Vec<i64> = ids.iter().map(|&i| i.min(i64::MAX as u64) as i64).collect();
            let ids = state.check_ids(&ids)?;
            off_runtime(move || latent::z_for_ids(&ids, dim)).await?
        }
        (None, Some(seeds), None) => {
            state.check_count("seeds", seeds.len())?;
            off_runtime(move || latent::z_for_seeds(&seeds, dim)).await?
        }
        _ => {
            return Err(ApiError::bad(
                "ids",
                "give exactly one of `ids`, `seeds` and `images`",
            ))
        }
    };
    let rows: Vec<Vec<f32>> = z.chunks(dim).map(|c| c.to_vec()).collect();
    let count = rows.len();
    let output = project
        .worker
        .render(
            RenderJob {
                source: Source::Latents(rows),
                edits: Vec::new(),
                encoding: Encoding::Png,
                return_edits: false,
            },
            state.config.request_timeout(),
        )
        .await?;
    if count == 1 && !wants_json(&headers) {
        return Ok(png_response(
            output.images.into_iter().next().expect("one image"),
        ));
    }
    Ok(Json(ImagesResponse {
        images: output.images.iter().map(|p| png_data_url(p)).collect(),
    })
    .into_response())
}

/// `generate` for uploaded pictures: each is rendered by its own adapted generator, one
/// job each.
async fn generate_uploads(
    state: &AppState,
    project: &super::project::Project,
    headers: &HeaderMap,
    images: Vec<String>,
) -> Result<Response, ApiError> {
    state.check_count("images", images.len())?;
    let ids = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            UploadId::parse(image).map_err(|e| ApiError::bad(&format!("images[{i}]"), e))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let (uploads, name) = (state.uploads.clone(), project.id().to_string());
    let refs = off_runtime(move || {
        ids.iter()
            .map(|id| upload_ref(&uploads, id, &name))
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await??;
    let count = refs.len();
    let mut pngs = Vec::with_capacity(count);
    for upload in refs {
        let output = project
            .worker
            .render(
                RenderJob {
                    source: Source::Upload(upload),
                    edits: Vec::new(),
                    encoding: Encoding::Png,
                    return_edits: false,
                },
                state.config.request_timeout(),
            )
            .await?;
        pngs.extend(output.images);
    }
    if count == 1 && !wants_json(headers) {
        return Ok(png_response(pngs.pop().expect("one image")));
    }
    Ok(Json(ImagesResponse {
        images: pngs.iter().map(|p| png_data_url(p)).collect(),
    })
    .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Stroke {
    /// A concept the project's dissection ranked at this layer (see `/api/v1/projects`).
    pub concept: String,
    pub mode: StrokeMode,
    /// PNG data URL of any size; pixels with alpha > 0 are painted.
    pub mask: String,
    /// How many of the concept's top units to edit (default: the concept's tuned count,
    /// `draw_default`/`remove_default` in `/api/v1/projects`, else 20).
    pub units: Option<usize>,
    /// Draw multiplies each unit's 0.99-quantile level by this (default: the concept's
    /// tuned strength, else 1).
    pub strength: Option<f32>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaintRequest {
    pub project: String,
    pub id: Option<u64>,
    pub seed: Option<u64>,
    /// An uploaded picture, `upload-…` (from `POST /api/v1/images`); paint it at the layer
    /// it was inverted at or a later one, or from its `paint_from` layer on when the upload
    /// answer gave one (a z was fitted with it).
    pub image: Option<String>,
    /// Defaults to `base_edit.layer`, else the project's default layer (layer4).
    pub layer: Option<String>,
    pub strokes: Vec<Stroke>,
    /// A flattened edit, as an earlier answer's `edit` returned it: applied first, then
    /// `strokes` on top, which gives exactly the pixels of sending all the strokes at once.
    /// This is how a client goes past `--max-strokes`.
    #[schema(value_type = Option<FlatEdit>)]
    pub base_edit: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct PaintResponse {
    /// PNG data URL.
    pub image: String,
    /// Units edited by each stroke, in order.
    pub units: Vec<Vec<i64>>,
    pub timing: PaintTiming,
    /// The layer edit after `base_edit` and every stroke of the request: send it back as
    /// `base_edit` to paint on from here.
    pub edit: FlatEdit,
}

/// A layer edit, flattened: the edited activation is `x·(1 − alpha) + value·alpha` per
/// unit and grid cell, and every (unit, cell) not listed has alpha 0 and value 0.
#[derive(Serialize, ToSchema, Debug, PartialEq)]
pub struct FlatEdit {
    pub layer: String,
    /// `[units, height, width]` of the layer.
    pub shape: [usize; 3],
    /// The edited units, in increasing order.
    pub units: Vec<FlatUnit>,
}

#[derive(Serialize, ToSchema, Debug, PartialEq)]
pub struct FlatUnit {
    pub unit: usize,
    /// `[cell, alpha, value]` triples, `cell = y·width + x` increasing. Alpha and value are
    /// 32-bit numbers written exactly (as their 64-bit decimal), so a client that sends
    /// them back unchanged gets the same bits.
    #[schema(value_type = Vec<Vec<f64>>)]
    pub cells: Vec<(usize, f64, f64)>,
}

impl FlatEdit {
    /// The sparse form of dense planes: every (unit, cell) whose alpha or value has any
    /// bit set (so even a −0 survives the round trip).
    fn from_dense(dense: &DensePlanes) -> FlatEdit {
        let [c, h, w] = dense.shape.map(|v| v as usize);
        let units = (0..c)
            .filter_map(|unit| {
                let cells: Vec<(usize, f64, f64)> = (0..h * w)
                    .filter_map(|cell| {
                        let (a, v) = (
                            dense.alpha[unit * h * w + cell],
                            dense.value[unit * h * w + cell],
                        );
                        (a.to_bits() != 0 || v.to_bits() != 0).then_some((cell, a as f64, v as f64))
                    })
                    .collect();
                (!cells.is_empty()).then_some(FlatUnit { unit, cells })
            })
            .collect();
        FlatEdit {
            layer: dense.layer.clone(),
            shape: [c, h, w],
            units,
        }
    }

    /// The edit that changes nothing.
    fn identity(layer: &ProjectLayer) -> FlatEdit {
        FlatEdit {
            layer: layer.name.clone(),
            shape: [
                layer.channels as usize,
                layer.height as usize,
                layer.width as usize,
            ],
            units: Vec::new(),
        }
    }
}

/// Reads a client's `base_edit` into dense planes, checking every part of it against the
/// layer; each error names its path (`base_edit.units[3].cells[7]`).
fn parse_base_edit(
    base: &serde_json::Value,
    layer_name: &str,
    [c, h, w]: [usize; 3],
) -> Result<DensePlanes, ApiError> {
    use serde_json::Value;
    let object = base
        .as_object()
        .ok_or_else(|| ApiError::bad("base_edit", "must be an object {layer, shape, units}"))?;
    if let Some(key) = object
        .keys()
        .find(|k| !["layer", "shape", "units"].contains(&k.as_str()))
    {
        return Err(ApiError::bad(
            &format!("base_edit.{key}"),
            "unknown field; expected layer, shape, units",
        ));
    }
    match object.get("layer") {
        Some(Value::String(name)) if name == layer_name => {}
        _ => {
            return Err(ApiError::bad(
                "base_edit.layer",
                format!("must be the painted layer `{layer_name}`"),
            ))
        }
    }
    if let Some(shape) = object.get("shape") {
        if *shape != serde_json::json!([c, h, w]) {
            return Err(ApiError::bad(
                "base_edit.shape",
                format!("must be [{c}, {h}, {w}], the shape of {layer_name}"),
            ));
        }
    }
    let units = object
        .get("units")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad("base_edit.units", "must be an array of {unit, cells}"))?;
    if units.len() > c {
        return Err(ApiError::bad(
            "base_edit.units",
            format!("lists {} units; the layer has {c}", units.len()),
        ));
    }
    let mut alpha = vec![0f32; c * h * w];
    let mut value = vec![0f32; c * h * w];
    let mut seen_unit = vec![false; c];
    for (i, entry) in units.iter().enumerate() {
        let field = format!("base_edit.units[{i}]");
        let entry = entry
            .as_object()
            .filter(|o| o.len() == 2)
            .ok_or_else(|| ApiError::bad(&field, "must be {unit, cells}"))?;
        let unit = entry
            .get("unit")
            .and_then(Value::as_u64)
            .filter(|&u| (u as usize) < c)
            .ok_or_else(|| {
                ApiError::bad(
                    &format!("{field}.unit"),
                    format!("must be an integer in 0..{c}"),
                )
            })? as usize;
        if std::mem::replace(&mut seen_unit[unit], true) {
            return Err(ApiError::bad(
                &format!("{field}.unit"),
                format!("unit {unit} is listed twice"),
            ));
        }
        let cells = entry
            .get("cells")
            .and_then(Value::as_array)
            .filter(|cells| cells.len() <= h * w)
            .ok_or_else(|| {
                ApiError::bad(
                    &format!("{field}.cells"),
                    format!("must be an array of at most {} [cell, alpha, value]", h * w),
                )
            })?;
        let mut seen_cell = vec![false; h * w];
        for (j, triple) in cells.iter().enumerate() {
            let field = format!("{field}.cells[{j}]");
            let parts = triple
                .as_array()
                .filter(|p| p.len() == 3)
                .ok_or_else(|| ApiError::bad(&field, "must be [cell, alpha, value]"))?;
            let cell = parts[0]
                .as_u64()
                .filter(|&k| (k as usize) < h * w)
                .ok_or_else(|| {
                    ApiError::bad(
                        &format!("{field}[0]"),
                        format!("the cell must be an integer in 0..{}", h * w),
                    )
                })? as usize;
            if std::mem::replace(&mut seen_cell[cell], true) {
                return Err(ApiError::bad(
                    &format!("{field}[0]"),
                    format!("cell {cell} is listed twice"),
                ));
            }
            let number = |k: usize| -> Result<f32, ApiError> {
                let raw = parts[k]
                    .as_f64()
                    .ok_or_else(|| ApiError::bad(&format!("{field}[{k}]"), "must be a number"))?;
                super::compat::finite_f32(&format!("{field}[{k}]"), raw)
            };
            let a = number(1)?;
            if !(0.0..=1.0).contains(&a) {
                return Err(ApiError::bad(
                    &format!("{field}[1]"),
                    "alpha must be in [0, 1]",
                ));
            }
            alpha[unit * h * w + cell] = a;
            value[unit * h * w + cell] = number(2)?;
        }
    }
    Ok(DensePlanes {
        layer: layer_name.to_string(),
        shape: [c as i64, h as i64, w as i64],
        alpha,
        value,
    })
}

#[derive(Serialize, ToSchema)]
pub struct PaintTiming {
    pub total_ms: f64,
    pub forward_ms: f64,
    pub encode_ms: f64,
    pub batch_images: usize,
    /// Share of a full render the model recomputed: 1 for a full render, less when the
    /// server updated its kept render of this image only where the strokes changed it.
    pub recomputed: f64,
}

/// Paint strokes onto an image: each stroke draws (sets the concept's top units to
/// `strength × level`) or removes (sets them to 0) under its mask; strokes compose in
/// order, over `base_edit` when given. Answers `image/png`, or JSON (with the flattened
/// `edit`) with `Accept: application/json`.
#[utoipa::path(post, path = "/api/v1/paint", request_body = PaintRequest,
    responses(
        (status = 200, description = "image/png; with Accept: application/json, JSON with the flattened edit",
            content((PaintResponse = "application/json"), (Vec<u8> = "image/png"))),
        (status = 400, description = "bad input", body = ErrorBody),
        (status = 404, description = "the upload `image` is not stored", body = ErrorBody),
        (status = 409, description = "the upload `image` is still being inverted", body = ErrorBody),
        (status = 503, description = "queue full", body = ErrorBody)))]
pub async fn paint(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppJson(request): AppJson<PaintRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let project = state.project(&request.project)?.clone();
    let layer_name = match (&request.layer, &request.base_edit) {
        (Some(layer), _) => layer.clone(),
        (None, Some(base)) => match base.get("layer") {
            Some(serde_json::Value::String(layer)) => layer.clone(),
            _ => return Err(ApiError::bad("base_edit.layer", "must be a layer name")),
        },
        (None, None) => project.default_layer().name.clone(),
    };
    let layer = state.layer(&project, &layer_name)?;
    let latent = Latent::pick(request.id, request.seed, request.image.as_deref())?;
    // An upload painted before the layer it was inverted at needs the z fitted with it;
    // the worker, which holds the fit, answers that (a 400 naming `layer` when it has none).
    if request.strokes.len() > state.config.max_strokes {
        return Err(ApiError::bad(
            "strokes",
            format!(
                "at most {} strokes per request, got {}",
                state.config.max_strokes,
                request.strokes.len()
            ),
        ));
    }
    // The cheap checks first, then the CPU work (masks, the base edit, z) off the runtime.
    let mut resolved = Vec::with_capacity(request.strokes.len());
    let mut used_units = Vec::new();
    for (i, stroke) in request.strokes.iter().enumerate() {
        let stroke_units = layer
            .dissection
            .resolve_stroke(&stroke.concept, stroke.mode, stroke.units, stroke.strength)
            .map_err(|e| match e.field() {
                Some(field) => ApiError::bad(&format!("strokes[{i}].{field}"), e.to_string()),
                None => ApiError::internal(e.to_string()),
            })?;
        used_units.push(stroke_units.units.clone());
        resolved.push(stroke_units);
    }
    let grid = (layer.height as usize, layer.width as usize);
    let dim = project.worker.config.z_dim as usize;
    let masks: Vec<String> = request.strokes.into_iter().map(|s| s.mask).collect();
    let base_edit = request.base_edit;
    let shape = [layer.channels as usize, grid.0, grid.1];
    let (painted_layer, budget) = (layer_name.clone(), state.pixel_budget());
    let (uploads, project_name) = (state.uploads.clone(), project.id().to_string());
    let (source, pooled, base) = off_runtime(move || -> Result<_, ApiError> {
        let base = base_edit
            .as_ref()
            .map(|b| parse_base_edit(b, &painted_layer, shape))
            .transpose()?;
        let mut budget = budget;
        let pooled = masks
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let grid = mask::pool_png_mask(url, &[grid], &mut budget)
                    .map_err(|e| ApiError::bad(&format!("strokes[{i}].mask"), e))?
                    .remove(0);
                Ok(MaskData {
                    height: grid.height as i64,
                    width: grid.width as i64,
                    values: grid.pooled(Pooling::Max),
                })
            })
            .collect::<Result<Vec<MaskData>, ApiError>>()?;
        Ok((latent.source(dim, &uploads, &project_name)?, pooled, base))
    })
    .await??;
    let strokes: Vec<StrokeSpec> = resolved
        .into_iter()
        .zip(pooled)
        .map(|(stroke, mask)| StrokeSpec {
            units: stroke.units,
            levels: stroke.levels,
            alphas: stroke.alphas,
            mode: stroke.mode,
            strength: stroke.strength,
            mask,
        })
        .collect();
    let edits = if strokes.is_empty() && base.is_none() {
        Vec::new()
    } else {
        vec![LayerEdit::Strokes {
            layer: layer_name,
            strokes,
            base,
        }]
    };
    let want_json = wants_json(&headers);
    let output = project
        .worker
        .render(
            RenderJob {
                source,
                edits,
                encoding: Encoding::Png,
                return_edits: want_json,
            },
            state.config.request_timeout(),
        )
        .await?;
    let png = output.images.into_iter().next().expect("one image");
    if !want_json {
        return Ok(png_response(png));
    }
    let edit = match output.edits.first() {
        Some(dense) => FlatEdit::from_dense(dense),
        None => FlatEdit::identity(layer),
    };
    let answer = PaintResponse {
        image: png_data_url(&png),
        units: used_units,
        timing: PaintTiming {
            total_ms: 0.0,
            forward_ms: output.forward_seconds * 1e3,
            encode_ms: output.encode_seconds * 1e3,
            batch_images: output.batch_images,
            recomputed: output.recomputed,
        },
        edit,
    };
    let body = off_runtime(move || {
        let mut answer = answer;
        answer.timing.total_ms = started.elapsed().as_secs_f64() * 1e3;
        serde_json::to_vec(&answer)
    })
    .await?
    .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The OpenAPI document, completed with what the derive cannot say: the loaded project
/// names (an enum), that `id`/`seed` and `ids`/`seeds` exclude each other (`oneOf`), and
/// the integer ranges the server accepts (ids up to 2²⁰, seeds any unsigned 64-bit).
pub fn openapi_document(projects: &[&str]) -> serde_json::Value {
    use serde_json::json;
    use utoipa::OpenApi;
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let schemas = &mut doc["components"]["schemas"];
    for (schema, one, other, third) in [
        ("PaintRequest", "id", "seed", "image"),
        ("GenerateRequest", "ids", "seeds", "images"),
    ] {
        let s = &mut schemas[schema];
        s["properties"]["project"] = json!({ "type": "string", "enum": projects });
        s["oneOf"] = json!([
            { "required": [one] },
            { "required": [other] },
            { "required": [third] }
        ]);
    }
    schemas["UploadRequest"]["properties"]["project"] =
        json!({ "type": "string", "enum": projects });
    let upload_id = json!({ "type": "string", "pattern": "^upload-[0-9a-f]{32}$" });
    schemas["PaintRequest"]["properties"]["image"] = upload_id.clone();
    schemas["GenerateRequest"]["properties"]["images"] =
        json!({ "type": "array", "items": upload_id, "minItems": 1 });
    let id =
        json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": latent::MAX_ID });
    let seed = json!({ "type": "integer", "format": "uint64", "minimum": 0, "maximum": u64::MAX });
    schemas["PaintRequest"]["properties"]["id"] = id.clone();
    schemas["PaintRequest"]["properties"]["seed"] = seed.clone();
    schemas["GenerateRequest"]["properties"]["ids"] =
        json!({ "type": "array", "items": id, "minItems": 1 });
    schemas["GenerateRequest"]["properties"]["seeds"] =
        json!({ "type": "array", "items": seed, "minItems": 1 });
    doc
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ganpaint",
        description = "Paint concepts into GAN-generated scenes. The gandissect-compatible API under /api is documented in the README."
    ),
    paths(
        projects,
        generate,
        paint,
        super::uploads::api::upload,
        super::uploads::api::status,
        super::uploads::api::picture
    ),
    components(schemas(
        ProjectInfo,
        LayerInfo,
        ConceptInfo,
        StrokeSetting,
        UnitScore,
        GenerateRequest,
        ImagesResponse,
        PaintRequest,
        Stroke,
        PaintResponse,
        PaintTiming,
        FlatEdit,
        FlatUnit,
        ErrorBody,
        StrokeMode,
        super::uploads::api::UploadRequest,
        super::uploads::UploadResponse,
        super::uploads::UploadStatus,
        super::uploads::UploadInfo,
        super::uploads::UploadFigures,
        super::uploads::UploadProgress,
        super::uploads::UploadPsnr,
        super::uploads::UploadTiming
    ))
)]
pub struct ApiDoc;
