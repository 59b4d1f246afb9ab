//! Workers: registration, listing, heartbeats and goodbyes.

use spillway_core::api::{RegisterWorker, WorkerHeartbeat};
use spillway_core::auth::Action;
use spillway_core::model::{Worker, WorkerState};
use spillway_core::{Error, Result};
use spillway_store::{WorkerBeat, WorkerRegister};

use super::Caller;
use crate::ids::new_worker_id;
use crate::state::{AppState, WorkerRef};
use spillway_store::{WorkerExit, WorkerList};

/// Register a worker in the caller's tenant; the answer carries the id it leases with.
pub async fn register(state: &AppState, caller: Caller<'_>, req: RegisterWorker) -> Result<Worker> {
    caller.require(Action::Work)?;
    req.validate()?;
    let tenant = caller.tenant()?;
    for queue in &req.queues {
        // A queue-scoped worker serves only its queues.
        caller.principal.require_queue(&tenant, queue)?;
    }
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
        .pools()
        .worker_registered(&caller.principal.token_id, &worker.id);
    tracing::info!(worker_id = %worker.id, tenant = %worker.tenant, pool = %worker.pool, "worker registered");
    Ok(worker)
}

/// Workers the caller can see.
pub async fn list(state: &AppState, caller: Caller<'_>) -> Result<Vec<Worker>> {
    caller.require(Action::Read)?;
    let scope = caller.scope()?;
    state
        .store
        .worker_list(WorkerList {
            tenant: scope,
            now: state.clock.now(),
        })
        .await
}

/// A worker's sign of life; the answer says whether it should drain.
pub async fn heartbeat(
    state: &AppState,
    caller: Caller<'_>,
    id: &str,
    beat: WorkerHeartbeat,
) -> Result<bool> {
    caller.require(Action::Work)?;
    let known = state.worker(caller.principal.tenant.as_deref(), id).await?;
    refuse_exited(id, &known)?;
    let worker = state
        .store
        .worker_heartbeat(WorkerBeat {
            id: id.to_string(),
            running: beat.running,
            draining: beat.draining,
            now: state.clock.now(),
        })
        .await?;
    // A waiting lease call of a draining worker answers at its next look.
    state.shared.workers.insert(
        id,
        WorkerRef {
            exited: worker.state == WorkerState::Exited,
            draining: worker.state == WorkerState::Draining,
            ..known
        },
    );
    Ok(worker.state == WorkerState::Draining)
}

/// Conflict when the worker said goodbye: an exited worker's id is spent, and the worker must
/// register again (the runtime does so on this answer).
pub(crate) fn refuse_exited(id: &str, worker: &WorkerRef) -> Result<()> {
    if worker.exited {
        return Err(Error::conflict(format!(
            "worker {id:?} has exited: register again with POST /v1/workers and use the new id"
        )));
    }
    Ok(())
}

/// A worker says goodbye.
pub async fn exit(state: &AppState, caller: Caller<'_>, id: &str) -> Result<()> {
    caller.require(Action::Work)?;
    state.worker(caller.principal.tenant.as_deref(), id).await?;
    state
        .store
        .worker_exit(WorkerExit {
            id: id.to_string(),
            now: state.clock.now(),
        })
        .await?;
    state.shared.workers.remove(id);
    tracing::info!(worker_id = %id, "worker exited");
    Ok(())
}
