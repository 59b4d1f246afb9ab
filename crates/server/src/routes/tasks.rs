//! Reading one task: its details, attempts and log tail.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use spillway_core::api::{Problem, TaskDetail};
use spillway_core::auth::Action;
use spillway_core::{Error, TaskId};
use utoipa::IntoParams;

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
    auth: Auth,
    Path(id): Path<TaskId>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<TaskDetail>> {
    auth.require(Action::Read)?;
    let scope = auth.scope(q.tenant.as_deref())?;
    let task = state.store.task_get(scope.as_deref(), id).await?;
    let attempts = state.store.task_attempts(scope.as_deref(), id).await?;
    Ok(Json(TaskDetail { task, attempts }))
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
    auth: Auth,
    Path(id): Path<TaskId>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    auth.require(Action::Read)?;
    let scope = auth.scope(q.tenant.as_deref())?;
    let attempts = state.store.task_attempts(scope.as_deref(), id).await?;
    let attempt = match q.attempt {
        Some(n) => attempts
            .into_iter()
            .find(|a| a.attempt == n)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "task {id} has no attempt {n}: see GET /v1/tasks/{id} for its attempts"
                ))
            })?,
        None => attempts
            .into_iter()
            .max_by_key(|a| a.attempt)
            .ok_or_else(|| {
                Error::not_found(format!("task {id} has not run yet, so it has no log"))
            })?,
    };
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        attempt.log_tail,
    )
        .into_response())
}
