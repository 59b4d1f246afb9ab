//! Reading one task over HTTP: its details, attempts and log tail (through
//! [`crate::app::tasks`]).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use spillway_core::TaskId;
use spillway_core::api::{Problem, TaskDetail};
use utoipa::IntoParams;

use crate::app::{Caller, tasks};
use crate::auth::Auth;
use crate::extract::{Path, Query};
use crate::problem::ApiResult;
use crate::routes::queues::TenantQuery;
use crate::state::AppState;

/// A task with its attempts.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", params(("id" = i64, Path), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = TaskDetail), (status = "4XX", body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<TaskId>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<TaskDetail>> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(Json(tasks::get(&state, caller, id).await?))
}

/// Which attempt's log to show.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// The attempt number (from 1); default the latest.
    pub attempt: Option<u32>,
    /// Act in this tenant (only for admins of every tenant).
    pub tenant: Option<String>,
}

/// The log tail of one attempt, as plain text.
#[utoipa::path(get, path = "/v1/tasks/{id}/logs", tag = "tasks", params(("id" = i64, Path), LogQuery),
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/plain", body = String), (status = "4XX", body = Problem)))]
pub async fn logs(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<TaskId>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    let log = tasks::log(&state, caller, id, q.attempt).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response())
}
