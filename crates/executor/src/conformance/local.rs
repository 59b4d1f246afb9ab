//! A [`Harness`] for [`LocalProcess`]: each behaviour is a `sh -c` script run as a real child
//! process; "nothing left running" means no live process in the script's process group.
//! Used by this crate's tests and, with the task reaper, by the `spillway` binary's.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tempfile::TempDir;

use super::{Behaviour, DynHarness, Harness};
use crate::{ExecRequest, Executor, LocalProcess};

/// Runs the cases' scripts with `executor` in folders of one temporary directory.
pub struct LocalHarness {
    dir: TempDir,
    executor: LocalProcess,
}

impl LocalHarness {
    /// A harness for `executor` (with or without a reaper or a task user).
    pub fn boxed(executor: LocalProcess) -> DynHarness {
        Box::new(Self {
            dir: tempfile::tempdir().expect("a temporary folder for the cases"),
            executor,
        })
    }

    /// The folder the command of `request` runs in: one per task.
    fn run_dir(&self, request: &ExecRequest) -> PathBuf {
        self.dir
            .path()
            .join(format!("task-{}", request.env["SPILLWAY_TASK_ID"]))
    }

    /// The process group the script of `request` wrote down, once it has.
    fn group(&self, request: &ExecRequest) -> Option<u32> {
        std::fs::read_to_string(self.run_dir(request).join("pgid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// Write the script's process group id (field 5 of its stat: the script leads the group, or
/// the reaper above it does) so that the harness can look for what is left of it.
const RECORD_GROUP: &str =
    "read -r _ _ _ _ g _ < /proc/$$/stat && echo $g > pgid.tmp && mv pgid.tmp pgid";

#[async_trait]
impl Harness for LocalHarness {
    fn executor(&self) -> Arc<dyn Executor> {
        Arc::new(self.executor.clone())
    }

    async fn act_out(&self, request: &mut ExecRequest, behaviour: &Behaviour) {
        let dir = self.run_dir(request);
        std::fs::create_dir_all(&dir).expect("the harness's folders and /proc are readable");
        // The output comes from a file, so that any bytes and any length pass unquoted.
        let script = match behaviour {
            Behaviour::Exit { code, log } => {
                std::fs::write(dir.join("log"), log)
                    .expect("the harness's folders and /proc are readable");
                format!("{RECORD_GROUP}; sleep 1000 & cat log; exit {code}")
            }
            Behaviour::PrintEnv { names } => {
                let lines: Vec<String> = names
                    .iter()
                    .map(|name| {
                        assert!(
                            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                            "{name:?} is not a shell variable name"
                        );
                        format!("printf '%s=%s\\n' {name} \"${name}\"")
                    })
                    .collect();
                format!("{RECORD_GROUP}; {}", lines.join("; "))
            }
            // The group is written down last: once it is there, the log is too.
            Behaviour::Hang { log } => {
                std::fs::write(dir.join("log"), log)
                    .expect("the harness's folders and /proc are readable");
                format!("cat log; sleep 1000 & {RECORD_GROUP}; wait")
            }
        };
        request.argv = vec!["sh".into(), "-c".into(), script];
        request.shell = false;
        request.cwd = dir;
    }

    async fn started(&self, request: &ExecRequest) -> bool {
        self.group(request).is_some()
    }

    async fn leftovers(&self, request: &ExecRequest) -> Vec<String> {
        let Some(group) = self.group(request) else {
            return Vec::new();
        };
        let mut left = Vec::new();
        for entry in std::fs::read_dir("/proc")
            .expect("the harness's folders and /proc are readable")
            .flatten()
        {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let (Some(state), Some(pgrp)) = (fields.first(), fields.get(2)) else {
                continue;
            };
            // A zombie waiting for its reaper runs no more.
            if pgrp.parse() == Ok(group) && !matches!(*state, "Z" | "X") {
                left.push(format!(
                    "process {} ({comm}, state {state})",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
        left
    }
}
