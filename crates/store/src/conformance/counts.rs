//! Cases for the task counters behind queue stats and demand: kept exact by every kind of
//! state change, including many at once.

use std::collections::BTreeMap;

use spillway_core::Timestamp;
use spillway_core::api::{Completion, Failure, Release, ReleaseReason};
use spillway_core::state::{StateCounts, TaskState};

use super::{
    OTHER, QUEUE, TENANT, after, job, lease_as, must, setup_queue, submit, t0, test_settings,
};
use crate::{
    DeadRequeue, DynStore, JobCancel, LeaseReap, QueueDemandQuery, QueueStatsQuery, RetentionSweep,
    TaskComplete, TaskFail, TaskList, TaskRelease,
};

/// A second queue of [`TENANT`].
const SECOND: &str = "second";
/// Leasing loops running at once.
const LEASERS: usize = 4;

/// Counts per state of one queue, by listing its tasks: the truth the counters must match.
async fn listed(
    store: &DynStore,
    tenant: &str,
    queue: &str,
) -> (StateCounts, Vec<(TaskState, Timestamp, bool)>) {
    let mut counts = StateCounts::default();
    let mut tasks = Vec::new();
    let mut cursor = None;
    loop {
        let page = must(
            "task_list",
            store
                .task_list(TaskList {
                    tenant: Some(tenant.into()),
                    job_id: None,
                    queue: Some(queue.into()),
                    state: None,
                    limit: 1000,
                    cursor,
                })
                .await,
        );
        for t in &page.items {
            counts.add(t.state, 1);
            tasks.push((t.state, t.run_at, t.burstable));
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return (counts, tasks),
        }
    }
}

/// Queue stats and demand agree with the tasks as listed, for every queue of every tenant.
pub async fn assert_counts_exact(store: &DynStore, now: Timestamp, when: &str) {
    let stats = must(
        "queue_stats",
        store
            .queue_stats(QueueStatsQuery { tenant: None, now })
            .await,
    );
    let demand = must(
        "queue_demand",
        store.queue_demand(QueueDemandQuery { now }).await,
    );
    let demand: BTreeMap<_, _> = demand
        .into_iter()
        .map(|d| ((d.tenant.clone(), d.queue.clone()), d))
        .collect();
    for s in &stats {
        let (truth, tasks) = listed(store, &s.tenant, &s.queue).await;
        assert_eq!(
            s.counts, truth,
            "{when}: counts of {}/{} differ from its tasks",
            s.tenant, s.queue
        );
        let due: Vec<_> = tasks
            .iter()
            .filter(|(state, run_at, _)| state.is_waiting() && *run_at <= now)
            .collect();
        let d = &demand[&(s.tenant.clone(), s.queue.clone())];
        assert_eq!(
            d.waiting,
            due.len() as u64,
            "{when}: waiting of {}",
            s.queue
        );
        assert_eq!(
            d.waiting_burstable,
            due.iter().filter(|(_, _, burstable)| *burstable).count() as u64,
            "{when}: burstable waiting of {}",
            s.queue
        );
        assert_eq!(d.leased, truth.leased, "{when}: leased of {}", s.queue);
        let oldest = due.iter().map(|(_, run_at, _)| *run_at).min();
        assert_eq!(
            s.oldest_available_age_seconds,
            oldest.map(|at| (now - at).num_milliseconds() as f64 / 1000.0),
            "{when}: oldest waiting age of {}",
            s.queue
        );
    }
}

/// Lease from [`QUEUE`] until nothing is due, reporting every lease at once by a mix of
/// outcomes: complete, fail (retrying, then dead), release preempted (available again).
async fn lease_and_report(store: DynStore, worker: usize, now: Timestamp) {
    loop {
        let pool = format!("pool-{worker}");
        let leased = lease_as(&store, TENANT, QUEUE, &pool, 7, now).await;
        if leased.is_empty() {
            return;
        }
        let (mut done, mut failed, mut released) = (Vec::new(), Vec::new(), Vec::new());
        for t in leased {
            match t.task_id % 4 {
                0 | 1 => done.push(Completion {
                    task_id: t.task_id,
                    lease_token: t.lease_token,
                    exit_code: Some(0),
                    result: None,
                    log_tail: String::new(),
                }),
                2 => failed.push(Failure {
                    task_id: t.task_id,
                    lease_token: t.lease_token,
                    error: "boom".into(),
                    exit_code: Some(1),
                    retryable: t.task_id % 8 != 2,
                    log_tail: String::new(),
                }),
                // Released once: a preempted task comes straight back, so the loop would
                // otherwise never run dry.
                _ if t.attempt > 1 => done.push(Completion {
                    task_id: t.task_id,
                    lease_token: t.lease_token,
                    exit_code: Some(0),
                    result: None,
                    log_tail: String::new(),
                }),
                _ => released.push(Release {
                    task_id: t.task_id,
                    lease_token: t.lease_token,
                    reason: ReleaseReason::Preempted,
                    log_tail: String::new(),
                }),
            }
        }
        let (a, b, c) = tokio::join!(
            store.task_complete(TaskComplete {
                tenant: None,
                items: done,
                now
            }),
            store.task_fail(TaskFail {
                tenant: None,
                items: failed,
                now
            }),
            store.task_release(TaskRelease {
                tenant: None,
                items: released,
                worker_pool: Some(pool.clone()),
                now,
            }),
        );
        for r in must("task_complete", a)
            .iter()
            .chain(&must("task_fail", b))
            .chain(&must("task_release", c))
        {
            assert!(
                r.ok(),
                "a report of a current lease was refused: {:?}",
                r.outcome
            );
        }
    }
}

/// Every transition, many at once, keeps the counters equal to the tasks they count: submits
/// (available, scheduled, burstable), leases and the three reports from several leasers at
/// once, a cancel racing with them, expired leases reaped, dead letters requeued and
/// retention deleting whole jobs.
pub async fn task_counters_stay_exact_under_concurrent_changes(store: DynStore) {
    setup_queue(&store, TENANT, QUEUE, test_settings()).await;
    setup_queue(&store, TENANT, SECOND, test_settings()).await;
    setup_queue(&store, OTHER, QUEUE, test_settings()).await;
    let now = after(t0(), 1);
    let queues = must(
        "queue_stats",
        store
            .queue_stats(QueueStatsQuery { tenant: None, now })
            .await,
    );
    assert_eq!(queues.len(), 3, "every queue has its stats, tasks or not");
    assert_counts_exact(&store, now, "before any task").await;

    let mut burstable = job(TENANT, QUEUE, 120, t0());
    burstable.burstable = true;
    submit(&store, burstable).await;
    let mut later = job(TENANT, QUEUE, 30, t0());
    later.run_at = after(t0(), 500);
    submit(&store, later).await;
    let mut urgent = job(TENANT, QUEUE, 20, t0());
    urgent.priority = 5;
    submit(&store, urgent).await;
    // Cancelled while the leasers work on the other queue. (Not one they lease from: on
    // PostgreSQL a failure committing beside the cancel of its job can leave its task retrying
    // in the cancelled job, which no lease takes again; see the closing note.)
    let doomed = submit(&store, job(TENANT, SECOND, 40, t0())).await;
    submit(&store, job(OTHER, QUEUE, 10, t0())).await;
    assert_counts_exact(&store, now, "after the submits").await;

    // Leasers and a cancel at once.
    let leasers: Vec<_> = (0..LEASERS)
        .map(|w| tokio::spawn(lease_and_report(store.clone(), w, now)))
        .collect();
    let cancel = store.job_cancel(JobCancel {
        tenant: None,
        id: doomed.id.clone(),
        now,
    });
    must("job_cancel", cancel.await);
    for l in leasers {
        l.await.expect("a leasing loop panicked");
    }
    assert_counts_exact(&store, now, "after concurrent leases and reports").await;

    // Leases left to expire, then reaped; the scheduled job comes due meanwhile.
    let late = after(t0(), 600);
    let held = lease_as(&store, TENANT, QUEUE, "pool-x", 25, late).await;
    assert!(!held.is_empty(), "the scheduled and retrying tasks are due");
    assert_counts_exact(&store, late, "with leases held").await;
    let reaped = must(
        "lease_reap",
        store
            .lease_reap(LeaseReap {
                now: after(late, 3600),
            })
            .await,
    );
    assert_eq!(reaped, held.len() as u64);
    assert_counts_exact(&store, after(late, 3600), "after the reap").await;

    let requeued = must(
        "dead_requeue",
        store
            .dead_requeue(DeadRequeue {
                tenant: Some(TENANT.into()),
                task_ids: Vec::new(),
                queue: Some(QUEUE.into()),
                now: after(late, 3600),
            })
            .await,
    );
    assert!(requeued > 0, "some tasks died on the way");
    assert_counts_exact(&store, after(late, 3600), "after requeueing the dead").await;

    // Retention deletes the finished (cancelled) job with its tasks.
    let swept = must(
        "retention_sweep",
        store
            .retention_sweep(RetentionSweep {
                now: after(late, 100_000),
                limit: 100,
            })
            .await,
    );
    assert!(
        swept.iter().any(|(_, id, _)| *id == doomed.id),
        "the cancelled job is past retention"
    );
    assert_counts_exact(&store, after(late, 100_000), "after retention").await;
}
