//! Secrets stay out of reach of task code: `spillway up` gives its workers a worker token
//! (never the admin token) and no way to the data directory, a worker cannot be read through
//! /proc by processes of its own user, and the data directory and database are their owner's.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use spillway_client::Client;
use spillway_core::api::{CreateToken, SubmitJob};
use spillway_core::auth::Role;
use spillway_core::model::TokenInfo;
use spillway_core::state::JobState;

use crate::support::{
    ChildGuard, START_DEADLINE, STATE_DEADLINE, Server, free_port, spillway, wait_job_final,
    wait_ready, wait_until,
};

/// The user tasks and workers run as in the tests that need a second identity.
const NOBODY: u32 = 65534;

/// A task that writes its environment and its parent's (the worker's) original environment
/// (`/proc/$PPID/environ`; failing to read it is fine) as result files.
fn env_probe() -> SubmitJob {
    SubmitJob::command(
        "default",
        vec![
            "sh".into(),
            "-c".into(),
            "env > \"$SPILLWAY_OUTPUT_DIR/env.txt\"; \
             cat /proc/$PPID/environ > \"$SPILLWAY_OUTPUT_DIR/parent.txt\" 2>/dev/null; \
             echo $? > \"$SPILLWAY_OUTPUT_DIR/parent-rc.txt\""
                .into(),
        ],
    )
}

/// Run [`env_probe`] to its end; returns the task's environment and what it read of its
/// worker's.
async fn probe(client: &Client, dir: &Path) -> (String, String) {
    let job = client.job_submit(&env_probe()).await.expect("submit").job;
    let done = wait_job_final(client, &job.id, STATE_DEADLINE).await;
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    let mut texts = Vec::new();
    for name in ["env.txt", "parent.txt"] {
        let stream = client
            .job_result_get(&job.id, 0, name)
            .await
            .unwrap_or_else(|e| panic!("result {name}: {e}"));
        let path = dir.join(format!("{}-{name}", job.id));
        spillway_client::stream_to_file(stream, &path)
            .await
            .expect("save result");
        let bytes = std::fs::read(&path).expect("read result");
        texts.push(String::from_utf8_lossy(&bytes).replace('\0', "\n"));
    }
    let parent = texts.pop().expect("two files");
    let env = texts.pop().expect("two files");
    (env, parent)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The OpenTelemetry exporter headers `up` is started with (a stand-in API key).
const OTLP_HEADERS: &str = "x-api-key=otel-secret-4f1c";

/// Start `spillway up` with one worker on a fresh port; returns it, its URL and the admin
/// token read from the data directory.
async fn start_up(dir: &Path, data: &Path) -> (ChildGuard, String, String) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut up = spillway(dir);
    up.arg("--data-dir")
        .arg(data)
        .arg("up")
        .arg("--workers")
        .arg("1")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        // As a user's shell might have it: workers must not pass it on to tasks.
        .env("SPILLWAY_DATA_DIR", data)
        // A tracing backend's API key for the exporter, not for tasks. No endpoint is set, so
        // nothing is exported.
        .env("OTEL_EXPORTER_OTLP_HEADERS", OTLP_HEADERS);
    let mut up = ChildGuard::spawn("up", up, dir);
    let token = wait_ready(&mut up, &url, data).await;
    (up, url, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_gives_its_workers_a_worker_token_and_tasks_find_no_admin_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (mut up, url, admin_token) = start_up(dir.path(), &data).await;
    let client = Client::new(&url, Some(admin_token.clone())).expect("client");

    let (env, parent) = probe(&client, dir.path()).await;
    for (what, text) in [("the task's env", &env), ("the worker's environ", &parent)] {
        assert!(
            !text.contains(&admin_token),
            "{what} holds the admin token:\n{text}"
        );
        assert!(
            !text.contains("SPILLWAY_DATA_DIR"),
            "{what} names the data directory:\n{text}"
        );
    }
    assert!(!env.contains("SPILLWAY_TOKEN"), "{env}");
    assert!(
        !env.contains(OTLP_HEADERS),
        "the task's env holds the exporter's headers:\n{env}"
    );
    assert!(env.contains("SPILLWAY_TASK_ID="), "the probe ran: {env}");

    let tokens = client.token_list().await.expect("tokens");
    let theirs = workers_tokens(&tokens);
    assert_eq!(
        theirs.len(),
        1,
        "one live token for the workers: {tokens:?}"
    );
    assert_eq!(theirs[0].role, Role::Worker, "{tokens:?}");
    assert_eq!(theirs[0].tenant.as_deref(), Some("default"), "{tokens:?}");
    let first = theirs[0].id.clone();
    // The worker's original environment (readable here: we are root) holds that token.
    if let Some(line) = parent.lines().find(|l| l.starts_with("SPILLWAY_TOKEN=")) {
        assert_ne!(line, format!("SPILLWAY_TOKEN={admin_token}"));
    }

    // The token is printed only with --show-token; the file holding it is named.
    let printed = up.output();
    assert!(
        !printed.contains(&admin_token),
        "up printed the token:\n{printed}"
    );
    assert!(
        printed.contains(&data.join("admin.token").display().to_string()),
        "{printed}"
    );

    // The data directory, the database and the admin token are their owner's only.
    assert_eq!(mode(&data), 0o700, "data dir");
    for file in [
        "spillway.db",
        "spillway.db-wal",
        "spillway.db-shm",
        "admin.token",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }

    // A restart makes a new worker token and revokes the previous one.
    up.signal(Signal::SIGTERM);
    let status = up.wait_exit(START_DEADLINE).await;
    assert!(
        status.success(),
        "up exited with {status}:\n{}",
        up.output()
    );
    let (_up, url, admin_again) = start_up(dir.path(), &data).await;
    assert_eq!(admin_again, admin_token);
    let client = Client::new(&url, Some(admin_token.clone())).expect("client");
    // `up` makes the token once its server answers, so wait for the old one to go.
    let second = wait_until(
        "the restarted up to replace its workers' token",
        STATE_DEADLINE,
        || async {
            let tokens = client.token_list().await.ok()?;
            match &workers_tokens(&tokens)[..] {
                [one] if one.id != first => Some(one.clone()),
                _ => None,
            }
        },
    )
    .await;
    assert_eq!(second.role, Role::Worker, "{second:?}");
}

/// The live tokens `spillway up` made for its workers.
fn workers_tokens(tokens: &[TokenInfo]) -> Vec<TokenInfo> {
    tokens
        .iter()
        .filter(|t| t.name == spillway_server::bootstrap::LOCAL_WORKERS_TOKEN_NAME)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cannot_be_read_through_proc_by_its_own_user() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test starts a worker as uid {NOBODY}: run it as root");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("server", &dir.path().join("data"), free_port(), None).await;
    let client = server.client();
    let secret = client
        .token_create(&CreateToken {
            name: "nobody-worker".into(),
            role: Role::Worker,
            tenant: Some("default".into()),
            expires_at: None,
            queues: None,
        })
        .await
        .expect("worker token")
        .token;

    // The worker runs as nobody, in a folder of nobody's.
    let home = dir.path().join("nobody");
    let scratch = home.join("scratch");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    for path in [&home, &scratch] {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).expect("chown");
    }
    let mut worker = spillway(&home);
    worker
        .arg("worker")
        .arg("--scratch-dir")
        .arg(&scratch)
        .env("SPILLWAY_SERVER", &server.url)
        .env("SPILLWAY_TOKEN", &secret)
        .env("HOME", &home);
    std::os::unix::process::CommandExt::uid(&mut worker, NOBODY);
    std::os::unix::process::CommandExt::gid(&mut worker, NOBODY);
    let mut worker = ChildGuard::spawn("worker", worker, dir.path());

    // A task of that worker (so also nobody) finds the token neither in its environment nor
    // in its worker's.
    let (env, parent) = probe(&client, dir.path()).await;
    assert!(env.contains("SPILLWAY_TASK_ID="), "the probe ran: {env}");
    assert!(
        !env.contains(&secret),
        "the task's env holds the token:\n{env}"
    );
    assert!(
        !parent.contains(&secret),
        "the task read the token from its worker's environ:\n{parent}"
    );

    // Nor does another process of nobody's.
    worker.assert_running();
    let mut cat = Command::new("cat");
    cat.arg(format!("/proc/{}/environ", worker.pid()));
    std::os::unix::process::CommandExt::uid(&mut cat, NOBODY);
    std::os::unix::process::CommandExt::gid(&mut cat, NOBODY);
    let read = cat.output().expect("run cat");
    let text = String::from_utf8_lossy(&read.stdout);
    assert!(
        !text.contains(&secret),
        "uid {NOBODY} read the worker's token from /proc"
    );
    assert!(
        !read.status.success(),
        "reading /proc/PID/environ should be refused"
    );

    worker.signal(Signal::SIGTERM);
    let status = worker.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "worker exited with {status}:\n{}",
        worker.output()
    );
}
