//! The worker's settings and the summary it returns.

use std::path::PathBuf;
use std::time::Duration;

use spillway_executor::{ReaperCommand, TaskUser};

/// Default interval of task and worker heartbeats: a third of the default 30s lease.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Default long-poll wait of a lease call.
pub const DEFAULT_LEASE_WAIT: Duration = Duration::from_secs(20);
/// Default time running tasks get to finish after shutdown is asked for.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// Default most tasks taken in one lease call.
pub const DEFAULT_MAX_LEASE_BATCH: u32 = 16;
/// Default longest pause between retries while the server is unreachable.
pub const DEFAULT_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Default most bytes of a task's output sent to its live log per attempt.
pub const DEFAULT_MAX_LOG_BYTES: u64 = spillway_core::model::DEFAULT_MAX_LOG_BYTES;

/// How a worker connects, what it serves and how it paces itself.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// The server's base url, e.g. `http://127.0.0.1:8080`.
    pub server_url: String,
    /// A token with the worker role.
    pub token: Option<String>,
    /// Act in this tenant (only for admins of every tenant).
    pub tenant: Option<String>,
    /// The queues to take tasks from; default `["default"]`.
    pub queues: Vec<String>,
    /// Tasks run at once; default the number of available cores.
    pub concurrency: u32,
    /// The pool this worker belongs to; default `"default"`.
    pub pool: String,
    /// Where the worker makes its private folder (`<scratch>/spillway-worker-XXXXXX/`, mode
    /// 0700, removed when the worker stops), in which each task attempt gets its own folder
    /// (`<task>-<attempt>/`, mode 0700); created with mode 0700 when missing. Default: the
    /// system temp folder.
    pub scratch_dir: PathBuf,
    /// How often leases are extended and the worker says it is alive.
    pub heartbeat_interval: Duration,
    /// Long-poll wait of a lease call.
    pub lease_wait: Duration,
    /// How long running tasks may go on after shutdown before they are killed and released.
    pub grace_period: Duration,
    /// Exit once a lease call comes back empty while nothing runs.
    pub exit_when_idle: bool,
    /// Most tasks taken in one lease call (never more than free slots).
    pub max_lease_batch: u32,
    /// Longest pause between retries while the server is unreachable.
    pub retry_backoff_max: Duration,
    /// Shut down gracefully once the parent process is no longer this pid (checked every
    /// second), so a worker started by another process does not outlive it; default `None`.
    pub exit_with_parent: Option<u32>,
    /// Run local tasks as this user, with no supplementary groups; the worker then hands each
    /// task's scratch folder to it. Needs a worker running as root (or as that very user);
    /// default `None`: tasks run as the worker's own user.
    pub task_user: Option<TaskUser>,
    /// Run local tasks under this task reaper (`spillway __task-reaper`), so that processes
    /// that left the task's process group (`setsid`) end with it; default `None`: the process
    /// group alone is killed.
    pub reaper: Option<ReaperCommand>,
    /// Most bytes of a task's output sent to its live log per attempt; what goes beyond is
    /// counted and noted at the log's end. Default [`DEFAULT_MAX_LOG_BYTES`].
    pub max_log_bytes: u64,
}

impl WorkerConfig {
    /// A config for `server_url` with every other setting at its default; scratch space goes
    /// in the system temp folder.
    pub fn new(server_url: impl Into<String>, token: Option<String>) -> Self {
        let concurrency = std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(1);
        Self {
            server_url: server_url.into(),
            token,
            tenant: None,
            queues: vec![spillway_core::model::DEFAULT_QUEUE.to_string()],
            concurrency,
            pool: "default".to_string(),
            scratch_dir: std::env::temp_dir(),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            lease_wait: DEFAULT_LEASE_WAIT,
            grace_period: DEFAULT_GRACE_PERIOD,
            exit_when_idle: false,
            max_lease_batch: DEFAULT_MAX_LEASE_BATCH,
            retry_backoff_max: DEFAULT_RETRY_BACKOFF_MAX,
            exit_with_parent: None,
            task_user: None,
            reaper: None,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
        }
    }

    /// Check the settings; the error names the field and what to use instead.
    pub fn validate(&self) -> spillway_core::Result<()> {
        use spillway_core::Error;
        if self.queues.is_empty() {
            return Err(Error::invalid(
                "a worker needs at least one queue, e.g. \"default\"",
            ));
        }
        for queue in &self.queues {
            spillway_core::names::validate_name("queue", queue)?;
        }
        spillway_core::names::validate_name("pool", &self.pool)?;
        if self.concurrency == 0 {
            return Err(Error::invalid("concurrency must be at least 1"));
        }
        if self.max_lease_batch == 0 || self.max_lease_batch > spillway_core::api::MAX_LEASE_BATCH {
            return Err(Error::invalid(format!(
                "max_lease_batch {} is out of range: use 1 to {}",
                self.max_lease_batch,
                spillway_core::api::MAX_LEASE_BATCH
            )));
        }
        if self.heartbeat_interval.is_zero() {
            return Err(Error::invalid(
                "heartbeat_interval must be above zero, e.g. 10s (a third of the lease)",
            ));
        }
        if self.lease_wait > spillway_core::api::MAX_LEASE_WAIT {
            return Err(Error::invalid(format!(
                "lease_wait {:?} is too long: use at most {:?}",
                self.lease_wait,
                spillway_core::api::MAX_LEASE_WAIT
            )));
        }
        if let Some(user) = self.task_user {
            let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
            if !uid.is_root() && (uid.as_raw(), gid.as_raw()) != (user.uid, user.gid) {
                return Err(Error::invalid(format!(
                    "task_user {user} differs from the worker's own user {uid}:{gid}, and only a worker running as root can run tasks as another user: start the worker as root, or leave task_user unset"
                )));
            }
        }
        Ok(())
    }
}

/// What a worker did before it returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Tasks reported done.
    pub succeeded: u64,
    /// Tasks reported failed (timeouts and non-zero exits).
    pub failed: u64,
    /// Leases handed back (preempted on shutdown, or stopped after a cancel).
    pub released: u64,
    /// Tasks abandoned because their lease was lost (nothing was reported).
    pub lost: u64,
}
