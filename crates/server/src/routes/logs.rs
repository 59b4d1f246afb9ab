//! Live logs over HTTP (through [`crate::app::logs`]): a worker's chunks while its task runs,
//! the whole log of an attempt, and following it as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::Serialize;
use spillway_core::api::Problem;
use spillway_core::model::MAX_LOG_CHUNK_BYTES;
use spillway_core::{Error, Result, TaskId};
use utoipa::ToSchema;

use crate::app::Caller;
use crate::app::logs::{self, Followed};
use crate::auth::Auth;
use crate::extract::{Path, Query};
use crate::problem::ApiResult;
use crate::routes::objects::lease_token;
use crate::routes::tasks::LogQuery;
use crate::state::AppState;

/// How long a browser waits before reconnecting a dropped follow stream.
const RETRY: Duration = Duration::from_secs(2);

/// Data of a `log` event of a follow stream: more of the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogText {
    /// The bytes, as text (invalid UTF-8 replaced). The task's own output: show it as text,
    /// never interpret it.
    pub text: String,
}

/// Data of the `end` event of a follow stream: the attempt ended; nothing more comes.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogEnd {
    /// The attempt (from 1).
    pub attempt: u32,
    /// How it ended: `succeeded`, `failed`, `lease_expired`, `preempted`, `cancelled`.
    pub outcome: String,
}

/// Append one chunk of the live log of a leased task's current attempt (the raw body, at most
/// 64 KiB). Chunks are numbered from 0; one sent again under its number is stored once.
#[utoipa::path(put, path = "/v1/tasks/{id}/logs/chunks/{seq}", tag = "work",
    params(("id" = i64, Path), ("seq" = u64, Path, description = "the chunk's number in the attempt, from 0"),
           ("Spillway-Lease-Token" = String, Header, description = "the lease token from the lease")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    security(("bearer" = [])),
    responses((status = 204, description = "stored (or stored before)"),
              (status = 404, body = Problem, description = "no such task in the caller's tenant"),
              (status = 409, body = Problem, description = "the lease is not current: stop sending"),
              (status = 413, body = Problem, description = "the chunk or the attempt's log is over its limit"),
              (status = "4XX", body = Problem)))]
pub async fn chunk_put(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((id, seq)): Path<(TaskId, u64)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<StatusCode> {
    let token = lease_token(&headers)?;
    let data = axum::body::to_bytes(body, MAX_LOG_CHUNK_BYTES)
        .await
        .map_err(|e| {
            Error::too_large(format!(
                "log chunk is over the limit of {MAX_LOG_CHUNK_BYTES} bytes or could not be read: send smaller chunks"
            ))
            .with_source(e)
        })?;
    logs::append(
        &state,
        Caller::own(&principal),
        id,
        token,
        seq,
        data.to_vec(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The whole log of one attempt (default the latest) as it is now: all of a finished
/// attempt's output (up to the server's `max_log_bytes`), or a running one's so far. For an
/// attempt from before live logs, its last 64 KiB.
#[utoipa::path(get, path = "/v1/tasks/{id}/logs/full", tag = "tasks", params(("id" = i64, Path), LogQuery),
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/plain", body = String),
              (status = 404, body = Problem, description = "no such task or attempt for the caller"),
              (status = "4XX", body = Problem)))]
pub async fn full(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<TaskId>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(whole_response(
        logs::whole(&state, caller, id, q.attempt).await?,
    ))
}

/// A whole log as a plain-text answer (the task's output: never to be sniffed as HTML).
pub(crate) fn whole_response(log: spillway_blob::ByteStream) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(log),
    )
        .into_response()
}

/// Follow one attempt's log (default the latest) as server-sent events: `log` events
/// (data [`LogText`]) with what it holds, then with what arrives, and one `end` event (data
/// [`LogEnd`]) when the attempt ends; an `error` event (data a problem) if the log can no
/// longer be read.
#[utoipa::path(get, path = "/v1/tasks/{id}/logs/follow", tag = "tasks", params(("id" = i64, Path), LogQuery),
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/event-stream", body = String,
               description = "events `log` (LogText), `end` (LogEnd), `error` (Problem)"),
              (status = 404, body = Problem, description = "no such task or attempt for the caller"),
              (status = "4XX", body = Problem)))]
pub async fn follow(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<TaskId>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    let followed = logs::follow(&state, caller, id, q.attempt).await?;
    Ok(follow_events(followed))
}

/// A follow stream as server-sent events (for the API and the dashboard alike).
pub(crate) fn follow_events(
    followed: impl Stream<Item = Result<Followed>> + Send + 'static,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>> {
    let mut first = true;
    let events = followed.map(move |item| {
        let event = match item {
            Ok(Followed::Output(bytes)) => Event::default().event("log").data(json(&LogText {
                text: String::from_utf8_lossy(&bytes).into_owned(),
            })),
            Ok(Followed::End { attempt, outcome }) => Event::default()
                .event("end")
                .data(json(&LogEnd { attempt, outcome })),
            Err(error) => {
                tracing::warn!(%error, "a log follow stream could not read the log");
                Event::default()
                    .event("error")
                    .data(json(&serde_json::json!({
                        "title": "the log could not be read",
                        "detail": error.message(),
                    })))
            }
        };
        let event = if std::mem::replace(&mut first, false) {
            event.retry(RETRY)
        } else {
            event
        };
        Ok(event)
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

fn json<T: Serialize>(value: &T) -> String {
    // Plain structs of strings and numbers always serialize.
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string())
}
