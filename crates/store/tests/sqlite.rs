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

/// Full-cycle throughput (submit, lease, complete in batches of 1,000) with 4 concurrent
/// workers. Prints tasks per second; asserts only that every task succeeded. Run with
/// `cargo test -p spillway-store --release --test sqlite -- --ignored --nocapture throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand in release mode"]
async fn throughput() {
    const JOBS: usize = 20;
    const PER_JOB: usize = 10_000;
    let store = make_sqlite().await;
    setup(&store).await;
    let started = std::time::Instant::now();
    let mut submits = Vec::new();
    for _ in 0..JOBS {
        let store = store.clone();
        submits.push(tokio::spawn(async move {
            let mut p = job(TENANT, QUEUE, PER_JOB, t0());
            p.payloads = vec![None; PER_JOB];
            store.job_submit(p).await.map(|(j, _)| j.id)
        }));
    }
    let mut ids = Vec::new();
    for s in submits {
        ids.push(
            s.await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let submitted = started.elapsed();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let (mut in_lease, mut in_complete) =
                (std::time::Duration::ZERO, std::time::Duration::ZERO);
            loop {
                let at = std::time::Instant::now();
                let got = lease(&store, QUEUE, 1000, t0()).await;
                in_lease += at.elapsed();
                if got.is_empty() {
                    println!("worker: lease {in_lease:?}, complete {in_complete:?}");
                    return;
                }
                let at = std::time::Instant::now();
                let items = got
                    .iter()
                    .map(|t| spillway_core::api::Completion {
                        task_id: t.task_id,
                        lease_token: t.lease_token.clone(),
                        exit_code: Some(0),
                        result: None,
                        log_tail: String::new(),
                    })
                    .collect();
                let res = store
                    .task_complete(spillway_store::TaskComplete { items, now: t0() })
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(res.iter().all(|r| r.ok));
                in_complete += at.elapsed();
            }
        }));
    }
    for w in workers {
        w.await.unwrap_or_else(|e| panic!("{e}"));
    }
    let total = started.elapsed();
    let n = (JOBS * PER_JOB) as f64;
    println!(
        "{n} tasks: submit {:.0}/s, full cycle {:.0}/s ({:.2}s)",
        n / submitted.as_secs_f64(),
        n / total.as_secs_f64(),
        total.as_secs_f64()
    );
    for id in ids {
        let j = store
            .job_get(None, &id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(j.counts.succeeded as usize, PER_JOB);
    }
}
