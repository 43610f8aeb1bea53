//! The native API under `/api/v1`, for the bundled UI and for scripts. Documented in
//! OpenAPI 3 at `/api/openapi.json`, generated from these types and handlers.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, AppJson};
use super::worker::{Encoding, LayerEdit, MaskData, RenderJob, StrokeSpec};
use super::AppState;
use crate::edit::{mask, StrokeMode};
use crate::model::latent;

/// The default number of a concept's top units a stroke edits.
pub const DEFAULT_UNITS: usize = 20;

#[derive(Serialize, ToSchema)]
pub struct ConceptInfo {
    pub name: String,
    /// The units a draw stroke edits, in the order it takes them (up to 40), with each
    /// unit's IoU with the concept: the causal draw ranking when the dissection has one,
    /// else the IoU ranking.
    pub units: Vec<UnitScore>,
    /// The units a remove stroke edits, in order (up to 40).
    pub remove_units: Vec<usize>,
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
                            let draw = l.paint_units(&c.concept, StrokeMode::Draw)?;
                            let remove = l.paint_units(&c.concept, StrokeMode::Remove)?;
                            Some(ConceptInfo {
                                name: c.concept.clone(),
                                units: draw
                                    .into_iter()
                                    .take(40)
                                    .map(|unit| UnitScore {
                                        unit,
                                        iou: iou_of(unit),
                                    })
                                    .collect(),
                                remove_units: remove.into_iter().take(40).collect(),
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
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
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

/// Which image: exactly one of `id` and `seed`.
fn one_latent(dim: usize, id: Option<u64>, seed: Option<u64>) -> Result<Vec<f32>, ApiError> {
    match (id, seed) {
        (Some(_), Some(_)) | (None, None) => {
            Err(ApiError::bad("id", "give exactly one of `id` and `seed`"))
        }
        (Some(id), None) if id > latent::MAX_ID => Err(ApiError::bad(
            "id",
            format!("id {id} is above {}", latent::MAX_ID),
        )),
        (Some(id), None) => Ok(latent::z_for_ids(&[id], dim)),
        (None, Some(seed)) => Ok(latent::z_for_seeds(&[seed], dim)),
    }
}

/// Unedited images by seed or id: one image answers `image/png`; several (or
/// `Accept: application/json`) answer JSON with PNG data URLs.
#[utoipa::path(post, path = "/api/v1/generate", request_body = GenerateRequest,
    responses((status = 200, description = "image/png, or JSON", body = ImagesResponse), (status = 400, description = "bad input")))]
pub async fn generate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppJson(request): AppJson<GenerateRequest>,
) -> Result<Response, ApiError> {
    let project = state.project(&request.project)?.clone();
    let dim = project.worker.config.z_dim as usize;
    let z: Vec<f32> = match (&request.ids, &request.seeds) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::bad(
                "ids",
                "give exactly one of `ids` and `seeds`",
            ))
        }
        (Some(ids), None) => {
            state.check_count("ids", ids.len())?;
            let ids: Vec<i64> = ids.iter().map(|&i| i.min(i64::MAX as u64) as i64).collect();
            latent::z_for_ids(&state.check_ids(&ids)?, dim)
        }
        (None, Some(seeds)) => {
            state.check_count("seeds", seeds.len())?;
            latent::z_for_seeds(seeds, dim)
        }
    };
    let rows: Vec<Vec<f32>> = z.chunks(dim).map(|c| c.to_vec()).collect();
    let count = rows.len();
    let output = project
        .worker
        .render(
            RenderJob {
                z: rows,
                edits: Vec::new(),
                encoding: Encoding::Png,
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Stroke {
    /// A concept the project's dissection ranked at this layer (see `/api/v1/projects`).
    pub concept: String,
    pub mode: StrokeMode,
    /// PNG data URL of any size; pixels with alpha > 0 are painted.
    pub mask: String,
    /// How many of the concept's top units to edit (default 20).
    pub units: Option<usize>,
    /// Draw multiplies each unit's 0.99-quantile level by this (default 1).
    pub strength: Option<f32>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaintRequest {
    pub project: String,
    pub id: Option<u64>,
    pub seed: Option<u64>,
    /// Defaults to the project's default layer (layer4).
    pub layer: Option<String>,
    pub strokes: Vec<Stroke>,
}

#[derive(Serialize, ToSchema)]
pub struct PaintResponse {
    /// PNG data URL.
    pub image: String,
    /// Units edited by each stroke, in order.
    pub units: Vec<Vec<i64>>,
    pub timing: PaintTiming,
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
/// order. Answers `image/png`, or JSON with `Accept: application/json`.
#[utoipa::path(post, path = "/api/v1/paint", request_body = PaintRequest,
    responses((status = 200, description = "image/png, or JSON", body = PaintResponse), (status = 400, description = "bad input"), (status = 503, description = "queue full")))]
pub async fn paint(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AppJson(request): AppJson<PaintRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let project = state.project(&request.project)?.clone();
    let layer_name = request
        .layer
        .clone()
        .unwrap_or_else(|| project.default_layer().name.clone());
    let layer = state.layer(&project, &layer_name)?;
    let z = one_latent(
        project.worker.config.z_dim as usize,
        request.id,
        request.seed,
    )?;
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
    let masks: Vec<String> = request.strokes.iter().map(|s| s.mask.clone()).collect();
    // PNG decoding is CPU work: keep it off the async runtime.
    let decoded = tokio::task::spawn_blocking(move || {
        masks
            .iter()
            .map(|m| mask::decode_png_mask(m).map(|t| MaskData::from_tensor(&t)))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(ApiError::internal)?;
    let mut strokes = Vec::with_capacity(request.strokes.len());
    let mut used_units = Vec::new();
    for (i, (stroke, mask)) in request.strokes.iter().zip(decoded).enumerate() {
        let mask = mask.map_err(|e| ApiError::bad(&format!("strokes[{i}].mask"), e))?;
        let concept_units = layer
            .paint_units(&stroke.concept, stroke.mode)
            .ok_or_else(|| {
                let known: Vec<&str> = layer.concepts().map(|c| c.concept.as_str()).collect();
                ApiError::bad(
                    &format!("strokes[{i}].concept"),
                    format!(
                        "unknown concept `{}` at {layer_name}; known: {}",
                        stroke.concept,
                        known.join(", ")
                    ),
                )
            })?;
        let count = stroke.units.unwrap_or(DEFAULT_UNITS);
        if count == 0 || count > layer.channels as usize {
            return Err(ApiError::bad(
                &format!("strokes[{i}].units"),
                format!("must be 1..={}", layer.channels),
            ));
        }
        let strength = stroke.strength.unwrap_or(1.0);
        if !strength.is_finite() || !(0.0..=10.0).contains(&strength) {
            return Err(ApiError::bad(
                &format!("strokes[{i}].strength"),
                "must be a number in [0, 10]",
            ));
        }
        let units: Vec<i64> = concept_units
            .iter()
            .take(count)
            .map(|&u| u as i64)
            .collect();
        let levels = units
            .iter()
            .map(|&u| {
                layer.level(u as usize, 0.99).ok_or_else(|| {
                    ApiError::internal(format!("no 0.99 level for unit {u} of {layer_name}"))
                })
            })
            .collect::<Result<Vec<f32>, ApiError>>()?;
        used_units.push(units.clone());
        strokes.push(StrokeSpec {
            units,
            levels,
            mode: stroke.mode,
            strength,
            mask,
        });
    }
    let edits = if strokes.is_empty() {
        Vec::new()
    } else {
        vec![LayerEdit::Strokes {
            layer: layer_name,
            strokes,
        }]
    };
    let output = project
        .worker
        .render(
            RenderJob {
                z: vec![z],
                edits,
                encoding: Encoding::Png,
            },
            state.config.request_timeout(),
        )
        .await?;
    let png = output.images.into_iter().next().expect("one image");
    if !wants_json(&headers) {
        return Ok(png_response(png));
    }
    Ok(Json(PaintResponse {
        image: png_data_url(&png),
        units: used_units,
        timing: PaintTiming {
            total_ms: started.elapsed().as_secs_f64() * 1e3,
            forward_ms: output.forward_seconds * 1e3,
            encode_ms: output.encode_seconds * 1e3,
            batch_images: output.batch_images,
            recomputed: output.recomputed,
        },
    })
    .into_response())
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ganpaint",
        description = "Paint concepts into GAN-generated scenes. The gandissect-compatible API under /api is documented in the README."
    ),
    paths(projects, generate, paint),
    components(schemas(
        ProjectInfo,
        LayerInfo,
        ConceptInfo,
        UnitScore,
        GenerateRequest,
        ImagesResponse,
        PaintRequest,
        Stroke,
        PaintResponse,
        PaintTiming,
        StrokeMode
    ))
)]
pub struct ApiDoc;
