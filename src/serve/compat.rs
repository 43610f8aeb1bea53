//! GAN Dissection's server API under `/api`, exactly as its GANPaint client speaks it.
//! Every answer except `all_projects` is `{"request": <query or body>, "res": <payload>}`.
//! These handlers only translate: they build worker jobs and hand them to the project's
//! worker, like the native API does.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, AppJson};
use super::project::Project;
use super::worker::{
    ActivationJob, Encoding, InterventionSpec, LayerEdit, MaskData, RenderJob, Source,
};
use super::AppState;
use crate::edit::mask::{self, GridMask, PixelBudget};
use crate::edit::{Pooling, UnitEdit};
use crate::model::latent;

/// Query parameters in order, with repeats (`quantiles=0.9&quantiles=0.99`), at most
/// `--max-query-values` of them (5400 quantiles made a 25 MB answer).
fn parse_query(state: &AppState, raw: &Option<String>) -> Result<Vec<(String, String)>, ApiError> {
    let limit = state.config.max_query_values;
    let mut query = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or_default().as_bytes()) {
        if query.len() == limit {
            return Err(ApiError::bad(
                &k,
                format!("the query has more than {limit} values (--max-query-values)"),
            ));
        }
        query.push((k.into_owned(), v.into_owned()));
    }
    Ok(query)
}

fn query_one<'a>(query: &'a [(String, String)], key: &str) -> Result<&'a str, ApiError> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| ApiError::bad(key, "missing query parameter"))
}

/// The query echoed back as gandissect does: one value per key, lists for repeats.
fn echo(query: &[(String, String)]) -> Value {
    let mut map = serde_json::Map::new();
    for (k, v) in query {
        match map.get_mut(k) {
            Some(Value::Array(list)) => list.push(json!(v)),
            Some(existing) => *existing = json!([existing.clone(), v]),
            None => {
                map.insert(k.clone(), json!(v));
            }
        }
    }
    Value::Object(map)
}

fn wrap(request: Value, res: Value) -> Json<Value> {
    Json(json!({ "request": request, "res": res }))
}

pub async fn all_projects(State(state): State<Arc<AppState>>) -> Json<Value> {
    let list: Vec<Value> = state
        .projects
        .values()
        .map(|p| json!({ "project": p.id(), "info": { "layers": p.layers.iter().map(|l| l.name.clone()).collect::<Vec<_>>() } }))
        .collect();
    Json(Value::Array(list))
}

pub async fn layers(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = parse_query(&state, &raw)?;
    let project = state.project(query_one(&query, "project")?)?;
    let res: Vec<Value> = project
        .layers
        .iter()
        .map(|l| json!({ "layer": l.name, "channels": l.channels, "shape": [l.height, l.width] }))
        .collect();
    Ok(wrap(echo(&query), json!(res)))
}

fn project_and_layer<'a>(
    state: &'a AppState,
    query: &[(String, String)],
) -> Result<(&'a Arc<Project>, &'a super::project::ProjectLayer), ApiError> {
    let project = state.project(query_one(query, "project")?)?;
    let layer = state.layer(project, query_one(query, "layer")?)?;
    Ok((project, layer))
}

pub async fn units(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = parse_query(&state, &raw)?;
    let (project, layer) = project_and_layer(&state, &query)?;
    let prefix = state.data_url(project);
    // The units the dissection lists (none, in a dissect.json made only for serving).
    let listed = layer.dissection.unit_labels.len();
    let res: Vec<Value> = (0..listed)
        .map(|unit| {
            json!({
                "unit": unit,
                "img": format!("{prefix}/{}/s-image/{unit}-top.jpg", layer.name),
                "label": layer.dissection.unit_labels.get(unit),
            })
        })
        .collect();
    Ok(wrap(echo(&query), json!(res)))
}

pub async fn rankings(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = parse_query(&state, &raw)?;
    let (_, layer) = project_and_layer(&state, &query)?;
    let res: Vec<Value> = layer
        .dissection
        .rankings
        .iter()
        .map(|r| json!({ "name": format!("{}-{}", r.concept, r.metric), "metric": r.metric, "scores": r.scores }))
        .collect();
    Ok(wrap(echo(&query), json!(res)))
}

pub async fn levels(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = parse_query(&state, &raw)?;
    let (_, layer) = project_and_layer(&state, &query)?;
    let mut quantiles = Vec::new();
    for (_, v) in query.iter().filter(|(k, _)| k == "quantiles") {
        let q: f64 = v
            .parse()
            .map_err(|_| ApiError::bad("quantiles", format!("`{v}` is not a number")))?;
        if !(0.0..=1.0).contains(&q) {
            return Err(ApiError::bad("quantiles", format!("{q} is not in [0, 1]")));
        }
        quantiles.push(q);
    }
    if quantiles.is_empty() {
        quantiles.push(0.99);
    }
    let mut res = Vec::with_capacity(layer.channels as usize);
    for unit in 0..layer.channels as usize {
        let row: Result<Vec<f32>, ApiError> = quantiles
            .iter()
            .map(|&q| {
                layer.level(unit, q).ok_or_else(|| {
                    ApiError::bad(
                        "quantiles",
                        format!("no level at quantile {q} for this layer"),
                    )
                })
            })
            .collect();
        res.push(row?);
    }
    Ok(wrap(echo(&query), json!(res)))
}

pub async fn channels(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let query = parse_query(&state, &raw)?;
    let (_, layer) = project_and_layer(&state, &query)?;
    let res: Vec<Value> = (0..layer.channels as usize)
        .map(|unit| {
            json!({
                "unit": unit,
                "label": layer.dissection.unit_labels.get(unit),
                "iou": layer.dissection.unit_iou.get(unit),
            })
        })
        .collect();
    Ok(wrap(echo(&query), json!(res)))
}

#[derive(Deserialize)]
pub struct MaskRecord {
    #[serde(default)]
    shape: Vec<i64>,
    #[serde(default)]
    bitbounds: Vec<i64>,
    #[serde(default)]
    bitstring: String,
}

#[derive(Deserialize)]
struct AblationRecord {
    layer: String,
    unit: i64,
    alpha: Option<f64>,
    value: Option<f64>,
}

#[derive(Deserialize)]
struct InterventionRecord {
    #[serde(default)]
    ablations: Vec<AblationRecord>,
    mask: Option<MaskRecord>,
    maskpooling: Option<String>,
}

/// Shared by generate, features and featuremaps: the body's images and interventions.
#[derive(Deserialize)]
struct ImagesAndEdits {
    project: String,
    ids: Option<Vec<i64>>,
    zs: Option<Vec<Vec<f64>>>,
    #[serde(default)]
    interventions: Option<Vec<InterventionRecord>>,
}

/// A gandissect mask pooled to each of `grids` (decoded row by row, never held whole).
fn pool_mask(
    field: &str,
    record: &MaskRecord,
    grids: &[(usize, usize)],
    budget: &mut PixelBudget,
) -> Result<Vec<GridMask>, ApiError> {
    mask::pool_gandissect_mask(
        &record.shape,
        &record.bitbounds,
        &record.bitstring,
        grids,
        budget,
    )
    .map_err(|e| ApiError::bad(field, e))
}

impl AppState {
    /// z rows for `ids` xor `zs`, checked against the model and the limits.
    fn latents(
        &self,
        project: &Project,
        ids: &Option<Vec<i64>>,
        zs: &Option<Vec<Vec<f64>>>,
    ) -> Result<Vec<Vec<f32>>, ApiError> {
        let dim = project.worker.config.z_dim as usize;
        let max = self.config.max_ids;
        match (ids, zs) {
            (Some(_), Some(_)) => Err(ApiError::bad(
                "ids",
                "give exactly one of `ids` and `zs`, not both",
            )),
            (None, None) => Err(ApiError::bad("ids", "give exactly one of `ids` and `zs`")),
            (Some(ids), None) => {
                if ids.is_empty() || ids.len() > max {
                    return Err(ApiError::bad(
                        "ids",
                        format!("give 1 to {max} ids, got {}", ids.len()),
                    ));
                }
                let checked = self.check_ids(ids)?;
                Ok(latent::z_for_ids(&checked, dim)
                    .chunks(dim)
                    .map(|c| c.to_vec())
                    .collect())
            }
            (None, Some(zs)) => {
                if zs.is_empty() || zs.len() > max {
                    return Err(ApiError::bad(
                        "zs",
                        format!("give 1 to {max} z vectors, got {}", zs.len()),
                    ));
                }
                zs.iter()
                    .enumerate()
                    .map(|(i, z)| {
                        if z.len() != dim {
                            return Err(ApiError::bad(
                                &format!("zs[{i}]"),
                                format!("has {} values; this model's z has {dim}", z.len()),
                            ));
                        }
                        // The model computes in f32: 1e39 is finite in f64 but not there.
                        if let Some(j) = z.iter().position(|&v| !(v as f32).is_finite()) {
                            return Err(ApiError::bad(
                                &format!("zs[{i}][{j}]"),
                                format!("{} is not a finite 32-bit number", z[j]),
                            ));
                        }
                        Ok(z.iter().map(|&v| v as f32).collect())
                    })
                    .collect()
            }
        }
    }

    pub(crate) fn check_ids(&self, ids: &[i64]) -> Result<Vec<u64>, ApiError> {
        ids.iter()
            .map(|&id| {
                if id < 0 || id as u64 > latent::MAX_ID {
                    Err(ApiError::bad(
                        "ids",
                        format!("id {id} is outside 0..={}", latent::MAX_ID),
                    ))
                } else {
                    Ok(id as u64)
                }
            })
            .collect()
    }

    /// gandissect interventions → per-layer worker edits, validated against the project.
    fn interventions(
        &self,
        project: &Project,
        records: &Option<Vec<InterventionRecord>>,
    ) -> Result<Vec<LayerEdit>, ApiError> {
        let Some(records) = records else {
            return Ok(Vec::new());
        };
        if records.len() > self.config.max_strokes {
            return Err(ApiError::bad(
                "interventions",
                format!(
                    "at most {} interventions per request",
                    self.config.max_strokes
                ),
            ));
        }
        let mut by_layer: BTreeMap<String, Vec<InterventionSpec>> = BTreeMap::new();
        let mut budget = self.pixel_budget();
        for (i, record) in records.iter().enumerate() {
            let pooling = match record.maskpooling.as_deref() {
                None | Some("max") => Pooling::Max,
                Some("mean") => Pooling::Mean,
                Some(other) => {
                    return Err(ApiError::bad(
                        &format!("interventions[{i}].maskpooling"),
                        format!("`{other}` is not max or mean"),
                    ))
                }
            };
            let mut per_layer: BTreeMap<String, Vec<UnitEdit>> = BTreeMap::new();
            for (j, ablation) in record.ablations.iter().enumerate() {
                let field = format!("interventions[{i}].ablations[{j}]");
                let channels = project
                    .worker
                    .config
                    .layer_specs()
                    .iter()
                    .find(|s| s.name == ablation.layer)
                    .map(|s| s.out_channels)
                    .ok_or_else(|| {
                        ApiError::bad(
                            &format!("{field}.layer"),
                            format!("unknown layer `{}`", ablation.layer),
                        )
                    })?;
                if ablation.unit < 0 || ablation.unit >= channels {
                    return Err(ApiError::bad(
                        &format!("{field}.unit"),
                        format!("unit {} is outside 0..{channels}", ablation.unit),
                    ));
                }
                let alpha = finite_f32(&format!("{field}.alpha"), ablation.alpha.unwrap_or(1.0))?;
                let value = finite_f32(&format!("{field}.value"), ablation.value.unwrap_or(0.0))?;
                per_layer
                    .entry(ablation.layer.clone())
                    .or_default()
                    .push(UnitEdit {
                        unit: ablation.unit,
                        alpha,
                        value,
                    });
            }
            // The mask, pooled once to the grid of each layer it edits.
            let grids: Vec<(usize, usize)> = per_layer
                .keys()
                .map(|layer| {
                    let resolution = project
                        .worker
                        .config
                        .layer_specs()
                        .iter()
                        .find(|s| s.name == *layer)
                        .map_or(1, |s| s.resolution as usize);
                    (resolution, resolution)
                })
                .collect();
            let pooled = match &record.mask {
                Some(m) => {
                    let field = format!("interventions[{i}].mask");
                    Some(pool_mask(&field, m, &grids, &mut budget)?)
                }
                None => None,
            };
            for (k, (layer, edits)) in per_layer.into_iter().enumerate() {
                let mask = pooled.as_ref().map(|grids| MaskData {
                    height: grids[k].height as i64,
                    width: grids[k].width as i64,
                    values: grids[k].pooled(pooling),
                });
                by_layer.entry(layer).or_default().push(InterventionSpec {
                    edits,
                    mask,
                    pooling,
                });
            }
        }
        Ok(by_layer
            .into_iter()
            .map(|(layer, list)| LayerEdit::Interventions { layer, list })
            .collect())
    }
}

/// A JSON number as the f32 the model computes with; 1e39 is finite in f64 but not in f32.
pub(crate) fn finite_f32(field: &str, value: f64) -> Result<f32, ApiError> {
    let narrowed = value as f32;
    if narrowed.is_finite() {
        Ok(narrowed)
    } else {
        Err(ApiError::bad(
            field,
            format!("{value} is not a finite 32-bit number"),
        ))
    }
}

pub async fn generate(
    State(state): State<Arc<AppState>>,
    AppJson(body): AppJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let request: ImagesAndEdits =
        serde_json::from_value(body.clone()).map_err(|e| ApiError::bad("body", e))?;
    let project = state.project(&request.project)?.clone();
    let return_urls = body.get("return_urls").map(truthy).unwrap_or(false);
    let has_edits = request
        .interventions
        .as_ref()
        .is_some_and(|list| !list.is_empty());
    if request.ids.is_some() == request.zs.is_some() {
        return Err(ApiError::bad("ids", "give exactly one of `ids` and `zs`"));
    }
    if let (Some(ids), false) = (&request.ids, has_edits) {
        // Unedited images by id are cacheable: answer URLs that the data route fills on
        // demand (gandissect's `/data/<project>/cache/img/id/<id>.jpg`).
        if ids.is_empty() || ids.len() > state.config.max_ids {
            return Err(ApiError::bad(
                "ids",
                format!("give 1 to {} ids, got {}", state.config.max_ids, ids.len()),
            ));
        }
        let prefix = state.data_url(&project);
        let res: Vec<Value> = state
            .check_ids(ids)?
            .iter()
            .map(|id| json!({ "id": id, "d": format!("{prefix}/cache/img/id/{id}.jpg") }))
            .collect();
        return Ok(wrap(body, json!(res)));
    }
    let (z, edits) = latents_and_edits(&state, &project, request).await?;
    // Cached edits are named by what they render (z's bits and the decoded edit), so a
    // body that differs only in extra fields, or in how it spells a mask, shares a file.
    let keys: Vec<String> = if return_urls {
        use std::hash::{Hash, Hasher};
        let edit_text = format!("{edits:?}");
        z.iter()
            .map(|row| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                row.iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>()
                    .hash(&mut hasher);
                edit_text.hash(&mut hasher);
                format!("{:016x}", hasher.finish())
            })
            .collect()
    } else {
        Vec::new()
    };
    let output = project
        .worker
        .render(
            RenderJob {
                source: Source::Latents(z),
                edits,
                encoding: Encoding::Jpeg(95),
                return_edits: false,
            },
            state.config.request_timeout(),
        )
        .await
        .map_err(ApiError::from)?;
    let res: Vec<Value> = if return_urls {
        let dir = project.spec.dir.join("cache/img/edit");
        let prefix = state.data_url(&project);
        let mut urls = Vec::new();
        for (key, jpeg) in keys.iter().zip(output.images) {
            let name = format!("{key}.jpg");
            super::write_cache_file(&state, &dir, &name, jpeg).await?;
            urls.push(json!({ "d": format!("{prefix}/cache/img/edit/{name}") }));
        }
        urls
    } else {
        output
            .images
            .iter()
            .map(|jpeg| json!({ "d": crate::formats::data_url::encode("image/jpeg", jpeg) }))
            .collect()
    };
    Ok(wrap(body, json!(res)))
}

/// The z rows and layer edits of a request, computed off the runtime: a large id walks
/// the random stream for seconds, and masks take CPU to decode.
async fn latents_and_edits(
    state: &Arc<AppState>,
    project: &Arc<Project>,
    request: ImagesAndEdits,
) -> Result<(Vec<Vec<f32>>, Vec<LayerEdit>), ApiError> {
    let (state, project) = (state.clone(), project.clone());
    super::off_runtime(move || {
        let z = state.latents(&project, &request.ids, &request.zs)?;
        let edits = state.interventions(&project, &request.interventions)?;
        Ok((z, edits))
    })
    .await?
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && s != "0" && s != "false",
        Value::Null => false,
        _ => true,
    }
}

#[derive(Deserialize)]
struct ActivationRequest {
    #[serde(flatten)]
    images: ImagesAndEdits,
    #[serde(default)]
    masks: Vec<MaskRecord>,
    layers: Option<Vec<String>>,
}

/// Runs a request's activation job: the project, the request's masks, and the activations.
async fn run_activations(
    state: &Arc<AppState>,
    body: &Value,
) -> Result<
    (
        Arc<Project>,
        Vec<MaskRecord>,
        super::worker::ActivationOutput,
    ),
    ApiError,
> {
    let request: ActivationRequest =
        serde_json::from_value(body.clone()).map_err(|e| ApiError::bad("body", e))?;
    let project = state.project(&request.images.project)?.clone();
    let layers = match &request.layers {
        Some(list) => {
            for name in list {
                state.layer(&project, name)?;
            }
            list.clone()
        }
        None => project.layers.iter().map(|l| l.name.clone()).collect(),
    };
    let (z, edits) = latents_and_edits(state, &project, request.images).await?;
    let output = project
        .worker
        .activations(
            ActivationJob { z, edits, layers },
            state.config.request_timeout(),
        )
        .await
        .map_err(ApiError::from)?;
    Ok((project, request.masks, output))
}

/// Per layer and unit, as GAN Dissection answers: `max`, the largest activation × the
/// mask max-pooled to the layer's grid, over every cell of every image (so cells outside
/// the mask count as 0, and a masked answer is never negative); `mean`, the mean
/// activation weighted by the mask mean-pooled to the grid; and their quantiles. One mask
/// per image, or one mask for all; without masks, every cell counts fully.
pub async fn features(
    State(state): State<Arc<AppState>>,
    AppJson(body): AppJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let (project, masks, output) = run_activations(&state, &body).await?;
    let state = state.clone();
    let res =
        super::off_runtime(move || feature_stats(&state, &project, &masks, &output)).await??;
    Ok(wrap(body, res))
}

/// One layer's activations `[n, c, cells]` with each image's cell weights.
struct MaskedActivations<'a> {
    values: &'a [f32],
    channels: usize,
    cells: usize,
    /// Per image: the mask max-pooled (for `max`) and mean-pooled (for `mean`) to the
    /// grid, each `cells` long.
    masks: Vec<(Vec<f32>, Vec<f32>)>,
}

impl MaskedActivations<'_> {
    /// Per unit: `max` over images and cells of `activation · max-pooled mask` (0, not
    /// −0, where that is a masked-out cell), and `sum(activation · mean-pooled mask) /
    /// sum(mean-pooled mask)` (0 for an empty mask).
    fn max_and_mean(&self) -> (Vec<f32>, Vec<f32>) {
        let (c, cells) = (self.channels, self.cells);
        let mut max = vec![f32::NEG_INFINITY; c];
        let mut weighted = vec![0f64; c];
        let mut weight_total = 0f64;
        for (image, (max_mask, mean_mask)) in self.masks.iter().enumerate() {
            weight_total += mean_mask.iter().map(|&v| v as f64).sum::<f64>();
            for unit in 0..c {
                let base = (image * c + unit) * cells;
                let row = &self.values[base..base + cells];
                for cell in 0..cells {
                    let a = row[cell];
                    max[unit] = max[unit].max(a * max_mask[cell]);
                    weighted[unit] += (a * mean_mask[cell]) as f64;
                }
            }
        }
        let max = max
            .into_iter()
            .map(|m| if m.is_finite() { m + 0.0 } else { 0.0 })
            .collect();
        let mean = weighted
            .iter()
            .map(|&s| {
                if weight_total > 0.0 {
                    (s / weight_total) as f32
                } else {
                    0.0
                }
            })
            .collect();
        (max, mean)
    }
}

/// `/api/features`' payload, computed off the runtime.
fn feature_stats(
    state: &AppState,
    project: &Project,
    masks: &[MaskRecord],
    output: &super::worker::ActivationOutput,
) -> Result<Value, ApiError> {
    let n = output.layers.first().map_or(0, |(_, s, _)| s[0] as usize);
    if !(masks.len() == n || masks.len() == 1 || masks.is_empty()) {
        return Err(ApiError::bad(
            "masks",
            format!(
                "give one mask per id ({n}) or one for all, got {}",
                masks.len()
            ),
        ));
    }
    // Each mask, pooled once to the grid of every layer asked for.
    let grids: Vec<(usize, usize)> = output
        .layers
        .iter()
        .map(|(_, s, _)| (s[2] as usize, s[3] as usize))
        .collect();
    let mut budget = state.pixel_budget();
    let pooled: Vec<Vec<GridMask>> = masks
        .iter()
        .enumerate()
        .map(|(i, m)| pool_mask(&format!("masks[{i}]"), m, &grids, &mut budget))
        .collect::<Result<_, _>>()?;
    let mut res = serde_json::Map::new();
    for (k, (layer_name, shape, values)) in output.layers.iter().enumerate() {
        let layer = state.layer(project, layer_name)?;
        let [_, c, h, w] = *shape;
        let cells = (h * w) as usize;
        let masks = (0..n)
            .map(
                |image| match pooled.get(if pooled.len() == 1 { 0 } else { image }) {
                    Some(grids) => (
                        grids[k].pooled(Pooling::Max),
                        grids[k].pooled(Pooling::Mean),
                    ),
                    None => (vec![1.0; cells], vec![1.0; cells]),
                },
            )
            .collect();
        let (max, mean) = MaskedActivations {
            values,
            channels: c as usize,
            cells,
            masks,
        }
        .max_and_mean();
        let quantile = |values: &[f32]| -> Vec<f32> {
            values
                .iter()
                .enumerate()
                .map(|(u, &v)| layer.quantile_of(u, v))
                .collect()
        };
        res.insert(
            layer_name.clone(),
            json!({ "max": max, "mean": mean, "max_quantile": quantile(&max), "mean_quantile": quantile(&mean) }),
        );
    }
    Ok(Value::Object(res))
}

/// Per layer, per image: C×H×W activations as bytes of their quantile
/// ([`featuremap_byte`]).
pub async fn featuremaps(
    State(state): State<Arc<AppState>>,
    AppJson(body): AppJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let (project, _, output) = run_activations(&state, &body).await?;
    let state = state.clone();
    let res = super::off_runtime(move || feature_maps(&state, &project, &output)).await??;
    Ok(wrap(body, res))
}

/// A quantile as `/api/featuremaps` sends it, GAN Dissection's
/// `q.clamp(0, 1).mul(255).byte()`: the product in f32, truncated (254.99 is 254).
pub(crate) fn featuremap_byte(q: f32) -> u8 {
    // `as` truncates toward zero, and NaN becomes 0.
    (q.clamp(0.0, 1.0) * 255.0) as u8
}

/// `/api/featuremaps`' payload, computed off the runtime.
fn feature_maps(
    state: &AppState,
    project: &Project,
    output: &super::worker::ActivationOutput,
) -> Result<Value, ApiError> {
    let mut res = serde_json::Map::new();
    for (layer_name, shape, values) in &output.layers {
        let layer = state.layer(project, layer_name)?;
        let [n, c, h, w] = shape.map(|v| v as usize);
        let mut images = Vec::with_capacity(n);
        for image in 0..n {
            let mut units = Vec::with_capacity(c);
            for unit in 0..c {
                let base = (image * c + unit) * h * w;
                let rows: Vec<Vec<u8>> = (0..h)
                    .map(|y| {
                        (0..w)
                            .map(|x| {
                                featuremap_byte(layer.quantile_of(unit, values[base + y * w + x]))
                            })
                            .collect()
                    })
                    .collect();
                units.push(rows);
            }
            images.push(units);
        }
        res.insert(layer_name.clone(), json!(images));
    }
    Ok(Value::Object(res))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn featuremap_bytes_truncate_as_gandissect() {
        // torch: q.clamp(0, 1).mul(255).byte(), in f32.
        let cases: [(f32, u8); 10] = [
            (0.0, 0),
            (1.0, 255),
            (-0.2, 0),
            (1.5, 255),
            (f32::NAN, 0),
            // 0.05 · 255 = 12.75: 12, where rounding gave 13.
            (0.05, 12),
            // 0.5 · 255 = 127.5: 127, where rounding gave 128.
            (0.5, 127),
            // 0.99996 · 255 = 254.9898: 254, where rounding gave 255.
            (0.99996, 254),
            // 0.8f32 · 255 is 204.00000304 in f64, 204.0 in f32.
            (0.8, 204),
            // The largest f32 below 1: 254.99998, still 254.
            (1.0 - f32::EPSILON / 2.0, 254),
        ];
        for (q, byte) in cases {
            assert_eq!(featuremap_byte(q), byte, "q = {q}");
        }
    }

    #[test]
    fn feature_max_counts_masked_out_cells_as_zero() {
        // One image, three units, four cells; the mask covers cells 0 and 1 fully (max
        // pooled 1, 1, 0, 0) and cell 1 half (mean pooled 1, .5, 0, 0). GAN Dissection:
        //   max  = (feature * max_pooled).view(n, c, -1).max(2)[0].max(0)[0]
        //   mean = (feature * mean_pooled).view(n, c, -1).sum(2).sum(0) / mean_pooled.sum()
        let values = [
            -1.0, -2.0, 3.0, -4.0, // unit 0: masked cells are negative, cell 2 is not
            -1.0, -2.0, -3.0, -4.0, // unit 1: every cell negative
            5.0, -2.0, 7.0, 1.0, // unit 2: 7 lies outside the mask
        ];
        let stats = MaskedActivations {
            values: &values,
            channels: 3,
            cells: 4,
            masks: vec![(vec![1.0, 1.0, 0.0, 0.0], vec![1.0, 0.5, 0.0, 0.0])],
        };
        let (max, mean) = stats.max_and_mean();
        assert_eq!(max, vec![0.0, 0.0, 5.0]);
        assert!(max.iter().all(|m| m.is_sign_positive()), "{max:?}");
        assert_eq!(mean, vec![-2.0 / 1.5, -2.0 / 1.5, 4.0 / 1.5]);

        // Without a mask every cell counts: the max may be negative.
        let all = MaskedActivations {
            values: &values,
            channels: 3,
            cells: 4,
            masks: vec![(vec![1.0; 4], vec![1.0; 4])],
        };
        assert_eq!(all.max_and_mean().0, vec![3.0, -1.0, 7.0]);

        // Two images: the max over both; the mean over both images' weights.
        let two = [values.as_slice(), values.as_slice()].concat();
        let both = MaskedActivations {
            values: &two,
            channels: 3,
            cells: 4,
            masks: vec![
                (vec![1.0, 1.0, 0.0, 0.0], vec![1.0, 0.5, 0.0, 0.0]),
                (vec![0.0, 0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0, 0.0]),
            ],
        };
        let (max, mean) = both.max_and_mean();
        assert_eq!(max, vec![3.0, 0.0, 7.0]);
        assert_eq!(mean, vec![1.0 / 2.5, -5.0 / 2.5, 11.0 / 2.5]);
    }
}
