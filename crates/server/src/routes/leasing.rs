//! The worker's side of a task over HTTP: lease (long-poll), heartbeat, complete, fail,
//! release. Each handler decodes, calls [`app::work`](crate::app::work) and encodes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use spillway_core::TaskId;
use spillway_core::api::{
    CompleteRequest, Completion, FailRequest, Failure, HeartbeatRequest, HeartbeatResponse,
    LeaseRequest, LeaseResponse, Problem, ReleaseRequest, ReportResponse, ReportResult,
};
use spillway_core::auth::Action;
use spillway_store::Reported;

use crate::admission::Ticket;
use crate::app::{Caller, work};
use crate::auth::{Auth, requested_tenant};
use crate::extract::{JsonBody, Path, Query};
use crate::problem::ApiResult;
use crate::routes::queues::TenantQuery;
use crate::state::AppState;

/// Lease tasks, waiting up to `wait` for some to arrive.
#[utoipa::path(post, path = "/v1/tasks/lease", tag = "work", request_body = LeaseRequest,
    params(TenantQuery), security(("bearer" = [])),
    responses((status = 200, body = LeaseResponse), (status = "4XX", body = Problem)))]
pub async fn lease(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Extension(ticket): Extension<Ticket>,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<Json<LeaseResponse>> {
    // Refuse before the body is read.
    principal.require(Action::Work)?;
    let mut req: LeaseRequest = body.parse()?;
    req.tenant = requested_tenant(req.tenant, q.tenant)?;
    let tenant = req.tenant.clone();
    let caller = Caller::new(&principal, tenant.as_deref());
    let tasks = work::lease(&state, caller, req, &ticket).await?;
    Ok(Json(LeaseResponse { tasks }))
}

/// Extend leases. A lease of another tenant's task is left alone and answered as lost: the
/// caller's tenant is part of the store's condition.
#[utoipa::path(post, path = "/v1/tasks/heartbeat", tag = "work", request_body = HeartbeatRequest,
    security(("bearer" = [])),
    responses((status = 200, body = HeartbeatResponse), (status = "4XX", body = Problem)))]
pub async fn heartbeat(
    State(state): State<AppState>,
    Auth(principal): Auth,
    body: JsonBody,
) -> ApiResult<Json<HeartbeatResponse>> {
    principal.require(Action::Work)?;
    let req: HeartbeatRequest = body.parse()?;
    let results = work::heartbeat(&state, Caller::own(&principal), req.leases).await?;
    Ok(Json(HeartbeatResponse { results }))
}

/// Each report's answer in its place.
fn answers(results: Vec<Reported>) -> Json<ReportResponse> {
    Json(ReportResponse {
        results: results.into_iter().map(ReportResult::from).collect(),
    })
}

/// Report tasks done; each entry is applied only if its lease is current.
#[utoipa::path(post, path = "/v1/tasks/complete", tag = "work", request_body = CompleteRequest,
    security(("bearer" = [])),
    responses((status = 200, body = ReportResponse), (status = "4XX", body = Problem)))]
pub async fn complete(
    State(state): State<AppState>,
    Auth(principal): Auth,
    body: JsonBody,
) -> ApiResult<Json<ReportResponse>> {
    principal.require(Action::Work)?;
    let req: CompleteRequest = body.parse()?;
    let results = work::complete(&state, Caller::own(&principal), req.completions).await?;
    Ok(answers(results))
}

/// Report tasks failed; each entry is applied only if its lease is current.
#[utoipa::path(post, path = "/v1/tasks/fail", tag = "work", request_body = FailRequest,
    security(("bearer" = [])),
    responses((status = 200, body = ReportResponse), (status = "4XX", body = Problem)))]
pub async fn fail(
    State(state): State<AppState>,
    Auth(principal): Auth,
    body: JsonBody,
) -> ApiResult<Json<ReportResponse>> {
    principal.require(Action::Work)?;
    let req: FailRequest = body.parse()?;
    let results = work::fail(&state, Caller::own(&principal), req.failures).await?;
    Ok(answers(results))
}

/// Hand leases back (preempted or cancelled).
#[utoipa::path(post, path = "/v1/tasks/release", tag = "work", request_body = ReleaseRequest,
    security(("bearer" = [])),
    responses((status = 200, body = ReportResponse), (status = "4XX", body = Problem)))]
pub async fn release(
    State(state): State<AppState>,
    Auth(principal): Auth,
    body: JsonBody,
) -> ApiResult<Json<ReportResponse>> {
    principal.require(Action::Work)?;
    let req: ReleaseRequest = body.parse()?;
    let results = work::release(&state, Caller::own(&principal), req.releases).await?;
    Ok(answers(results))
}

/// Report one task done: 204, or 409 when the lease is stale.
#[utoipa::path(post, path = "/v1/tasks/{id}/complete", tag = "work", request_body = Completion,
    params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 204, description = "completed"), (status = 409, body = Problem),
              (status = "4XX", body = Problem)))]
pub async fn complete_one(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<TaskId>,
    body: JsonBody,
) -> ApiResult<StatusCode> {
    principal.require(Action::Work)?;
    let req: Completion = body.parse()?;
    work::same_task(id, req.task_id)?;
    let results = work::complete(&state, Caller::own(&principal), vec![req]).await?;
    work::single(id, results)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Report one task failed: 204, or 409 when the lease is stale.
#[utoipa::path(post, path = "/v1/tasks/{id}/fail", tag = "work", request_body = Failure,
    params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 204, description = "failed"), (status = 409, body = Problem),
              (status = "4XX", body = Problem)))]
pub async fn fail_one(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<TaskId>,
    body: JsonBody,
) -> ApiResult<StatusCode> {
    principal.require(Action::Work)?;
    let req: Failure = body.parse()?;
    work::same_task(id, req.task_id)?;
    let results = work::fail(&state, Caller::own(&principal), vec![req]).await?;
    work::single(id, results)?;
    Ok(StatusCode::NO_CONTENT)
}
