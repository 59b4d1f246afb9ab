//! Two server replicas on one PostgreSQL database share the work without running any task
//! twice.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spillway_client::Client;
use spillway_core::model::{Job, QueueSettings};
use spillway_core::state::{AttemptOutcome, JobState, TaskState};
use tokio::task::JoinSet;
use tokio_postgres::NoTls;

use crate::support::{
    Server, WorkerSpec, all_tasks, create_queue, free_port, start_worker, submit, wait_job_final,
};

/// Jobs submitted, and tasks in each.
const JOBS: u32 = 4;
const TASKS_PER_JOB: u32 = 2_500;
/// Task details fetched at once when checking attempts.
const CHECK_PARALLELISM: usize = 16;

/// A database made for one test and dropped (with its connections) when the value drops.
pub(crate) struct TempDatabase {
    admin_url: String,
    name: String,
    /// Its URL.
    pub(crate) url: String,
}

/// `SPILLWAY_TEST_POSTGRES_URL`, or `None` after printing that the test `what` is skipped;
/// under `CI=true` a missing URL fails the test instead (scripts/test sets it).
pub(crate) fn admin_url_or_skip(what: &str) -> Option<String> {
    let url = std::env::var("SPILLWAY_TEST_POSTGRES_URL").ok();
    if url.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "SPILLWAY_TEST_POSTGRES_URL must be set under CI=true (scripts/test sets it)"
        );
        println!("skipped: set SPILLWAY_TEST_POSTGRES_URL to run {what}");
    }
    url
}

impl TempDatabase {
    pub(crate) async fn create(admin_url: &str) -> TempDatabase {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos();
        let name = format!("spillway_e2e_{}_{nanos}", std::process::id());
        let (client, connection) = tokio_postgres::connect(admin_url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {admin_url}: {e}"));
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        drop(client);
        let _ = driver.await;
        let mut url = reqwest::Url::parse(admin_url).expect("a postgres:// url");
        url.set_path(&format!("/{name}"));
        TempDatabase {
            admin_url: admin_url.to_string(),
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&admin_url, NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_run_every_task_exactly_once() {
    let Some(admin_url) = admin_url_or_skip("the PostgreSQL replica test") else {
        return;
    };
    let db = TempDatabase::create(&admin_url).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Both replicas share the data directory: the admin token the first one wrote, and the
    // blob folder every replica must see.
    let data = dir.path().join("data");
    let a = Server::start("server-a", &data, free_port(), Some(&db.url)).await;
    let b = Server::start("server-b", &data, free_port(), Some(&db.url)).await;
    assert_eq!(a.token, b.token);
    let (client_a, client_b) = (a.client(), b.client());
    // A lease long enough that no attempt can expire on a busy machine: a second attempt
    // would then mean two replicas handed out the same task.
    let settings = QueueSettings {
        lease_duration: Duration::from_secs(120),
        ..QueueSettings::default()
    };
    create_queue(&client_a, "pg", settings).await;

    let spec = WorkerSpec {
        concurrency: 8,
        ..WorkerSpec::new("pg")
    };
    let _workers = [
        start_worker("worker-a1", dir.path(), &a.url, &a.token, &spec),
        start_worker("worker-a2", dir.path(), &a.url, &a.token, &spec),
        start_worker("worker-b1", dir.path(), &b.url, &b.token, &spec),
        start_worker("worker-b2", dir.path(), &b.url, &b.token, &spec),
    ];
    let mut jobs: Vec<Job> = Vec::new();
    for n in 0..JOBS {
        let client = if n % 2 == 0 { &client_a } else { &client_b };
        jobs.push(submit(client, "pg", &["true"], TASKS_PER_JOB).await);
    }

    let mut task_ids = Vec::new();
    for (n, job) in jobs.iter().enumerate() {
        // Read each job through the replica that did not take it.
        let reader = if n % 2 == 0 { &client_b } else { &client_a };
        let done = wait_job_final(reader, &job.id, Duration::from_secs(600)).await;
        assert_eq!(
            done.state,
            JobState::Succeeded,
            "job {}: {:?}",
            job.id,
            done.counts
        );
        let tasks = all_tasks(reader, &job.id).await;
        assert_eq!(tasks.len(), TASKS_PER_JOB as usize);
        for task in &tasks {
            assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
            assert_eq!(
                (task.attempt, task.failures, task.preemptions),
                (1, 0, 0),
                "{task:?}"
            );
        }
        task_ids.extend(tasks.iter().map(|t| t.id));
    }
    assert_eq!(task_ids.len(), (JOBS * TASKS_PER_JOB) as usize);
    check_single_attempts(&client_a, &task_ids).await;
}

/// Every task has exactly one attempt, and it succeeded.
async fn check_single_attempts(client: &Client, ids: &[i64]) {
    for chunk in ids.chunks(CHECK_PARALLELISM) {
        let mut checks = JoinSet::new();
        for &id in chunk {
            let client = client.clone();
            checks.spawn(async move { (id, client.task_get(id).await) });
        }
        while let Some(joined) = checks.join_next().await {
            let (id, detail) = joined.expect("check task");
            let detail = detail.unwrap_or_else(|e| panic!("cannot read task {id}: {e}"));
            let outcomes: Vec<_> = detail.attempts.iter().map(|a| a.outcome).collect();
            assert_eq!(
                outcomes,
                [AttemptOutcome::Succeeded],
                "task {id}: {detail:?}"
            );
        }
    }
}
