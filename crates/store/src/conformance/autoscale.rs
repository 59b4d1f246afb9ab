//! Cases for what the autoscaler reads and asks: queue demand, draining workers, leadership.

use spillway_core::ErrorKind;
use spillway_core::api::Completion;
use spillway_core::model::WorkerState;

use super::{
    OTHER, QUEUE, TENANT, after, job, lease, must, must_fail, setup, setup_queue, submit, t0,
    test_settings,
};
use crate::{DynStore, TaskComplete, WorkerBeat, WorkerRegister};
use crate::{PoolBounds, PoolBoundsClear, PoolBoundsSave, PoolStatusSave, QueueDemandQuery};

/// Demand: leasable (and burstable) tasks, leased ones, the mean run time of succeeded tasks
/// and arrivals in the last minute, per queue of every tenant.
pub async fn queue_demand_counts_backlog_leases_and_run_times(store: DynStore) {
    setup(&store).await;
    setup_queue(&store, OTHER, QUEUE, test_settings()).await;
    let demand = must(
        "queue_demand",
        store.queue_demand(QueueDemandQuery { now: t0() }).await,
    );
    assert_eq!(demand.len(), 2, "one entry per queue: {demand:?}");
    assert!(
        demand
            .iter()
            .all(|d| d.waiting == 0 && d.mean_duration_seconds.is_none()),
        "{demand:?}"
    );

    submit(&store, job(TENANT, QUEUE, 3, t0())).await;
    let mut burst = job(TENANT, QUEUE, 2, t0());
    burst.burstable = true;
    submit(&store, burst).await;
    let mut later = job(TENANT, QUEUE, 4, t0());
    later.run_at = after(t0(), 3600);
    submit(&store, later).await;

    let got = lease(&store, QUEUE, 1, after(t0(), 1)).await;
    assert_eq!(got.len(), 1);
    let results = must(
        "task_complete",
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
                now: after(t0(), 5),
            })
            .await,
    );
    assert!(results[0].ok(), "{results:?}");
    lease(&store, QUEUE, 1, after(t0(), 6)).await;

    let demand = must(
        "queue_demand",
        store
            .queue_demand(QueueDemandQuery {
                now: after(t0(), 10),
            })
            .await,
    );
    let mine = demand
        .iter()
        .find(|d| d.tenant == TENANT && d.queue == QUEUE)
        .unwrap_or_else(|| panic!("no demand for {TENANT}/{QUEUE}: {demand:?}"));
    // 9 tasks: 1 succeeded, 1 leased, 4 not due, 3 leasable (2 of them burstable, since the
    // two leased first were of the first job).
    assert_eq!(
        (mine.waiting, mine.waiting_burstable, mine.leased),
        (3, 2, 1)
    );
    assert_eq!(mine.mean_duration_seconds, Some(4.0));
    assert_eq!(mine.arrivals, 9, "every task was created within the minute");
    let theirs = demand
        .iter()
        .find(|d| d.tenant == OTHER)
        .unwrap_or_else(|| panic!("no demand for {OTHER}: {demand:?}"));
    assert_eq!((theirs.waiting, theirs.leased, theirs.arrivals), (0, 0, 0));

    let later = must(
        "queue_demand",
        store
            .queue_demand(QueueDemandQuery {
                now: after(t0(), 120),
            })
            .await,
    );
    assert_eq!(
        later[0].arrivals, 0,
        "arrivals older than a minute are not counted"
    );

    let mut paused = test_settings();
    paused.paused = true;
    must("pause", store.queue_update(TENANT, QUEUE, paused).await);
    let demand = must(
        "queue_demand",
        store
            .queue_demand(QueueDemandQuery {
                now: after(t0(), 10),
            })
            .await,
    );
    let mine = demand
        .iter()
        .find(|d| d.tenant == TENANT)
        .unwrap_or_else(|| panic!("no demand for {TENANT}: {demand:?}"));
    assert_eq!(mine.waiting, 0, "a paused queue has nothing leasable");
}

/// Drain: an active worker becomes draining and stays so across its heartbeats.
pub async fn worker_drain_is_sticky(store: DynStore) {
    setup(&store).await;
    must(
        "worker_register",
        store
            .worker_register(WorkerRegister {
                id: "w-d".into(),
                tenant: TENANT.into(),
                pool: "default".into(),
                hostname: "host-1".into(),
                queues: vec![QUEUE.into()],
                concurrency: 1,
                now: t0(),
            })
            .await,
    );
    must("worker_drain", store.worker_drain("w-d").await);
    let w = must(
        "worker_heartbeat",
        store
            .worker_heartbeat(WorkerBeat {
                id: "w-d".into(),
                running: 1,
                draining: false,
                now: after(t0(), 2),
            })
            .await,
    );
    assert_eq!(
        w.state,
        WorkerState::Draining,
        "a drained worker stays draining though its heartbeat does not say so"
    );
    must("worker_drain again", store.worker_drain("w-d").await);
    must_fail(
        "worker_drain unknown",
        ErrorKind::NotFound,
        store.worker_drain("nope").await,
    );
}

/// Leadership: a lease is granted to a lone replica and reports itself held.
pub async fn leader_lease_is_granted_and_held(store: DynStore) {
    // Random: PostgreSQL advisory keys are shared by every schema of the database.
    let key: i64 = rand::random();
    let lease = must("leader_try", store.leader_try(key).await)
        .unwrap_or_else(|| panic!("a lone replica must become leader"));
    assert!(lease.is_held());
}

/// Pool statuses: what was saved last is listed, whole (decisions too); a save replaces every
/// pool's status and forgets pools it does not list.
pub async fn pool_statuses_are_kept_replaced_and_forgotten(store: DynStore) {
    use spillway_core::api::{PoolDecisionRecord, PoolStatus};

    let status = |name: &str, desired: u32| PoolStatus {
        name: name.to_string(),
        provider: "kubernetes".to_string(),
        tier: 0,
        min: 0,
        max: 10,
        desired,
        actual: desired,
        busy: 1,
        idle: 0,
        draining: 0,
        down: 0,
        problems: vec!["a problem".to_string()],
        decisions: vec![PoolDecisionRecord {
            at: t0(),
            from: 0,
            to: desired,
            reason: "backlog".to_string(),
        }],
    };
    assert!(
        must("pool_status_list", store.pool_status_list().await).is_empty(),
        "a new store keeps no pool status"
    );
    let first = vec![status("a", 2), status("b", 3)];
    must(
        "pool_status_save",
        store
            .pool_status_save(PoolStatusSave {
                statuses: first.clone(),
                now: t0(),
            })
            .await,
    );
    assert_eq!(
        must("pool_status_list", store.pool_status_list().await),
        first
    );

    let second = vec![status("b", 5)];
    must(
        "pool_status_save",
        store
            .pool_status_save(PoolStatusSave {
                statuses: second.clone(),
                now: after(t0(), 5),
            })
            .await,
    );
    assert_eq!(
        must("pool_status_list", store.pool_status_list().await),
        second,
        "pool a is no longer configured and is forgotten; b is replaced"
    );
}

/// Run-time pool bounds are kept per pool, replaced by a later save, listed by name and
/// forgotten on clear (clearing what was never kept is no error).
pub async fn pool_bounds_are_kept_replaced_and_cleared(store: DynStore) {
    let bounds = |pool: &str, min, max| PoolBounds {
        pool: pool.to_string(),
        min,
        max,
    };
    let save = |b: PoolBounds| {
        let store = store.clone();
        async move {
            must(
                "save pool bounds",
                store
                    .pool_bounds_save(PoolBoundsSave {
                        bounds: b,
                        now: t0(),
                    })
                    .await,
            );
        }
    };
    let list = || {
        let store = store.clone();
        async move { must("list pool bounds", store.pool_bounds_list().await) }
    };
    assert!(list().await.is_empty(), "a new store keeps no bounds");
    save(bounds("zeta", 0, 2)).await;
    save(bounds("alpha", 1, 4)).await;
    save(bounds("alpha", 2, u32::MAX)).await;
    assert_eq!(
        list().await,
        [bounds("alpha", 2, u32::MAX), bounds("zeta", 0, 2)],
        "one row per pool, the latest save wins, by name"
    );
    for pool in ["alpha", "never-kept"] {
        must(
            "clear pool bounds",
            store
                .pool_bounds_clear(PoolBoundsClear {
                    pool: pool.to_string(),
                })
                .await,
        );
    }
    assert_eq!(list().await, [bounds("zeta", 0, 2)]);
}
