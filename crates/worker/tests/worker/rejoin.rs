//! A worker whose registration is spent (exited, or forgotten by a fresh server) registers
//! again and goes on; shutdown never strands a lease; a worker outlives no parent it watches.

use std::time::Duration;

use spillway_core::api::SubmitJob;
use spillway_core::auth::Role;
use spillway_core::clock::{Clock, SystemClock};
use spillway_core::model::{Worker, WorkerState};
use spillway_core::state::{AttemptOutcome, TaskState};
use spillway_store::TokenCreate;
use spillway_testkit::{DEFAULT_DEADLINE, TestServerExt, wait_until, wait_until_seen};
use tokio_util::sync::CancellationToken;

use crate::{Server, spawn_worker};

impl Server {
    /// Stop the server and start it again on the same address over a new, empty database
    /// that knows the worker token (so only the worker's registration is forgotten).
    async fn restart_fresh(&mut self) {
        let secret_hash = spillway_server::auth::hash_secret(&self.worker_token);
        // The worker token must exist before the first request can arrive.
        self.server
            .restart_empty(|store| async move {
                store
                    .token_create(TokenCreate {
                        id: "tok_worker".into(),
                        name: "worker".into(),
                        tenant: Some("default".into()),
                        role: Role::Worker,
                        secret_hash,
                        now: SystemClock.now(),
                        expires_at: None,
                        queues: None,
                    })
                    .await
                    .unwrap();
            })
            .await;
        self.admin = self.server.admin_client();
    }

    async fn workers(&self) -> Vec<Worker> {
        self.admin.worker_list().await.unwrap().workers
    }

    /// Wait until the worker list satisfies `check`, failing after a generous deadline.
    async fn wait_workers(&self, what: &str, check: impl Fn(&[Worker]) -> bool) -> Vec<Worker> {
        wait_until_seen(what, DEFAULT_DEADLINE, || self.workers(), |w| check(w)).await
    }
}

fn active(workers: &[Worker]) -> Vec<&Worker> {
    workers
        .iter()
        .filter(|w| w.state == WorkerState::Active)
        .collect()
}

#[tokio::test]
async fn a_worker_marked_exited_registers_again_and_goes_on() {
    let server = Server::start().await;
    let scratch = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let worker = spawn_worker(server.worker_config(scratch.path()), shutdown.clone());
    let first = server
        .wait_workers("the worker to register", |w| active(w).len() == 1)
        .await;
    let first_id = first[0].id.clone();
    server.admin.worker_deregister(&first_id).await.unwrap();

    let workers = server
        .wait_workers("the worker to register again", |w| {
            active(w).iter().any(|w| w.id != first_id)
        })
        .await;
    let again = active(&workers)[0].id.clone();
    let job = SubmitJob::command("default", vec!["true".into()]);
    let job = server.admin.job_submit(&job).await.unwrap().job;
    let task = server
        .wait_task(&job.id, "the task to succeed", |t| {
            t.state == TaskState::Succeeded
        })
        .await;
    let detail = server.admin.task_get(task.id).await.unwrap();
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(
        detail.attempts[0].worker_id, again,
        "leased with the spent id"
    );
    shutdown.cancel();
    let summary = worker.await.unwrap();
    assert_eq!(summary.succeeded, 1, "{summary:?}");
}

#[tokio::test]
async fn a_worker_forgotten_by_a_fresh_server_registers_again() {
    let mut server = Server::start().await;
    let scratch = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let worker = spawn_worker(server.worker_config(scratch.path()), shutdown.clone());
    server
        .wait_workers("the worker to register", |w| active(w).len() == 1)
        .await;

    server.restart_fresh().await;
    assert!(server.workers().await.is_empty(), "the database is not new");
    let job = SubmitJob::command("default", vec!["true".into()]);
    let job = server.admin.job_submit(&job).await.unwrap().job;
    server
        .wait_task(&job.id, "the task on the new server to succeed", |t| {
            t.state == TaskState::Succeeded
        })
        .await;
    assert_eq!(active(&server.workers().await).len(), 1);
    shutdown.cancel();
    let summary = worker.await.unwrap();
    assert_eq!(summary.succeeded, 1, "{summary:?}");
}

#[tokio::test]
async fn tasks_leased_as_the_worker_shuts_down_are_released_as_preempted() {
    let server = Server::start().await;
    let scratch = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let mut config = server.worker_config(scratch.path());
    config.lease_wait = Duration::from_secs(30);
    let worker = spawn_worker(config, shutdown.clone());
    wait_until(
        "the worker to wait in a lease call",
        DEFAULT_DEADLINE,
        || async {
            let metrics = server.admin.metrics().await.unwrap();
            metrics.contains("spillway_lease_waiters 1").then_some(())
        },
    )
    .await;

    // Shutdown while the lease call waits; the work that arrives now goes to that call.
    shutdown.cancel();
    let job = SubmitJob::command("default", vec!["sleep".into(), "100".into()]);
    let job = server.admin.job_submit(&job).await.unwrap().job;
    let summary = worker.await.unwrap();
    assert_eq!(summary.released, 1, "{summary:?}");
    assert_eq!(summary.succeeded + summary.failed, 0, "{summary:?}");
    let task = server.only_task(&job.id).await;
    assert_eq!(task.state, TaskState::Available, "{task:?}");
    assert_eq!((task.preemptions, task.failures), (1, 0), "{task:?}");
    let detail = server.admin.task_get(task.id).await.unwrap();
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.attempts[0].outcome, AttemptOutcome::Preempted);
}

#[tokio::test]
async fn a_worker_shuts_down_gracefully_once_its_parent_is_gone() {
    let server = Server::start().await;
    let job = SubmitJob::command("default", vec!["sleep".into(), "100".into()]);
    let job = server.admin.job_submit(&job).await.unwrap().job;
    let scratch = tempfile::tempdir().unwrap();
    let mut config = server.worker_config(scratch.path());
    // Never this process's parent: as if the parent died before the worker started.
    config.exit_with_parent = Some(std::process::id());
    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        spillway_worker::run(config, CancellationToken::new()),
    )
    .await
    .expect("the worker did not notice its parent is gone")
    .unwrap();
    assert_eq!(summary.failed, 0, "{summary:?}");
    let task = server.only_task(&job.id).await;
    assert_ne!(task.state, TaskState::Leased, "a lease was left behind");
    let workers = server.workers().await;
    assert!(
        workers.iter().all(|w| w.state == WorkerState::Exited),
        "{workers:?}"
    );
}
