//! The worker's side of a task, once: lease (long-poll), heartbeat, complete, fail, release.
//!
//! The caller's tenant is part of every store condition here: a heartbeat or report on
//! another tenant's task changes nothing and is answered as lost or not found.

use spillway_core::api::{
    Completion, Failure, HeartbeatResult, LeaseRef, LeaseRequest, LeasedTask, MAX_LEASE_BATCH,
    MAX_LEASE_WAIT, Release, ReleaseReason,
};
use spillway_core::auth::Action;
use spillway_core::{Error, Result, TaskId, Timestamp};
use spillway_store::{
    ReportOutcome, Reported, Takes, TaskComplete, TaskFail, TaskHeartbeat, TaskLease, TaskRelease,
    Waiter,
};
use tokio::time::Instant;

use super::Caller;
use super::workers::refuse_exited;
use crate::admission::Ticket;
use crate::ids::job_submitted_at;
use crate::metrics::{Outcome, UNKNOWN_QUEUE};
use crate::state::AppState;
use crate::trace;

/// Most leases one heartbeat or report may carry.
const MAX_REPORT_BATCH: usize = MAX_LEASE_BATCH as usize;

/// Lease up to `req.max_tasks` tasks of `req.queues`, waiting up to `req.wait` for some to
/// arrive (woken by a submit, rechecked now and then for retries and delayed tasks). While it
/// waits the call is parked: `ticket`'s in-flight permit is given back (see
/// [`crate::admission`]), and taken again before the store is asked once more.
pub async fn lease(
    state: &AppState,
    caller: Caller<'_>,
    req: LeaseRequest,
    ticket: &Ticket,
) -> Result<Vec<LeasedTask>> {
    caller.require(Action::Work)?;
    req.validate()?;
    let tenant = caller.tenant()?;
    for queue in &req.queues {
        // A queue-scoped worker leases only from its queues, and is told which they are.
        caller.principal.require_queue(&tenant, queue)?;
    }
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
    // A burst pool takes only burstable jobs' tasks, so it cannot count for every new task.
    let takes = if params.burstable_only {
        Takes::Some
    } else {
        Takes::Any(params.max)
    };
    // The waiter of the last wait, once woken: its wake-up is used only by a lease that begins
    // after it. Dropped unused (the call leaves first), it wakes another waiter in its place.
    let mut woken: Option<Waiter> = None;
    let tasks = loop {
        // Registered before looking, so a commit between the look and the wait wakes this
        // call; one new task wakes one waiting call, not all of them.
        let waiter = state.store.wakeups().waiter(&tenant, &req.queues, takes);
        // The worker may have said goodbye or begun draining since the call came in.
        let current = state.worker(Some(&tenant), &req.worker_id).await?;
        refuse_exited(&req.worker_id, &current)?;
        if current.draining {
            break Vec::new();
        }
        if let Some(used) = woken.take() {
            used.consume();
        }
        let now = state.clock.now();
        let started = std::time::SystemTime::now();
        let mut tasks = state
            .store
            .task_lease(TaskLease {
                now,
                ..params.clone()
            })
            .await?;
        for task in &mut tasks {
            task.lease_ms = (task.lease_expires_at - now)
                .num_milliseconds()
                .try_into()
                .ok();
        }
        if !tasks.is_empty() || Instant::now() >= deadline || state.shared.shutdown.is_cancelled() {
            state
                .shared
                .leases
                .record(&tasks, &tenant, &worker.pool, now);
            let leaser = trace::Leaser {
                tenant: &tenant,
                worker_id: &req.worker_id,
                pool: &worker.pool,
            };
            trace::leased(&tasks, &leaser, started);
            break tasks;
        }
        // Retries and delayed tasks become due without a signal: look again now and then.
        let until = deadline.min(Instant::now() + state.config.lease_recheck_interval);
        let _waiting = state.metrics.lease_waiting();
        let parked = ticket.park()?;
        tokio::select! {
            () = waiter.woken() => state.metrics.lease_woken(),
            () = tokio::time::sleep_until(until) => {}
            () = state.shared.shutdown.cancelled() => {}
        }
        woken = Some(waiter);
        // In flight again before the store is asked; none free by the deadline (or shutting
        // down while waiting for one): answer with nothing, as a long-poll that timed out.
        let resumed = tokio::select! {
            biased;
            resumed = parked.resume(deadline) => resumed,
            _ = state.shared.shutdown.cancelled() => false,
        };
        if !resumed {
            break Vec::new();
        }
    };
    if !tasks.is_empty() {
        tracing::debug!(worker_id = %req.worker_id, leased = tasks.len(), "tasks leased");
    }
    Ok(tasks)
}

/// Extend the caller's leases; each answer says whether the lease is still held and whether
/// its job was cancelled.
pub async fn heartbeat(
    state: &AppState,
    caller: Caller<'_>,
    leases: Vec<LeaseRef>,
) -> Result<Vec<HeartbeatResult>> {
    caller.require(Action::Work)?;
    check_batch("leases", leases.len())?;
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let results = state
        .store
        .task_heartbeat(TaskHeartbeat {
            tenant: caller.principal.tenant.clone(),
            leases: leases.clone(),
            now: state.clock.now(),
        })
        .await?;
    // Entries of the ledger go once their lease expired: keep the extended ones.
    for (lease, result) in leases.iter().zip(&results) {
        if let Some(expires_at) = result.lease_expires_at
            && result.task_id == lease.task_id
        {
            state
                .shared
                .leases
                .extended(lease.task_id, &lease.lease_token, expires_at);
        }
    }
    Ok(results)
}

fn check_batch(what: &str, n: usize) -> Result<()> {
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

/// The shared part of every batched report: the role and batch-size checks, what the metrics
/// need of each item, one store call with the caller's tenant and the clock's `now`, then the
/// accounting of the applied ones.
async fn report<T, Fut>(
    state: &AppState,
    caller: Caller<'_>,
    what: &str,
    items: Vec<T>,
    describe: impl Fn(&T) -> Report,
    write: impl FnOnce(Option<String>, Vec<T>, Timestamp) -> Fut,
) -> Result<Vec<Reported>>
where
    Fut: std::future::Future<Output = Result<Vec<Reported>>>,
{
    caller.require(Action::Work)?;
    check_batch(what, items.len())?;
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let reported: Vec<Report> = items.iter().map(describe).collect();
    let now = state.clock.now();
    let results = write(caller.principal.tenant.clone(), items, now).await?;
    account(state, &reported, &results, now);
    Ok(results)
}

/// Report tasks done; each is applied only if its lease is current and it is a task of the
/// caller's tenant, and answered in its place. A log tail over the limit is cut to its end.
pub async fn complete(
    state: &AppState,
    caller: Caller<'_>,
    mut items: Vec<Completion>,
) -> Result<Vec<Reported>> {
    items.iter_mut().for_each(Completion::cap_texts);
    let describe = |c: &Completion| Report {
        task_id: c.task_id,
        lease_token: c.lease_token.clone(),
        outcome: Outcome::Succeeded,
    };
    report(
        state,
        caller,
        "completions",
        items,
        describe,
        |tenant, items, now| {
            state
                .store
                .task_complete(TaskComplete { tenant, items, now })
        },
    )
    .await
}

/// Report tasks failed (retried with backoff while attempts remain, else dead); each is
/// applied only if its lease is current and it is a task of the caller's tenant. A log tail
/// or error message over its limit is cut (the tail keeps its end, the error its start).
pub async fn fail(
    state: &AppState,
    caller: Caller<'_>,
    mut items: Vec<Failure>,
) -> Result<Vec<Reported>> {
    items.iter_mut().for_each(Failure::cap_texts);
    let describe = |f: &Failure| Report {
        task_id: f.task_id,
        lease_token: f.lease_token.clone(),
        outcome: if f.retryable {
            Outcome::Failed
        } else {
            Outcome::Dead
        },
    };
    report(
        state,
        caller,
        "failures",
        items,
        describe,
        |tenant, items, now| state.store.task_fail(TaskFail { tenant, items, now }),
    )
    .await
}

/// Hand leases back (preempted or cancelled) without counting a failure. A log tail over the
/// limit is cut to its end.
pub async fn release(
    state: &AppState,
    caller: Caller<'_>,
    mut items: Vec<Release>,
) -> Result<Vec<Reported>> {
    items.iter_mut().for_each(Release::cap_texts);
    let describe = |r: &Release| Report {
        task_id: r.task_id,
        lease_token: r.lease_token.clone(),
        outcome: match r.reason {
            ReleaseReason::Preempted => Outcome::Preempted,
            ReleaseReason::Cancelled => Outcome::Cancelled,
        },
    };
    report(
        state,
        caller,
        "releases",
        items,
        describe,
        |tenant, items, now| {
            // The pool of the worker that leased them, so the next lease prefers another pool.
            let worker_pool = items
                .iter()
                .find_map(|r| state.shared.leases.get(r.task_id, &r.lease_token))
                .map(|e| e.pool);
            state.store.task_release(TaskRelease {
                tenant,
                items,
                worker_pool,
                now,
            })
        },
    )
    .await
}

/// The one answer of a single-task report as a result: not found when the task is not the
/// caller's tenant's, a conflict when its lease is not current.
pub fn single(id: TaskId, results: Vec<Reported>) -> Result<()> {
    let Some(r) = results.into_iter().next() else {
        return Err(Error::internal(format!(
            "store answered nothing for task {id}"
        )));
    };
    let why = r.refusal().unwrap_or_default();
    match r.outcome {
        ReportOutcome::Applied => Ok(()),
        ReportOutcome::NotFound => Err(Error::not_found(why)),
        ReportOutcome::NotCurrent => Err(Error::conflict(format!(
            "report on task {id} refused: {why}"
        ))),
    }
}

/// Refuse a single-task report whose body names another task than its path.
pub fn same_task(path: TaskId, body: TaskId) -> Result<()> {
    if path != body {
        return Err(Error::invalid(format!(
            "task_id {body} in the body does not match task {path} in the path"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_single_reports_are_conflicts_or_not_found() {
        let err = single(7, vec![Reported::not_current(7)]).expect_err("refusal accepted");
        assert_eq!(err.kind(), spillway_core::ErrorKind::Conflict);
        assert!(err.message().contains("not current"));
        let err = single(7, vec![Reported::not_found(7)]).expect_err("refusal accepted");
        assert_eq!(err.kind(), spillway_core::ErrorKind::NotFound);
        assert!(err.message().contains("task 7 not found"));
        single(7, vec![Reported::applied(7)]).expect("applied");
    }
}
