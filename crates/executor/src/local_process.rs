//! [`LocalProcess`]: run a task's command as a child process of the worker.
//!
//! The child gets its own process group, so a timeout or a stop kills everything it
//! started (`sh -c 'sleep 100 & wait'` included), not just the direct child.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use spillway_core::model::LOG_TAIL_BYTES;
use spillway_core::{Error, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::log_tail::LogTail;
use crate::seam::{ExecOutcome, ExecRequest, Executor, ExitKind};

/// Variables of the worker's own environment that a task must not see.
const SCRUBBED_ENV: &[&str] = &["SPILLWAY_TOKEN"];
/// How long to wait for the output pipes to close after the process group is gone; only a
/// process that left the group (setsid) can hold them longer.
const PIPE_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs commands as local child processes, each in its own process group.
#[derive(Debug, Clone)]
pub struct LocalProcess {
    log_tail_bytes: usize,
}

impl Default for LocalProcess {
    fn default() -> Self {
        Self {
            log_tail_bytes: LOG_TAIL_BYTES,
        }
    }
}

impl LocalProcess {
    /// An executor keeping the default [`LOG_TAIL_BYTES`] of output.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Kills a process group when dropped, so nothing outlives `run`, even if its future is
/// dropped half-way.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.0 {
            // ESRCH (group already gone) is the common, harmless case.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
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
        let mut command = Command::new(&program);
        // Scrub first: the job's own env may still set these names on purpose.
        for name in SCRUBBED_ENV {
            command.env_remove(name);
        }
        command
            .args(&args)
            .current_dir(&request.cwd)
            .envs(&request.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            Error::invalid(format!(
                "could not start {program:?}: check that it is installed and on PATH on the worker"
            ))
            .with_source(e)
        })?;
        // With process_group(0) the child's pid is its group id.
        let group = GroupGuard(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw),
        );

        let tail = Arc::new(Mutex::new(LogTail::new(self.log_tail_bytes)));
        let mut pumps = tokio::task::JoinSet::new();
        if let Some(out) = child.stdout.take() {
            pumps.spawn(pump(out, tail.clone()));
        }
        if let Some(err) = child.stderr.take() {
            pumps.spawn(pump(err, tail.clone()));
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
                match (status.code(), status.signal()) {
                    (Some(code), _) => ExitKind::Exited(code),
                    (None, Some(signal)) => ExitKind::Signalled(signal),
                    (None, None) => ExitKind::Exited(-1),
                }
            }
            Ended::TimedOut(t) => {
                group.kill();
                let _ = child.wait().await;
                ExitKind::TimedOut(t)
            }
            Ended::Stopped => {
                group.kill();
                let _ = child.wait().await;
                ExitKind::Stopped
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
        Ok(ExecOutcome { exit, log_tail })
    }
}

/// Copy one output pipe into the shared tail until it closes.
async fn pump(mut pipe: impl AsyncRead + Unpin, tail: Arc<Mutex<LogTail>>) {
    let mut buf = vec![0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => tail
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(&buf[..n]),
        }
    }
}
