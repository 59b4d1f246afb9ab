//! `/v1/jobs`: decode a request, call [`crate::app::jobs`], encode its answer.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use spillway_core::Error;
use spillway_core::api::{CancelJobs, Changed, JobsCancelled, Page, Problem, SubmitJob, Submitted};
use spillway_core::auth::Action;
use spillway_core::model::{Job, Task};
use utoipa::IntoParams;

use crate::app::Caller;
use crate::app::jobs::{self as app, JobFilter, TaskFilter};
use crate::auth::{Auth, requested_tenant};
use crate::extract::{JsonBody, Path, Query, QueryPairs};
use crate::problem::ApiResult;
use crate::routes::queues::TenantQuery;
use crate::state::AppState;

/// Submit a job. 201 with a new job, 200 when the idempotency key matched an earlier one.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = SubmitJob,
    params(TenantQuery), security(("bearer" = [])),
    responses((status = 201, body = Submitted), (status = 200, body = Submitted),
              (status = "4XX", body = Problem)))]
pub async fn submit(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<Submitted>)> {
    // Refuse before the body is read.
    principal.require(Action::Submit)?;
    let mut req: SubmitJob = body.parse()?;
    req.tenant = requested_tenant(req.tenant, q.tenant)?;
    let tenant = req.tenant.clone();
    let submitted = app::submit(&state, Caller::new(&principal, tenant.as_deref()), req).await?;
    let status = if submitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(submitted)))
}

/// Filters of the job list.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only jobs of this queue.
    pub queue: Option<String>,
    /// Only jobs in this state (queued, running, succeeded, failed, cancelled).
    pub state: Option<String>,
    /// Only jobs with this label, as `key=value`; repeat for several (all must match).
    pub label: Vec<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Act in this tenant (only for admins of every tenant).
    pub tenant: Option<String>,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<Job>), (status = "4XX", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Page<Job>>> {
    principal.require(Action::Read)?;
    let q = JobQuery::from_pairs(pairs)?;
    let filter = JobFilter {
        queue: q.queue,
        state: q.state,
        labels: q.label,
        limit: q.limit,
        cursor: q.cursor,
    };
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(Json(app::list(&state, caller, filter).await?))
}

impl JobQuery {
    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, Error> {
        let mut q = QueryPairs::read(
            pairs,
            &["queue", "state", "label", "limit", "cursor", "tenant"],
        )?;
        Ok(JobQuery {
            queue: q.take("queue"),
            state: q.take("state"),
            label: q.labels(),
            limit: q.number("limit")?,
            cursor: q.take("cursor"),
            tenant: q.take("tenant"),
        })
    }
}

/// One job with its task counts.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Job), (status = "4XX", body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Job>> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(Json(app::get(&state, caller, &id).await?))
}

/// Cancel a job: waiting tasks are cancelled, running ones are asked to stop.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Job), (status = "4XX", body = Problem)))]
pub async fn cancel(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Job>> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    Ok(Json(app::cancel(&state, caller, &id).await?))
}

/// Cancel every unfinished job of the caller's tenant that matches a filter (labels, queue,
/// state; at least one), or with `dry_run` only list them. One call however many match.
#[utoipa::path(post, path = "/v1/jobs/cancel", tag = "jobs", request_body = CancelJobs,
    params(TenantQuery), security(("bearer" = [])),
    responses((status = 200, body = JobsCancelled), (status = "4XX", body = Problem)))]
pub async fn cancel_matching(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<Json<JobsCancelled>> {
    // Refuse before the body is read.
    principal.require(Action::Cancel)?;
    let mut req: CancelJobs = body.parse()?;
    req.tenant = requested_tenant(req.tenant, q.tenant)?;
    let tenant = req.tenant.clone();
    let caller = Caller::new(&principal, tenant.as_deref());
    Ok(Json(app::cancel_matching(&state, caller, req).await?))
}

/// Requeue a job's dead and cancelled tasks.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", params(("id" = String, Path), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Changed), (status = "4XX", body = Problem)))]
pub async fn retry(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<Changed>> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    let changed = app::retry(&state, caller, &id).await?;
    Ok(Json(Changed { changed }))
}

/// Filters of a job's task list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Only tasks in this state.
    pub state: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Act in this tenant (only for admins of every tenant).
    pub tenant: Option<String>,
}

/// A job's tasks in index order.
#[utoipa::path(get, path = "/v1/jobs/{id}/tasks", tag = "jobs", params(("id" = String, Path), TaskQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<Task>), (status = "4XX", body = Problem)))]
pub async fn tasks(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    Query(q): Query<TaskQuery>,
) -> ApiResult<Json<Page<Task>>> {
    let caller = Caller::new(&principal, q.tenant.as_deref());
    let filter = TaskFilter {
        state: q.state,
        limit: q.limit,
        cursor: q.cursor,
    };
    Ok(Json(app::tasks(&state, caller, &id, filter).await?))
}
