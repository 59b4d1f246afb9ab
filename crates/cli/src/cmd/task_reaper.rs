//! `spillway __task-reaper` (hidden): the process a local worker puts between itself and each
//! task, so that nothing the task started outlives it (see `spillway_executor::reaper`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use spillway_executor::{ReaperArgs, TaskUser};

/// The name the worker starts the reaper by.
pub const SUBCOMMAND: &str = "__task-reaper";

/// Options of `spillway __task-reaper`; the worker writes them (`ReaperArgs::to_args`).
#[derive(Debug, Args)]
pub struct TaskReaperArgs {
    /// Where to write how the task ended.
    #[arg(long = "status-file")]
    status_file: Option<PathBuf>,
    /// Run the task with this uid (needs --gid).
    #[arg(long, requires = "gid")]
    uid: Option<u32>,
    /// Run the task with this gid (needs --uid).
    #[arg(long, requires = "uid")]
    gid: Option<u32>,
    /// The task: program and arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<OsString>,
}

/// Run the reaper; must be called before any thread (the async runtime) starts.
pub fn run(args: TaskReaperArgs) -> ExitCode {
    let mut command = args.command.into_iter();
    let program = command.next().unwrap_or_default();
    let user = match (args.uid, args.gid) {
        (Some(uid), Some(gid)) => Some(TaskUser { uid, gid }),
        _ => None,
    };
    spillway_executor::reaper_main(ReaperArgs {
        status_file: args.status_file,
        user,
        program,
        args: command.collect(),
    })
}
