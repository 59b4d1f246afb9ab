//! The task reaper: a small process between the worker and a task, so that nothing a task
//! started outlives it, not even a process that left its process group (`setsid`, a
//! double fork into a new session).
//!
//! [`LocalProcess`](crate::LocalProcess) with a [`ReaperCommand`] starts
//! `REAPER [ARGS…] [--status-file FILE] [--uid N --gid N] -- PROGRAM ARGS…`; the `spillway`
//! binary runs [`reaper_main`] for it (`spillway __task-reaper`). The reaper makes itself a
//! child subreaper (`PR_SET_CHILD_SUBREAPER`), so every orphaned descendant of the task
//! becomes its child instead of init's, starts the task (as `--uid`/`--gid` when given, with
//! no supplementary groups), and:
//!
//! - when the task's main process ends, SIGKILLs every process whose parent chain leads to
//!   the reaper (read from `/proc/*/stat`), reaps them, and repeats until it has no child left,
//!   so a forking process cannot outrun it;
//! - on SIGTERM, SIGINT or SIGHUP, does the same at once.
//!
//! It then writes how the task ended to the status file (`exited N`, `signalled N`, or
//! `error REASON` when the task could not start) and exits with the task's code, or 128 + the
//! signal. The status file is what the executor believes: an exit code alone cannot tell
//! `exit 137` from SIGKILL. The reaper runs with the worker's privileges, so a task running
//! as another user can neither signal it nor write its status file.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, alarm, getpid};

use crate::task_user::TaskUser;

/// The reaper's option naming the status file.
pub const STATUS_FILE_FLAG: &str = "--status-file";
/// The reaper's option naming the task's uid.
pub const UID_FLAG: &str = "--uid";
/// The reaper's option naming the task's gid.
pub const GID_FLAG: &str = "--gid";
/// How long the reaper keeps trying to end what is left before it gives up and says so.
const CLEANUP_DEADLINE: Duration = Duration::from_secs(30);
/// Exit code of a reaper that could not start its task (the shells' "command not found").
const CANNOT_START: u8 = 127;

/// How to start the reaper: a program and the arguments before the reaper's own options,
/// e.g. the `spillway` binary and `["__task-reaper"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaperCommand {
    /// The program.
    pub program: PathBuf,
    /// Its first arguments.
    pub args: Vec<OsString>,
}

impl ReaperCommand {
    /// `program` started with `args` before the reaper's own options.
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

/// What one run of the reaper does (its command line after the [`ReaperCommand`] prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaperArgs {
    /// Where to write how the task ended.
    pub status_file: Option<PathBuf>,
    /// Run the task as this user.
    pub user: Option<TaskUser>,
    /// The task's program.
    pub program: OsString,
    /// The task's arguments.
    pub args: Vec<OsString>,
}

impl ReaperArgs {
    /// The reaper's command line for these settings: options, `--`, program, arguments.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out = Vec::new();
        if let Some(file) = &self.status_file {
            out.push(STATUS_FILE_FLAG.into());
            out.push(file.into());
        }
        if let Some(user) = self.user {
            out.push(UID_FLAG.into());
            out.push(user.uid.to_string().into());
            out.push(GID_FLAG.into());
            out.push(user.gid.to_string().into());
        }
        out.push("--".into());
        out.push(self.program.clone());
        out.extend(self.args.iter().cloned());
        out
    }
}

/// How a task ended, as the status file says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReaperStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it.
    Signalled(i32),
    /// It could not start, for this reason.
    CannotStart(String),
}

impl ReaperStatus {
    fn line(&self) -> String {
        match self {
            ReaperStatus::Exited(code) => format!("exited {code}\n"),
            ReaperStatus::Signalled(signal) => format!("signalled {signal}\n"),
            ReaperStatus::CannotStart(reason) => format!("error {}\n", reason.replace('\n', " ")),
        }
    }

    /// Read a status file; `None` when it is missing or not in the reaper's format.
    pub(crate) fn read(path: &Path) -> Option<ReaperStatus> {
        let text = std::fs::read_to_string(path).ok()?;
        let line = text.strip_suffix('\n')?;
        let (word, rest) = line.split_once(' ')?;
        match word {
            "exited" => rest.parse().ok().map(ReaperStatus::Exited),
            "signalled" => rest.parse().ok().map(ReaperStatus::Signalled),
            "error" => Some(ReaperStatus::CannotStart(rest.to_string())),
            _ => None,
        }
    }

    fn exit_code(&self) -> ExitCode {
        let code = match self {
            ReaperStatus::Exited(code) => u8::try_from(*code & 0xff).unwrap_or(1),
            ReaperStatus::Signalled(signal) => u8::try_from(128 + signal).unwrap_or(255),
            ReaperStatus::CannotStart(_) => CANNOT_START,
        };
        ExitCode::from(code)
    }
}

/// Run the reaper: start the task, wait for it (or a stop signal), end everything it left,
/// report. Must run before the process starts any thread: it relies on its signal mask.
pub fn reaper_main(args: ReaperArgs) -> ExitCode {
    let status = reap(&args);
    if let Some(file) = &args.status_file
        && let Err(e) = std::fs::write(file, status.line())
    {
        say(format!(
            "spillway task reaper: could not write the status file {}: {e}",
            file.display()
        ));
    }
    status.exit_code()
}

fn reap(args: &ReaperArgs) -> ReaperStatus {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        return ReaperStatus::CannotStart(format!("could not become a child subreaper: {e}"));
    }
    let mut command = std::process::Command::new(&args.program);
    command.args(&args.args);
    if let Some(user) = args.user {
        // Run as root, the standard library also drops every supplementary group.
        command.uid(user.uid).gid(user.gid);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return ReaperStatus::CannotStart(format!("could not start {:?}: {e}", args.program));
        }
    };
    // Blocked, these wait in sigwait below instead of acting. Only once the task has started:
    // a child inherits the mask (posix_spawn keeps it). A child that ended before is reaped
    // by the first look below; a SIGTERM that came before ended the reaper, and the executor
    // then kills the process group instead.
    let mut mask = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGALRM,
    ] {
        mask.add(signal);
    }
    if let Err(e) = mask.thread_block() {
        let _ = child.kill();
        let _ = child.wait();
        return ReaperStatus::CannotStart(format!("could not block signals: {e}"));
    }
    let me = getpid();
    let mut tree = Tree {
        task: Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX)),
        ended: None,
    };
    let stopped = loop {
        tree.reap_ready(&mut child);
        if tree.ended.is_some() {
            break None;
        }
        if let Ok(signal @ (Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP)) = mask.wait() {
            break Some(signal);
        }
    };
    tree.end_all(me, &mask, &mut child);
    match (stopped, tree.ended) {
        (Some(signal), _) => ReaperStatus::Signalled(signal as i32),
        (None, Some(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => ReaperStatus::Exited(code),
            (None, Some(signal)) => ReaperStatus::Signalled(signal),
            (None, None) => ReaperStatus::Exited(-1),
        },
        // The loop above only leaves without a stop signal once the task has ended.
        (None, None) => ReaperStatus::Exited(-1),
    }
}

/// The task and what the reaper knows of how it ended.
struct Tree {
    task: Pid,
    ended: Option<ExitStatus>,
}

/// Whether the reaper still has children.
#[derive(PartialEq, Eq)]
enum Children {
    Some,
    None,
}

impl Tree {
    /// Reap every child that has ended, the task through `child` first so that its status
    /// arrives whole.
    fn reap_ready(&mut self, child: &mut Child) -> Children {
        loop {
            if self.ended.is_none()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.ended = Some(status);
            }
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return Children::Some,
                Ok(status) => {
                    // The task ended between the two looks.
                    if status.pid() == Some(self.task) && self.ended.is_none() {
                        self.ended = Some(match status {
                            WaitStatus::Exited(_, code) => ExitStatus::from_raw((code & 0xff) << 8),
                            WaitStatus::Signaled(_, signal, _) => {
                                ExitStatus::from_raw(signal as i32)
                            }
                            _ => continue,
                        });
                    }
                }
                Err(Errno::ECHILD) => return Children::None,
                // EINVAL: a child was reaped whose status nix cannot name (a real-time
                // signal). If it was the task, say SIGRTMAX (64 on Linux) ended it.
                Err(_) => {
                    if self.ended.is_none() && !Path::new(&format!("/proc/{}", self.task)).exists()
                    {
                        self.ended = Some(ExitStatus::from_raw(64));
                    }
                }
            }
        }
    }

    /// SIGKILL every descendant and reap them until none is left (or only ones this process
    /// may not signal are, or [`CLEANUP_DEADLINE`] has passed: then say so on stderr).
    fn end_all(&mut self, me: Pid, mask: &SigSet, child: &mut Child) {
        let deadline = Instant::now() + CLEANUP_DEADLINE;
        loop {
            if self.reap_ready(child) == Children::None {
                return;
            }
            let tree = descendants(me);
            let mut refused = Vec::new();
            for pid in &tree {
                match kill(*pid, Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => refused.push(format!("{pid} ({e})")),
                }
            }
            if !tree.is_empty() && refused.len() == tree.len() {
                say(format!(
                    "spillway task reaper: could not end process(es) {} the task left; they keep running",
                    refused.join(", ")
                ));
                return;
            }
            if Instant::now() >= deadline {
                say(format!(
                    "spillway task reaper: processes the task left did not end within {CLEANUP_DEADLINE:?}: {tree:?}"
                ));
                return;
            }
            // A child that ends sends SIGCHLD; a descendant further down that ends only tells
            // its own parent, so look again after a second at the latest.
            alarm::set(1);
            let _ = mask.wait();
            alarm::cancel();
        }
    }
}

/// Tell the task's log (the reaper's stderr is the task's); a closed pipe is not an error.
fn say(line: String) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Every process whose parent chain leads to `me`, from `/proc/*/stat`.
fn descendants(me: Pid) -> Vec<Pid> {
    let mut parent: HashMap<i32, i32> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces and parentheses.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut fields = stat[close + 1..].split_whitespace();
        if let (Some(_state), Some(Ok(ppid))) = (fields.next(), fields.next().map(str::parse)) {
            parent.insert(pid, ppid);
        }
    }
    let me = me.as_raw();
    let mut found = Vec::new();
    for &pid in parent.keys() {
        let mut at = pid;
        // A chain is at most as long as there are processes; the bound guards against a
        // cycle made of entries read at different moments.
        for _ in 0..=parent.len() {
            match parent.get(&at) {
                Some(&up) if up == me => {
                    found.push(Pid::from_raw(pid));
                    break;
                }
                Some(&up) if up > 1 && up != at => at = up,
                _ => break,
            }
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_lists_options_then_the_task_after_a_double_dash() {
        let args = ReaperArgs {
            status_file: Some("/run/s".into()),
            user: Some(TaskUser {
                uid: 65534,
                gid: 65533,
            }),
            program: "sh".into(),
            args: vec!["-c".into(), "--uid 0".into()],
        };
        let line: Vec<OsString> = [
            "--status-file",
            "/run/s",
            "--uid",
            "65534",
            "--gid",
            "65533",
            "--",
            "sh",
            "-c",
            "--uid 0",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(args.to_args(), line);
    }

    #[test]
    fn status_lines_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("status");
        for status in [
            ReaperStatus::Exited(3),
            ReaperStatus::Signalled(9),
            ReaperStatus::CannotStart("could not start \"x\": No such file".into()),
        ] {
            std::fs::write(&file, status.line()).unwrap();
            assert_eq!(ReaperStatus::read(&file), Some(status));
        }
        std::fs::write(&file, "exited").unwrap();
        assert_eq!(ReaperStatus::read(&file), None, "a torn line is no status");
    }
}
