//! Cases for submitting, cancelling, retrying and removing jobs.

use spillway_core::ErrorKind;
use spillway_core::api::{LeaseRef, LeaseStatus, Release, ReleaseReason};
use spillway_core::state::{JobState, TaskState};

use super::ops::{complete_ok, fail_ok};
use super::{
    OTHER, QUEUE, TENANT, after, job, lease, must, must_fail, setup, setup_queue, submit, t0,
    test_settings,
};
use crate::{DynStore, TaskHeartbeat, TaskList, TaskRelease};
use crate::{JobCancel, JobRetry, RetentionSweep};

/// All tasks of one job, in id order.
pub(crate) async fn tasks_of(store: &DynStore, job_id: &str) -> Vec<spillway_core::model::Task> {
    let page = must(
        "task_list",
        store
            .task_list(TaskList {
                tenant: Some(TENANT.into()),
                job_id: Some(job_id.into()),
                limit: 1000,
                ..Default::default()
            })
            .await,
    );
    assert!(page.next_cursor.is_none(), "test jobs fit one page");
    page.items
}

/// A submit stores the job and one task per payload, scheduled or available by `run_at`.
pub async fn submit_creates_tasks(store: DynStore) {
    setup(&store).await;
    let mut params = job(TENANT, QUEUE, 3, t0());
    params.labels.insert("team".into(), "ml".into());
    params.payloads[1] = None;
    params.priority = 5;
    let j = submit(&store, params.clone()).await;
    assert_eq!(j.id, params.id);
    assert_eq!((j.tenant.as_str(), j.queue.as_str()), (TENANT, QUEUE));
    assert_eq!(
        (j.task_count, j.counts.available, j.counts.total()),
        (3, 3, 3)
    );
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(j.labels.get("team").map(String::as_str), Some("ml"));
    assert_eq!(j.spec, params.spec);
    assert_eq!(j.priority, 5);
    assert_eq!(j.created_at, t0());
    assert!(!j.cancel_requested && j.finished_at.is_none());
    assert_eq!(must("job_get", store.job_get(Some(TENANT), &j.id).await), j);

    let tasks = tasks_of(&store, &j.id).await;
    let indexes: Vec<u32> = tasks.iter().map(|t| t.index).collect();
    assert_eq!(indexes, vec![0, 1, 2], "task ids ascend with index");
    for t in &tasks {
        assert_eq!(t.state, TaskState::Available);
        assert_eq!(t.payload, params.payloads[t.index as usize]);
        assert_eq!((t.attempt, t.failures, t.preemptions), (0, 0, 0));
        assert_eq!(
            t.max_attempts,
            test_settings().max_attempts,
            "max_attempts comes from the queue"
        );
        assert_eq!((t.priority, t.run_at, t.created_at), (5, t0(), t0()));
        assert_eq!(t.job_id, j.id);
        assert!(t.lease.is_none() && t.finished_at.is_none());
    }

    let mut later = job(TENANT, QUEUE, 2, t0());
    later.run_at = after(t0(), 60);
    let j2 = submit(&store, later).await;
    assert_eq!((j2.counts.scheduled, j2.state), (2, JobState::Queued));
    assert!(
        tasks_of(&store, &j2.id)
            .await
            .iter()
            .all(|t| t.state == TaskState::Scheduled && t.run_at == after(t0(), 60))
    );

    must_fail(
        "job_submit to an unknown queue",
        ErrorKind::NotFound,
        store.job_submit(job(TENANT, "nope", 1, t0())).await,
    );
    must_fail(
        "job_get unknown",
        ErrorKind::NotFound,
        store
            .job_get(None, "00000000-0000-7000-8000-000000000000")
            .await,
    );
}

/// A second submit with the same key returns the first job and creates nothing.
pub async fn submit_is_idempotent_by_key(store: DynStore) {
    setup(&store).await;
    setup_queue(&store, OTHER, QUEUE, test_settings()).await;
    let mut first = job(TENANT, QUEUE, 2, t0());
    first.idempotency_key = Some("key-1".into());
    let j1 = submit(&store, first).await;

    let mut again = job(TENANT, QUEUE, 5, after(t0(), 1));
    again.idempotency_key = Some("key-1".into());
    let (j2, created) = must("job_submit again", store.job_submit(again).await);
    assert!(!created, "the same key must not create a second job");
    assert_eq!(j2.id, j1.id);
    assert_eq!(j2.task_count, 2);
    let all = must(
        "task_list",
        store
            .task_list(TaskList {
                tenant: Some(TENANT.into()),
                limit: 1000,
                ..Default::default()
            })
            .await,
    );
    assert_eq!(
        all.items.len(),
        2,
        "no tasks were added by the repeated submit"
    );

    let mut elsewhere = job(OTHER, QUEUE, 1, t0());
    elsewhere.idempotency_key = Some("key-1".into());
    let (j3, created) = must("job_submit other tenant", store.job_submit(elsewhere).await);
    assert!(created, "idempotency keys are per tenant");
    assert_ne!(j3.id, j1.id);
}

/// Cancel: waiting tasks become cancelled, leased ones are asked to stop.
pub async fn cancel_stops_waiting_and_flags_leased_tasks(store: DynStore) {
    setup(&store).await;
    let j = submit(&store, job(TENANT, QUEUE, 3, t0())).await;
    let leased = lease(&store, QUEUE, 1, t0()).await;
    assert_eq!(leased.len(), 1);
    let now = after(t0(), 5);
    let c = must(
        "job_cancel",
        store
            .job_cancel(JobCancel {
                tenant: Some(TENANT.into()),
                id: j.id.clone(),
                now,
            })
            .await,
    );
    assert!(c.cancel_requested);
    assert_eq!((c.counts.cancelled, c.counts.leased), (2, 1));
    assert_eq!(c.state, JobState::Running, "a leased task still runs");
    for t in tasks_of(&store, &j.id).await {
        if t.id == leased[0].task_id {
            assert_eq!(t.state, TaskState::Leased);
            assert!(t.cancel_requested);
        } else {
            assert_eq!(t.state, TaskState::Cancelled);
            assert_eq!(t.finished_at, Some(now));
        }
    }
    assert!(
        lease(&store, QUEUE, 10, now).await.is_empty(),
        "cancelled tasks are never leased"
    );

    let lr = LeaseRef {
        task_id: leased[0].task_id,
        lease_token: leased[0].lease_token.clone(),
    };
    let hb = must(
        "task_heartbeat",
        store
            .task_heartbeat(TaskHeartbeat {
                tenant: None,
                leases: vec![lr],
                now,
            })
            .await,
    );
    assert_eq!(hb[0].status, LeaseStatus::CancelRequested);

    let rel = must(
        "task_release cancelled",
        store
            .task_release(TaskRelease {
                tenant: None,
                items: vec![Release {
                    task_id: leased[0].task_id,
                    lease_token: leased[0].lease_token.clone(),
                    reason: ReleaseReason::Cancelled,
                    log_tail: "stopped".into(),
                }],
                worker_pool: Some("pool-a".into()),
                now: after(now, 1),
            })
            .await,
    );
    assert!(rel[0].ok(), "{:?}", rel[0].outcome);
    let done = must("job_get", store.job_get(Some(TENANT), &j.id).await);
    assert_eq!(
        (done.counts.cancelled, done.state),
        (3, JobState::Cancelled)
    );
    assert_eq!(done.finished_at, Some(after(now, 1)));
    let attempts = must(
        "task_attempts",
        store.task_attempts(Some(TENANT), leased[0].task_id).await,
    );
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        attempts[0].outcome,
        spillway_core::state::AttemptOutcome::Cancelled
    );
    assert_eq!(attempts[0].log_tail, "stopped");
}

/// Retry a job: its dead and cancelled tasks are requeued with failures reset.
pub async fn job_retry_requeues_dead_and_cancelled(store: DynStore) {
    setup(&store).await;
    let j = submit(&store, job(TENANT, QUEUE, 4, t0())).await;
    let leased = lease(&store, QUEUE, 2, t0()).await;
    complete_ok(&store, &leased[0], t0()).await;
    fail_ok(&store, &leased[1], false, t0()).await;
    must(
        "job_cancel",
        store
            .job_cancel(JobCancel {
                tenant: Some(TENANT.into()),
                id: j.id.clone(),
                now: t0(),
            })
            .await,
    );
    let j = must("job_get", store.job_get(Some(TENANT), &j.id).await);
    assert_eq!(
        (j.counts.succeeded, j.counts.dead, j.counts.cancelled),
        (1, 1, 2)
    );

    let now = after(t0(), 10);
    assert_eq!(
        must(
            "job_retry",
            store
                .job_retry(JobRetry {
                    tenant: Some(TENANT.into()),
                    id: j.id.clone(),
                    now
                })
                .await
        ),
        3
    );
    let j = must("job_get", store.job_get(Some(TENANT), &j.id).await);
    assert_eq!((j.counts.succeeded, j.counts.available), (1, 3));
    assert!(!j.cancel_requested, "retry lifts the cancellation");
    assert!(j.finished_at.is_none());
    for t in tasks_of(&store, &j.id).await {
        if t.state == TaskState::Available {
            assert_eq!(t.failures, 0);
            assert!(t.finished_at.is_none());
        }
    }
    assert_eq!(lease(&store, QUEUE, 10, now).await.len(), 3);
    must_fail(
        "job_retry of another tenant's job",
        ErrorKind::NotFound,
        store
            .job_retry(JobRetry {
                tenant: Some(OTHER.into()),
                id: j.id.clone(),
                now,
            })
            .await,
    );
}

/// Retention deletes finished jobs once their queue's retention has passed, and nothing else.
pub async fn retention_sweep_deletes_only_expired_finished_jobs(store: DynStore) {
    setup(&store).await;
    let mut long = test_settings();
    long.retention = std::time::Duration::from_secs(10 * 3600);
    setup_queue(&store, TENANT, "long", long).await;

    let mut done = job(TENANT, QUEUE, 1, t0());
    done.has_inputs = true;
    let done = submit(&store, done).await;
    let unfinished = submit(&store, job(TENANT, QUEUE, 2, t0())).await;
    let kept = submit(&store, job(TENANT, "long", 1, t0())).await;

    let a = lease(&store, QUEUE, 1, t0()).await;
    assert_eq!(a[0].job_id, done.id);
    complete_ok(&store, &a[0], after(t0(), 1)).await;
    let b = lease(&store, "long", 1, t0()).await;
    complete_ok(&store, &b[0], after(t0(), 1)).await;
    // One task of `unfinished` finishes; the job does not.
    let c = lease(&store, QUEUE, 1, t0()).await;
    complete_ok(&store, &c[0], after(t0(), 1)).await;

    assert!(
        must(
            "sweep early",
            store
                .retention_sweep(RetentionSweep {
                    now: after(t0(), 1800),
                    limit: 100
                })
                .await
        )
        .is_empty()
    );
    let swept = must(
        "sweep",
        store
            .retention_sweep(RetentionSweep {
                now: after(t0(), 3602),
                limit: 100,
            })
            .await,
    );
    assert_eq!(swept, vec![(TENANT.to_string(), done.id.clone(), true)]);
    must_fail(
        "job_get swept",
        ErrorKind::NotFound,
        store.job_get(None, &done.id).await,
    );
    must_fail(
        "task_get swept",
        ErrorKind::NotFound,
        store.task_get(None, a[0].task_id).await,
    );
    must(
        "job_get unfinished",
        store.job_get(None, &unfinished.id).await,
    );
    must("job_get kept", store.job_get(None, &kept.id).await);
    assert!(
        must(
            "sweep again",
            store
                .retention_sweep(RetentionSweep {
                    now: after(t0(), 3602),
                    limit: 100
                })
                .await
        )
        .is_empty()
    );
}

/// Succeeded jobs that asked for it are listed for input deletion until marked done.
pub async fn job_inputs_deletion_bookkeeping(store: DynStore) {
    setup(&store).await;
    let mut wants = job(TENANT, QUEUE, 1, t0());
    wants.has_inputs = true;
    wants.delete_inputs_on_success = true;
    let wants = submit(&store, wants).await;
    let mut fails = job(TENANT, QUEUE, 1, t0());
    fails.has_inputs = true;
    fails.delete_inputs_on_success = true;
    let fails = submit(&store, fails).await;
    let mut keeps = job(TENANT, QUEUE, 1, t0());
    keeps.has_inputs = true;
    submit(&store, keeps).await;

    assert!(must("to_delete before", store.job_inputs_to_delete(10).await).is_empty());
    for t in lease(&store, QUEUE, 3, t0()).await {
        if t.job_id == fails.id {
            fail_ok(&store, &t, false, t0()).await;
        } else {
            complete_ok(&store, &t, t0()).await;
        }
    }
    let listed = must("job_inputs_to_delete", store.job_inputs_to_delete(10).await);
    assert_eq!(listed, vec![(TENANT.to_string(), wants.id.clone())]);
    must(
        "job_inputs_deleted",
        store.job_inputs_deleted(&wants.id).await,
    );
    assert!(must("to_delete after", store.job_inputs_to_delete(10).await).is_empty());
}
