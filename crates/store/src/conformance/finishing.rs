//! Cases for finished jobs: listed by their final state, reopened by a requeue, and removed
//! (with expired leases) in bounded steps however big the job.

use spillway_core::api::Failure;
use spillway_core::state::JobState;

use super::{QUEUE, TENANT, after, completions, job, lease, must, setup, submit, t0};
use crate::{
    DeadRequeue, DynStore, JobCancel, JobList, JobRetry, LeaseReap, RetentionSweep, TaskComplete,
    TaskFail,
};

/// The ids of [`TENANT`]'s jobs in `state`, newest first, over every page.
async fn listed(store: &DynStore, state: JobState) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = must(
            "job_list",
            store
                .job_list(JobList {
                    tenant: Some(TENANT.into()),
                    state: Some(state),
                    limit: 2,
                    cursor,
                    ..JobList::default()
                })
                .await,
        );
        ids.extend(page.items.iter().map(|j| {
            assert_eq!(j.state, state, "a listed job is in the state asked for");
            j.id.clone()
        }));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

/// Complete (or with `fail`, fail for good) every task leasable now.
async fn finish_all(store: &DynStore, fail: bool, now: spillway_core::Timestamp) {
    loop {
        let got = lease(store, QUEUE, 500, now).await;
        if got.is_empty() {
            return;
        }
        if fail {
            let items = got
                .into_iter()
                .map(|t| Failure {
                    task_id: t.task_id,
                    lease_token: t.lease_token,
                    error: "no".into(),
                    exit_code: Some(1),
                    retryable: false,
                    log_tail: String::new(),
                })
                .collect();
            must(
                "task_fail",
                store
                    .task_fail(TaskFail {
                        tenant: None,
                        items,
                        now,
                    })
                    .await,
            );
        } else {
            must(
                "task_complete",
                store
                    .task_complete(TaskComplete {
                        tenant: None,
                        items: completions(got),
                        now,
                    })
                    .await,
            );
        }
    }
}

/// Jobs listed by state are exactly the jobs in it: finished ones by their final state (kept
/// on the job), unfinished ones as queued or running; a retried job and one whose dead letter
/// is requeued are unfinished again.
pub async fn jobs_are_listed_by_their_final_state_and_reopened_by_requeues(store: DynStore) {
    setup(&store).await;
    let now = after(t0(), 1);
    let ok = submit(&store, job(TENANT, QUEUE, 3, t0())).await;
    finish_all(&store, false, now).await;
    let failed = submit(&store, job(TENANT, QUEUE, 2, t0())).await;
    finish_all(&store, true, now).await;
    let cancelled = submit(&store, job(TENANT, QUEUE, 2, t0())).await;
    must(
        "job_cancel",
        store
            .job_cancel(JobCancel {
                tenant: None,
                id: cancelled.id.clone(),
                now,
            })
            .await,
    );
    let failed_too = submit(&store, job(TENANT, QUEUE, 1, t0())).await;
    finish_all(&store, true, now).await;
    let running = submit(&store, job(TENANT, QUEUE, 2, t0())).await;
    let one = lease(&store, QUEUE, 1, now).await;
    assert_eq!(one.len(), 1);
    let queued = submit(&store, job(TENANT, QUEUE, 2, t0())).await;

    assert_eq!(
        listed(&store, JobState::Succeeded).await,
        vec![ok.id.clone()]
    );
    assert_eq!(
        listed(&store, JobState::Failed).await,
        vec![failed_too.id.clone(), failed.id.clone()]
    );
    assert_eq!(
        listed(&store, JobState::Cancelled).await,
        vec![cancelled.id.clone()]
    );
    assert_eq!(
        listed(&store, JobState::Running).await,
        vec![running.id.clone()]
    );
    assert_eq!(
        listed(&store, JobState::Queued).await,
        vec![queued.id.clone()]
    );

    // Retried, the cancelled job waits again; its dead letter requeued, a failed one too.
    let n = must(
        "job_retry",
        store
            .job_retry(JobRetry {
                tenant: None,
                id: cancelled.id.clone(),
                now,
            })
            .await,
    );
    assert_eq!(n, 2);
    let dead = must(
        "task_list",
        store
            .task_list(crate::TaskList {
                job_id: Some(failed_too.id.clone()),
                limit: 10,
                ..crate::TaskList::default()
            })
            .await,
    );
    let n = must(
        "dead_requeue",
        store
            .dead_requeue(DeadRequeue {
                tenant: None,
                task_ids: dead.items.iter().map(|t| t.id).collect(),
                queue: None,
                now,
            })
            .await,
    );
    assert_eq!(n, 1);
    assert!(listed(&store, JobState::Cancelled).await.is_empty());
    assert_eq!(
        listed(&store, JobState::Failed).await,
        vec![failed.id.clone()]
    );
    assert_eq!(
        listed(&store, JobState::Queued).await,
        vec![
            queued.id.clone(),
            failed_too.id.clone(),
            cancelled.id.clone()
        ]
    );
    // And finished again when their tasks end.
    finish_all(&store, false, now).await;
    must(
        "task_complete",
        store
            .task_complete(TaskComplete {
                tenant: None,
                items: completions(one),
                now,
            })
            .await,
    );
    assert_eq!(
        listed(&store, JobState::Failed).await,
        vec![failed.id.clone()]
    );
    assert_eq!(listed(&store, JobState::Succeeded).await.len(), 5);
    assert!(listed(&store, JobState::Running).await.is_empty());
    assert!(listed(&store, JobState::Queued).await.is_empty());
}

/// Tasks in one job: more than one bounded step of retention deletes, and more leases than
/// one step of the reaper fails.
const BIG_JOB: usize = 2_600;

/// A job bigger than one step of the work is still handled whole: every expired lease is
/// reaped by one call, and retention deletes the whole job (every task) in one sweep.
pub async fn reaper_and_retention_handle_jobs_bigger_than_one_step(store: DynStore) {
    setup(&store).await;
    let big = submit(&store, job(TENANT, QUEUE, BIG_JOB, t0())).await;
    let mut held = 0;
    loop {
        let got = lease(&store, QUEUE, 1000, t0()).await;
        if got.is_empty() {
            break;
        }
        held += got.len();
    }
    assert_eq!(held, BIG_JOB);
    // Leases last 30 s (test settings); the queue allows 3 attempts.
    let reaped = must(
        "lease_reap",
        store
            .lease_reap(LeaseReap {
                now: after(t0(), 60),
            })
            .await,
    );
    assert_eq!(
        reaped, BIG_JOB as u64,
        "one reap call fails every expired lease"
    );
    // Retrying after the backoff: lease again and complete everything.
    finish_all(&store, false, after(t0(), 1000)).await;
    let job = must("job_get", store.job_get(None, &big.id).await);
    assert_eq!(job.state, JobState::Succeeded);
    let swept = must(
        "retention_sweep",
        store
            .retention_sweep(RetentionSweep {
                now: after(t0(), 1000 + 3600 + 1),
                limit: 10,
            })
            .await,
    );
    assert_eq!(swept.len(), 1, "the finished job is past retention");
    assert_eq!(swept[0].1, big.id);
    let left = must(
        "task_list",
        store
            .task_list(crate::TaskList {
                job_id: Some(big.id.clone()),
                limit: 10,
                ..crate::TaskList::default()
            })
            .await,
    );
    assert!(left.items.is_empty(), "every task of the job is gone");
    let err = store.job_get(None, &big.id).await;
    assert!(err.is_err(), "the job is gone");
}
