//! A task's whole log (a download) and its live log (server-sent events), for the task page,
//! through the same operations as the API ([`crate::app::logs`]) and the page's session.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use spillway_core::TaskId;

use super::Params;
use crate::app::{Caller, logs};
use crate::dashboard::{PageResult, Signed};
use crate::extract::Path;
use crate::routes::logs::{follow_events, whole_response};
use crate::state::AppState;

/// The `attempt` parameter, when given.
fn attempt(params: &Params) -> Result<Option<u32>, spillway_core::Error> {
    params
        .get("attempt")
        .map(|a| {
            a.parse().map_err(|_| {
                spillway_core::Error::invalid(format!(
                    "attempt {a:?} is not a number: give the attempt's number, from 1"
                ))
            })
        })
        .transpose()
}

/// `/tasks/{id}/log?attempt=N`: the whole log as a text file to save.
pub async fn download(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<TaskId>,
    params: Params,
) -> PageResult<Response> {
    let attempt = attempt(&params)?;
    let log = logs::whole(&state, Caller::own(signed.principal()), id, attempt).await?;
    let mut response = whole_response(log);
    let name = format!(
        "attachment; filename=\"task-{id}-attempt-{}.log\"",
        attempt.map_or_else(|| "latest".to_string(), |a| a.to_string())
    );
    if let Ok(value) = HeaderValue::from_str(&name) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `/tasks/{id}/log/events?attempt=N`: the live log, as the API's follow stream.
pub async fn events(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<TaskId>,
    params: Params,
) -> PageResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let attempt = attempt(&params)?;
    let followed = logs::follow(&state, Caller::own(signed.principal()), id, attempt).await?;
    Ok(follow_events(followed))
}

/// The script that follows a running attempt's log on the task page.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        LOG_JS,
    )
        .into_response()
}

const LOG_JS: &str = include_str!("../../../assets/log.js");
