//! The worker end to end against a real server (SQLite in a temporary folder, in-memory
//! blobs) over HTTP on 127.0.0.1, running real commands.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use spillway_client::{Client, TaskListQuery};
use spillway_core::api::{CreateQueue, CreateToken, SubmitJob};
use spillway_core::auth::Role;
use spillway_core::model::{QueueSettings, Task};
use spillway_core::state::{AttemptOutcome, JobState, TaskState};
use spillway_testkit::{DEFAULT_DEADLINE, TestServer, TestServerExt, wait_until_seen};
use spillway_worker::{WorkerConfig, WorkerSummary};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod batch;
mod logs;
mod rejoin;
mod scratch;

/// The shared [`TestServer`] (system clock), its admin client, and a worker token of tenant
/// `default`.
struct Server {
    server: TestServer,
    admin: Client,
    worker_token: String,
}

impl Server {
    async fn start() -> Server {
        Server::start_on(TestServer::start().await).await
    }

    /// Around a test server the test built itself.
    async fn start_on(server: TestServer) -> Server {
        let admin = server.admin_client();
        let worker_token = admin
            .token_create(&CreateToken {
                name: "worker".into(),
                role: Role::Worker,
                tenant: Some("default".into()),
                expires_at: None,
                queues: None,
            })
            .await
            .unwrap()
            .token;
        Server {
            admin,
            worker_token,
            server,
        }
    }

    /// Stop the server, wait until it is gone, and start it again on the same address over
    /// the same database.
    async fn restart(&mut self) {
        self.server.restart().await;
    }

    fn worker_config(&self, scratch: &std::path::Path) -> WorkerConfig {
        let mut config = WorkerConfig::new(&self.server.base, Some(self.worker_token.clone()));
        config.concurrency = 2;
        config.scratch_dir = scratch.to_path_buf();
        config.heartbeat_interval = Duration::from_millis(200);
        config.lease_wait = Duration::from_secs(1);
        config.grace_period = Duration::from_millis(200);
        config.retry_backoff_max = Duration::from_millis(500);
        config
    }

    async fn only_task(&self, job_id: &str) -> Task {
        let page = self
            .admin
            .job_task_list(job_id, &TaskListQuery::default())
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1);
        page.items.into_iter().next().unwrap()
    }

    /// Wait until the job's only task satisfies `check`, failing after a generous deadline.
    async fn wait_task(&self, job_id: &str, what: &str, check: impl Fn(&Task) -> bool) -> Task {
        wait_until_seen(what, DEFAULT_DEADLINE, || self.only_task(job_id), check).await
    }
}

fn spawn_worker(config: WorkerConfig, shutdown: CancellationToken) -> JoinHandle<WorkerSummary> {
    tokio::spawn(async move { spillway_worker::run(config, shutdown).await.unwrap() })
}

async fn download(client: &Client, job: &str, index: u32, path: &str) -> String {
    let mut stream = client.job_result_get(job, index, path).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn a_task_stages_inputs_runs_and_its_result_file_is_downloadable() {
    let server = Server::start().await;
    let upload = server.admin.upload_create().await.unwrap();
    let data = b"input data\n".to_vec();
    server
        .admin
        .upload_put_file(&upload.upload_id, "in/data.txt", data.clone().into(), None)
        .await
        .unwrap();
    let mut submit = SubmitJob::command(
        "default",
        vec![
            "sh".into(),
            "-c".into(),
            concat!(
                "mkdir -p \"$SPILLWAY_OUTPUT_DIR/out dir\" && ",
                "{ echo \"$1 job=$SPILLWAY_JOB_ID idx=$SPILLWAY_TASK_INDEX attempt=$SPILLWAY_ATTEMPT\"; ",
                "cat \"$SPILLWAY_PAYLOAD\"; echo; cat; echo; ",
                "cat \"$SPILLWAY_INPUT_DIR/in/data.txt\"; } > \"$SPILLWAY_OUTPUT_DIR/out dir/r.txt\""
            )
            .into(),
            "sh".into(),
            "arg {index}".into(),
        ],
    );
    submit.upload_id = Some(upload.upload_id);
    submit.tasks = Some(vec![spillway_core::api::NewTask {
        payload: Some(serde_json::json!({"n": 7})),
    }]);
    let job = server.admin.job_submit(&submit).await.unwrap().job;

    let scratch = tempfile::tempdir().unwrap();
    let mut config = server.worker_config(scratch.path());
    config.exit_when_idle = true;
    let summary = spillway_worker::run(config, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(summary.succeeded, 1, "{summary:?}");
    assert_eq!(summary.failed, 0, "{summary:?}");

    let job_now = server.admin.job_get(&job.id).await.unwrap();
    assert_eq!(job_now.state, JobState::Succeeded);
    let results = server.admin.job_result_list(&job.id).await.unwrap();
    let paths: Vec<_> = results.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(paths, ["0/out dir/r.txt"]);
    let text = download(&server.admin, &job.id, 0, "out dir/r.txt").await;
    assert_eq!(
        text,
        format!(
            "arg 0 job={} idx=0 attempt=1\n{{\"n\":7}}\n{{\"n\":7}}\ninput data\n",
            job.id
        )
    );
    let task = server.only_task(&job.id).await;
    let files = &task.result.as_ref().unwrap()["files"];
    assert_eq!(files[0]["path"], "out dir/r.txt");
    assert_eq!(files[0]["size"], text.len());
    // The scratch folder of the task is gone.
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn shutdown_of_a_busy_worker_releases_its_lease_as_preempted() {
    let server = Server::start().await;
    let submit = SubmitJob::command(
        "default",
        vec!["sh".into(), "-c".into(), "sleep 100 & wait".into()],
    );
    let job = server.admin.job_submit(&submit).await.unwrap().job;

    let scratch = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let worker = spawn_worker(server.worker_config(scratch.path()), shutdown.clone());
    server
        .wait_task(&job.id, "the task to be leased", |t| {
            t.state == TaskState::Leased
        })
        .await;
    shutdown.cancel();
    let summary = worker.await.unwrap();
    assert_eq!(summary.released, 1, "{summary:?}");
    assert_eq!(summary.failed, 0, "{summary:?}");

    let task = server.only_task(&job.id).await;
    assert_eq!(task.state, TaskState::Available);
    assert_eq!(task.failures, 0);
    assert_eq!(task.preemptions, 1);
    let detail = server.admin.task_get(task.id).await.unwrap();
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.attempts[0].outcome, AttemptOutcome::Preempted);
    let workers = server.admin.worker_list().await.unwrap().workers;
    assert!(
        workers
            .iter()
            .all(|w| w.state == spillway_core::model::WorkerState::Exited),
        "{workers:?}"
    );
}

#[tokio::test]
async fn a_failing_command_ends_dead_after_max_attempts_with_its_log_tail() {
    let server = Server::start().await;
    server
        .admin
        .queue_create(&CreateQueue {
            name: "flaky".into(),
            tenant: None,
            settings: QueueSettings {
                max_attempts: 2,
                backoff_base: Duration::from_millis(50),
                backoff_max: Duration::from_millis(100),
                ..Default::default()
            },
        })
        .await
        .unwrap();
    let submit = SubmitJob::command(
        "flaky",
        vec!["sh".into(), "-c".into(), "echo bad news >&2; exit 3".into()],
    );
    let job = server.admin.job_submit(&submit).await.unwrap().job;

    let scratch = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let mut config = server.worker_config(scratch.path());
    config.queues = vec!["flaky".into()];
    let worker = spawn_worker(config, shutdown.clone());
    let task = server
        .wait_task(&job.id, "the task to be dead", |t| {
            t.state == TaskState::Dead
        })
        .await;
    shutdown.cancel();
    let summary = worker.await.unwrap();
    assert_eq!(summary.failed, 2, "{summary:?}");
    assert_eq!(summary.succeeded, 0, "{summary:?}");
    assert_eq!(task.failures, 2);
    assert_eq!(task.exit_code, Some(3));
    assert_eq!(task.last_error.as_deref(), Some("exited with status 3"));
    let logs = server.admin.task_logs(task.id, None).await.unwrap();
    assert_eq!(logs, "bad news\n");
}

#[tokio::test]
async fn cancelling_the_job_stops_the_running_task_and_releases_it_as_cancelled() {
    let server = Server::start().await;
    let submit = SubmitJob::command("default", vec!["sleep".into(), "100".into()]);
    let job = server.admin.job_submit(&submit).await.unwrap().job;

    let scratch = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let worker = spawn_worker(server.worker_config(scratch.path()), shutdown.clone());
    server
        .wait_task(&job.id, "the task to be leased", |t| {
            t.state == TaskState::Leased
        })
        .await;
    server.admin.job_cancel(&job.id).await.unwrap();
    let task = server
        .wait_task(&job.id, "the task to be cancelled", |t| {
            t.state == TaskState::Cancelled
        })
        .await;
    shutdown.cancel();
    let summary = worker.await.unwrap();
    assert_eq!(summary.released, 1, "{summary:?}");
    assert_eq!(summary.failed, 0, "{summary:?}");
    assert_eq!(task.failures, 0);
}

#[tokio::test]
async fn a_timeout_fails_the_task_with_a_clear_message() {
    let server = Server::start().await;
    let mut submit = SubmitJob::command("default", vec!["sleep".into(), "100".into()]);
    submit.spec.timeout = Some(Duration::from_millis(300));
    let job = server.admin.job_submit(&submit).await.unwrap().job;

    let scratch = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let worker = spawn_worker(server.worker_config(scratch.path()), shutdown.clone());
    let task = server
        .wait_task(&job.id, "a failure to be recorded", |t| t.failures >= 1)
        .await;
    shutdown.cancel();
    worker.await.unwrap();
    assert_eq!(task.last_error.as_deref(), Some("timed out after 300ms"));
}

#[tokio::test]
async fn the_worker_survives_a_server_restart_and_keeps_working() {
    let mut server = Server::start().await;
    let scratch = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let worker = spawn_worker(server.worker_config(scratch.path()), shutdown.clone());
    let first = SubmitJob::command("default", vec!["true".into()]);
    let first = server.admin.job_submit(&first).await.unwrap().job;
    server
        .wait_task(&first.id, "the first task to succeed", |t| {
            t.state == TaskState::Succeeded
        })
        .await;

    server.restart().await;
    let second = SubmitJob::command("default", vec!["true".into()]);
    let second = server.admin.job_submit(&second).await.unwrap().job;
    server
        .wait_task(
            &second.id,
            "the task submitted after the restart to succeed",
            |t| t.state == TaskState::Succeeded,
        )
        .await;
    shutdown.cancel();
    let summary = worker.await.unwrap();
    assert_eq!(summary.succeeded, 2, "{summary:?}");
}

#[tokio::test]
async fn heartbeats_follow_a_lease_shorter_than_the_configured_interval() {
    let server = Server::start().await;
    heartbeats_keep_a_one_second_lease(&server).await;
}

/// A one-second lease on a task that runs for long, a worker whose own heartbeat interval is
/// ten minutes: only heartbeats paced by the lease extend it, on the first attempt.
async fn heartbeats_keep_a_one_second_lease(server: &Server) {
    server
        .admin
        .queue_create(&CreateQueue {
            name: "short".into(),
            tenant: None,
            settings: QueueSettings {
                lease_duration: Duration::from_secs(1),
                ..Default::default()
            },
        })
        .await
        .unwrap();
    let submit = SubmitJob::command("short", vec!["sleep".into(), "30".into()]);
    let job = server.admin.job_submit(&submit).await.unwrap().job;

    let scratch = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let mut config = server.worker_config(scratch.path());
    config.queues = vec!["short".into()];
    // Far longer than the lease: only heartbeats paced by the lease keep it alive.
    config.heartbeat_interval = Duration::from_secs(600);
    let worker = spawn_worker(config, shutdown.clone());
    let leased = server
        .wait_task(&job.id, "the task to be leased", |t| t.lease.is_some())
        .await;
    let first_expiry = leased.lease.as_ref().unwrap().expires_at;
    let extended = server
        .wait_task(&job.id, "the lease to be extended by a heartbeat", |t| {
            t.lease
                .as_ref()
                .is_some_and(|l| l.expires_at > first_expiry)
        })
        .await;
    assert_eq!(extended.attempt, 1, "still the first attempt: {extended:?}");
    shutdown.cancel();
    worker.await.unwrap();
}

/// The server's clock an hour ahead of the worker's: the worker paces its heartbeats by the
/// lease's length as the server gives it, not by the expiry read on its own clock (which would
/// make an hour-long lease of a one-second one, and lose it).
#[tokio::test]
async fn heartbeats_follow_the_lease_when_the_servers_clock_is_an_hour_ahead() {
    let wall = spillway_testkit::SteppedClock::default();
    wall.step(chrono::TimeDelta::hours(1));
    let server = Server::start_on(
        TestServer::builder()
            .wall_clock(std::sync::Arc::new(wall))
            .start()
            .await,
    )
    .await;
    heartbeats_keep_a_one_second_lease(&server).await;
}

#[tokio::test]
async fn with_a_task_user_the_task_runs_as_that_user_and_its_outputs_are_collected() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: running tasks as another user needs a worker running as root");
        return;
    }
    let server = Server::start().await;
    let upload = server.admin.upload_create().await.unwrap();
    server
        .admin
        .upload_put_file(
            &upload.upload_id,
            "in.txt",
            b"staged\n".to_vec().into(),
            None,
        )
        .await
        .unwrap();
    let mut submit = SubmitJob::command(
        "default",
        vec![
            "sh".into(),
            "-c".into(),
            concat!(
                "cd \"$SPILLWAY_OUTPUT_DIR\" && id -u > uid && id -G > groups && ",
                "touch \"$HOME/.home-probe\" && printf %s \"$HOME\" > home && ",
                "mv \"$SPILLWAY_INPUT_DIR/in.txt\" moved.txt"
            )
            .into(),
        ],
    );
    submit.upload_id = Some(upload.upload_id);
    let job = server.admin.job_submit(&submit).await.unwrap().job;

    // A temporary folder is 0700; the task user must be able to pass through it.
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let mut config = server.worker_config(scratch.path());
    config.exit_when_idle = true;
    config.task_user = Some(spillway_executor::TaskUser {
        uid: 65534,
        gid: 65534,
    });
    let summary = spillway_worker::run(config, CancellationToken::new())
        .await
        .unwrap();
    let task = server.only_task(&job.id).await;
    assert_eq!(summary.succeeded, 1, "{summary:?}: {task:?}");
    assert_eq!(download(&server.admin, &job.id, 0, "uid").await, "65534\n");
    assert_eq!(
        download(&server.admin, &job.id, 0, "groups").await,
        "65534\n",
        "no supplementary group of the worker is kept"
    );
    assert_eq!(
        download(&server.admin, &job.id, 0, "moved.txt").await,
        "staged\n"
    );
    let home = download(&server.admin, &job.id, 0, "home").await;
    assert!(
        Path::new(&home).starts_with(scratch.path()),
        "HOME is the task's own writable folder, not the worker's: {home}"
    );
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "the worker removed the scratch folder: {left:?}"
    );
}
