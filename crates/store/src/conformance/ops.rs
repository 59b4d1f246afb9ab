//! Cases for reporting on leases: complete, fail, release, dead letters.

use spillway_core::api::{Completion, Failure, LeasedTask, Release, ReleaseReason};
use spillway_core::names::LabelSelector;
use spillway_core::state::{AttemptOutcome, JobState, TaskState};
use spillway_core::{TaskId, Timestamp};

use super::{POOL, QUEUE, TENANT, after, job, lease, lease_as, must, setup, submit, t0};
use crate::LeaseReap;
use crate::{DeadList, DeadRequeue, DynStore, ReportOutcome, TaskComplete, TaskFail, TaskRelease};

fn completion(t: &LeasedTask, token: &str) -> Completion {
    Completion {
        task_id: t.task_id,
        lease_token: token.into(),
        exit_code: Some(0),
        result: Some(serde_json::json!({ "files": ["out.txt"] })),
        log_tail: "all good".into(),
    }
}

/// Complete one lease and assert it was applied.
pub(crate) async fn complete_ok(store: &DynStore, t: &LeasedTask, now: Timestamp) {
    let res = must(
        "task_complete",
        store
            .task_complete(TaskComplete {
                tenant: None,
                items: vec![completion(t, &t.lease_token)],
                now,
            })
            .await,
    );
    assert!(
        res[0].ok(),
        "completing a current lease was refused: {:?}",
        res[0].outcome
    );
}

/// Fail one lease and assert it was applied.
pub(crate) async fn fail_ok(store: &DynStore, t: &LeasedTask, retryable: bool, now: Timestamp) {
    let res = must(
        "task_fail",
        store
            .task_fail(TaskFail {
                tenant: None,
                items: vec![Failure {
                    task_id: t.task_id,
                    lease_token: t.lease_token.clone(),
                    error: format!("exit status 3 on attempt {}", t.attempt),
                    exit_code: Some(3),
                    retryable,
                    log_tail: "boom".into(),
                }],
                now,
            })
            .await,
    );
    assert!(
        res[0].ok(),
        "failing a current lease was refused: {:?}",
        res[0].outcome
    );
}

async fn task(store: &DynStore, id: TaskId) -> spillway_core::model::Task {
    must("task_get", store.task_get(Some(TENANT), id).await)
}

/// Completing with a stale token, or after the task was leased again, changes nothing.
pub async fn complete_refuses_stale_tokens(store: DynStore) {
    setup(&store).await;
    let j = submit(&store, job(TENANT, QUEUE, 1, t0())).await;
    let first = lease(&store, QUEUE, 1, t0()).await.remove(0);
    let wrong = must(
        "task_complete wrong token",
        store
            .task_complete(TaskComplete {
                tenant: None,
                items: vec![completion(&first, &"0".repeat(32))],
                now: t0(),
            })
            .await,
    );
    assert_eq!(wrong[0].task_id, first.task_id);
    assert_eq!(wrong[0].outcome, ReportOutcome::NotCurrent);
    assert_eq!(task(&store, first.task_id).await.state, TaskState::Leased);

    // The lease runs out and the task goes to someone else.
    let reaped_at = after(t0(), 31);
    assert_eq!(
        must(
            "lease_reap",
            store.lease_reap(LeaseReap { now: reaped_at }).await
        ),
        1
    );
    let second = lease(&store, QUEUE, 1, after(t0(), 200)).await.remove(0);
    assert_eq!((second.task_id, second.attempt), (first.task_id, 2));
    let before = task(&store, first.task_id).await;
    let stale = must(
        "task_complete old lease",
        store
            .task_complete(TaskComplete {
                tenant: None,
                items: vec![
                    completion(&first, &first.lease_token),
                    completion(&second, &second.lease_token),
                ],
                now: after(t0(), 201),
            })
            .await,
    );
    assert_eq!(stale.len(), 2);
    assert_eq!(
        stale[0].outcome,
        ReportOutcome::NotCurrent,
        "the first holder completed a task that was leased again"
    );
    assert!(
        stale[1].ok(),
        "a bad item must not fail its neighbours: {:?}",
        stale[1].outcome
    );

    let done = task(&store, first.task_id).await;
    assert_ne!(before.state, done.state);
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(
        done.result,
        Some(serde_json::json!({ "files": ["out.txt"] }))
    );
    assert_eq!(done.finished_at, Some(after(t0(), 201)));
    assert!(done.lease.is_none());
    let attempts = must(
        "task_attempts",
        store.task_attempts(Some(TENANT), first.task_id).await,
    );
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        vec![AttemptOutcome::LeaseExpired, AttemptOutcome::Succeeded]
    );
    assert_eq!(attempts[1].log_tail, "all good");
    assert_eq!(attempts[1].ended_at, Some(after(t0(), 201)));

    let j = must("job_get", store.job_get(Some(TENANT), &j.id).await);
    assert_eq!((j.state, j.counts.succeeded), (JobState::Succeeded, 1));
    assert_eq!(j.finished_at, Some(after(t0(), 201)));
    let again = must(
        "task_complete twice",
        store
            .task_complete(TaskComplete {
                tenant: None,
                items: vec![completion(&second, &second.lease_token)],
                now: after(t0(), 300),
            })
            .await,
    );
    assert_eq!(
        again[0].outcome,
        ReportOutcome::NotCurrent,
        "a finished task was completed twice"
    );
    assert_eq!(
        task(&store, first.task_id).await.finished_at,
        Some(after(t0(), 201))
    );
}

/// Failures back off (not leasable before `run_at`) and the last allowed one is dead.
pub async fn fail_retries_with_backoff_then_dies(store: DynStore) {
    setup(&store).await;
    let j = submit(&store, job(TENANT, QUEUE, 1, t0())).await;
    let mut now = t0();
    // Backoff base 10s doubling: delays in [5s, 10s], then [10s, 20s]; max_attempts 3.
    for (failures, full_delay) in [(1u32, 10i64), (2, 20)] {
        let t = lease(&store, QUEUE, 1, now).await.remove(0);
        assert_eq!(t.attempt, failures);
        fail_ok(&store, &t, true, now).await;
        let row = task(&store, t.task_id).await;
        assert_eq!((row.state, row.failures), (TaskState::Retrying, failures));
        assert_eq!(row.exit_code, Some(3));
        assert_eq!(
            row.last_error,
            Some(format!("exit status 3 on attempt {failures}"))
        );
        assert!(row.run_at >= after(now, full_delay / 2) && row.run_at <= after(now, full_delay));
        assert!(
            lease(&store, QUEUE, 1, after(now, full_delay / 2 - 1))
                .await
                .is_empty(),
            "leased during its backoff"
        );
        let j = must("job_get", store.job_get(None, &j.id).await);
        assert_eq!((j.state, j.counts.retrying), (JobState::Running, 1));
        now = after(now, full_delay);
    }
    let t = lease(&store, QUEUE, 1, now).await.remove(0);
    assert_eq!(t.attempt, 3);
    fail_ok(&store, &t, true, now).await;
    let row = task(&store, t.task_id).await;
    assert_eq!(
        (row.state, row.failures, row.finished_at),
        (TaskState::Dead, 3, Some(now))
    );
    assert!(
        lease(&store, QUEUE, 1, after(now, 10_000)).await.is_empty(),
        "a dead task leased"
    );

    let attempts = must("task_attempts", store.task_attempts(None, t.task_id).await);
    assert_eq!(attempts.len(), 3);
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(
            (a.attempt, a.outcome),
            (i as u32 + 1, AttemptOutcome::Failed)
        );
        assert_eq!((a.exit_code, a.log_tail.as_str()), (Some(3), "boom"));
        assert_eq!(a.error, Some(format!("exit status 3 on attempt {}", i + 1)));
        assert_eq!(a.worker_id, "w1");
    }
    let j = must("job_get", store.job_get(None, &j.id).await);
    assert_eq!(
        (j.state, j.counts.dead, j.finished_at),
        (JobState::Failed, 1, Some(now))
    );
}

/// A non-retryable failure makes the task dead at once.
pub async fn non_retryable_failure_is_dead_at_once(store: DynStore) {
    setup(&store).await;
    submit(&store, job(TENANT, QUEUE, 1, t0())).await;
    let t = lease(&store, QUEUE, 1, t0()).await.remove(0);
    fail_ok(&store, &t, false, t0()).await;
    let row = task(&store, t.task_id).await;
    assert_eq!((row.state, row.failures), (TaskState::Dead, 1));
    let stale = must(
        "task_fail twice",
        store
            .task_fail(TaskFail {
                tenant: None,
                items: vec![Failure {
                    task_id: t.task_id,
                    lease_token: t.lease_token.clone(),
                    error: "again".into(),
                    exit_code: None,
                    retryable: true,
                    log_tail: String::new(),
                }],
                now: t0(),
            })
            .await,
    );
    assert_eq!(
        stale[0].outcome,
        ReportOutcome::NotCurrent,
        "a dead task took a second failure"
    );
    assert_eq!(task(&store, t.task_id).await.failures, 1);
}

/// A preempted release requeues at once, counts no failure and remembers the pool.
pub async fn release_preempted_requeues_without_failure(store: DynStore) {
    setup(&store).await;
    submit(&store, job(TENANT, QUEUE, 2, t0())).await;
    let t = lease(&store, QUEUE, 1, t0()).await.remove(0);
    let now = after(t0(), 3);
    let res = must(
        "task_release",
        store
            .task_release(TaskRelease {
                tenant: None,
                items: vec![Release {
                    task_id: t.task_id,
                    lease_token: t.lease_token.clone(),
                    reason: ReleaseReason::Preempted,
                    log_tail: "sigterm".into(),
                }],
                worker_pool: Some(POOL.into()),
                now,
            })
            .await,
    );
    assert!(res[0].ok(), "{:?}", res[0].outcome);
    let row = task(&store, t.task_id).await;
    assert_eq!(row.state, TaskState::Available);
    assert_eq!((row.failures, row.preemptions, row.attempt), (0, 1, 1));
    assert_eq!(row.avoid_pool.as_deref(), Some(POOL));
    assert!(row.lease.is_none());
    let attempts = must("task_attempts", store.task_attempts(None, t.task_id).await);
    assert_eq!(
        (attempts[0].outcome, attempts[0].ended_at),
        (AttemptOutcome::Preempted, Some(now))
    );

    // The same pool prefers the other task; another pool takes the preempted one first.
    let same = lease_as(&store, TENANT, QUEUE, POOL, 1, now).await;
    assert_ne!(
        same[0].task_id, t.task_id,
        "the preempted pool got the task back first"
    );
    let other = lease_as(&store, TENANT, QUEUE, "pool-b", 1, now).await;
    assert_eq!((other[0].task_id, other[0].attempt), (t.task_id, 2));
}

/// A task's exit code and error are its last attempt's: a release (no exit) clears the exit
/// code a failure left, and keeps the failure's error.
pub async fn release_clears_the_last_exit_code(store: DynStore) {
    setup(&store).await;
    submit(&store, job(TENANT, QUEUE, 1, t0())).await;
    let first = lease(&store, QUEUE, 1, t0()).await.remove(0);
    fail_ok(&store, &first, true, t0()).await;
    assert_eq!(task(&store, first.task_id).await.exit_code, Some(3));
    let later = after(t0(), 3_600);
    let second = lease(&store, QUEUE, 1, later).await.remove(0);
    assert_eq!((second.task_id, second.attempt), (first.task_id, 2));
    let res = must(
        "task_release",
        store
            .task_release(TaskRelease {
                tenant: Some(TENANT.into()),
                items: vec![Release {
                    task_id: second.task_id,
                    lease_token: second.lease_token.clone(),
                    reason: ReleaseReason::Preempted,
                    log_tail: String::new(),
                }],
                worker_pool: None,
                now: later,
            })
            .await,
    );
    assert!(res[0].ok(), "{:?}", res[0].outcome);
    let row = task(&store, first.task_id).await;
    assert_eq!(row.state, TaskState::Available);
    assert_eq!(row.exit_code, None);
    assert_eq!(
        row.last_error.as_deref(),
        Some("exit status 3 on attempt 1")
    );
}

async fn dead_tasks(store: &DynStore, queue: &str, n: usize) -> Vec<TaskId> {
    submit(store, job(TENANT, queue, n, t0())).await;
    let mut ids = Vec::new();
    for t in lease(store, queue, n as u32, t0()).await {
        fail_ok(store, &t, false, t0()).await;
        ids.push(t.task_id);
    }
    ids
}

/// Dead letters are filtered by their job's labels as jobs are (all conditions, bare keys).
pub async fn dead_list_filters_by_job_labels(store: DynStore) {
    setup(&store).await;
    let mut a = job(TENANT, QUEUE, 2, t0());
    a.labels.insert("team".into(), "a".into());
    a.labels.insert("run".into(), "1".into());
    submit(&store, a).await;
    let mut b = job(TENANT, QUEUE, 1, t0());
    b.labels.insert("team".into(), "b".into());
    submit(&store, b).await;
    let mut ids = Vec::new();
    for t in lease(&store, QUEUE, 3, t0()).await {
        fail_ok(&store, &t, false, t0()).await;
        ids.push((t.job_id.clone(), t.task_id));
    }
    assert_eq!(ids.len(), 3);
    let listed = |conditions: &[&str]| {
        let labels = conditions
            .iter()
            .map(|c| must("parse a selector", LabelSelector::parse(c)))
            .collect();
        let store = store.clone();
        async move {
            let page = must(
                "dead_list",
                store
                    .dead_list(DeadList {
                        tenant: Some(TENANT.into()),
                        labels,
                        limit: 100,
                        ..Default::default()
                    })
                    .await,
            );
            page.items.len()
        }
    };
    assert_eq!(listed(&["team=a"]).await, 2);
    assert_eq!(listed(&["team"]).await, 3, "a bare key matches any value");
    assert_eq!(listed(&["team=a", "run"]).await, 2);
    assert_eq!(listed(&["team=b", "run"]).await, 0);
    assert_eq!(listed(&["team=a", "team=b"]).await, 0);
    assert_eq!(listed(&[]).await, 3);
}

/// Dead letters are listed per queue and requeued by id or by whole queue.
pub async fn dead_list_and_requeue(store: DynStore) {
    setup(&store).await;
    super::setup_queue(&store, TENANT, "other-queue", super::test_settings()).await;
    let dead = dead_tasks(&store, QUEUE, 3).await;
    let elsewhere = dead_tasks(&store, "other-queue", 1).await;
    let list = |queue: Option<&str>| DeadList {
        tenant: Some(TENANT.into()),
        queue: queue.map(str::to_string),
        limit: 100,
        cursor: None,
        ..Default::default()
    };
    let page = must("dead_list", store.dead_list(list(Some(QUEUE))).await);
    let ids: Vec<_> = page.items.iter().map(|t| t.id).collect();
    assert_eq!(ids, dead);
    assert!(page.items.iter().all(|t| t.state == TaskState::Dead));
    assert_eq!(
        must("dead_list all", store.dead_list(list(None)).await)
            .items
            .len(),
        4
    );

    let now = after(t0(), 50);
    let by_id = DeadRequeue {
        tenant: Some(TENANT.into()),
        task_ids: vec![dead[0]],
        queue: None,
        now,
    };
    assert_eq!(
        must("dead_requeue ids", store.dead_requeue(by_id.clone()).await),
        1
    );
    assert_eq!(
        must("dead_requeue not dead", store.dead_requeue(by_id).await),
        0
    );
    let row = task(&store, dead[0]).await;
    assert_eq!(
        (row.state, row.failures, row.finished_at),
        (TaskState::Available, 0, None)
    );
    let by_queue = DeadRequeue {
        tenant: Some(TENANT.into()),
        task_ids: vec![],
        queue: Some(QUEUE.into()),
        now,
    };
    assert_eq!(
        must("dead_requeue queue", store.dead_requeue(by_queue).await),
        2
    );
    assert!(
        must("dead_list", store.dead_list(list(Some(QUEUE))).await)
            .items
            .is_empty()
    );
    let left = must("dead_list", store.dead_list(list(None)).await);
    assert_eq!(
        left.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        elsewhere
    );
    assert_eq!(
        lease(&store, QUEUE, 10, now).await.len(),
        3,
        "requeued tasks are leasable now"
    );
}
