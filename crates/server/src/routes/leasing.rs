//! The worker's side of a task: lease (long-poll), heartbeat, complete, fail, release.

use std::pin::Pin;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use futures::future::select_all;
use spillway_core::api::{
    CompleteRequest, Completion, FailRequest, Failure, HeartbeatRequest, HeartbeatResponse,
    LeaseRequest, LeaseResponse, MAX_LEASE_BATCH, MAX_LEASE_WAIT, Problem, ReleaseReason,
    ReleaseRequest, ReportResponse, ReportResult,
};
use spillway_core::auth::Action;
use spillway_core::names::validate_name;
use spillway_core::{Error, TaskId, Timestamp};
use spillway_store::{
    ReportOutcome, Reported, TaskComplete, TaskFail, TaskHeartbeat, TaskLease, TaskRelease,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::auth::{Auth, requested_tenant};
use crate::extract::{JsonBody, Path, Query};
use crate::ids::job_submitted_at;
use crate::metrics::{Outcome, UNKNOWN_QUEUE};
use crate::problem::ApiResult;
use crate::routes::queues::TenantQuery;
use crate::routes::workers::refuse_exited;
use crate::state::AppState;

/// Most leases one heartbeat or report may carry.
const MAX_REPORT_BATCH: usize = MAX_LEASE_BATCH as usize;

/// Lease tasks, waiting up to `wait` for some to arrive.
#[utoipa::path(post, path = "/v1/tasks/lease", tag = "work", request_body = LeaseRequest,
    params(TenantQuery), security(("bearer" = [])),
    responses((status = 200, body = LeaseResponse), (status = "4XX", body = Problem)))]
pub async fn lease(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<Json<LeaseResponse>> {
    auth.require(Action::Work)?;
    let mut req: LeaseRequest = body.parse()?;
    req.tenant = requested_tenant(req.tenant, q.tenant)?;
    if req.queues.is_empty() {
        return Err(
            Error::invalid("queues is empty: name at least one queue to lease from").into(),
        );
    }
    if req.max_tasks == 0 {
        return Err(Error::invalid("max_tasks is 0: ask for at least 1 task").into());
    }
    for queue in &req.queues {
        validate_name("queue", queue)?;
    }
    let tenant = auth.tenant(req.tenant.as_deref())?;
    for queue in &req.queues {
        // 404 for a missing queue; one found before needs no store read.
        if !state.shared.leases.queue_known(&tenant, queue) {
            state.store.queue_get(&tenant, queue).await?;
            state.shared.leases.queue_found(&tenant, queue);
        }
    }
    let worker = state.worker(Some(&tenant), &req.worker_id).await?;
    let wait = req.wait.unwrap_or_default().min(MAX_LEASE_WAIT);
    let deadline = Instant::now() + wait;
    let params = TaskLease {
        tenant: tenant.clone(),
        queues: req.queues.clone(),
        worker_id: req.worker_id.clone(),
        worker_pool: worker.pool.clone(),
        // Burst-tier pools take only tasks of burstable jobs.
        burstable_only: state.shared.pools.is_burst_pool(&worker.pool),
        max: req.max_tasks.min(MAX_LEASE_BATCH),
        now: state.clock.now(),
    };
    let listeners: Vec<Arc<Notify>> = req
        .queues
        .iter()
        .map(|q| state.store.wakeups().listener(&tenant, q))
        .collect();
    let tasks = loop {
        // Arm the wake-ups before looking, so a submit between the look and the wait is seen.
        let mut armed: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = listeners
            .iter()
            .map(|n| {
                let mut notified = Box::pin(n.notified());
                notified.as_mut().enable();
                notified
            })
            .collect();
        // The worker may have said goodbye or begun draining since the call came in.
        let current = state.worker(Some(&tenant), &req.worker_id).await?;
        refuse_exited(&req.worker_id, &current)?;
        if current.draining {
            break Vec::new();
        }
        let now = state.clock.now();
        let tasks = state
            .store
            .task_lease(TaskLease {
                now,
                ..params.clone()
            })
            .await?;
        if !tasks.is_empty() || Instant::now() >= deadline || state.shared.shutdown.is_cancelled() {
            state
                .shared
                .leases
                .record(&tasks, &tenant, &worker.pool, now);
            break tasks;
        }
        // Retries and delayed tasks become due without a signal: look again now and then.
        let until = deadline.min(Instant::now() + state.config.lease_recheck_interval);
        let _waiting = state.metrics.lease_waiting();
        tokio::select! {
            _ = select_all(armed.iter_mut().map(|n| n.as_mut())) => {}
            _ = tokio::time::sleep_until(until) => {}
            _ = state.shared.shutdown.cancelled() => {}
        }
    };
    if !tasks.is_empty() {
        tracing::debug!(worker_id = %req.worker_id, leased = tasks.len(), "tasks leased");
    }
    Ok(Json(LeaseResponse { tasks }))
}

/// Extend leases. A lease of another tenant's task is left alone and answered as lost: the
/// caller's tenant is part of the store's condition.
#[utoipa::path(post, path = "/v1/tasks/heartbeat", tag = "work", request_body = HeartbeatRequest,
    security(("bearer" = [])),
    responses((status = 200, body = HeartbeatResponse), (status = "4XX", body = Problem)))]
pub async fn heartbeat(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> ApiResult<Json<HeartbeatResponse>> {
    auth.require(Action::Work)?;
    let req: HeartbeatRequest = body.parse()?;
    check_batch("leases", req.leases.len())?;
    let results = if req.leases.is_empty() {
        Vec::new()
    } else {
        state
            .store
            .task_heartbeat(TaskHeartbeat {
                tenant: auth.0.tenant.clone(),
                leases: req.leases,
                now: state.clock.now(),
            })
            .await?
    };
    Ok(Json(HeartbeatResponse { results }))
}

fn check_batch(what: &str, n: usize) -> Result<(), Error> {
    if n > MAX_REPORT_BATCH {
        return Err(Error::invalid(format!(
            "{n} {what} in one request is over the limit of {MAX_REPORT_BATCH}: send them in several requests"
        )));
    }
    Ok(())
}

/// What the metrics need about one applied report.
struct Report {
    task_id: TaskId,
    lease_token: String,
    outcome: Outcome,
}

/// Count applied reports in the metrics and forget their leases.
fn account(state: &AppState, reported: &[Report], results: &[Reported], now: Timestamp) {
    for (item, result) in reported.iter().zip(results) {
        if !result.ok() || result.task_id != item.task_id {
            continue;
        }
        let entry = state.shared.leases.get(item.task_id, &item.lease_token);
        let queue = entry.as_ref().map_or(UNKNOWN_QUEUE, |e| e.queue.as_str());
        state.metrics.outcome(queue, item.outcome, 1);
        if let Some(entry) = &entry {
            if matches!(
                item.outcome,
                Outcome::Succeeded | Outcome::Failed | Outcome::Dead
            ) {
                state
                    .metrics
                    .lease_held((now - entry.leased_at).to_std().unwrap_or_default());
            }
            let finished = matches!(
                item.outcome,
                Outcome::Succeeded | Outcome::Dead | Outcome::Cancelled
            );
            if finished && let Some(submitted) = job_submitted_at(&entry.job_id) {
                state
                    .metrics
                    .end_to_end((now - submitted).to_std().unwrap_or_default());
            }
        }
        state.shared.leases.remove(item.task_id, &item.lease_token);
    }
}

async fn complete_all(
    state: &AppState,
    tenant: Option<&str>,
    items: Vec<Completion>,
) -> Result<Vec<Reported>, Error> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let reported: Vec<Report> = items
        .iter()
        .map(|c| Report {
            task_id: c.task_id,
            lease_token: c.lease_token.clone(),
            outcome: Outcome::Succeeded,
        })
        .collect();
    let now = state.clock.now();
    let results = state
        .store
        .task_complete(TaskComplete {
            tenant: tenant.map(str::to_string),
            items,
            now,
        })
        .await?;
    account(state, &reported, &results, now);
    Ok(results)
}

async fn fail_all(
    state: &AppState,
    tenant: Option<&str>,
    items: Vec<Failure>,
) -> Result<Vec<Reported>, Error> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let reported: Vec<Report> = items
        .iter()
        .map(|f| Report {
            task_id: f.task_id,
            lease_token: f.lease_token.clone(),
            outcome: if f.retryable {
                Outcome::Failed
            } else {
                Outcome::Dead
            },
        })
        .collect();
    let now = state.clock.now();
    let results = state
        .store
        .task_fail(TaskFail {
            tenant: tenant.map(str::to_string),
            items,
            now,
        })
        .await?;
    account(state, &reported, &results, now);
    Ok(results)
}

async fn release_all(
    state: &AppState,
    tenant: Option<&str>,
    items: Vec<spillway_core::api::Release>,
) -> Result<Vec<Reported>, Error> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    // The pool of the worker that leased them, so the next lease prefers another pool.
    let worker_pool = items
        .iter()
        .find_map(|r| state.shared.leases.get(r.task_id, &r.lease_token))
        .map(|e| e.pool);
    let reported: Vec<Report> = items
        .iter()
        .map(|r| Report {
            task_id: r.task_id,
            lease_token: r.lease_token.clone(),
            outcome: match r.reason {
                ReleaseReason::Preempted => Outcome::Preempted,
                ReleaseReason::Cancelled => Outcome::Cancelled,
            },
        })
        .collect();
    let now = state.clock.now();
    let results = state
        .store
        .task_release(TaskRelease {
            tenant: tenant.map(str::to_string),
            items,
            worker_pool,
            now,
        })
        .await?;
    account(state, &reported, &results, now);
    Ok(results)
}

/// Apply a batched report. The store answers each item in its place: a task outside the
/// caller's tenant (part of the store's condition) is refused as not found, a stale lease as
/// not current. The caller has checked the role before parsing.
async fn batch<T, Fut>(
    what: &str,
    items: Vec<T>,
    apply: impl FnOnce(Vec<T>) -> Fut,
) -> ApiResult<Json<ReportResponse>>
where
    Fut: std::future::Future<Output = Result<Vec<Reported>, Error>>,
{
    check_batch(what, items.len())?;
    let results = apply(items)
        .await?
        .into_iter()
        .map(ReportResult::from)
        .collect();
    Ok(Json(ReportResponse { results }))
}

/// Report tasks done; each entry is applied only if its lease is current.
#[utoipa::path(post, path = "/v1/tasks/complete", tag = "work", request_body = CompleteRequest,
    security(("bearer" = [])),
    responses((status = 200, body = ReportResponse), (status = "4XX", body = Problem)))]
pub async fn complete(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> ApiResult<Json<ReportResponse>> {
    auth.require(Action::Work)?;
    let req: CompleteRequest = body.parse()?;
    batch("completions", req.completions, |items| {
        complete_all(&state, auth.0.tenant.as_deref(), items)
    })
    .await
}

/// Report tasks failed; each entry is applied only if its lease is current.
#[utoipa::path(post, path = "/v1/tasks/fail", tag = "work", request_body = FailRequest,
    security(("bearer" = [])),
    responses((status = 200, body = ReportResponse), (status = "4XX", body = Problem)))]
pub async fn fail(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> ApiResult<Json<ReportResponse>> {
    auth.require(Action::Work)?;
    let req: FailRequest = body.parse()?;
    batch("failures", req.failures, |items| {
        fail_all(&state, auth.0.tenant.as_deref(), items)
    })
    .await
}

/// Hand leases back (preempted or cancelled).
#[utoipa::path(post, path = "/v1/tasks/release", tag = "work", request_body = ReleaseRequest,
    security(("bearer" = [])),
    responses((status = 200, body = ReportResponse), (status = "4XX", body = Problem)))]
pub async fn release(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> ApiResult<Json<ReportResponse>> {
    auth.require(Action::Work)?;
    let req: ReleaseRequest = body.parse()?;
    batch("releases", req.releases, |items| {
        release_all(&state, auth.0.tenant.as_deref(), items)
    })
    .await
}

/// Turn the one result of a single-task report into 204, 404 when the task is not the
/// caller's tenant's, or 409 when its lease is not current.
fn single(id: TaskId, results: Vec<Reported>) -> ApiResult<StatusCode> {
    let Some(r) = results.into_iter().next() else {
        return Err(Error::internal(format!("store answered nothing for task {id}")).into());
    };
    let why = r.refusal().unwrap_or_default();
    match r.outcome {
        ReportOutcome::Applied => Ok(StatusCode::NO_CONTENT),
        ReportOutcome::NotFound => Err(Error::not_found(why).into()),
        ReportOutcome::NotCurrent => {
            Err(Error::conflict(format!("report on task {id} refused: {why}")).into())
        }
    }
}

fn same_task(path: TaskId, body: TaskId) -> Result<(), Error> {
    if path != body {
        return Err(Error::invalid(format!(
            "task_id {body} in the body does not match task {path} in the path"
        )));
    }
    Ok(())
}

/// Report one task done: 204, or 409 when the lease is stale.
#[utoipa::path(post, path = "/v1/tasks/{id}/complete", tag = "work", request_body = Completion,
    params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 204, description = "completed"), (status = 409, body = Problem),
              (status = "4XX", body = Problem)))]
pub async fn complete_one(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<TaskId>,
    body: JsonBody,
) -> ApiResult<StatusCode> {
    auth.require(Action::Work)?;
    let req: Completion = body.parse()?;
    same_task(id, req.task_id)?;
    single(
        id,
        complete_all(&state, auth.0.tenant.as_deref(), vec![req]).await?,
    )
}

/// Report one task failed: 204, or 409 when the lease is stale.
#[utoipa::path(post, path = "/v1/tasks/{id}/fail", tag = "work", request_body = Failure,
    params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 204, description = "failed"), (status = 409, body = Problem),
              (status = "4XX", body = Problem)))]
pub async fn fail_one(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<TaskId>,
    body: JsonBody,
) -> ApiResult<StatusCode> {
    auth.require(Action::Work)?;
    let req: Failure = body.parse()?;
    same_task(id, req.task_id)?;
    single(
        id,
        fail_all(&state, auth.0.tenant.as_deref(), vec![req]).await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_single_reports_are_conflicts_or_not_found() {
        let err = single(7, vec![Reported::not_current(7)]).expect_err("refusal accepted");
        assert_eq!(err.0.kind(), spillway_core::ErrorKind::Conflict);
        assert!(err.0.message().contains("not current"));
        let err = single(7, vec![Reported::not_found(7)]).expect_err("refusal accepted");
        assert_eq!(err.0.kind(), spillway_core::ErrorKind::NotFound);
        assert!(err.0.message().contains("task 7 not found"));
        let applied = vec![Reported::applied(7)];
        assert_eq!(single(7, applied).ok(), Some(StatusCode::NO_CONTENT));
    }
}
