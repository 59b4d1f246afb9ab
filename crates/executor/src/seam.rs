//! The seam between the worker and how a task's command actually runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use spillway_core::Result;
use tokio_util::sync::CancellationToken;

/// One command to run, fully prepared: `{index}` already replaced, env complete.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecRequest {
    /// The program and its arguments (a single shell line when `shell` is true).
    pub argv: Vec<String>,
    /// Run `argv` joined by spaces through `sh -c`.
    pub shell: bool,
    /// Variables added to the worker's environment.
    pub env: BTreeMap<String, String>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Bytes written to the command's stdin (then closed).
    pub stdin: Vec<u8>,
    /// Kill the command (and everything it started) after this long.
    pub timeout: Option<Duration>,
    /// The container image the task asked for; executors that do not run containers ignore it.
    pub image: Option<String>,
    /// What the task asked for; executors that place tasks (Kubernetes) request it.
    pub resources: spillway_core::model::Resources,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// It exited with this code.
    Exited(i32),
    /// It was ended by this signal (not sent by the worker).
    Signalled(i32),
    /// It ran past its timeout and was killed.
    TimedOut(Duration),
    /// The worker stopped it (cancel, lost lease, shutdown).
    Stopped,
}

/// What running a command produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutcome {
    /// How it ended.
    pub exit: ExitKind,
    /// The last [`LOG_TAIL_BYTES`](spillway_core::model::LOG_TAIL_BYTES) of its interleaved
    /// stdout and stderr.
    pub log_tail: String,
}

/// Where an executor hands a command's output as it comes (stdout and stderr interleaved, in
/// the order read). It is called from the executor's reading tasks, so it must never block:
/// the receiver buffers with a bound and decides what to drop.
#[derive(Clone)]
pub struct LiveOutput(Arc<WriteOutput>);

/// What a [`LiveOutput`] calls with each piece of output.
type WriteOutput = dyn Fn(&[u8]) + Send + Sync;

impl LiveOutput {
    /// Output that goes to `write`.
    pub fn new(write: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        Self(Arc::new(write))
    }

    /// Hand on `bytes` of output.
    pub fn write(&self, bytes: &[u8]) {
        (self.0)(bytes);
    }
}

impl std::fmt::Debug for LiveOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveOutput")
    }
}

/// Runs task commands. Implementations must leave nothing running once `run` returns.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Run `request` to its end, or until `stop` is cancelled, then kill what is left.
    /// Errors only when the command could not be started at all.
    async fn run(&self, request: ExecRequest, stop: CancellationToken) -> Result<ExecOutcome>;

    /// [`Executor::run`], also handing the output to `output` as it comes, for the task's
    /// live log. An executor that cannot (the default) runs the command without: its log is
    /// then only the tail in the outcome.
    async fn run_live(
        &self,
        request: ExecRequest,
        stop: CancellationToken,
        output: LiveOutput,
    ) -> Result<ExecOutcome> {
        let _ = output;
        self.run(request, stop).await
    }
}
