//! Worker registration, heartbeats and goodbyes over HTTP (through [`crate::app::workers`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use spillway_core::api::{
    Problem, RegisterWorker, WorkerHeartbeat, WorkerHeartbeatReply, WorkerList,
};
use spillway_core::auth::Action;
use spillway_core::model::Worker;

use crate::app::{Caller, workers};
use crate::auth::{Auth, requested_tenant};
use crate::extract::{JsonBody, Path, Query};
use crate::problem::ApiResult;
use crate::routes::queues::TenantQuery;
use crate::state::AppState;

/// Register a worker; the answer carries the id it leases with.
#[utoipa::path(post, path = "/v1/workers", tag = "work", request_body = RegisterWorker,
    params(TenantQuery), security(("bearer" = [])),
    responses((status = 201, body = Worker), (status = "4XX", body = Problem)))]
pub async fn register(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<Worker>)> {
    // Refuse before the body is read.
    principal.require(Action::Work)?;
    let mut req: RegisterWorker = body.parse()?;
    req.tenant = requested_tenant(req.tenant, q.tenant)?;
    let tenant = req.tenant.clone();
    let caller = Caller::new(&principal, tenant.as_deref());
    let worker = workers::register(&state, caller, req).await?;
    Ok((StatusCode::CREATED, Json(worker)))
}

/// Workers the caller can see.
#[utoipa::path(get, path = "/v1/workers", tag = "work", params(TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = WorkerList), (status = "4XX", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<WorkerList>> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    let workers = workers::list(&state, caller).await?;
    Ok(Json(WorkerList { workers }))
}

/// A worker's sign of life; the answer tells it whether to drain.
#[utoipa::path(post, path = "/v1/workers/{id}/heartbeat", tag = "work", request_body = WorkerHeartbeat,
    params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = WorkerHeartbeatReply), (status = "4XX", body = Problem)))]
pub async fn heartbeat(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<WorkerHeartbeatReply>> {
    // Refuse before the body is read.
    principal.require(Action::Work)?;
    let beat: WorkerHeartbeat = body.parse()?;
    let drain = workers::heartbeat(&state, Caller::own(&principal), &id, beat).await?;
    Ok(Json(WorkerHeartbeatReply { drain }))
}

/// A worker says goodbye.
#[utoipa::path(delete, path = "/v1/workers/{id}", tag = "work", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 204, description = "marked exited"), (status = "4XX", body = Problem)))]
pub async fn exit(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    workers::exit(&state, Caller::own(&principal), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
