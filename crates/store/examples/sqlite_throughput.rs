//! Store-level throughput of the SQLite backend, without HTTP: submit 200,000 tasks as 20 jobs,
//! then 4 concurrent loops lease batches of 1,000 and complete them. Prints tasks per second.
//! A benchmark, not a test:
//! `cargo run --release -p spillway-store --example sqlite_throughput`
//! (the whole queue over HTTP is measured by `spillway bench`).

use std::sync::Arc;

use spillway_store::DynStore;
use spillway_store::conformance::{QUEUE, TENANT, job, lease, setup, t0};
use spillway_store::sqlite::SqliteStore;

async fn make_sqlite() -> DynStore {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir.keep(),
        Err(e) => panic!("cannot make a temporary folder: {e}"),
    };
    match SqliteStore::open(&dir.join("spillway.db")).await {
        Ok(store) => Arc::new(store),
        Err(e) => panic!("cannot open sqlite store: {e}"),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
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
                    .task_complete(spillway_store::TaskComplete {
                        tenant: None,
                        items,
                        now: t0(),
                    })
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
