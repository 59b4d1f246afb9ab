//! Worker registration, heartbeats and goodbyes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use spillway_core::Error;
use spillway_core::api::{
    Problem, RegisterWorker, WorkerHeartbeat, WorkerHeartbeatReply, WorkerList,
};
use spillway_core::auth::Action;
use spillway_core::model::{Worker, WorkerState};
use spillway_core::names::validate_name;
use spillway_store::{WorkerBeat, WorkerRegister};

use crate::auth::{Auth, requested_tenant};
use crate::extract::{JsonBody, Path, Query};
use crate::ids::new_worker_id;
use crate::problem::ApiResult;
use crate::routes::queues::TenantQuery;
use crate::state::{AppState, WorkerRef};

/// Most tasks one worker may run at once.
const MAX_CONCURRENCY: u32 = 4096;
/// Longest host name accepted.
const MAX_HOSTNAME: usize = 255;

/// Register a worker; the answer carries the id it leases with.
#[utoipa::path(post, path = "/v1/workers", tag = "work", request_body = RegisterWorker,
    params(TenantQuery), security(("bearer" = [])),
    responses((status = 201, body = Worker), (status = "4XX", body = Problem)))]
pub async fn register(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<TenantQuery>,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<Worker>)> {
    auth.require(Action::Work)?;
    let mut req: RegisterWorker = body.parse()?;
    req.tenant = requested_tenant(req.tenant, q.tenant)?;
    validate_name("pool", &req.pool)?;
    if req.queues.is_empty() {
        return Err(Error::invalid("queues is empty: name at least one queue to serve").into());
    }
    for queue in &req.queues {
        validate_name("queue", queue)?;
    }
    if req.hostname.is_empty() || req.hostname.len() > MAX_HOSTNAME {
        return Err(
            Error::invalid(format!("hostname must be 1 to {MAX_HOSTNAME} characters")).into(),
        );
    }
    if !(1..=MAX_CONCURRENCY).contains(&req.concurrency) {
        return Err(Error::invalid(format!(
            "concurrency {} is out of range: use 1 to {MAX_CONCURRENCY}",
            req.concurrency
        ))
        .into());
    }
    let tenant = auth.tenant(req.tenant.as_deref())?;
    let worker = state
        .store
        .worker_register(WorkerRegister {
            id: new_worker_id(),
            tenant: tenant.clone(),
            pool: req.pool.clone(),
            hostname: req.hostname,
            queues: req.queues,
            concurrency: req.concurrency,
            now: state.clock.now(),
        })
        .await?;
    state.shared.workers.insert(
        &worker.id,
        WorkerRef {
            tenant,
            pool: req.pool,
            exited: false,
            draining: false,
        },
    );
    // A worker started by the local autoscaler provider is known by its token.
    state
        .shared
        .pools
        .worker_registered(&auth.0.token_id, &worker.id);
    tracing::info!(worker_id = %worker.id, tenant = %worker.tenant, pool = %worker.pool, "worker registered");
    Ok((StatusCode::CREATED, Json(worker)))
}

/// Workers the caller can see.
#[utoipa::path(get, path = "/v1/workers", tag = "work", params(TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = WorkerList), (status = "4XX", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<WorkerList>> {
    auth.require(Action::Read)?;
    let scope = auth.scope(q.tenant.as_deref())?;
    let workers = state
        .store
        .worker_list(scope.as_deref(), state.clock.now())
        .await?;
    Ok(Json(WorkerList { workers }))
}

/// A worker's sign of life; the answer tells it whether to drain.
#[utoipa::path(post, path = "/v1/workers/{id}/heartbeat", tag = "work", request_body = WorkerHeartbeat,
    params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = WorkerHeartbeatReply), (status = "4XX", body = Problem)))]
pub async fn heartbeat(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<WorkerHeartbeatReply>> {
    auth.require(Action::Work)?;
    let req: WorkerHeartbeat = body.parse()?;
    let known = state.worker(auth.0.tenant.as_deref(), &id).await?;
    refuse_exited(&id, &known)?;
    let worker = state
        .store
        .worker_heartbeat(WorkerBeat {
            id: id.clone(),
            running: req.running,
            draining: req.draining,
            now: state.clock.now(),
        })
        .await?;
    // A waiting lease call of a draining worker answers at its next look.
    state.shared.workers.insert(
        &id,
        WorkerRef {
            exited: worker.state == WorkerState::Exited,
            draining: worker.state == WorkerState::Draining,
            ..known
        },
    );
    Ok(Json(WorkerHeartbeatReply {
        drain: worker.state == WorkerState::Draining,
    }))
}

/// Conflict when the worker said goodbye: an exited worker's id is spent, and the worker must
/// register again (the runtime does so on this answer).
pub(crate) fn refuse_exited(id: &str, worker: &WorkerRef) -> Result<(), Error> {
    if worker.exited {
        return Err(Error::conflict(format!(
            "worker {id:?} has exited: register again with POST /v1/workers and use the new id"
        )));
    }
    Ok(())
}

/// A worker says goodbye.
#[utoipa::path(delete, path = "/v1/workers/{id}", tag = "work", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 204, description = "marked exited"), (status = "4XX", body = Problem)))]
pub async fn exit(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require(Action::Work)?;
    state.worker(auth.0.tenant.as_deref(), &id).await?;
    state.store.worker_exit(&id, state.clock.now()).await?;
    state.shared.workers.remove(&id);
    tracing::info!(worker_id = %id, "worker exited");
    Ok(StatusCode::NO_CONTENT)
}
