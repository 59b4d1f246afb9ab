//! Cases for leasing: order, eligibility, heartbeats, expiry, concurrency and wake-ups.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spillway_core::ErrorKind;
use spillway_core::api::{Completion, LeaseRef, LeaseStatus};
use spillway_core::state::{AttemptOutcome, TaskState};

use super::ops::complete_ok;
use super::{
    OTHER, QUEUE, TENANT, after, job, lease, lease_as, must, must_fail, setup, setup_queue, submit,
    t0, test_settings,
};
use crate::LeaseReap;
use crate::{DynStore, LeaseCheck, ReportOutcome, TaskComplete, TaskHeartbeat};

/// Highest priority first, then earliest `run_at`, then lowest id; at most `max`.
pub async fn lease_takes_by_priority_then_run_at_then_id(store: DynStore) {
    setup(&store).await;
    let low = submit(&store, job(TENANT, QUEUE, 2, t0())).await;
    let mut early = job(TENANT, QUEUE, 1, after(t0(), 1));
    early.run_at = t0();
    let mut late = job(TENANT, QUEUE, 1, t0());
    late.run_at = after(t0(), 1);
    late.priority = 10;
    early.priority = 10;
    // Submitted in this order: low (p0), late (p10, run_at +1), early (p10, run_at 0).
    let late = submit(&store, late).await;
    let early = submit(&store, early).await;
    let mut high = job(TENANT, QUEUE, 1, t0());
    high.priority = 20;
    let high = submit(&store, high).await;

    let now = after(t0(), 5);
    let got = lease(&store, QUEUE, 4, now).await;
    let jobs: Vec<&str> = got.iter().map(|t| t.job_id.as_str()).collect();
    assert_eq!(
        jobs,
        vec![
            high.id.as_str(),
            early.id.as_str(),
            late.id.as_str(),
            low.id.as_str()
        ],
        "lease order is priority desc, run_at, id"
    );
    assert_eq!(got[3].index, 0, "the lower id of equal tasks goes first");

    let t = &got[0];
    assert_eq!(t.attempt, 1);
    assert_eq!(
        t.lease_expires_at,
        after(now, 30),
        "lease lasts the queue's lease_duration"
    );
    assert_eq!(t.lease_token.len(), 32, "128-bit hex token");
    assert!(t.lease_token.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(t.queue, QUEUE);
    assert_eq!(
        t.spec.command,
        vec!["echo".to_string(), "{index}".to_string()]
    );
    assert_eq!(t.payload, Some(serde_json::json!({ "i": 0 })));
    let tokens: HashSet<_> = got.iter().map(|t| t.lease_token.clone()).collect();
    assert_eq!(tokens.len(), 4, "every lease gets its own token");

    let task = must("task_get", store.task_get(Some(TENANT), t.task_id).await);
    assert_eq!(task.state, TaskState::Leased);
    assert_eq!(task.attempt, 1);
    let info = task
        .lease
        .unwrap_or_else(|| panic!("a leased task shows its lease"));
    assert_eq!(
        (info.worker_id.as_str(), info.expires_at),
        ("w1", after(now, 30))
    );
    let attempts = must(
        "task_attempts",
        store.task_attempts(Some(TENANT), t.task_id).await,
    );
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].attempt, attempts[0].outcome),
        (1, AttemptOutcome::Running)
    );
    assert_eq!((attempts[0].started_at, attempts[0].ended_at), (now, None));

    let rest = lease(&store, QUEUE, 10, now).await;
    assert_eq!(rest.len(), 1, "only one task was left");
    assert_eq!(
        (rest[0].job_id.as_str(), rest[0].index),
        (low.id.as_str(), 1)
    );
    assert!(lease(&store, QUEUE, 10, now).await.is_empty());
}

/// Paused queues, not-yet-due tasks and other tenants' queues are never leased.
pub async fn lease_skips_paused_scheduled_and_other_tenants(store: DynStore) {
    setup(&store).await;
    setup_queue(&store, OTHER, QUEUE, test_settings()).await;
    submit(&store, job(OTHER, QUEUE, 3, t0())).await;
    assert!(
        lease(&store, QUEUE, 10, t0()).await.is_empty(),
        "another tenant's tasks leak"
    );

    let mut later = job(TENANT, QUEUE, 1, t0());
    later.run_at = after(t0(), 60);
    let later = submit(&store, later).await;
    assert!(
        lease(&store, QUEUE, 10, after(t0(), 59)).await.is_empty(),
        "leased before run_at"
    );

    let mut paused = test_settings();
    paused.paused = true;
    must("pause", store.queue_update(TENANT, QUEUE, paused).await);
    assert!(
        lease(&store, QUEUE, 10, after(t0(), 60)).await.is_empty(),
        "a paused queue leased"
    );
    must(
        "resume",
        store.queue_update(TENANT, QUEUE, test_settings()).await,
    );
    let got = lease(&store, QUEUE, 10, after(t0(), 60)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job_id, later.id);
    assert_eq!(lease_as(&store, OTHER, QUEUE, "p", 10, t0()).await.len(), 3);
    assert!(lease(&store, "no-such-queue", 10, t0()).await.is_empty());
}

fn lease_ref(t: &spillway_core::api::LeasedTask) -> LeaseRef {
    LeaseRef {
        task_id: t.task_id,
        lease_token: t.lease_token.clone(),
    }
}

/// A heartbeat extends a lease only for the holder of its current token.
pub async fn heartbeat_extends_only_the_current_lease(store: DynStore) {
    setup(&store).await;
    submit(&store, job(TENANT, QUEUE, 2, t0())).await;
    let got = lease(&store, QUEUE, 2, t0()).await;
    let now = after(t0(), 20);
    let stale = LeaseRef {
        task_id: got[1].task_id,
        lease_token: "0".repeat(32),
    };
    let hb = must(
        "task_heartbeat",
        store
            .task_heartbeat(TaskHeartbeat {
                tenant: None,
                leases: vec![lease_ref(&got[0]), stale],
                now,
            })
            .await,
    );
    assert_eq!(hb.len(), 2);
    assert_eq!(
        (hb[0].task_id, hb[0].status),
        (got[0].task_id, LeaseStatus::Extended)
    );
    assert_eq!(hb[0].lease_expires_at, Some(after(now, 30)));
    assert_eq!(
        (hb[1].task_id, hb[1].status),
        (got[1].task_id, LeaseStatus::Lost)
    );
    let t0_task = must("task_get", store.task_get(None, got[0].task_id).await);
    assert_eq!(t0_task.lease.map(|l| l.expires_at), Some(after(now, 30)));
    let t1_task = must("task_get", store.task_get(None, got[1].task_id).await);
    assert_eq!(
        t1_task.lease.map(|l| l.expires_at),
        Some(after(t0(), 30)),
        "wrong token extended"
    );

    // Extended past the original expiry: the reaper leaves it alone.
    assert_eq!(
        must(
            "lease_reap",
            store
                .lease_reap(LeaseReap {
                    now: after(t0(), 40)
                })
                .await
        ),
        1
    );
    assert_eq!(
        must("task_get", store.task_get(None, got[0].task_id).await).state,
        TaskState::Leased
    );
    complete_ok(&store, &got[0], after(t0(), 41)).await;
    let hb = must(
        "task_heartbeat after complete",
        store
            .task_heartbeat(TaskHeartbeat {
                tenant: None,
                leases: vec![lease_ref(&got[0])],
                now: after(t0(), 42),
            })
            .await,
    );
    assert_eq!(
        (hb[0].status, hb[0].lease_expires_at),
        (LeaseStatus::Lost, None)
    );
}

/// An expired lease is failed by the reaper as `lease_expired`; its token is dead afterwards.
pub async fn lease_reap_fails_expired_leases(store: DynStore) {
    setup(&store).await;
    submit(&store, job(TENANT, QUEUE, 1, t0())).await;
    let got = lease(&store, QUEUE, 1, t0()).await;
    assert_eq!(
        must(
            "reap early",
            store
                .lease_reap(LeaseReap {
                    now: after(t0(), 10)
                })
                .await
        ),
        0
    );
    let now = after(t0(), 31);
    assert_eq!(
        must("lease_reap", store.lease_reap(LeaseReap { now }).await),
        1
    );
    let t = must("task_get", store.task_get(None, got[0].task_id).await);
    assert_eq!(t.state, TaskState::Retrying);
    assert_eq!(t.failures, 1, "an expired lease counts as a failure");
    assert!(t.lease.is_none());
    assert!(
        t.run_at > now && t.run_at <= after(now, 10),
        "backoff of one failure: {}",
        t.run_at
    );
    let attempts = must(
        "task_attempts",
        store.task_attempts(None, got[0].task_id).await,
    );
    assert_eq!(attempts[0].outcome, AttemptOutcome::LeaseExpired);
    assert_eq!(attempts[0].ended_at, Some(now));

    let refused = must(
        "task_complete with reaped token",
        store
            .task_complete(TaskComplete {
                tenant: None,
                items: vec![Completion {
                    task_id: got[0].task_id,
                    lease_token: got[0].lease_token.clone(),
                    exit_code: Some(0),
                    result: None,
                    log_tail: String::new(),
                }],
                now,
            })
            .await,
    );
    assert_eq!(
        refused[0].outcome,
        ReportOutcome::NotCurrent,
        "a reaped lease completed"
    );
    let hb = must(
        "heartbeat reaped",
        store
            .task_heartbeat(TaskHeartbeat {
                tenant: None,
                leases: vec![lease_ref(&got[0])],
                now,
            })
            .await,
    );
    assert_eq!(hb[0].status, LeaseStatus::Lost);
    assert_eq!(
        must(
            "reap again",
            store
                .lease_reap(LeaseReap {
                    now: after(now, 100)
                })
                .await
        ),
        0
    );
}

/// `lease_check` answers the task only for its current lease token and only to the task's
/// tenant (or a caller of every tenant): another tenant is told the task does not exist.
pub async fn lease_check_accepts_only_the_current_lease(store: DynStore) {
    setup(&store).await;
    submit(&store, job(TENANT, QUEUE, 1, t0())).await;
    let got = lease(&store, QUEUE, 1, t0()).await;
    let check = |tenant: Option<&str>, token: &str| LeaseCheck {
        tenant: tenant.map(str::to_string),
        task_id: got[0].task_id,
        lease_token: token.to_string(),
    };
    for tenant in [None, Some(TENANT)] {
        let t = must(
            "lease_check",
            store.lease_check(check(tenant, &got[0].lease_token)).await,
        );
        assert_eq!((t.id, t.state), (got[0].task_id, TaskState::Leased));
    }
    must_fail(
        "lease_check from another tenant",
        ErrorKind::NotFound,
        store
            .lease_check(check(Some(OTHER), &got[0].lease_token))
            .await,
    );
    must_fail(
        "lease_check of a missing task",
        ErrorKind::NotFound,
        store
            .lease_check(LeaseCheck {
                task_id: got[0].task_id + 1_000,
                ..check(None, &got[0].lease_token)
            })
            .await,
    );
    must_fail(
        "lease_check wrong token",
        ErrorKind::Conflict,
        store.lease_check(check(None, &"f".repeat(32))).await,
    );
    complete_ok(&store, &got[0], t0()).await;
    must_fail(
        "lease_check after complete",
        ErrorKind::Conflict,
        store.lease_check(check(None, &got[0].lease_token)).await,
    );
}

/// 8 leasers race over 2,000 tasks: each task is leased exactly once and all succeed.
pub async fn concurrent_leasers_never_share_a_task(store: DynStore) {
    setup(&store).await;
    let mut jobs = Vec::new();
    for _ in 0..4 {
        jobs.push(submit(&store, job(TENANT, QUEUE, 500, t0())).await);
    }
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let mut leasers = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let seen = seen.clone();
        leasers.push(tokio::spawn(async move {
            loop {
                let got = lease(&store, QUEUE, 37, t0()).await;
                if got.is_empty() {
                    return;
                }
                {
                    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                    for t in &got {
                        assert!(
                            seen.insert(t.task_id),
                            "task {} was leased twice",
                            t.task_id
                        );
                    }
                }
                let items = got
                    .iter()
                    .map(|t| Completion {
                        task_id: t.task_id,
                        lease_token: t.lease_token.clone(),
                        exit_code: Some(0),
                        result: None,
                        log_tail: String::new(),
                    })
                    .collect();
                let res = must(
                    "task_complete",
                    store
                        .task_complete(TaskComplete {
                            tenant: None,
                            items,
                            now: t0(),
                        })
                        .await,
                );
                assert!(
                    res.iter().all(|r| r.ok()),
                    "a fresh lease was refused: {res:?}"
                );
            }
        }));
    }
    for l in leasers {
        if let Err(e) = l.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    assert_eq!(seen.lock().unwrap_or_else(|p| p.into_inner()).len(), 2000);
    for j in jobs {
        let j = must("job_get", store.job_get(None, &j.id).await);
        assert_eq!(j.counts.succeeded, 500, "job {} has unfinished tasks", j.id);
    }
}

/// A waiter enabled before a submit is woken by it.
pub async fn wakeups_signal_on_submit(store: DynStore) {
    setup(&store).await;
    let notify = store.wakeups().listener(TENANT, QUEUE);
    let notified = notify.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    submit(&store, job(TENANT, QUEUE, 1, t0())).await;
    // A deadline, not a delay: the signal was sent before submit returned.
    let woke = tokio::time::timeout(Duration::from_secs(10), notified).await;
    assert!(woke.is_ok(), "submit did not wake the queue's waiters");
}

/// The caller's tenant is part of every report's condition: a heartbeat, completion, failure
/// or release carrying the right lease token but another tenant changes nothing; the
/// heartbeat is answered as lost and the reports as not found, as for a task that does not
/// exist. The same report from the task's own tenant applies.
pub async fn reports_from_another_tenant_change_nothing(store: DynStore) {
    use spillway_core::api::{Failure, Release, ReleaseReason};

    use crate::{TaskFail, TaskRelease};

    setup(&store).await;
    submit(&store, job(TENANT, QUEUE, 3, t0())).await;
    let got = lease(&store, QUEUE, 3, t0()).await;
    assert_eq!(got.len(), 3);
    let now = after(t0(), 5);
    let other = Some(OTHER.to_string());

    let hb = must(
        "task_heartbeat from another tenant",
        store
            .task_heartbeat(TaskHeartbeat {
                tenant: other.clone(),
                leases: got.iter().map(lease_ref).collect(),
                now,
            })
            .await,
    );
    assert!(hb.iter().all(|h| h.status == LeaseStatus::Lost), "{hb:?}");
    let done = must(
        "task_complete from another tenant",
        store
            .task_complete(TaskComplete {
                tenant: other.clone(),
                items: vec![Completion {
                    task_id: got[0].task_id,
                    lease_token: got[0].lease_token.clone(),
                    exit_code: Some(0),
                    result: None,
                    log_tail: String::new(),
                }],
                now,
            })
            .await,
    );
    assert_eq!(done[0].outcome, ReportOutcome::NotFound, "{done:?}");
    let failed = must(
        "task_fail from another tenant",
        store
            .task_fail(TaskFail {
                tenant: other.clone(),
                items: vec![Failure {
                    task_id: got[1].task_id,
                    lease_token: got[1].lease_token.clone(),
                    error: "not yours".into(),
                    exit_code: Some(1),
                    retryable: false,
                    log_tail: String::new(),
                }],
                now,
            })
            .await,
    );
    assert_eq!(failed[0].outcome, ReportOutcome::NotFound, "{failed:?}");
    let released = must(
        "task_release from another tenant",
        store
            .task_release(TaskRelease {
                tenant: other,
                items: vec![Release {
                    task_id: got[2].task_id,
                    lease_token: got[2].lease_token.clone(),
                    reason: ReleaseReason::Cancelled,
                    log_tail: String::new(),
                }],
                worker_pool: None,
                now,
            })
            .await,
    );
    assert_eq!(released[0].outcome, ReportOutcome::NotFound, "{released:?}");

    // Every task is still leased as before: same token, same expiry, same attempt.
    for t in &got {
        let task = must("task_get", store.task_get(None, t.task_id).await);
        assert_eq!(task.state, TaskState::Leased, "task {}", t.task_id);
        assert_eq!(
            task.lease.map(|l| l.expires_at),
            Some(t.lease_expires_at),
            "task {} lease moved",
            t.task_id
        );
        assert_eq!(task.attempt, t.attempt);
    }

    // The task's own tenant reports with the same token; beside it, a task that does not
    // exist is not found, in its place.
    let missing = got[2].task_id + 1_000;
    let done = must(
        "task_complete from the task's tenant",
        store
            .task_complete(TaskComplete {
                tenant: Some(TENANT.to_string()),
                items: vec![
                    Completion {
                        task_id: missing,
                        lease_token: got[0].lease_token.clone(),
                        exit_code: Some(0),
                        result: None,
                        log_tail: String::new(),
                    },
                    Completion {
                        task_id: got[0].task_id,
                        lease_token: got[0].lease_token.clone(),
                        exit_code: Some(0),
                        result: None,
                        log_tail: String::new(),
                    },
                ],
                now,
            })
            .await,
    );
    let outcomes: Vec<_> = done.iter().map(|r| (r.task_id, r.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![
            (missing, ReportOutcome::NotFound),
            (got[0].task_id, ReportOutcome::Applied)
        ]
    );
    let task = must("task_get", store.task_get(None, got[0].task_id).await);
    assert_eq!(task.state, TaskState::Succeeded);
}

/// A lease hands the worker its job's trace context (kept in the spec) and when the task
/// became due (its `run_at`: the start of its wait).
pub async fn lease_carries_the_trace_and_when_the_task_became_due(store: DynStore) {
    setup(&store).await;
    let trace = spillway_core::trace_context::TraceContext {
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        tracestate: Some("congo=t61rcWkgMzE".into()),
    };
    let mut traced = job(TENANT, QUEUE, 1, t0());
    traced.spec.trace = Some(trace.clone());
    traced.run_at = after(t0(), 2);
    let traced = submit(&store, traced).await;
    assert_eq!(
        traced.spec.trace.as_ref(),
        Some(&trace),
        "the job keeps its trace"
    );
    let got = lease(&store, QUEUE, 1, after(t0(), 5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job_id, traced.id);
    assert_eq!(got[0].spec.trace.as_ref(), Some(&trace));
    assert_eq!(got[0].due_at, Some(after(t0(), 2)));

    let plain = submit(&store, job(TENANT, QUEUE, 1, t0())).await;
    let got = lease(&store, QUEUE, 1, after(t0(), 5)).await;
    assert_eq!(got[0].job_id, plain.id);
    assert_eq!(got[0].spec.trace, None, "no trace unless the job has one");
    assert_eq!(got[0].due_at, Some(t0()));
}
