//! The store conformance suite against [`SqliteStore`], each case in its own temporary file,
//! plus durability across reopening the file.

use std::sync::Arc;

use spillway_core::state::StateCounts;
use spillway_store::conformance::{QUEUE, TENANT, job, lease, setup, t0};
use spillway_store::sqlite::SqliteStore;
use spillway_store::{DynStore, QueueDemandQuery, QueueStatsQuery};

/// A fresh store in a new folder under cargo's per-target temporary folder (kept, so that the
/// store can outlive this function; `target/` holds it, not the system's /tmp).
async fn make_sqlite() -> DynStore {
    let dir = match tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")) {
        Ok(dir) => dir.keep(),
        Err(e) => panic!("cannot make a temporary folder: {e}"),
    };
    match SqliteStore::open(&dir.join("nested/spillway.db")).await {
        Ok(store) => Arc::new(store),
        Err(e) => panic!("cannot open sqlite store: {e}"),
    }
}

spillway_store::store_conformance_tests!(|| async { make_sqlite().await });

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_jobs_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("spillway.db");
    let mut submitted = Vec::new();
    {
        let store: DynStore = Arc::new(
            SqliteStore::open(&path)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        setup(&store).await;
        for n in 1..=20 {
            let (j, _) = store
                .job_submit(job(TENANT, QUEUE, n, t0()))
                .await
                .unwrap_or_else(|e| panic!("submit: {e}"));
            submitted.push((j.id, n));
        }
        assert_eq!(lease(&store, QUEUE, 5, t0()).await.len(), 5);
    }
    let store: DynStore = Arc::new(
        SqliteStore::open(&path)
            .await
            .unwrap_or_else(|e| panic!("reopen: {e}")),
    );
    for (id, n) in &submitted {
        let j = store
            .job_get(Some(TENANT), id)
            .await
            .unwrap_or_else(|e| panic!("job {id} lost: {e}"));
        assert_eq!(j.task_count as usize, *n);
        assert_eq!(j.counts.total() as usize, *n);
    }
    let total: u64 = {
        let mut sum = 0;
        for (id, _) in &submitted {
            sum += store
                .job_get(None, id)
                .await
                .map(|j| j.counts.leased)
                .unwrap_or(0);
        }
        sum
    };
    assert_eq!(
        total, 5,
        "the leases committed before closing are still there"
    );
    // Reopening migrates nothing twice and the file still works.
    assert_eq!(lease(&store, QUEUE, 1000, t0()).await.len(), 210 - 5);
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

/// (version, name, checksum) of every recorded migration, in version order.
fn recorded_migrations(path: &std::path::Path) -> Vec<(i64, Option<String>, Option<String>)> {
    let conn = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("open: {e}"));
    let mut stmt = conn
        .prepare("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        .unwrap_or_else(|e| panic!("prepare: {e}"));
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .unwrap_or_else(|e| panic!("read schema_migrations: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_migration_is_recorded_with_its_checksum() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("spillway.db");
    drop(
        SqliteStore::open(&path)
            .await
            .unwrap_or_else(|e| panic!("open: {e}")),
    );
    let recorded = recorded_migrations(&path);
    assert_eq!(
        recorded,
        vec![
            (
                1,
                Some("init".to_string()),
                Some(file_sha256("migrations/sqlite/0001_init.sql"))
            ),
            (
                2,
                Some("migration_checksums".to_string()),
                Some(file_sha256(
                    "migrations/sqlite/0002_migration_checksums.sql"
                ))
            ),
            (
                3,
                Some("pool_status".to_string()),
                Some(file_sha256("migrations/sqlite/0003_pool_status.sql"))
            ),
            (
                4,
                Some("queue_counts".to_string()),
                Some(file_sha256("migrations/sqlite/0004_queue_counts.sql"))
            ),
            (
                5,
                Some("finished_state".to_string()),
                Some(file_sha256("migrations/sqlite/0005_finished_state.sql"))
            ),
            (
                6,
                Some("token_scope_and_sessions".to_string()),
                Some(file_sha256(
                    "migrations/sqlite/0006_token_scope_and_sessions.sql"
                ))
            ),
            (
                7,
                Some("log_chunks".to_string()),
                Some(file_sha256("migrations/sqlite/0007_log_chunks.sql"))
            ),
            (
                8,
                Some("pool_bounds".to_string()),
                Some(file_sha256("migrations/sqlite/0008_pool_bounds.sql"))
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_whose_migration_checksum_differs_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("spillway.db");
    drop(
        SqliteStore::open(&path)
            .await
            .unwrap_or_else(|e| panic!("open: {e}")),
    );
    {
        // As if 0001_init.sql had been edited after this database applied it.
        let conn = rusqlite::Connection::open(&path).unwrap_or_else(|e| panic!("open: {e}"));
        let n = conn
            .execute(
                "UPDATE schema_migrations SET checksum = ?1 WHERE version = 1",
                [&"0".repeat(64)],
            )
            .unwrap_or_else(|e| panic!("tamper: {e}"));
        assert_eq!(n, 1);
    }
    let err = match SqliteStore::open(&path).await {
        Ok(_) => panic!("a database with a different migration checksum opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("0001_init.sql"), "{err}");
    assert!(
        err.contains("shipped migrations are never edited: add a new numbered one"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_checksums_gets_them_recorded_and_opens() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("spillway.db");
    {
        // What a build before checksums left behind: migration 1 and a bare record of it.
        let conn = rusqlite::Connection::open(&path).unwrap_or_else(|e| panic!("open: {e}"));
        conn.execute_batch(include_str!("../migrations/sqlite/0001_init.sql"))
            .unwrap_or_else(|e| panic!("apply 0001: {e}"));
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations (version, applied_at) VALUES (1, 0);",
        )
        .unwrap_or_else(|e| panic!("record 0001: {e}"));
    }
    let store: DynStore = Arc::new(
        SqliteStore::open(&path)
            .await
            .unwrap_or_else(|e| panic!("open an old database: {e}")),
    );
    setup(&store).await;
    drop(store);
    let recorded = recorded_migrations(&path);
    assert_eq!(recorded.len(), migration_files("sqlite"), "{recorded:?}");
    assert_eq!(
        recorded[0].2.as_deref(),
        Some(file_sha256("migrations/sqlite/0001_init.sql").as_str())
    );
    assert!(recorded.iter().all(|r| r.2.is_some()), "{recorded:?}");
    // And the next start checks them.
    drop(
        SqliteStore::open(&path)
            .await
            .unwrap_or_else(|e| panic!("reopen: {e}")),
    );
}

/// The mode bits of `path` (permission bits only).
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(e) => panic!("stat {}: {e}", path.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_and_its_wal_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("spillway.db");
    let files = ["spillway.db", "spillway.db-wal", "spillway.db-shm"].map(|f| dir.path().join(f));
    {
        let store: DynStore = Arc::new(
            SqliteStore::open(&path)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        setup(&store).await;
        store
            .job_submit(job(TENANT, QUEUE, 1, t0()))
            .await
            .unwrap_or_else(|e| panic!("submit: {e}"));
        for file in &files {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
    }
    // A database left readable by everyone (by an earlier version) is closed on open.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("chmod: {e}"));
    let _store = SqliteStore::open(&path)
        .await
        .unwrap_or_else(|e| panic!("reopen: {e}"));
    for file in &files {
        assert_eq!(mode(file), 0o600, "{} after reopening", file.display());
    }
}

#[tokio::test]
async fn a_page_cache_under_the_minimum_is_refused_with_what_to_give() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let options = spillway_store::sqlite::SqliteOptions {
        cache_bytes: spillway_store::sqlite::SqliteOptions::MIN_CACHE_BYTES - 1,
    };
    let err = SqliteStore::open_with(&dir.path().join("spillway.db"), options)
        .await
        .expect_err("a cache under 1MiB is refused");
    assert_eq!(
        err.kind(),
        spillway_core::ErrorKind::InvalidArgument,
        "{err}"
    );
    assert!(err.to_string().contains("at least 1MiB"), "{err}");
    assert!(
        !dir.path().join("spillway.db").exists(),
        "nothing is created for a refused setting"
    );
}

/// A database written by schema 3 (before the task counters), with tasks in every state,
/// opens with its counts carried over: queue stats and demand count what was there, and new
/// work is counted on top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_schema_3_gets_its_task_counts_on_upgrade() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("spillway.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap_or_else(|e| panic!("open: {e}"));
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);",
        )
        .unwrap_or_else(|e| panic!("schema_migrations: {e}"));
        for (version, name, file) in [
            (1, "init", "0001_init.sql"),
            (2, "migration_checksums", "0002_migration_checksums.sql"),
            (3, "pool_status", "0003_pool_status.sql"),
        ] {
            let relative = format!("migrations/sqlite/{file}");
            let sql = std::fs::read_to_string(format!("{}/{relative}", env!("CARGO_MANIFEST_DIR")))
                .unwrap_or_else(|e| panic!("read {file}: {e}"));
            conn.execute_batch(&sql)
                .unwrap_or_else(|e| panic!("apply {file}: {e}"));
            if version == 1 {
                conn.execute("INSERT INTO schema_migrations VALUES (1, 0)", [])
                    .unwrap_or_else(|e| panic!("record {file}: {e}"));
                continue;
            }
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at, name, checksum) VALUES (?1, 0, ?2, ?3)",
                rusqlite::params![version, name, file_sha256(&relative)],
            )
            .unwrap_or_else(|e| panic!("record {file}: {e}"));
        }
        conn.execute(
            "UPDATE schema_migrations SET name = 'init', checksum = ?1 WHERE version = 1",
            [file_sha256("migrations/sqlite/0001_init.sql")],
        )
        .unwrap_or_else(|e| panic!("record 0001: {e}"));
        // Times in microseconds: t0 is 2030-01-01T00:00:00Z.
        let t0 = t0().timestamp_micros();
        conn.execute_batch(&format!(
            "INSERT INTO tenants VALUES ('{TENANT}', {t0});
             INSERT INTO queues VALUES ('{TENANT}', '{QUEUE}', 3, 1000, 10000, 30000, 3600000, 0, {t0});
             INSERT INTO jobs (key, id, tenant, queue, labels, spec, priority, burstable,
                               delete_inputs_on_success, has_inputs, task_count, created_at)
                 VALUES (1, '01890000-0000-7000-8000-000000000000', '{TENANT}', '{QUEUE}', '{{}}',
                         '{{\"command\":[\"true\"]}}', 0, 0, 0, 0, 12, {t0});"
        ))
        .unwrap_or_else(|e| panic!("old rows: {e}"));
        let states = [
            ("available", 0, 0),
            ("available", 0, 0),
            ("available", 0, 0),
            ("available", 1, 0),
            ("available", 1, 0),
            ("succeeded", 0, 0),
            ("succeeded", 0, 0),
            ("succeeded", 1, 0),
            ("dead", 0, 0),
            ("dead", 0, 0),
            ("leased", 0, 0),
            ("scheduled", 0, 3_600_000_000),
        ];
        for (i, (state, burstable, later)) in states.iter().enumerate() {
            conn.execute(
                "INSERT INTO tasks (job_id, job_key, tenant, queue, idx, state, priority, burstable,
                                    run_at, max_attempts, created_at)
                 VALUES ('01890000-0000-7000-8000-000000000000', 1, ?1, ?2, ?3, ?4, 0, ?5, ?6, 3, ?7)",
                rusqlite::params![TENANT, QUEUE, i as i64, state, burstable, t0 + later, t0],
            )
            .unwrap_or_else(|e| panic!("old task: {e}"));
        }
    }
    let store: DynStore = Arc::new(
        SqliteStore::open(&path)
            .await
            .unwrap_or_else(|e| panic!("open a schema 3 database: {e}")),
    );
    let now = t0() + chrono::Duration::seconds(1);
    let stats = store
        .queue_stats(QueueStatsQuery { tenant: None, now })
        .await
        .unwrap_or_else(|e| panic!("queue_stats: {e}"));
    let expected = StateCounts {
        scheduled: 1,
        available: 5,
        leased: 1,
        succeeded: 3,
        dead: 2,
        ..StateCounts::default()
    };
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].counts, expected, "the old tasks are counted");
    let demand = store
        .queue_demand(QueueDemandQuery { now })
        .await
        .unwrap_or_else(|e| panic!("queue_demand: {e}"));
    assert_eq!(
        (
            demand[0].waiting,
            demand[0].waiting_burstable,
            demand[0].leased
        ),
        (5, 2, 1),
        "demand counts the old due tasks (the scheduled one is not due)"
    );
    store
        .job_submit(job(TENANT, QUEUE, 2, t0()))
        .await
        .unwrap_or_else(|e| panic!("job_submit: {e}"));
    let stats = store
        .queue_stats(QueueStatsQuery { tenant: None, now })
        .await
        .unwrap_or_else(|e| panic!("queue_stats: {e}"));
    assert_eq!(stats[0].counts.available, 7, "new work is counted on top");
    spillway_store::conformance::assert_counts_exact(&store, now, "after the upgrade").await;
}
