//! `POST /api/v1/images` (upload and invert a picture), `GET /api/v1/images/{image}` (an
//! upload's progress or figures) and `GET /api/v1/images/{image}/picture.png`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::picture::decode_upload;
use super::{
    Begun, InvertRequest, JobState, UploadId, UploadInfo, UploadProgress, UploadResponse,
    UploadStatus, Watching,
};
use crate::serve::error::{ApiError, ErrorType};
use crate::serve::{off_runtime, AppState};

/// The JSON form of an upload.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    pub project: String,
    /// The picture as a data URL: `data:image/png;base64,…` or `data:image/jpeg;base64,…`.
    pub image: String,
}

/// An upload's id from the path (`image`), checked before anything else.
pub fn parse_id(text: &str) -> Result<UploadId, ApiError> {
    UploadId::parse(text).map_err(|e| ApiError::bad("image", e))
}

fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// The project named by `?project=` (the only parameter taken), if given.
fn query_project(query: Option<&str>) -> Result<Option<String>, ApiError> {
    let mut project = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "project" if project.is_none() => project = Some(value.into_owned()),
            "project" => return Err(ApiError::bad("project", "given twice")),
            other => {
                return Err(ApiError::bad(
                    other,
                    "unknown query parameter; only `project` is taken",
                ))
            }
        }
    }
    Ok(project)
}

/// Upload a PNG or JPEG and invert it into the project's generator, so it can be painted
/// like a generated image (`image` in `/api/v1/paint`). The picture is centre-cropped to a
/// square and resized to the model's resolution. Send JSON `{project, image: <data URL>}`,
/// or the file itself as `image/png` or `image/jpeg` with `?project=`. The answer comes
/// when the inversion is done (seconds); with `Accept: text/event-stream` it streams
/// `progress` events, then `done` (the answer) or `error`. Closing the connection cancels
/// the inversion unless someone else waits for the same picture. The same picture again
/// is answered from storage at once.
#[utoipa::path(post, path = "/api/v1/images", request_body = UploadRequest,
    params(("project" = Option<String>, Query, description = "The project, when the body is the picture itself")),
    responses(
        (status = 200, description = "Inverted (or already stored)", body = UploadResponse),
        (status = 400, description = "bad input: not a PNG or JPEG, corrupt, animated, too many pixels, unknown project", body = crate::serve::error::ErrorBody),
        (status = 413, description = "body too large", body = crate::serve::error::ErrorBody),
        (status = 415, description = "neither JSON nor a PNG or JPEG body", body = crate::serve::error::ErrorBody),
        (status = 503, description = "the inversion queue is full", body = crate::serve::error::ErrorBody)))]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let from_query = query_project(query.as_deref())?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (project_name, bytes) = match content_type.as_str() {
        "application/json" => {
            let request: UploadRequest = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad("body", format!("expected {{project, image}}: {e}")))?;
            if from_query.is_some() {
                return Err(ApiError::bad(
                    "project",
                    "give the project in the JSON body or in the query, not both",
                ));
            }
            let (_, bytes) =
                crate::formats::data_url::decode_image(&request.image).map_err(|e| {
                    ApiError::bad(
                        "image",
                        format!("send the picture as a PNG or JPEG data URL ({e})"),
                    )
                })?;
            (request.project, bytes)
        }
        "image/png" | "image/jpeg" => {
            let project = from_query.ok_or_else(|| {
                ApiError::bad("project", "give ?project=<name> with a picture body")
            })?;
            (project, body.to_vec())
        }
        other => {
            return Err(ApiError::new(
                ErrorType::OtherClientError(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                format!(
                "Content-Type: `{other}` is not taken; send application/json {{project, image}} \
                     or the picture itself as image/png or image/jpeg"
            ),
            ))
        }
    };
    let project = state.project(&project_name)?.clone();
    let uploads = state.uploads.clone();
    let inverter = match &project.inverter {
        Ok(inverter) => inverter.clone(),
        Err(reason) => {
            return Err(ApiError::bad(
                "project",
                format!("project {project_name} takes no uploads: {reason}"),
            ))
        }
    };
    let (max_pixels, resolution) = (state.config.max_upload_pixels, project.resolution() as u32);
    let fingerprint = project.generator_fingerprint.clone();
    let begun = off_runtime(move || -> Result<Begun, ApiError> {
        let picture =
            decode_upload(&bytes, max_pixels, resolution).map_err(|e| ApiError::bad("image", e))?;
        let id = UploadId::of(
            &project_name,
            &fingerprint,
            &inverter.layer,
            inverter.paint_from.as_deref(),
            resolution,
            picture.fitted.as_raw(),
        );
        uploads.begin(&id, &project_name, |running| {
            inverter.submit(InvertRequest {
                running,
                picture,
                arrived,
            })
        })
    })
    .await??;
    let events = wants_events(&headers);
    match begun {
        Begun::Stored(info) => {
            let answer = UploadResponse {
                info,
                stored: false,
            };
            if events {
                let event = Event::default()
                    .event("done")
                    .json_data(&answer)
                    .map_err(ApiError::internal)?;
                let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(event)]);
                return Ok(Sse::new(stream).into_response());
            }
            Ok(Json(answer).into_response())
        }
        Begun::Running { watching, .. } if events => Ok(event_stream(watching).into_response()),
        Begun::Running { watching, .. } => {
            let mut rx = watching.running().subscribe();
            loop {
                let now = rx.borrow_and_update().clone();
                match now {
                    JobState::Working(_) => {}
                    JobState::Done(info) => {
                        return Ok(Json(UploadResponse { info, stored: true }).into_response())
                    }
                    JobState::Failed(e) => return Err(e),
                    JobState::Cancelled => return Err(cancelled()),
                }
                if rx.changed().await.is_err() {
                    return Err(cancelled());
                }
            }
        }
    }
}

/// Only seen by a client that joined an inversion just as its last client left.
fn cancelled() -> ApiError {
    ApiError::new(
        ErrorType::Unavailable,
        "image: the inversion was cancelled as its client went away; upload the picture again",
    )
}

#[derive(serde::Serialize)]
struct ProgressEvent<'a> {
    image: &'a str,
    #[serde(flatten)]
    progress: &'a UploadProgress,
}

/// Server-sent events of a running inversion: `progress` while it runs, then `done` or
/// `error`. The stream holds `watching`: a client that goes away drops it.
fn event_stream(
    watching: Watching,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = watching.running().subscribe();
    let stream = futures_util::stream::unfold(
        (rx, watching, true, false),
        |(mut rx, watching, first, over)| async move {
            if over {
                return None;
            }
            if !first && rx.changed().await.is_err() {
                return None;
            }
            let now = rx.borrow_and_update().clone();
            let id = watching.running().id.to_string();
            let event = match &now {
                JobState::Working(progress) => {
                    Event::default().event("progress").json_data(ProgressEvent {
                        image: &id,
                        progress,
                    })
                }
                JobState::Done(info) => Event::default().event("done").json_data(UploadResponse {
                    info: info.clone(),
                    stored: true,
                }),
                JobState::Failed(e) => Event::default().event("error").json_data(e.body()),
                JobState::Cancelled => Event::default()
                    .event("error")
                    .json_data(cancelled().body()),
            };
            let event = event.unwrap_or_else(|_| Event::default().event("error"));
            Some((Ok(event), (rx, watching, false, now.is_final())))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// An upload's state: `running` with its progress, or `done` with its figures.
#[utoipa::path(get, path = "/api/v1/images/{image}",
    params(("image" = String, Path, description = "An upload's id, `upload-` and 32 hex digits")),
    responses(
        (status = 200, description = "Running or done", body = UploadStatus),
        (status = 400, description = "not an upload id", body = crate::serve::error::ErrorBody),
        (status = 404, description = "unknown, or no longer stored", body = crate::serve::error::ErrorBody)))]
pub async fn status(
    State(state): State<Arc<AppState>>,
    Path(image): Path<String>,
) -> Result<Json<UploadStatus>, ApiError> {
    let id = parse_id(&image)?;
    if let Some(running) = state.uploads.running(&id) {
        if let JobState::Working(progress) = running.state() {
            return Ok(Json(UploadStatus {
                image: id.to_string(),
                project: running.project.clone(),
                status: "running".into(),
                progress: Some(progress),
                figures: None,
            }));
        }
    }
    let uploads = state.uploads.clone();
    let lookup = id.clone();
    let info: Option<UploadInfo> = off_runtime(move || uploads.stored_info(&lookup)).await?;
    let info = info.ok_or_else(|| not_stored(&id))?;
    Ok(Json(UploadStatus {
        image: info.image,
        project: info.project,
        status: "done".into(),
        progress: None,
        figures: Some(info.figures),
    }))
}

pub fn not_stored(id: &UploadId) -> ApiError {
    ApiError::not_found(
        "image",
        format!("{id} is not stored on this server (never uploaded, or evicted); upload the picture again"),
    )
}

/// An upload whose inversion has not finished.
pub fn still_inverting(id: &UploadId) -> ApiError {
    ApiError::new(
        ErrorType::OtherClientError(StatusCode::CONFLICT),
        format!(
            "image: {id} is still being inverted; GET /api/v1/images/{id} follows its progress"
        ),
    )
}

/// The uploaded picture at the model's resolution, as it is painted on.
#[utoipa::path(get, path = "/api/v1/images/{image}/picture.png",
    params(("image" = String, Path, description = "An upload's id")),
    responses(
        (status = 200, description = "The picture", content_type = "image/png", body = Vec<u8>),
        (status = 400, description = "not an upload id", body = crate::serve::error::ErrorBody),
        (status = 404, description = "unknown, or no longer stored", body = crate::serve::error::ErrorBody),
        (status = 409, description = "still being inverted", body = crate::serve::error::ErrorBody)))]
pub async fn picture(
    State(state): State<Arc<AppState>>,
    Path(image): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&image)?;
    let uploads = state.uploads.clone();
    let lookup = id.clone();
    let found = off_runtime(move || {
        let stored = uploads.store.get(&lookup)?;
        std::fs::read(stored.dir.join(super::store::PICTURE_FILE)).ok()
    })
    .await?;
    let png = match found {
        Some(png) => png,
        None if state.uploads.running(&id).is_some() => return Err(still_inverting(&id)),
        None => return Err(not_stored(&id)),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        png,
    )
        .into_response())
}
