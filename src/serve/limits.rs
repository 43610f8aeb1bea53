//! Request limits enforced before a handler runs, and the body's read deadline.
//!
//! - A path longer than `MAX_URI_BYTES` answers 414, and more than `MAX_HEADERS` headers
//!   (or `MAX_HEADER_BYTES` of them) answer 431, both as our JSON error (hyper's own limits,
//!   far above these, answer with an empty body and are a last resort only).
//! - A declared `Content-Length` above `--max-body-bytes` answers 413 at once, without
//!   waiting for a byte of the body.
//! - The body must keep arriving: no pause longer than `--body-timeout-s`, and, after that
//!   long, at least `--body-min-rate` bytes per second on average. A client that stops
//!   half-way gets 408 and its connection is closed, so the buffered part is freed.
//! - Whenever an answer leaves part of the body unread (a refusal before reading it, a
//!   timeout), it says `Connection: close`: the connection cannot carry another request,
//!   and a pooled client must not reuse it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::error::{ApiError, ErrorType};
use super::AppState;

/// The longest request target (path and query) accepted.
pub const MAX_URI_BYTES: usize = 8 << 10;
/// The most request headers accepted, and their total size.
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 32 << 10;

/// How a request's body is read: what the guard observed.
#[derive(Default)]
struct BodyWatch {
    finished: AtomicBool,
    too_slow: AtomicBool,
}

/// The request body with a read deadline: the next frame must come before
/// `min(last frame + pause, start + pause + bytes / min_rate)`.
struct GuardedBody {
    inner: Body,
    watch: Arc<BodyWatch>,
    started: Instant,
    received: u64,
    pause: Duration,
    min_rate: u64,
    deadline: Pin<Box<Sleep>>,
}

impl GuardedBody {
    fn next_deadline(&self, now: Instant) -> Instant {
        let by_pause = now + self.pause;
        let by_rate = self.started
            + self.pause
            + Duration::from_secs_f64(self.received as f64 / self.min_rate.max(1) as f64);
        by_pause.min(by_rate)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly")]
struct BodyTooSlow;

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                let next = this.next_deadline(Instant::now());
                this.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.watch.finished.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.watch.too_slow.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Refuses requests past the limits before routing work starts, guards the body's pace,
/// and closes connections whose body was left unread.
pub async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let uri_bytes = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return ApiError::new(
            ErrorType::UriTooLong,
            format!("path: the request target has {uri_bytes} bytes; the limit is {MAX_URI_BYTES}"),
        )
        .into_response();
    }
    let headers = request.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return close(ApiError::new(
            ErrorType::HeadersTooLarge,
            format!(
                "headers: {} headers of {header_bytes} bytes; the limits are {MAX_HEADERS} and {MAX_HEADER_BYTES} bytes",
                headers.len()
            ),
        ).into_response());
    }
    let limit = state.config.max_body_bytes as u64;
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if length > limit {
            return close(
                ApiError::new(
                    ErrorType::TooLarge,
                    format!("body: Content-Length {length} is above the limit of {limit} bytes"),
                )
                .into_response(),
            );
        }
    }
    let watch = Arc::new(BodyWatch::default());
    let (parts, body) = request.into_parts();
    let empty = http_body::Body::is_end_stream(&body);
    if empty {
        watch.finished.store(true, Ordering::Relaxed);
    }
    let pause = Duration::from_secs(state.config.body_timeout_s.max(1));
    let guarded = GuardedBody {
        inner: body,
        watch: watch.clone(),
        started: Instant::now(),
        received: 0,
        pause,
        min_rate: state.config.body_min_rate,
        deadline: Box::pin(tokio::time::sleep(pause)),
    };
    let request = Request::from_parts(parts, Body::new(guarded));
    let response = next.run(request).await;
    if watch.too_slow.load(Ordering::Relaxed) {
        return close(
            ApiError::new(
                ErrorType::RequestTimeout,
                format!(
                    "body: it paused for over {} s, or came slower than {} bytes/s",
                    pause.as_secs(),
                    state.config.body_min_rate
                ),
            )
            .into_response(),
        );
    }
    if watch.finished.load(Ordering::Relaxed) {
        response
    } else {
        close(response)
    }
}

/// Marks a response as the connection's last.
fn close(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
