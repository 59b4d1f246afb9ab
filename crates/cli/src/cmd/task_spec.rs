//! The flags that say how each task runs, shared by every command that makes jobs (`submit`,
//! `bridge pubsub`), so they read and check the same everywhere.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use spillway_core::model::{Resources, TaskSpec};

/// How each task runs, apart from its command (which each command documents itself).
#[derive(Debug, Clone, Args)]
pub struct TaskSpecArgs {
    /// An environment variable `NAME=value` for the command (repeatable).
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub env: Vec<(String, String)>,
    /// Run the command through `sh -c` (it is an argv, with no shell, otherwise).
    #[arg(long)]
    pub shell: bool,
    /// Kill a task that runs longer than this (e.g. `10m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Container image to run the command in, for workers that run tasks as Kubernetes Jobs
    /// (`spillway worker --executor kubernetes`); local workers ignore it.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// CPU cores one task needs.
    #[arg(long, default_value_t = 1.0)]
    pub cpu: f64,
    /// Memory one task needs, in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory_mb: u64,
    /// GPUs one task needs.
    #[arg(long, default_value_t = 0)]
    pub gpu: u32,
}

impl TaskSpecArgs {
    /// The task spec of `command` with these flags.
    pub fn spec(&self, command: Vec<String>) -> TaskSpec {
        TaskSpec {
            command,
            shell: self.shell,
            env: self.env.iter().cloned().collect::<BTreeMap<_, _>>(),
            timeout: self.timeout,
            resources: Resources {
                cpu: self.cpu,
                memory_mb: self.memory_mb,
                gpu: self.gpu,
            },
            image: self.image.clone(),
            trace: None,
        }
    }
}

/// Parse `KEY=VALUE` (for `--env` and `--label`).
pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not of the form KEY=VALUE"))
}
