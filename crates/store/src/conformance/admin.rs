//! Cases for tenants, queues, tokens, workers, queue stats and the store's clock.

use spillway_core::ErrorKind;
use spillway_core::auth::Role;
use spillway_core::model::WorkerState;

use super::{
    OTHER, QUEUE, TENANT, after, job, lease, must, must_fail, setup, setup_queue, submit, t0,
    test_settings,
};
use crate::{DynStore, QueueCreate, TokenCreate, WorkerBeat, WorkerRegister};
use crate::{QueueStatsQuery, TokenRevoke, WorkerMarkDown};
use crate::{TenantCreate, WorkerExit, WorkerList};

/// How far the store's clock may be from this host's: they are different hosts' clocks on
/// PostgreSQL, kept together by NTP, and a minute is far more than NTP lets them drift.
const CLOCK_AGREEMENT: chrono::TimeDelta = chrono::TimeDelta::minutes(1);
/// How long the store's clock may take to show that it moves on.
const CLOCK_MOVES_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The store's clock tells the current time, as the host sees it within
/// [`CLOCK_AGREEMENT`], and moves on between readings (the time of the answer, not a time
/// fixed at the start of a transaction or a session).
pub async fn clock_now_is_the_current_time_and_moves_on(store: DynStore) {
    let before = chrono::Utc::now();
    let first = must("clock_now", store.clock_now().await);
    let after = chrono::Utc::now();
    assert!(
        first > before - CLOCK_AGREEMENT && first < after + CLOCK_AGREEMENT,
        "the store's clock says {first}, the host's said {before} to {after}"
    );
    let deadline = std::time::Instant::now() + CLOCK_MOVES_WITHIN;
    loop {
        let next = must("clock_now", store.clock_now().await);
        if next > first {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the store's clock stayed at {first} (last reading {next}) for {CLOCK_MOVES_WITHIN:?}"
        );
    }
}

/// Tenants are created once, listed, and a second create conflicts.
pub async fn tenants_crud(store: DynStore) {
    let t = must(
        "tenant_create",
        store
            .tenant_create(TenantCreate {
                name: TENANT.to_string(),
                now: t0(),
            })
            .await,
    );
    assert_eq!(t.name, TENANT);
    assert_eq!(t.created_at, t0());
    must(
        "tenant_create other",
        store
            .tenant_create(TenantCreate {
                name: OTHER.to_string(),
                now: t0(),
            })
            .await,
    );
    must_fail(
        "tenant_create twice",
        ErrorKind::Conflict,
        store
            .tenant_create(TenantCreate {
                name: TENANT.to_string(),
                now: t0(),
            })
            .await,
    );
    let mut names: Vec<_> = must("tenant_list", store.tenant_list().await)
        .into_iter()
        .map(|t| t.name)
        .collect();
    names.sort();
    assert_eq!(names, vec![TENANT.to_string(), OTHER.to_string()]);
}

/// Queues: create, get, update, list; missing tenant, duplicates and unknown names.
pub async fn queues_crud(store: DynStore) {
    setup(&store).await;
    setup_queue(&store, OTHER, QUEUE, test_settings()).await;
    let q = must("queue_get", store.queue_get(TENANT, QUEUE).await);
    assert_eq!((q.tenant.as_str(), q.name.as_str()), (TENANT, QUEUE));
    assert_eq!(q.settings, test_settings());
    assert_eq!(q.created_at, t0());

    let dup = QueueCreate {
        tenant: TENANT.into(),
        name: QUEUE.into(),
        settings: test_settings(),
        now: t0(),
    };
    must_fail(
        "queue_create twice",
        ErrorKind::Conflict,
        store.queue_create(dup.clone()).await,
    );
    let orphan = QueueCreate {
        tenant: "no-such-tenant".into(),
        ..dup
    };
    must_fail(
        "queue_create in a missing tenant",
        ErrorKind::NotFound,
        store.queue_create(orphan).await,
    );
    must_fail(
        "queue_get missing",
        ErrorKind::NotFound,
        store.queue_get(TENANT, "nope").await,
    );

    let mut changed = test_settings();
    changed.paused = true;
    changed.max_attempts = 7;
    let q = must(
        "queue_update",
        store.queue_update(TENANT, QUEUE, changed.clone()).await,
    );
    assert_eq!(q.settings, changed);
    assert_eq!(
        must("queue_get", store.queue_get(TENANT, QUEUE).await).settings,
        changed
    );
    assert_eq!(
        must("queue_get other", store.queue_get(OTHER, QUEUE).await).settings,
        test_settings(),
        "updating one tenant's queue must not touch another's"
    );
    must_fail(
        "queue_update missing",
        ErrorKind::NotFound,
        store.queue_update(TENANT, "nope", changed).await,
    );

    setup_queue(&store, TENANT, "second", test_settings()).await;
    assert_eq!(
        must("queue_list", store.queue_list(Some(TENANT)).await).len(),
        2
    );
    assert_eq!(
        must("queue_list", store.queue_list(Some(OTHER)).await).len(),
        1
    );
    assert_eq!(
        must("queue_list all", store.queue_list(None).await).len(),
        3
    );
}

pub(super) fn token(id: &str, tenant: Option<&str>, hash: &str) -> TokenCreate {
    TokenCreate {
        id: id.into(),
        name: format!("{id} token"),
        tenant: tenant.map(str::to_string),
        role: Role::Submitter,
        secret_hash: hash.into(),
        now: t0(),
        expires_at: None,
        queues: None,
    }
}

/// Tokens: create, lookup by hash, list, revoke (only within the tenant), conflicts.
pub async fn tokens_crud(store: DynStore) {
    must(
        "tenant",
        store
            .tenant_create(TenantCreate {
                name: TENANT.to_string(),
                now: t0(),
            })
            .await,
    );
    must(
        "tenant",
        store
            .tenant_create(TenantCreate {
                name: OTHER.to_string(),
                now: t0(),
            })
            .await,
    );
    let info = must(
        "token_create",
        store.token_create(token("tk1", Some(TENANT), "h1")).await,
    );
    assert_eq!(info.id, "tk1");
    assert_eq!(info.role, Role::Submitter);
    assert_eq!(info.tenant.as_deref(), Some(TENANT));
    assert_eq!(info.created_at, t0());
    must(
        "token_create",
        store.token_create(token("tk2", Some(OTHER), "h2")).await,
    );
    must(
        "token_create admin",
        store.token_create(token("tk3", None, "h3")).await,
    );
    must_fail(
        "token_create same id",
        ErrorKind::Conflict,
        store.token_create(token("tk1", Some(TENANT), "h9")).await,
    );

    let found = must("token_lookup", store.token_lookup("h1").await);
    assert_eq!(found.map(|t| t.id).as_deref(), Some("tk1"));
    assert_eq!(
        must("token_lookup admin", store.token_lookup("h3").await).and_then(|t| t.tenant),
        None
    );
    assert!(must("token_lookup unknown", store.token_lookup("nope").await).is_none());

    assert_eq!(
        must("token_list", store.token_list(Some(TENANT)).await).len(),
        1
    );
    assert_eq!(
        must("token_list all", store.token_list(None).await).len(),
        3
    );

    must_fail(
        "token_revoke from another tenant",
        ErrorKind::NotFound,
        store
            .token_revoke(TokenRevoke {
                tenant: Some(OTHER.into()),
                id: "tk1".into(),
                now: t0(),
            })
            .await,
    );
    assert!(must("token_lookup", store.token_lookup("h1").await).is_some());
    must_fail(
        "token_revoke unknown",
        ErrorKind::NotFound,
        store
            .token_revoke(TokenRevoke {
                tenant: None,
                id: "nope".into(),
                now: t0(),
            })
            .await,
    );
    must(
        "token_revoke",
        store
            .token_revoke(TokenRevoke {
                tenant: Some(TENANT.into()),
                id: "tk1".into(),
                now: t0(),
            })
            .await,
    );
    assert!(
        must("token_lookup revoked", store.token_lookup("h1").await).is_none(),
        "a revoked token must not authenticate"
    );
    assert!(must("token_list", store.token_list(Some(TENANT)).await).is_empty());
    must(
        "token_revoke by admin",
        store
            .token_revoke(TokenRevoke {
                tenant: None,
                id: "tk2".into(),
                now: t0(),
            })
            .await,
    );
    assert!(must("token_lookup", store.token_lookup("h2").await).is_none());
}

fn worker(id: &str, tenant: &str, at: i64) -> WorkerRegister {
    WorkerRegister {
        id: id.into(),
        tenant: tenant.into(),
        pool: "default".into(),
        hostname: "host-1".into(),
        queues: vec![QUEUE.into()],
        concurrency: 4,
        now: after(t0(), at),
    }
}

/// Workers: register, heartbeat, drain, mark down, come back, exit, list.
pub async fn workers_lifecycle(store: DynStore) {
    setup(&store).await;
    setup_queue(&store, OTHER, QUEUE, test_settings()).await;
    let w = must(
        "worker_register",
        store.worker_register(worker("w-a", TENANT, 0)).await,
    );
    assert_eq!(w.state, WorkerState::Active);
    assert_eq!(w.queues, vec![QUEUE.to_string()]);
    assert_eq!((w.concurrency, w.running), (4, 0));
    assert_eq!((w.started_at, w.last_seen), (t0(), t0()));
    must(
        "worker_register",
        store.worker_register(worker("w-b", TENANT, 10)).await,
    );
    must(
        "worker_register",
        store.worker_register(worker("w-c", OTHER, 20)).await,
    );

    let listed = must(
        "worker_list",
        store
            .worker_list(WorkerList {
                tenant: Some(TENANT.into()),
                now: t0(),
            })
            .await,
    );
    let ids: Vec<_> = listed.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, vec!["w-b", "w-a"], "workers are listed newest first");
    assert_eq!(
        must(
            "worker_list all",
            store
                .worker_list(WorkerList {
                    tenant: None,
                    now: t0()
                })
                .await
        )
        .len(),
        3
    );

    let beat = |id: &str, running, draining, at| WorkerBeat {
        id: id.into(),
        running,
        draining,
        now: after(t0(), at),
    };
    let w = must(
        "worker_heartbeat",
        store.worker_heartbeat(beat("w-a", 3, false, 100)).await,
    );
    assert_eq!(
        (w.running, w.state, w.last_seen),
        (3, WorkerState::Active, after(t0(), 100))
    );
    let w = must(
        "worker_heartbeat draining",
        store.worker_heartbeat(beat("w-b", 1, true, 100)).await,
    );
    assert_eq!(w.state, WorkerState::Draining);
    must_fail(
        "worker_heartbeat unknown",
        ErrorKind::NotFound,
        store.worker_heartbeat(beat("nope", 0, false, 100)).await,
    );

    // w-c was last seen at +20s: silent since before +50s. w-a and w-b beat at +100s.
    assert_eq!(
        must(
            "worker_mark_down",
            store
                .worker_mark_down(WorkerMarkDown {
                    silent_since: after(t0(), 50)
                })
                .await
        ),
        1
    );
    let all = must(
        "worker_list",
        store
            .worker_list(WorkerList {
                tenant: None,
                now: t0(),
            })
            .await,
    );
    let state = |id: &str| all.iter().find(|w| w.id == id).map(|w| w.state);
    assert_eq!(state("w-c"), Some(WorkerState::Down));
    assert_eq!(state("w-a"), Some(WorkerState::Active));
    assert_eq!(
        must(
            "worker_mark_down again",
            store
                .worker_mark_down(WorkerMarkDown {
                    silent_since: after(t0(), 50)
                })
                .await
        ),
        0,
        "a down worker is not marked down twice"
    );
    let w = must(
        "heartbeat after down",
        store.worker_heartbeat(beat("w-c", 0, false, 200)).await,
    );
    assert_eq!(
        w.state,
        WorkerState::Active,
        "a heartbeat brings a down worker back"
    );

    must(
        "worker_exit",
        store
            .worker_exit(WorkerExit {
                id: "w-a".into(),
                now: after(t0(), 300),
            })
            .await,
    );
    let all = must(
        "worker_list",
        store
            .worker_list(WorkerList {
                tenant: Some(TENANT.into()),
                now: after(t0(), 400),
            })
            .await,
    );
    assert_eq!(
        all.iter().find(|w| w.id == "w-a").map(|w| w.state),
        Some(WorkerState::Exited)
    );
    // The cut-off for exited workers is a day before the caller's `now`, not the host's clock.
    let later = after(t0(), 300 + 86_400 + 1);
    let all = must(
        "worker_list a day later",
        store
            .worker_list(WorkerList {
                tenant: Some(TENANT.into()),
                now: later,
            })
            .await,
    );
    assert!(
        all.iter().all(|w| w.id != "w-a"),
        "a worker that exited more than a day before `now` is still listed"
    );
    assert_eq!(
        must(
            "worker_mark_down",
            store
                .worker_mark_down(WorkerMarkDown {
                    silent_since: after(t0(), 10_000)
                })
                .await
        ),
        2,
        "exited workers are never marked down"
    );
}

/// Queue stats count tasks per state and age the oldest leasable task.
pub async fn queue_stats_counts_states(store: DynStore) {
    setup(&store).await;
    setup_queue(&store, OTHER, QUEUE, test_settings()).await;
    submit(&store, job(TENANT, QUEUE, 5, t0())).await;
    submit(&store, job(OTHER, QUEUE, 1, t0())).await;
    let leased = lease(&store, QUEUE, 2, after(t0(), 1)).await;
    assert_eq!(leased.len(), 2);

    let stats = must(
        "queue_stats",
        store
            .queue_stats(QueueStatsQuery {
                tenant: Some(TENANT.into()),
                now: after(t0(), 10),
            })
            .await,
    );
    assert_eq!(stats.len(), 1);
    let s = &stats[0];
    assert_eq!((s.tenant.as_str(), s.queue.as_str()), (TENANT, QUEUE));
    assert_eq!(
        (s.counts.available, s.counts.leased, s.counts.total()),
        (3, 2, 5)
    );
    assert!(!s.paused);
    let age = s.oldest_available_age_seconds.unwrap_or(-1.0);
    assert!(
        (age - 10.0).abs() < 0.01,
        "oldest available task waited 10s, got {age}"
    );
    assert_eq!(
        must(
            "queue_stats all",
            store
                .queue_stats(QueueStatsQuery {
                    tenant: None,
                    now: t0()
                })
                .await
        )
        .len(),
        2
    );
}
