//! Errors as HTTP answers: one exhaustive mapping from [`ErrorKind`] to a status, and every
//! error body an `application/problem+json` [`Problem`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use spillway_core::api::Problem;
use spillway_core::{Error, ErrorKind};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a client is asked to wait (`Retry-After`) before retrying a request answered 503.
/// Unavailability is passing here (an overloaded server sheds a moment's excess, a full write
/// queue drains in a few commits, a store reconnects), so one second is long enough for it to
/// clear and short enough not to idle a client for long; clients add their own backoff.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// The HTTP status for each kind of error. Exhaustive on purpose: a new kind must be mapped.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A short summary of each kind, the problem's `title`.
fn title_for(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidArgument => "invalid request",
        ErrorKind::NotFound => "not found",
        ErrorKind::Conflict => "conflict",
        ErrorKind::Unauthenticated => "unauthenticated",
        ErrorKind::PermissionDenied => "permission denied",
        ErrorKind::TooLarge => "request too large",
        ErrorKind::Unavailable => "service unavailable",
        ErrorKind::Internal => "internal error",
    }
}

/// Build the problem document for an error.
pub fn problem_for(error: &Error) -> Problem {
    let kind = error.kind();
    let detail = match kind {
        // Internal details stay in the log; the caller learns only that it was our fault.
        ErrorKind::Internal => "internal error: see the server log".to_string(),
        _ => error.message().to_string(),
    };
    Problem {
        kind: format!("urn:spillway:problem:{}", kind.code()),
        title: title_for(kind).to_string(),
        status: status_for(kind).as_u16(),
        detail,
        code: kind.code().to_string(),
    }
}

/// An error returned by a handler; answers as problem+json.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.0;
        let code = error.kind().code();
        match error.kind() {
            ErrorKind::Internal | ErrorKind::Unavailable => tracing::error!(
                code,
                error = %error,
                source = ?std::error::Error::source(&error),
                "request failed"
            ),
            _ => tracing::debug!(code, error = %error, "request rejected"),
        }
        error_response(&error)
    }
}

/// The problem+json answer for `error`, without logging it: its status, its problem document,
/// `WWW-Authenticate` when a token is missing, and `Retry-After` on every 503 (an unavailable
/// answer is always worth retrying, see [`RETRY_AFTER_SECONDS`]).
pub fn error_response(error: &Error) -> Response {
    let problem = problem_for(error);
    let status = status_for(error.kind());
    let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    match error.kind() {
        ErrorKind::Unauthenticated => {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        ErrorKind::Unavailable => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        _ => {}
    }
    response
}

/// The answer for a known path asked with the wrong method (routing, not an [`ErrorKind`]).
pub fn method_not_allowed(detail: String) -> Response {
    let problem = Problem {
        kind: "urn:spillway:problem:method_not_allowed".to_string(),
        title: "method not allowed".to_string(),
        status: StatusCode::METHOD_NOT_ALLOWED.as_u16(),
        detail,
        code: "method_not_allowed".to_string(),
    };
    let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (StatusCode::METHOD_NOT_ALLOWED, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_status() {
        let kinds = [
            ErrorKind::InvalidArgument,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Unauthenticated,
            ErrorKind::PermissionDenied,
            ErrorKind::TooLarge,
            ErrorKind::Unavailable,
            ErrorKind::Internal,
        ];
        let statuses: std::collections::HashSet<_> = kinds.iter().map(|k| status_for(*k)).collect();
        assert_eq!(statuses.len(), kinds.len());
    }

    #[test]
    fn internal_errors_do_not_leak_their_message() {
        let problem = problem_for(&Error::internal("password=hunter2 in query"));
        assert!(!problem.detail.contains("hunter2"));
        assert_eq!(problem.status, 500);
        assert_eq!(problem.code, "internal");
    }

    #[test]
    fn unavailable_answers_say_when_to_retry() {
        let response = error_response(&Error::unavailable("the store does not answer"));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let retry = response.headers().get(header::RETRY_AFTER);
        assert_eq!(
            retry.and_then(|v| v.to_str().ok()),
            Some(RETRY_AFTER_SECONDS.to_string().as_str())
        );
        let other = error_response(&Error::conflict("stale lease"));
        assert!(other.headers().get(header::RETRY_AFTER).is_none());
    }
}
