//! The PostgreSQL backend against a real server: the conformance suite, two replicas sharing
//! one schema, wake-ups across replicas, migrations racing at start-up and leader election.
//!
//! Needs `SPILLWAY_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`). Without
//! it every test prints why it skipped, unless `CI=true`, where a missing database is a failure.
//! Each test works in its own fresh schema and drops it when it passes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spillway_core::api::Completion;
use spillway_store::conformance::{QUEUE, TENANT, job, setup, setup_queue, t0, test_settings};
use spillway_store::postgres::PostgresStore;
use spillway_store::{DynStore, Store, Takes, TaskComplete, TaskLease, Waiter};

const URL_VAR: &str = "SPILLWAY_TEST_POSTGRES_URL";

/// The database URL, or `None` (after saying so) when the test should skip.
fn database_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{URL_VAR} is not set but CI=true: point it at a PostgreSQL database, e.g. postgres://postgres@127.0.0.1:5432/test"
            );
            eprintln!("skipped: {URL_VAR} is not set; set it to run the PostgreSQL tests");
            None
        }
    }
}

fn fresh_schema() -> String {
    format!("spillway_test_{}", uuid::Uuid::new_v4().simple())
}

async fn connect(url: &str, schema: &str) -> PostgresStore {
    match PostgresStore::connect(url, Some(schema)).await {
        Ok(store) => store,
        Err(e) => panic!(
            "connect to {URL_VAR} in schema {schema}: {e} ({:?})",
            std::error::Error::source(&e)
        ),
    }
}

/// Run one conformance case on a fresh schema, dropped afterwards.
async fn conformance<F, Fut>(case: F)
where
    F: FnOnce(DynStore) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(url) = database_url() else { return };
    let store = Arc::new(connect(&url, &fresh_schema()).await);
    case(store.clone()).await;
    if let Err(e) = store.drop_schema().await {
        panic!("drop_schema: {e}");
    }
}

// Every conformance case, each on a fresh schema that `conformance` drops afterwards (or
// skipped when no database is configured).
spillway_store::store_conformance_tests!(runner = conformance);

/// Two replicas on one schema, four leasing loops each, race over 10,000 tasks: no task is
/// handed out twice while its lease is valid, and every task completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_share_a_task() {
    let Some(url) = database_url() else { return };
    let schema = fresh_schema();
    // Connecting both at once also races their migrations.
    let (a, b) = tokio::join!(connect(&url, &schema), connect(&url, &schema));
    let owner = Arc::new(a);
    let (a, b): (DynStore, DynStore) = (owner.clone(), Arc::new(b));
    setup(&a).await;
    let submitted = a.job_submit(job(TENANT, QUEUE, 10_000, t0())).await;
    let (submitted, created) = submitted.unwrap_or_else(|e| panic!("job_submit: {e}"));
    assert!(created);

    // The clock stands still at t0, so every lease stays valid for the whole race: a task
    // seen twice was leased twice while its first lease held.
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let mut loops = Vec::new();
    for (replica, store) in [(0, a.clone()), (1, b.clone())] {
        for n in 0..4 {
            let store = store.clone();
            let seen = seen.clone();
            loops.push(tokio::spawn(async move {
                let worker_id = format!("r{replica}-w{n}");
                loop {
                    let got = store
                        .task_lease(TaskLease {
                            tenant: TENANT.into(),
                            queues: vec![QUEUE.into()],
                            worker_id: worker_id.clone(),
                            worker_pool: "pool".into(),
                            burstable_only: false,
                            max: 64,
                            now: t0(),
                        })
                        .await
                        .unwrap_or_else(|e| panic!("task_lease on replica {replica}: {e}"));
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
                    let res = store
                        .task_complete(TaskComplete {
                            tenant: None,
                            items,
                            now: t0(),
                        })
                        .await
                        .unwrap_or_else(|e| panic!("task_complete on replica {replica}: {e}"));
                    assert!(
                        res.iter().all(|r| r.ok()),
                        "a current lease was refused: {res:?}"
                    );
                }
            }));
        }
    }
    for l in loops {
        if let Err(e) = l.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    assert_eq!(seen.lock().unwrap_or_else(|p| p.into_inner()).len(), 10_000);
    let done = b
        .job_get(None, &submitted.id)
        .await
        .unwrap_or_else(|e| panic!("job_get: {e}"));
    assert_eq!(
        done.counts.succeeded, 10_000,
        "every task completed exactly once"
    );
    drop((a, b));
    owner
        .drop_schema()
        .await
        .unwrap_or_else(|e| panic!("drop_schema: {e}"));
}

/// A submit on one replica wakes a long-poll waiting on the other, through LISTEN/NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_from_one_replica_wakes_the_other() {
    let Some(url) = database_url() else { return };
    let schema = fresh_schema();
    let owner = Arc::new(connect(&url, &schema).await);
    let a: DynStore = owner.clone();
    let b = connect(&url, &schema).await;
    // Notifications are database-wide: a queue name of its own keeps other tests' submits
    // from waking this waiter.
    let queue = format!("q-{}", uuid::Uuid::new_v4().simple());
    setup_queue(&a, TENANT, &queue, test_settings()).await;

    let notify = b.wakeups().listener(TENANT, &queue);
    let notified = notify.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    a.job_submit(job(TENANT, &queue, 1, t0()))
        .await
        .unwrap_or_else(|e| panic!("job_submit: {e}"));
    // A deadline, not a delay: the notification is on its way once the submit committed.
    let woke = tokio::time::timeout(Duration::from_secs(10), notified).await;
    assert!(
        woke.is_ok(),
        "a submit on replica a did not wake a waiter on replica b"
    );
    drop((a, b));
    owner
        .drop_schema()
        .await
        .unwrap_or_else(|e| panic!("drop_schema: {e}"));
}

/// A wake-up from another replica carries how many tasks it made leasable: one new task
/// wakes one waiter there, not all; a replica's own notification is not heard twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_wakeups_wake_one_waiter_per_task_and_skip_their_own_echo() {
    let Some(url) = database_url() else { return };
    let schema = fresh_schema();
    let owner = Arc::new(connect(&url, &schema).await);
    let a: DynStore = owner.clone();
    let b: DynStore = Arc::new(connect(&url, &schema).await);
    let queue = format!("q-{}", uuid::Uuid::new_v4().simple());
    let marker = format!("m-{}", uuid::Uuid::new_v4().simple());
    setup_queue(&a, TENANT, &queue, test_settings()).await;
    setup_queue(&a, TENANT, &marker, test_settings()).await;
    let queues = [queue.clone()];
    let on_a: Vec<Waiter> = (0..3)
        .map(|_| a.wakeups().waiter(TENANT, &queues, Takes::Any(1)))
        .collect();
    let on_b: Vec<Waiter> = (0..3)
        .map(|_| b.wakeups().waiter(TENANT, &queues, Takes::Any(1)))
        .collect();
    let woken = |waiters: &[Waiter]| waiters.iter().filter(|w| w.is_woken()).count();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);

    for n in 1..=2 {
        a.job_submit(job(TENANT, &queue, 1, t0()))
            .await
            .unwrap_or_else(|e| panic!("job_submit: {e}"));
        // Notifications arrive in order: once the second is in, the first was counted.
        while woken(&on_b) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no wake-up reached b"
            );
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(woken(&on_b), 2, "two tasks woke two of b's waiters");
    assert_eq!(woken(&on_a), 2, "a woke its own waiters at the commits");

    // b's notification on another queue reaches a after a's own two: once a has heard it,
    // it has passed over its echoes.
    let heard = a.wakeups().listener(TENANT, &marker);
    let notified = heard.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    b.job_submit(job(TENANT, &marker, 1, t0()))
        .await
        .unwrap_or_else(|e| panic!("job_submit: {e}"));
    tokio::time::timeout(Duration::from_secs(10), notified)
        .await
        .unwrap_or_else(|_| panic!("b's wake-up did not reach a"));
    assert_eq!(woken(&on_a), 2, "a heard its own notifications again");
    drop((on_a, on_b, a, b));
    owner
        .drop_schema()
        .await
        .unwrap_or_else(|e| panic!("drop_schema: {e}"));
}

/// When the listen connection dies, the store reconnects and wake-ups from other replicas
/// arrive again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakeups_survive_a_lost_listen_connection() {
    let Some(url) = database_url() else { return };
    let schema = fresh_schema();
    let owner = Arc::new(connect(&url, &schema).await);
    let a: DynStore = owner.clone();
    // A name of its own, so only this store's sessions are cut below.
    let app = format!("spillway-test-{}", uuid::Uuid::new_v4().simple());
    let separator = if url.contains('?') { '&' } else { '?' };
    let b = connect(&format!("{url}{separator}application_name={app}"), &schema).await;
    let queue = format!("q-{}", uuid::Uuid::new_v4().simple());
    setup_queue(&a, TENANT, &queue, test_settings()).await;

    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let driver = tokio::spawn(connection);
    let cut = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1 AND query LIKE 'LISTEN%'",
            &[&app],
        )
        .await
        .unwrap_or_else(|e| panic!("terminate the listen connection: {e}"));
    assert_eq!(
        cut.len(),
        1,
        "expected exactly one listen connection for {app}"
    );

    // Submits sent before the listener is back are not heard, so keep submitting until one
    // wakes the waiter, within a deadline.
    let notify = b.wakeups().listener(TENANT, &queue);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        a.job_submit(job(TENANT, &queue, 1, t0()))
            .await
            .unwrap_or_else(|e| panic!("job_submit: {e}"));
        if tokio::time::timeout(Duration::from_millis(500), notified)
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no wake-up arrived within 20s of losing the listen connection"
        );
    }
    drop(admin);
    driver.abort();
    drop((a, b));
    owner
        .drop_schema()
        .await
        .unwrap_or_else(|e| panic!("drop_schema: {e}"));
}

/// Several replicas starting at once apply each migration exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_migrate_once() {
    let Some(url) = database_url() else { return };
    let schema = fresh_schema();
    let (a, b, c) = tokio::join!(
        connect(&url, &schema),
        connect(&url, &schema),
        connect(&url, &schema)
    );
    drop((b, c));
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let driver = tokio::spawn(connection);
    let rows = client
        .query(
            &format!(
                "SELECT version, count(*) AS n FROM {schema}.schema_migrations GROUP BY version"
            ),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("read schema_migrations: {e}"));
    assert!(!rows.is_empty(), "no migration was recorded");
    for row in rows {
        let (version, n): (i32, i64) = (row.get("version"), row.get("n"));
        assert_eq!(n, 1, "migration {version} was recorded {n} times");
    }
    drop(client);
    driver.abort();
    a.drop_schema()
        .await
        .unwrap_or_else(|e| panic!("drop_schema: {e}"));
}

/// Only one replica holds an advisory leadership key at a time; it passes on when released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_leader_is_exclusive() {
    let Some(url) = database_url() else { return };
    let schema = fresh_schema();
    let a = connect(&url, &schema).await;
    let b = connect(&url, &schema).await;
    let key: i64 = rand::random();

    let leader = a
        .try_advisory_leader(key)
        .await
        .unwrap_or_else(|e| panic!("try_advisory_leader: {e}"))
        .unwrap_or_else(|| panic!("the first replica to ask did not become leader"));
    assert!(leader.is_held());
    let second = b
        .try_advisory_leader(key)
        .await
        .unwrap_or_else(|e| panic!("try_advisory_leader: {e}"));
    assert!(second.is_none(), "two replicas hold leadership at once");

    leader
        .release()
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
    let next = b
        .try_advisory_leader(key)
        .await
        .unwrap_or_else(|e| panic!("try_advisory_leader: {e}"));
    let next = next.unwrap_or_else(|| panic!("leadership was not passed on after release"));

    // Dropping the guard closes its connection, which frees the lock on the server; wait for
    // that with a deadline.
    drop(next);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let again = a
            .try_advisory_leader(key)
            .await
            .unwrap_or_else(|e| panic!("try_advisory_leader: {e}"));
        if again.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leadership was still held 10s after its guard was dropped"
        );
        // A poll interval, not synchronisation: the loop ends on the condition.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(b);
    a.drop_schema()
        .await
        .unwrap_or_else(|e| panic!("drop_schema: {e}"));
}

/// A bad schema name is refused before anything reaches the database.
#[tokio::test]
async fn rejects_unsafe_schema_names() {
    let Some(url) = database_url() else { return };
    let err = PostgresStore::connect(&url, Some("x; DROP TABLE tasks"))
        .await
        .err()
        .unwrap_or_else(|| panic!("an unsafe schema name was accepted"));
    assert_eq!(err.kind(), spillway_core::ErrorKind::InvalidArgument);
    assert!(err.message().contains("schema name"), "{err}");
}

/// An unreachable database is reported as unavailable (worth retrying), not as a bug.
#[tokio::test]
async fn unreachable_database_is_unavailable() {
    // Port 1 on loopback refuses connections; no database is needed for this test.
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/test", None)
        .await
        .err()
        .unwrap_or_else(|| panic!("connected to a port where nothing listens"));
    assert_eq!(err.kind(), spillway_core::ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
}

/// Through the `Store` trait, too: a second replica gets no lease while the first holds one,
/// and gets it once the first lease is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_try_is_exclusive() {
    let Some(url) = database_url() else { return };
    let schema = fresh_schema();
    let a: DynStore = Arc::new(connect(&url, &schema).await);
    let b = connect(&url, &schema).await;
    let key: i64 = rand::random();
    let lease = a
        .leader_try(key)
        .await
        .unwrap_or_else(|e| panic!("leader_try: {e}"))
        .unwrap_or_else(|| panic!("the first replica to ask did not become leader"));
    assert!(lease.is_held());
    let second = b
        .leader_try(key)
        .await
        .unwrap_or_else(|e| panic!("leader_try: {e}"));
    assert!(second.is_none(), "two replicas hold leadership at once");
    drop(lease);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = b
            .leader_try(key)
            .await
            .unwrap_or_else(|e| panic!("leader_try: {e}"));
        if next.is_some_and(|l| l.is_held()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leadership was not passed on after the lease was dropped"
        );
        // A poll interval, not synchronisation: the loop ends on the condition.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.drop_schema()
        .await
        .unwrap_or_else(|e| panic!("drop_schema: {e}"));
}

/// A plain client on the test database, with its connection driven in the background.
async fn admin_client(url: &str) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, driver)
}

/// SHA-256 of a migration file as shipped, lowercase hex.
/// How many migration files `backend` has: every one is applied and recorded.
fn migration_files(backend: &str) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count()
}

fn file_sha256(path: &str) -> String {
    use sha2::Digest;
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let bytes = std::fs::read(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()));
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// (version, checksum) of every migration recorded in `schema`, in version order.
async fn recorded_checksums(
    client: &tokio_postgres::Client,
    schema: &str,
) -> Vec<(i32, Option<String>)> {
    client
        .query(
            &format!("SELECT version, checksum FROM {schema}.schema_migrations ORDER BY version"),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("read schema_migrations: {e}"))
        .iter()
        .map(|row| (row.get("version"), row.get("checksum")))
        .collect()
}

/// A schema whose recorded checksum of a shipped migration differs from this build's file
/// refuses to connect, naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_whose_migration_checksum_differs_refuses_to_connect() {
    let Some(url) = database_url() else { return };
    let schema = fresh_schema();
    let store = connect(&url, &schema).await;
    let (client, driver) = admin_client(&url).await;
    assert_eq!(
        recorded_checksums(&client, &schema).await,
        vec![
            (1, Some(file_sha256("migrations/postgres/0001_init.sql"))),
            (
                2,
                Some(file_sha256(
                    "migrations/postgres/0002_migration_checksums.sql"
                ))
            ),
            (
                3,
                Some(file_sha256(
                    "migrations/postgres/0003_durations_in_milliseconds.sql"
                ))
            ),
            (
                4,
                Some(file_sha256("migrations/postgres/0004_pool_status.sql"))
            ),
            (
                5,
                Some(file_sha256("migrations/postgres/0005_queue_counts.sql"))
            ),
            (
                6,
                Some(file_sha256("migrations/postgres/0006_finished_jobs.sql"))
            ),
            (
                7,
                Some(file_sha256(
                    "migrations/postgres/0007_token_scope_and_sessions.sql"
                ))
            ),
            (
                8,
                Some(file_sha256("migrations/postgres/0008_log_chunks.sql"))
            ),
            (
                9,
                Some(file_sha256("migrations/postgres/0009_pool_bounds.sql"))
            ),
        ]
    );
    // As if 0001_init.sql had been edited after this schema applied it.
    let n = client
        .execute(
            &format!("UPDATE {schema}.schema_migrations SET checksum = $1 WHERE version = 1"),
            &[&"0".repeat(64)],
        )
        .await
        .unwrap_or_else(|e| panic!("tamper: {e}"));
    assert_eq!(n, 1);
    let err = match PostgresStore::connect(&url, Some(&schema)).await {
        Ok(_) => panic!("a schema with a different migration checksum connected"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("0001_init.sql"), "{err}");
    assert!(
        err.contains("shipped migrations are never edited: add a new numbered one"),
        "{err}"
    );
    drop(client);
    driver.abort();
    store
        .drop_schema()
        .await
        .unwrap_or_else(|e| panic!("drop_schema: {e}"));
}

/// A schema migrated by a build from before checksums gets them recorded on its first start,
/// its queue durations converted to milliseconds, and then opens as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_before_checksums_gets_them_recorded() {
    let Some(url) = database_url() else { return };
    let schema = fresh_schema();
    let (client, driver) = admin_client(&url).await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema};
             CREATE TABLE schema_migrations (
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             {init}
             INSERT INTO schema_migrations (version, name) VALUES (1, 'init');
             INSERT INTO tenants (name, created_at) VALUES ('old', now());
             INSERT INTO queues (tenant, name, max_attempts, backoff_base_ns, backoff_max_ns,
                                 lease_ns, retention_ns, paused, created_at)
             VALUES ('old', 'q', 3, 1500000000, 60000000000, 30000000000, 86400000000000,
                     FALSE, now());",
            init = include_str!("../migrations/postgres/0001_init.sql"),
        ))
        .await
        .unwrap_or_else(|e| panic!("set up an old schema: {e}"));
    let store = connect(&url, &schema).await;
    let recorded = recorded_checksums(&client, &schema).await;
    assert_eq!(recorded.len(), migration_files("postgres"), "{recorded:?}");
    assert_eq!(
        recorded[0].1,
        Some(file_sha256("migrations/postgres/0001_init.sql"))
    );
    assert!(recorded.iter().all(|r| r.1.is_some()), "{recorded:?}");
    let store: DynStore = Arc::new(store);
    // 0003 converted the queue's durations from nanoseconds to milliseconds.
    let queue = store
        .queue_get("old", "q")
        .await
        .unwrap_or_else(|e| panic!("queue_get: {e}"));
    assert_eq!(queue.settings.backoff_base, Duration::from_millis(1500));
    assert_eq!(queue.settings.backoff_max, Duration::from_secs(60));
    assert_eq!(queue.settings.lease_duration, Duration::from_secs(30));
    assert_eq!(queue.settings.retention, Duration::from_secs(86_400));
    setup(&store).await;
    drop(client);
    driver.abort();
    // The next start checks what the first one recorded.
    let again = connect(&url, &schema).await;
    again
        .drop_schema()
        .await
        .unwrap_or_else(|e| panic!("drop_schema: {e}"));
}

/// Two replicas change tasks at once while both fold the counters' pending changes over and
/// over: the counts stay exact, so no change is folded twice or lost between the tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folding_task_counters_from_two_replicas_loses_and_doubles_nothing() {
    let Some(url) = database_url() else { return };
    let schema = fresh_schema();
    let (a, b) = tokio::join!(connect(&url, &schema), connect(&url, &schema));
    let (a, b) = (Arc::new(a), Arc::new(b));
    let (da, db): (DynStore, DynStore) = (a.clone(), b.clone());
    setup(&da).await;
    for _ in 0..4 {
        da.job_submit(job(TENANT, QUEUE, 500, t0()))
            .await
            .unwrap_or_else(|e| panic!("job_submit: {e}"));
    }
    let work = |store: DynStore, worker: &'static str| async move {
        loop {
            let leased = store
                .task_lease(TaskLease {
                    tenant: TENANT.into(),
                    queues: vec![QUEUE.into()],
                    worker_id: worker.into(),
                    worker_pool: "pool".into(),
                    burstable_only: false,
                    max: 37,
                    now: t0(),
                })
                .await
                .unwrap_or_else(|e| panic!("task_lease: {e}"));
            if leased.is_empty() {
                return;
            }
            store
                .task_complete(TaskComplete {
                    tenant: None,
                    items: spillway_store::conformance::completions(leased),
                    now: t0(),
                })
                .await
                .unwrap_or_else(|e| panic!("task_complete: {e}"));
        }
    };
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let folds = |store: Arc<PostgresStore>, done: Arc<std::sync::atomic::AtomicBool>| async move {
        let mut folded = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            folded += store
                .fold_task_counts()
                .await
                .unwrap_or_else(|e| panic!("fold_task_counts: {e}"));
        }
        folded
    };
    let fold_a = tokio::spawn(folds(a.clone(), done.clone()));
    let fold_b = tokio::spawn(folds(b.clone(), done.clone()));
    tokio::join!(work(da.clone(), "wa"), work(db.clone(), "wb"));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let folded = fold_a.await.expect("folder a") + fold_b.await.expect("folder b");
    assert!(
        folded > 0,
        "the folders folded some changes while the work ran"
    );
    spillway_store::conformance::assert_counts_exact(&da, t0(), "while folding").await;
    a.fold_task_counts()
        .await
        .unwrap_or_else(|e| panic!("fold_task_counts: {e}"));
    spillway_store::conformance::assert_counts_exact(&db, t0(), "after the last fold").await;
    drop((da, db, b));
    a.drop_schema()
        .await
        .unwrap_or_else(|e| panic!("drop_schema: {e}"));
}

/// A schema written before the task counters and the jobs' finished state (version 1, as the
/// first release left it), holding finished, failed and running jobs, is brought up to date
/// with its tasks carried over: the counters count them, the failed job is listed as failed,
/// and retention deletes the job that finished before the queue's retention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_schema_gets_its_counts_and_finished_jobs_on_upgrade() {
    use spillway_core::state::{JobState, StateCounts};
    use spillway_store::{JobList, QueueStatsQuery, RetentionSweep};

    let Some(url) = database_url() else { return };
    let schema = fresh_schema();
    let (client, driver) = admin_client(&url).await;
    let job = |id: &str| {
        format!(
            "INSERT INTO jobs (id, tenant, queue, labels, spec, priority, burstable,
                           delete_inputs_on_success, has_inputs, task_count, created_at)
         VALUES ('{id}', 'old', 'q', '{{}}', '{{\"command\": [\"true\"]}}', 0, FALSE, FALSE,
                 FALSE, 2, now() - interval '3 hours');"
        )
    };
    let task = |job: &str, idx: i32, state: &str, finished: &str| {
        format!(
            "INSERT INTO tasks (job_id, tenant, queue, idx, state, priority, burstable, run_at,
                            max_attempts, created_at, finished_at)
         VALUES ('{job}', 'old', 'q', {idx}, '{state}', 0, FALSE, now() - interval '3 hours', 3,
                 now() - interval '3 hours', {finished});"
        )
    };
    let two_hours_ago = "now() - interval '2 hours'";
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema};
             CREATE TABLE schema_migrations (
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             {init}
             INSERT INTO schema_migrations (version, name) VALUES (1, 'init');
             INSERT INTO tenants (name, created_at) VALUES ('old', now());
             INSERT INTO queues (tenant, name, max_attempts, backoff_base_ns, backoff_max_ns,
                                 lease_ns, retention_ns, paused, created_at)
             VALUES ('old', 'q', 3, 1500000000, 60000000000, 30000000000, 3600000000000,
                     FALSE, now());
             {done} {done0} {done1}
             {failed} {failed0} {failed1}
             {running} {running0} {running1}",
            init = include_str!("../migrations/postgres/0001_init.sql"),
            done = job("done"),
            done0 = task("done", 0, "succeeded", two_hours_ago),
            done1 = task("done", 1, "succeeded", two_hours_ago),
            failed = job("failed"),
            failed0 = task("failed", 0, "succeeded", "now()"),
            failed1 = task("failed", 1, "dead", "now()"),
            running = job("running"),
            running0 = task("running", 0, "available", "NULL"),
            running1 = task("running", 1, "leased", "NULL"),
        ))
        .await
        .unwrap_or_else(|e| panic!("set up an old schema: {e}"));
    let owner = Arc::new(connect(&url, &schema).await);
    let store: DynStore = owner.clone();
    let now = chrono::Utc::now();
    let stats = store
        .queue_stats(QueueStatsQuery { tenant: None, now })
        .await
        .unwrap_or_else(|e| panic!("queue_stats: {e}"));
    let expected = StateCounts {
        available: 1,
        leased: 1,
        succeeded: 3,
        dead: 1,
        ..StateCounts::default()
    };
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].counts, expected, "the old tasks are counted");
    let failed = store
        .job_list(JobList {
            state: Some(JobState::Failed),
            limit: 10,
            ..JobList::default()
        })
        .await
        .unwrap_or_else(|e| panic!("job_list: {e}"));
    let ids: Vec<&str> = failed.items.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["failed"],
        "the old failed job is listed as failed"
    );
    let swept = store
        .retention_sweep(RetentionSweep { now, limit: 10 })
        .await
        .unwrap_or_else(|e| panic!("retention_sweep: {e}"));
    let swept: Vec<&str> = swept.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(
        swept,
        vec!["done"],
        "only the job finished two hours ago is past retention"
    );
    drop(store);
    owner
        .drop_schema()
        .await
        .unwrap_or_else(|e| panic!("drop_schema: {e}"));
    drop(client);
    driver.abort();
}

/// A live log chunk appended through one replica is read through another at once (nothing
/// live is kept in a replica's memory), and a stale lease is refused on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_log_chunks_written_through_one_replica_are_read_through_the_other() {
    let Some(url) = database_url() else { return };
    let schema = fresh_schema();
    let owner = Arc::new(connect(&url, &schema).await);
    let (a, b): (DynStore, DynStore) = (owner.clone(), Arc::new(connect(&url, &schema).await));
    setup(&a).await;
    a.job_submit(job(TENANT, QUEUE, 1, t0()))
        .await
        .unwrap_or_else(|e| panic!("job_submit: {e}"));
    let leased = spillway_store::conformance::lease(&a, QUEUE, 1, t0()).await;
    let task = &leased[0];
    let append = |seq: u64, data: &[u8], token: &str| spillway_store::LogAppend {
        tenant: Some(TENANT.into()),
        task_id: task.task_id,
        lease_token: token.into(),
        seq,
        data: data.to_vec(),
        max_bytes: 1 << 20,
    };
    let read = |store: DynStore| async move {
        store
            .log_chunks(spillway_store::LogChunks {
                task_id: task.task_id,
                attempt: task.attempt,
                after_seq: None,
                limit: 10,
            })
            .await
            .unwrap_or_else(|e| panic!("log_chunks: {e}"))
            .into_iter()
            .flat_map(|c| c.data)
            .collect::<Vec<u8>>()
    };
    a.log_append(append(0, b"from a\n", &task.lease_token))
        .await
        .unwrap_or_else(|e| panic!("log_append on a: {e}"));
    assert_eq!(read(b.clone()).await, b"from a\n");
    b.log_append(append(1, b"from b\n", &task.lease_token))
        .await
        .unwrap_or_else(|e| panic!("log_append on b: {e}"));
    assert_eq!(read(a.clone()).await, b"from a\nfrom b\n");
    let stale = b.log_append(append(2, b"x", &"f".repeat(32))).await;
    assert_eq!(
        stale.map_err(|e| e.kind()),
        Err(spillway_core::ErrorKind::Conflict)
    );
    if let Err(e) = owner.drop_schema().await {
        panic!("drop_schema: {e}");
    }
}
