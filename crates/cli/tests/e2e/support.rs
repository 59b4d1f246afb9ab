//! What every end-to-end test needs: the real `spillway` binary started as child processes
//! that die with the test, waits on conditions with deadlines, and a typed client.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use spillway_client::{Client, TaskListQuery};
use spillway_core::TaskId;
use spillway_core::api::{CreateQueue, SubmitJob, TaskDetail};
use spillway_core::model::{Job, QueueSettings, Task};
/// Check a condition until it yields a value or a deadline passes (the shared poll loop).
pub use spillway_testkit::wait_until;

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_spillway");
/// How long a server or worker may take to come up on a loaded machine.
pub const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a state change driven by leases, retries and the reaper may take.
pub const STATE_DEADLINE: Duration = Duration::from_secs(60);
/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// The repository's root folder (for the example's files).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A `spillway` command run in `cwd` that sees none of the caller's `SPILLWAY_*` settings,
/// so a developer's environment or config file cannot change what a test does.
pub fn spillway(cwd: &Path) -> Command {
    let mut command = Command::new(BIN);
    scrub_env(&mut command, cwd);
    command
}

/// Make `command` run in `cwd` without the caller's `SPILLWAY_*` settings, as [`spillway`].
fn scrub_env(command: &mut Command, cwd: &Path) {
    command.current_dir(cwd).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("SPILLWAY_") || text == "RUST_LOG" {
            command.env_remove(&name);
        }
    }
    command.env("SPILLWAY_LOG", "info").env("NO_COLOR", "1");
}

/// A child process that is killed (with everything it started) when the guard drops. Its
/// stdout and stderr go to `<dir>/<name>.log`, printed when a test fails.
pub struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Start `command`, logging to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> ChildGuard {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("create the child's log file");
        let err = out.try_clone().expect("clone the log file handle");
        command.stdout(out).stderr(err);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ChildGuard {
            name: name.to_string(),
            child,
            log,
            status: None,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"))
    }

    /// Everything the child printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send `signal` to the child alone (not to what it started).
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap_or_else(|e| panic!("cannot signal {}: {e}", self.name));
    }

    /// The exit status, if the child has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Panic with the child's output if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_status() {
            panic!(
                "{} exited early with {status}; its output:\n{}",
                self.name,
                self.output()
            );
        }
    }

    /// Wait for the child to exit.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let name = self.name.clone();
        wait_until(&format!("{name} to exit"), deadline, || {
            let status = self.try_status();
            async move { status }
        })
        .await
    }

    /// SIGKILL the child and whatever it started, and reap it.
    pub fn kill9(&mut self) {
        if self.try_status().is_some() {
            return;
        }
        let descendants = descendants(self.pid());
        let _ = kill(self.pid(), Signal::SIGKILL);
        self.status = self.child.wait().ok();
        // Task commands run in process groups of their own; they would outlive the worker.
        for pid in descendants {
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // A stopped child would ignore nothing but SIGKILL, which is what it gets.
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "----- output of {} ({}) -----\n{}",
                self.name,
                self.log.display(),
                self.output()
            );
        }
    }
}

/// Every process below `pid`, from /proc.
fn descendants(pid: Pid) -> Vec<Pid> {
    let mut found = Vec::new();
    let mut todo = vec![pid];
    while let Some(parent) = todo.pop() {
        let Ok(threads) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for thread in threads.flatten() {
            let children = std::fs::read_to_string(thread.path().join("children"));
            for child in children.unwrap_or_default().split_whitespace() {
                if let Ok(raw) = child.parse::<i32>() {
                    found.push(Pid::from_raw(raw));
                    todo.push(Pid::from_raw(raw));
                }
            }
        }
    }
    found
}

/// A `spillway server` on 127.0.0.1 with its data directory.
pub struct Server {
    /// The process.
    pub process: ChildGuard,
    /// Its base URL.
    pub url: String,
    /// The admin token it wrote (or found) in the data directory.
    pub token: String,
}

/// What a test adds to `spillway server`'s command line and environment.
#[derive(Debug, Clone, Default)]
pub struct ServerExtras {
    /// A config file (`--config`).
    pub config: Option<PathBuf>,
    /// Environment variables set for the server process only.
    pub env: Vec<(String, std::ffi::OsString)>,
}

impl Server {
    /// Start a server on `port` keeping its state in `data_dir` (or in `store` when given),
    /// and wait until it has written its admin token and answers /readyz.
    pub async fn start(name: &str, data_dir: &Path, port: u16, store: Option<&str>) -> Server {
        Server::start_with(name, data_dir, port, store, &ServerExtras::default()).await
    }

    /// As [`Server::start`], with a config file and environment of the test's.
    pub async fn start_with(
        name: &str,
        data_dir: &Path,
        port: u16,
        store: Option<&str>,
        extras: &ServerExtras,
    ) -> Server {
        std::fs::create_dir_all(data_dir).expect("create the data dir");
        let mut command = spillway(data_dir);
        if let Some(config) = &extras.config {
            command.arg("--config").arg(config);
        }
        command
            .arg("--data-dir")
            .arg(data_dir)
            .arg("server")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        if let Some(store) = store {
            command.arg("--store").arg(store);
        }
        command.envs(extras.env.iter().map(|(k, v)| (k, v)));
        let mut process = ChildGuard::spawn(name, command, data_dir);
        let url = format!("http://127.0.0.1:{port}");
        let token = wait_ready(&mut process, &url, data_dir).await;
        Server {
            process,
            url,
            token,
        }
    }

    /// A client with the admin token.
    pub fn client(&self) -> Client {
        Client::new(&self.url, Some(self.token.clone())).expect("client")
    }
}

/// Wait until `process` has written `<data_dir>/admin.token` and `url` answers /readyz;
/// returns the token.
pub async fn wait_ready(process: &mut ChildGuard, url: &str, data_dir: &Path) -> String {
    let token_file = data_dir.join("admin.token");
    let probe = Client::new(url, None).expect("client");
    wait_until(&format!("{url} to be ready"), START_DEADLINE, || {
        process.assert_running();
        let token = std::fs::read_to_string(&token_file)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let probe = probe.clone();
        async move {
            let token = token?;
            probe.readyz().await.ok()?;
            Some(token)
        }
    })
    .await
}

/// How to start one `spillway worker`.
pub struct WorkerSpec<'a> {
    /// The queue it serves.
    pub queue: &'a str,
    /// Tasks at once.
    pub concurrency: u32,
    /// Time tasks get after SIGTERM.
    pub grace: &'a str,
    /// Extra environment variables (tasks inherit them).
    pub env: Vec<(&'a str, &'a str)>,
}

impl<'a> WorkerSpec<'a> {
    /// One task at a time on `queue`, 5s grace.
    pub fn new(queue: &'a str) -> Self {
        Self {
            queue,
            concurrency: 1,
            grace: "5s",
            env: Vec::new(),
        }
    }
}

/// Start `spillway worker` for `server`, with its scratch space and log under `dir`.
pub fn start_worker(
    name: &str,
    dir: &Path,
    url: &str,
    token: &str,
    spec: &WorkerSpec,
) -> ChildGuard {
    start_worker_with(spillway(dir), name, dir, url, token, spec)
}

/// Start `spillway worker` on a test host (in its network namespace) for `server`.
pub fn start_worker_on(
    host: &crate::netns::TestHost,
    name: &str,
    dir: &Path,
    url: &str,
    token: &str,
    spec: &WorkerSpec,
) -> ChildGuard {
    let mut command = host.command(Path::new(BIN));
    scrub_env(&mut command, dir);
    start_worker_with(command, name, dir, url, token, spec)
}

fn start_worker_with(
    mut command: Command,
    name: &str,
    dir: &Path,
    url: &str,
    token: &str,
    spec: &WorkerSpec,
) -> ChildGuard {
    let scratch = dir.join(format!("scratch-{name}"));
    std::fs::create_dir_all(&scratch).expect("create the scratch dir");
    command
        .arg("worker")
        .arg("--queue")
        .arg(spec.queue)
        .arg("--concurrency")
        .arg(spec.concurrency.to_string())
        .arg("--pool")
        .arg("local")
        .arg("--grace")
        .arg(spec.grace)
        .arg("--scratch-dir")
        .arg(&scratch)
        .env("SPILLWAY_SERVER", url)
        .env("SPILLWAY_TOKEN", token)
        .env("SPILLWAY_DATA_DIR", dir);
    for (k, v) in &spec.env {
        command.env(k, v);
    }
    ChildGuard::spawn(name, command, dir)
}

/// Settings that make faults show quickly: a 2s lease, 100ms backoff.
pub fn fast_settings(max_attempts: u32) -> QueueSettings {
    QueueSettings {
        max_attempts,
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(500),
        lease_duration: Duration::from_secs(2),
        ..QueueSettings::default()
    }
}

/// Create `name` in the default tenant.
pub async fn create_queue(client: &Client, name: &str, settings: QueueSettings) {
    client
        .queue_create(&CreateQueue {
            name: name.to_string(),
            tenant: None,
            settings,
        })
        .await
        .unwrap_or_else(|e| panic!("cannot create queue {name}: {e}"));
}

/// Submit one job of `count` tasks running `argv` (no shell); returns it.
pub async fn submit(client: &Client, queue: &str, argv: &[&str], count: u32) -> Job {
    let mut request = SubmitJob::command(queue, argv.iter().map(|a| a.to_string()).collect());
    request.count = Some(count);
    client
        .job_submit(&request)
        .await
        .unwrap_or_else(|e| panic!("cannot submit to {queue}: {e}"))
        .job
}

/// Every task of `job`, page by page.
pub async fn all_tasks(client: &Client, job: &str) -> Vec<Task> {
    let mut tasks = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .job_task_list(
                job,
                &TaskListQuery {
                    limit: Some(1000),
                    cursor,
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("cannot list the tasks of job {job}: {e}"));
        tasks.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return tasks,
        }
    }
}

/// The only task of a one-task job.
pub async fn only_task(client: &Client, job: &str) -> Task {
    let mut tasks = all_tasks(client, job).await;
    assert_eq!(tasks.len(), 1, "job {job} should have one task");
    tasks.remove(0)
}

/// Wait until `check` accepts the task's detail (answers that fail are retried).
pub async fn wait_task<F>(client: &Client, id: TaskId, what: &str, check: F) -> TaskDetail
where
    F: Fn(&TaskDetail) -> bool,
{
    wait_until(&format!("task {id}: {what}"), STATE_DEADLINE, || async {
        client.task_get(id).await.ok().filter(|d| check(d))
    })
    .await
}

/// Wait until `job` is finished (succeeded, failed or cancelled); answers that fail are
/// retried, so this also rides out a server restart.
pub async fn wait_job_final(client: &Client, job: &str, deadline: Duration) -> Job {
    wait_until(&format!("job {job} to finish"), deadline, || async {
        client
            .job_get(job)
            .await
            .ok()
            .filter(|j| j.state.is_final())
    })
    .await
}
