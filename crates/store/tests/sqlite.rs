//! The store conformance suite against [`SqliteStore`], each case in its own temporary file,
//! plus durability across reopening the file.

use std::sync::Arc;

use spillway_store::DynStore;
use spillway_store::conformance::{QUEUE, TENANT, job, lease, setup, t0};
use spillway_store::sqlite::SqliteStore;

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
    assert_eq!(recorded.len(), 3, "{recorded:?}");
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
