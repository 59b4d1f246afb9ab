//! The executor seam: how one task's command actually runs.
//!
//! The worker runtime (`spillway-worker`) leases, heartbeats and reports; an [`Executor`] only
//! runs a fully prepared [`ExecRequest`] to its end and says how it ended. Implementations:
//! [`LocalProcess`] here (a child process in its own process group) and the Kubernetes job
//! executor in `spillway-kubernetes` (one `batch/v1` Job per attempt). This crate is small on
//! purpose so that an executor crate does not have to link the worker runtime. Every executor
//! passes the suite in `conformance` (behind the `testkit` feature), which also states the
//! contract in words.

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
mod local_process;
mod log_tail;
pub mod reaper;
mod seam;
mod task_user;

pub use local_process::LocalProcess;
pub use log_tail::LogTail;
pub use reaper::{ReaperArgs, ReaperCommand, reaper_main};
pub use seam::{ExecOutcome, ExecRequest, Executor, ExitKind, LiveOutput};
pub use task_user::TaskUser;
