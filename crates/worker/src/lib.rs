//! Spillway's worker: leases tasks, stages inputs, runs commands, uploads results, survives
//! preemption.
//!
//! [`run`] registers with the server, leases as many tasks as it has free slots (long-polling
//! when the queue is empty), and runs each through a `spillway_executor::Executor` (by default
//! `LocalProcess`) in its own scratch folder. All leases are extended in one batched call
//! per heartbeat, and the outcomes of tasks that end together are reported in one call per
//! kind. On shutdown it stops leasing at once, gives running tasks a grace period,
//! then kills what is left and releases those leases as preempted, so no failure is counted.

mod backoff;
mod config;
mod log_stream;
mod parent;
mod report;
mod runtime;
mod scratch;
mod scratch_owner;
mod staging;
mod task;
mod trace;

use std::sync::Arc;

use spillway_core::Result;
use spillway_executor::LocalProcess;
use tokio_util::sync::CancellationToken;

pub use config::{
    DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_LEASE_WAIT, DEFAULT_MAX_LEASE_BATCH,
    DEFAULT_MAX_LOG_BYTES, DEFAULT_RETRY_BACKOFF_MAX, WorkerConfig, WorkerSummary,
};
pub use runtime::run_with;

/// Run a worker with the `LocalProcess` executor until `shutdown` is cancelled (the CLI
/// wires it to SIGTERM/SIGINT), the server asks it to drain, or — with
/// [`exit_when_idle`](WorkerConfig::exit_when_idle) — the queues are empty.
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> Result<WorkerSummary> {
    let executor = local_executor(&config);
    run_with(config, Arc::new(executor), shutdown).await
}

/// The `LocalProcess` executor `config` asks for: under its task reaper, as its task user.
/// Call it once at start-up: a worker running as root with no task user says so in a
/// warning.
pub fn local_executor(config: &WorkerConfig) -> LocalProcess {
    let mut executor = LocalProcess::new();
    if let Some(reaper) = &config.reaper {
        executor = executor.with_reaper(reaper.clone());
    }
    match config.task_user {
        Some(user) => executor = executor.with_user(user),
        None if nix::unistd::geteuid().is_root() => tracing::warn!(
            "tasks run as root: set task_user to an unprivileged user (spillway worker --task-user nobody)"
        ),
        None => {}
    }
    executor
}
