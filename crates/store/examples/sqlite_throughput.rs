//! Store-level throughput of the SQLite backend, without HTTP: submit 200,000 tasks as 20 jobs,
//! then 4 concurrent loops lease batches of 1,000 and report them. Prints tasks per second.
//! A benchmark, not a test:
//! `cargo run --release -p spillway-store --example sqlite_throughput [complete|fail|release]`
//! (the whole queue over HTTP is measured by `spillway bench`). The report is `complete` by
//! default; `fail` fails each task for good (it ends dead), `release` hands each lease back as
//! cancelled, so the other report paths can be measured too.

use std::sync::Arc;

use spillway_core::api::{Completion, Failure, LeasedTask, Release, ReleaseReason};
use spillway_store::conformance::{QUEUE, TENANT, job, lease, setup, t0};
use spillway_store::sqlite::SqliteStore;
use spillway_store::{DynStore, TaskComplete, TaskFail, TaskRelease};

/// How each leased task is reported.
#[derive(Clone, Copy)]
enum Report {
    Complete,
    Fail,
    Release,
}

impl Report {
    fn from_args() -> Self {
        match std::env::args().nth(1).as_deref() {
            None | Some("complete") => Report::Complete,
            Some("fail") => Report::Fail,
            Some("release") => Report::Release,
            Some(other) => panic!("unknown report {other:?}: use complete, fail or release"),
        }
    }

    /// Report every task of `got`; true when every report was applied.
    async fn send(self, store: &DynStore, got: &[LeasedTask]) -> bool {
        let results = match self {
            Report::Complete => {
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
                store
                    .task_complete(TaskComplete {
                        tenant: None,
                        items,
                        now: t0(),
                    })
                    .await
            }
            Report::Fail => {
                let items = got
                    .iter()
                    .map(|t| Failure {
                        task_id: t.task_id,
                        lease_token: t.lease_token.clone(),
                        exit_code: Some(1),
                        error: "exit status 1".into(),
                        retryable: false,
                        log_tail: String::new(),
                    })
                    .collect();
                store
                    .task_fail(TaskFail {
                        tenant: None,
                        items,
                        now: t0(),
                    })
                    .await
            }
            Report::Release => {
                let items = got
                    .iter()
                    .map(|t| Release {
                        task_id: t.task_id,
                        lease_token: t.lease_token.clone(),
                        reason: ReleaseReason::Cancelled,
                        log_tail: String::new(),
                    })
                    .collect();
                store
                    .task_release(TaskRelease {
                        tenant: None,
                        items,
                        worker_pool: None,
                        now: t0(),
                    })
                    .await
            }
        };
        results
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .all(|r| r.ok())
    }
}

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
    let report = Report::from_args();
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
            let (mut in_lease, mut in_report) =
                (std::time::Duration::ZERO, std::time::Duration::ZERO);
            loop {
                let at = std::time::Instant::now();
                let got = lease(&store, QUEUE, 1000, t0()).await;
                in_lease += at.elapsed();
                if got.is_empty() {
                    println!("worker: lease {in_lease:?}, report {in_report:?}");
                    return;
                }
                let at = std::time::Instant::now();
                assert!(report.send(&store, &got).await, "a report was refused");
                in_report += at.elapsed();
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
        let ended = match report {
            Report::Complete => j.counts.succeeded,
            Report::Fail => j.counts.dead,
            Report::Release => j.counts.cancelled,
        };
        assert_eq!(ended as usize, PER_JOB);
    }
}
