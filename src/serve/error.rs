//! API errors: one type for every handler, mapped to HTTP status codes in exactly one
//! place ([`ErrorType::status`]). Bodies are `{"error": <kind>, "detail": <message>}`, the
//! detail naming the offending field. 5xx bodies carry a generic message; the cause is
//! logged.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// What kind of failure, which decides the status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// The request is malformed or names something that does not exist in the project.
    BadRequest,
    /// An unknown project (or file).
    NotFound,
    /// The body is larger than the configured limit.
    TooLarge,
    /// The route exists but not for this method (the answer keeps `Allow`).
    MethodNotAllowed,
    /// The body stalled, or came slower than the minimum rate.
    RequestTimeout,
    /// The request target is longer than the server reads.
    UriTooLong,
    /// Too many request headers, or too large.
    HeadersTooLarge,
    /// Any other refusal from a lower layer (the file server's 416, for one).
    OtherClientError(StatusCode),
    /// The queue is full; retry shortly.
    Overloaded,
    /// The request waited longer than its deadline.
    Timeout,
    /// A project exists but is not ready (its model is still loading or failed to load).
    Unavailable,
    /// A bug or an environment failure on our side.
    Internal,
}

impl ErrorType {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::BadRequest => StatusCode::BAD_REQUEST,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
            ErrorType::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorType::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorType::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorType::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorType::OtherClientError(status) => status,
            ErrorType::Overloaded | ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kind of an error status that a lower layer (the router, the file server, the
    /// body limit) answered without our body: the inverse of [`Self::status`].
    pub fn from_status(status: StatusCode) -> ErrorType {
        match status {
            StatusCode::BAD_REQUEST => ErrorType::BadRequest,
            StatusCode::NOT_FOUND => ErrorType::NotFound,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorType::TooLarge,
            StatusCode::METHOD_NOT_ALLOWED => ErrorType::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => ErrorType::RequestTimeout,
            StatusCode::URI_TOO_LONG => ErrorType::UriTooLong,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ErrorType::HeadersTooLarge,
            StatusCode::SERVICE_UNAVAILABLE => ErrorType::Unavailable,
            StatusCode::GATEWAY_TIMEOUT => ErrorType::Timeout,
            s if s.is_client_error() => ErrorType::OtherClientError(s),
            _ => ErrorType::Internal,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ErrorType::BadRequest => "bad_request",
            ErrorType::NotFound => "not_found",
            ErrorType::TooLarge => "payload_too_large",
            ErrorType::MethodNotAllowed => "method_not_allowed",
            ErrorType::RequestTimeout => "request_timeout",
            ErrorType::UriTooLong => "uri_too_long",
            ErrorType::HeadersTooLarge => "headers_too_large",
            ErrorType::OtherClientError(_) => "client_error",
            ErrorType::Overloaded => "overloaded",
            ErrorType::Timeout => "timeout",
            ErrorType::Unavailable => "unavailable",
            ErrorType::Internal => "internal",
        }
    }
}

/// Every error answer's body, as documented: `error` is the kind, `detail` names the
/// field.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub detail: String,
}

#[derive(Clone, Debug)]
pub struct ApiError {
    pub kind: ErrorType,
    pub detail: String,
}

impl ApiError {
    pub fn bad(field: &str, message: impl std::fmt::Display) -> Self {
        ApiError {
            kind: ErrorType::BadRequest,
            detail: format!("{field}: {message}"),
        }
    }

    pub fn not_found(field: &str, message: impl std::fmt::Display) -> Self {
        ApiError {
            kind: ErrorType::NotFound,
            detail: format!("{field}: {message}"),
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError {
            kind: ErrorType::Internal,
            detail: cause.to_string(),
        }
    }

    pub fn new(kind: ErrorType, detail: impl Into<String>) -> Self {
        ApiError {
            kind,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.detail)
    }
}

impl ApiError {
    /// The error body, `{"error", "detail"}`; an internal error's cause is logged here and
    /// answered with a generic detail. Every answer and every error event uses it.
    pub fn body(&self) -> serde_json::Value {
        let detail = if self.kind == ErrorType::Internal {
            tracing::error!(cause = %self.detail, "internal error");
            "internal server error; see the server log"
        } else {
            self.detail.as_str()
        };
        json!({ "error": self.kind.name(), "detail": detail })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        let body = Json(self.body());
        let mut response = (status, body).into_response();
        if self.kind == ErrorType::Overloaded {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection;
        match rejection {
            JsonRejection::BytesRejection(ref inner)
                if inner.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::new(
                    ErrorType::TooLarge,
                    format!("body: {}", rejection.body_text()),
                )
            }
            other => ApiError::bad("body", other.body_text()),
        }
    }
}

/// Gives every error answer our body: a 4xx or 5xx that a lower layer answered without
/// JSON (the router's 404 and 405, the file server's 404 and 416, the body limit's 413) is
/// rewritten as `{"error", "detail"}`, keeping its status and headers (`Allow` among them).
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let kind = ErrorType::from_status(status);
    let detail = match kind {
        ErrorType::NotFound => "path: no such file or API route".to_string(),
        ErrorType::MethodNotAllowed => {
            let allowed = response
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            format!("method: {method} is not allowed here; allowed: {allowed}")
        }
        ErrorType::TooLarge => "body: larger than this server accepts".to_string(),
        ErrorType::Internal => format!("{method}: a lower layer answered {status}"),
        _ => format!(
            "request: {}",
            status.canonical_reason().unwrap_or("refused")
        ),
    };
    let (mut parts, _) = response.into_parts();
    let ours = ApiError::new(kind, detail).into_response();
    let (ours, body) = ours.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    for (name, value) in &ours.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, body)
}

/// `Json<T>` whose rejections become our error body (axum's customize-extractor-error).
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_maps_each_kind() {
        assert_eq!(ErrorType::BadRequest.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ErrorType::NotFound.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            ErrorType::Overloaded.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(ErrorType::TooLarge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn overloaded_sets_retry_after_and_internal_hides_the_cause() {
        let response = ApiError::new(ErrorType::Overloaded, "queue full").into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = ApiError::internal("secret path /x").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
