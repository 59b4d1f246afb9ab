//! Turning HTTP failures into [`spillway_core::Error`]s.

use reqwest::{Method, Response, StatusCode, Url};
use spillway_core::api::Problem;
use spillway_core::{Error, ErrorKind};

/// Longest part of a non-problem error body quoted in a message.
const MAX_QUOTED_BODY: usize = 300;

/// The error kind the server means by an HTTP status.
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        400 | 422 => ErrorKind::InvalidArgument,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 | 410 => ErrorKind::NotFound,
        409 | 412 => ErrorKind::Conflict,
        413 => ErrorKind::TooLarge,
        // Overload and gateway answers are passing: the caller may retry.
        408 | 429 | 502 | 503 | 504 => ErrorKind::Unavailable,
        400..=499 => ErrorKind::InvalidArgument,
        _ => ErrorKind::Internal,
    }
}

/// A request that got no answer: the server is down, unreachable or too slow. Always
/// retryable, with the url in the message so the operator sees where it tried.
pub(crate) fn transport(method: &Method, url: &Url, e: reqwest::Error) -> Error {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    Error::unavailable(format!(
        "{method} {url} {what}: check the server url and that the server is running"
    ))
    .with_source(e)
}

/// An answer whose body broke off while it was read.
pub(crate) fn body_read(url: &Url, e: reqwest::Error) -> Error {
    Error::unavailable(format!(
        "reading the answer from {url} broke off; try again"
    ))
    .with_source(e)
}

/// The error an unsuccessful answer stands for: the problem document's `detail` when the
/// server sent one, else the status and the start of the body.
pub(crate) async fn from_response(method: &Method, url: &Url, response: Response) -> Error {
    let status = response.status();
    let kind = kind_for_status(status.as_u16());
    let body = response.bytes().await.unwrap_or_default();
    if let Ok(problem) = serde_json::from_slice::<Problem>(&body) {
        return Error::new(kind, problem.detail);
    }
    Error::new(kind, describe(method, url, status, &body))
}

fn describe(method: &Method, url: &Url, status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("{method} {url} answered {status}");
    }
    let mut end = text.len().min(MAX_QUOTED_BODY);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{method} {url} answered {status}: {}", &text[..end])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_kinds() {
        assert_eq!(kind_for_status(400), ErrorKind::InvalidArgument);
        assert_eq!(kind_for_status(422), ErrorKind::InvalidArgument);
        assert_eq!(kind_for_status(401), ErrorKind::Unauthenticated);
        assert_eq!(kind_for_status(403), ErrorKind::PermissionDenied);
        assert_eq!(kind_for_status(404), ErrorKind::NotFound);
        assert_eq!(kind_for_status(409), ErrorKind::Conflict);
        assert_eq!(kind_for_status(413), ErrorKind::TooLarge);
        assert_eq!(kind_for_status(503), ErrorKind::Unavailable);
        assert_eq!(kind_for_status(500), ErrorKind::Internal);
    }

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary() {
        let url = Url::parse("http://x/y").unwrap();
        let body = "é".repeat(400);
        let msg = describe(&Method::GET, &url, StatusCode::BAD_GATEWAY, body.as_bytes());
        assert!(
            msg.starts_with("GET http://x/y answered 502 Bad Gateway: é"),
            "{msg}"
        );
        assert!(msg.len() < 400, "{}", msg.len());
    }
}
