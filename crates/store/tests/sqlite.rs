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
