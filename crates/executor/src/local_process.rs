//! [`LocalProcess`]: run a task's command as a child process of the worker.
//!
//! The child gets its own process group, so a timeout or a stop kills everything it
//! started (`sh -c 'sleep 100 & wait'` included), not just the direct child. With a
//! [`ReaperCommand`] the command runs under the task reaper (see [`crate::reaper`]), which
//! also ends what left the group (`setsid`, double forks). With a [`TaskUser`] the command
//! runs as that user.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use spillway_core::model::LOG_TAIL_BYTES;
use spillway_core::{Error, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::log_tail::LogTail;
use crate::reaper::{ReaperArgs, ReaperCommand, ReaperStatus};
use crate::seam::{ExecOutcome, ExecRequest, Executor, ExitKind, LiveOutput};
use crate::task_user::TaskUser;

/// Variables of the worker's own environment whose names start with one of these never reach
/// a task: Spillway's own (the token, the data dir, the config file, …) and the worker's
/// OpenTelemetry exporter settings (`OTEL_EXPORTER_OTLP_HEADERS` often holds a tracing
/// backend's API key; the task gets its trace context as `TRACEPARENT` instead). The
/// request's own env may set such names.
const SCRUBBED_PREFIXES: &[&[u8]] = &[b"SPILLWAY_", b"OTEL_EXPORTER_OTLP_"];
/// How long to wait for the output pipes to close after the process group is gone; only a
/// process that left the group (setsid) can hold them longer.
const PIPE_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the reaper gets to end the task's tree after a stop or a timeout before the
/// process group is killed instead.
const REAPER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs commands as local child processes, each in its own process group.
#[derive(Debug, Clone)]
pub struct LocalProcess {
    log_tail_bytes: usize,
    reaper: Option<ReaperCommand>,
    user: Option<TaskUser>,
}

impl Default for LocalProcess {
    fn default() -> Self {
        Self {
            log_tail_bytes: LOG_TAIL_BYTES,
            reaper: None,
            user: None,
        }
    }
}

impl LocalProcess {
    /// An executor keeping the default [`LOG_TAIL_BYTES`] of output.
    pub fn new() -> Self {
        Self::default()
    }

    /// Run each command under the task reaper `reaper` (e.g. `spillway __task-reaper`), so
    /// that processes that left the command's process group end with it too.
    pub fn with_reaper(mut self, reaper: ReaperCommand) -> Self {
        self.reaper = Some(reaper);
        self
    }

    /// Run each command as `user`, with no supplementary groups (the worker must be root).
    pub fn with_user(mut self, user: TaskUser) -> Self {
        self.user = Some(user);
        self
    }
}

/// Kills what is left of a run when dropped, so nothing outlives `run`, even if its future
/// is dropped half-way.
struct GroupGuard {
    /// The process group: the child's pid, as it is started with `process_group(0)`.
    group: Option<Pid>,
    /// The reaper, while it runs: it is asked to end the tree rather than killed, since
    /// killing it first would orphan what left the group.
    reaper: Option<Pid>,
}

impl GroupGuard {
    fn kill(&self) {
        if let Some(reaper) = self.reaper {
            // ESRCH (already gone) is harmless.
            let _ = kill(reaper, Signal::SIGTERM);
        } else if let Some(pgid) = self.group {
            // ESRCH (group already gone) is the common, harmless case.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    /// The reaper has been waited for: from now on kill the group itself.
    fn reaper_ended(&mut self) {
        self.reaper = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Ended {
    Exited(std::io::Result<ExitStatus>),
    TimedOut(Duration),
    Stopped,
}

#[async_trait]
impl Executor for LocalProcess {
    async fn run(&self, request: ExecRequest, stop: CancellationToken) -> Result<ExecOutcome> {
        self.run_with(request, stop, None).await
    }

    async fn run_live(
        &self,
        request: ExecRequest,
        stop: CancellationToken,
        output: LiveOutput,
    ) -> Result<ExecOutcome> {
        self.run_with(request, stop, Some(output)).await
    }
}

impl LocalProcess {
    /// Run `request`; its output also goes to `live` as it is read, when given.
    async fn run_with(
        &self,
        request: ExecRequest,
        stop: CancellationToken,
        live: Option<LiveOutput>,
    ) -> Result<ExecOutcome> {
        let (program, args) = if request.shell {
            (
                "sh".to_string(),
                vec!["-c".to_string(), request.argv.join(" ")],
            )
        } else {
            match request.argv.split_first() {
                Some((program, args)) => (program.clone(), args.to_vec()),
                None => return Err(Error::invalid("command is empty: give a program to run")),
            }
        };
        // The reaper writes how the command ended into a folder only the worker can reach.
        let status_dir = match &self.reaper {
            Some(_) => Some(
                tempfile::Builder::new()
                    .prefix("spillway-task-")
                    .tempdir()
                    .map_err(|e| {
                        Error::internal(format!(
                            "could not create a status folder for the task reaper in {}: make the temp folder writable or set TMPDIR",
                            std::env::temp_dir().display()
                        ))
                        .with_source(e)
                    })?,
            ),
            None => None,
        };
        let status_file = status_dir.as_ref().map(|d| d.path().join("status"));
        let mut command = match &self.reaper {
            Some(reaper) => {
                let mut command = Command::new(&reaper.program);
                command.args(&reaper.args).args(
                    ReaperArgs {
                        status_file: status_file.clone(),
                        user: self.user,
                        program: OsString::from(&program),
                        args: args.iter().map(OsString::from).collect(),
                    }
                    .to_args(),
                );
                command
            }
            None => {
                let mut command = Command::new(&program);
                command.args(&args);
                if let Some(user) = self.user {
                    // Run as root, the standard library also drops every supplementary group.
                    command.uid(user.uid).gid(user.gid);
                }
                command
            }
        };
        // Scrub first: the job's own env may still set these names on purpose.
        for (name, _) in std::env::vars_os() {
            if SCRUBBED_PREFIXES
                .iter()
                .any(|prefix| name.as_bytes().starts_with(prefix))
            {
                command.env_remove(&name);
            }
        }
        if self.user.is_some() {
            // The worker's HOME is not the task user's to write (nor to read); the task's own
            // folder is, and goes with it. The job's env may still set HOME.
            command.env("HOME", &request.cwd);
        }
        command
            .current_dir(&request.cwd)
            .envs(&request.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // The reaper is stopped with SIGTERM (see GroupGuard), never killed outright.
            .kill_on_drop(self.reaper.is_none());
        let mut child = command.spawn().map_err(|e| match &self.reaper {
            Some(reaper) => Error::internal(format!(
                "could not start the task reaper {}: check the worker's installation",
                reaper.program.display()
            ))
            .with_source(e),
            None => Error::invalid(format!(
                "could not start {program:?}: check that it is installed and on PATH on the worker"
            ))
            .with_source(e),
        })?;
        // With process_group(0) the child's pid is its group id.
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let mut group = GroupGuard {
            group: pid,
            reaper: pid.filter(|_| self.reaper.is_some()),
        };

        let tail = Arc::new(Mutex::new(LogTail::new(self.log_tail_bytes)));
        let mut pumps = tokio::task::JoinSet::new();
        if let Some(out) = child.stdout.take() {
            pumps.spawn(pump(out, tail.clone(), live.clone()));
        }
        if let Some(err) = child.stderr.take() {
            pumps.spawn(pump(err, tail.clone(), live.clone()));
        }
        if let Some(mut stdin) = child.stdin.take() {
            let input = request.stdin.clone();
            // A command that never reads stdin closes it early; that is not an error.
            tokio::spawn(async move {
                let _ = stdin.write_all(&input).await;
            });
        }

        let deadline = async {
            match request.timeout {
                Some(t) => {
                    tokio::time::sleep(t).await;
                    t
                }
                None => std::future::pending().await,
            }
        };
        let ended = tokio::select! {
            status = child.wait() => Ended::Exited(status),
            t = deadline => Ended::TimedOut(t),
            () = stop.cancelled() => Ended::Stopped,
        };
        let exit = match ended {
            Ended::Exited(status) => {
                let status = status.map_err(|e| {
                    Error::internal(format!("waiting for {program:?} failed")).with_source(e)
                })?;
                group.reaper_ended();
                match status_file.as_deref().and_then(ReaperStatus::read) {
                    Some(ReaperStatus::Exited(code)) => Ok(ExitKind::Exited(code)),
                    Some(ReaperStatus::Signalled(signal)) => Ok(ExitKind::Signalled(signal)),
                    Some(ReaperStatus::CannotStart(reason)) => Err(Error::invalid(format!(
                        "{reason}: check that it is installed and on PATH on the worker"
                    ))),
                    // No reaper, or one that did not get to say (it was killed).
                    None => Ok(exit_kind(status)),
                }
            }
            Ended::TimedOut(t) => {
                end(&mut child, &mut group, &program).await;
                Ok(ExitKind::TimedOut(t))
            }
            Ended::Stopped => {
                end(&mut child, &mut group, &program).await;
                Ok(ExitKind::Stopped)
            }
        };
        // Anything the command left running in the background goes too.
        group.kill();
        if tokio::time::timeout(PIPE_DRAIN_TIMEOUT, async {
            while pumps.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(
                program,
                "output pipes stayed open after the process group was killed"
            );
            pumps.abort_all();
        }
        let log_tail = tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .to_text();
        Ok(ExecOutcome {
            exit: exit?,
            log_tail,
        })
    }
}

fn exit_kind(status: ExitStatus) -> ExitKind {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitKind::Exited(code),
        (None, Some(signal)) => ExitKind::Signalled(signal),
        (None, None) => ExitKind::Exited(-1),
    }
}

/// End a run that is still going: kill its process group, or ask its reaper to end the
/// tree and kill the group if the reaper does not manage within [`REAPER_STOP_TIMEOUT`].
async fn end(child: &mut tokio::process::Child, group: &mut GroupGuard, program: &str) {
    group.kill();
    if group.reaper.is_some()
        && tokio::time::timeout(REAPER_STOP_TIMEOUT, child.wait())
            .await
            .is_err()
    {
        tracing::warn!(
            program,
            "the task reaper did not end the task within {REAPER_STOP_TIMEOUT:?}; killing its process group"
        );
    }
    group.reaper_ended();
    group.kill();
    let _ = child.wait().await;
}

/// Copy one output pipe into the shared tail (and the live output) until it closes.
async fn pump(
    mut pipe: impl AsyncRead + Unpin,
    tail: Arc<Mutex<LogTail>>,
    live: Option<LiveOutput>,
) {
    let mut buf = vec![0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                // Under the tail's lock, so stdout and stderr reach both in the same order.
                let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
                tail.push(&buf[..n]);
                if let Some(live) = &live {
                    live.write(&buf[..n]);
                }
            }
        }
    }
}
