//! A `spillway server` in a child process, on CPUs of its own, for the overload and
//! many-workers scenarios (and for the big-table one, whose server's own RSS is a figure).
//!
//! Load generated on the server's CPUs takes their time from the server and delays its own
//! sends, so neither the rate offered nor the latencies measured would be the server's. Here
//! the machine's CPUs are split in two: the server gets the first half, the load the rest. A
//! child inherits the CPU affinity of the thread that starts it, so the starting thread moves
//! to the server's CPUs for the spawn and then to the load's, where it stays and runs the load.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use spillway_client::Client;
use spillway_core::auth::Role;

use crate::config::ADMIN_TOKEN_FILE;

/// Longest wait for the child to print its address, and to exit once asked to.
const DEADLINE: Duration = Duration::from_secs(30);
/// What the server prints, followed by its URL, once it listens.
const LISTENING: &str = "spillway server listening on ";

/// The machine's CPUs (those this process may use) split between the server and the load.
#[derive(Debug, Clone)]
pub struct CpuSplit {
    server: Vec<usize>,
    load: Vec<usize>,
}

impl CpuSplit {
    /// The CPUs this process may run on, split in two halves (the server's first); `None`
    /// with fewer than two, when server and load have to share.
    pub fn of_this_process() -> Result<Option<Self>> {
        let allowed = sched_getaffinity(Pid::from_raw(0))
            .context("cannot read this process's CPU affinity")?;
        let cpus: Vec<usize> = (0..CpuSet::count())
            .filter(|&cpu| allowed.is_set(cpu).unwrap_or(false))
            .collect();
        Ok(Self::halves(&cpus))
    }

    fn halves(cpus: &[usize]) -> Option<Self> {
        if cpus.len() < 2 {
            return None;
        }
        let (server, load) = cpus.split_at(cpus.len() / 2);
        Some(Self {
            server: server.to_vec(),
            load: load.to_vec(),
        })
    }

    /// The server's CPUs, for the report.
    pub fn server_cpus(&self) -> &[usize] {
        &self.server
    }

    /// The load's CPUs, for the report.
    pub fn load_cpus(&self) -> &[usize] {
        &self.load
    }
}

/// Run the calling thread (and the threads it starts from now on) on `cpus` only.
fn pin_this_thread(cpus: &[usize]) -> Result<()> {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)
            .with_context(|| format!("CPU {cpu} is beyond what a CPU set holds"))?;
    }
    sched_setaffinity(Pid::from_raw(0), &set)
        .with_context(|| format!("cannot pin a thread to CPUs {cpus:?}"))
}

/// A server in a child process, on a fresh SQLite database in a temporary directory or on
/// a store given to it.
pub struct ServerProcess {
    child: Child,
    /// The server's base URL.
    pub url: String,
    /// The admin token: made by the server on its empty store, or the one the caller gave.
    pub admin_token: String,
    _dir: tempfile::TempDir,
}

/// How to start a [`ServerProcess`].
#[derive(Debug, Clone, Default)]
pub struct Launch<'a> {
    /// The store's URL (`--store`); `None` for a fresh SQLite database in the temporary
    /// directory.
    pub store: Option<String>,
    /// The admin token of a store that was bootstrapped before (the server then makes none).
    pub admin_token: Option<String>,
    /// The in-flight request limit; `None` for the server's default.
    pub max_in_flight: Option<usize>,
    /// Whether the in-flight limit adapts to latency (the server's default) or stays fixed.
    pub fixed_limit: bool,
    /// The CPUs to split between the server and the load; `None` to share them all.
    pub cpus: Option<&'a CpuSplit>,
}

impl ServerProcess {
    /// Start `spillway server` (this very program) with in-memory blobs, the in-flight limit
    /// when given, adaptive or fixed. With `cpus`, the server runs on the split's server CPUs and the calling
    /// thread is left on the load's: call this from the thread that will run the load, before
    /// it starts any threads of its own. Blocks until the server listens.
    pub fn start(
        max_in_flight: Option<usize>,
        adaptive: bool,
        cpus: Option<&CpuSplit>,
    ) -> Result<Self> {
        Self::launch(&Launch {
            max_in_flight,
            fixed_limit: !adaptive,
            cpus,
            ..Default::default()
        })
    }

    /// Start `spillway server` as `launch` says, with in-memory blobs and its log at `warn`.
    /// With `launch.cpus`, see [`ServerProcess::start`]. Blocks until the server listens.
    pub fn launch(launch: &Launch<'_>) -> Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        // A data directory the server makes itself, so it is private (0700) as it wants.
        let data = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("server.log"))
            .context("cannot create the server's log file")?;
        let exe =
            std::env::current_exe().context("cannot find this program to run as the server")?;
        let store = launch
            .store
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data.join("spillway.db").display()));
        let mut command = Command::new(exe);
        command
            .current_dir(dir.path())
            .env_clear()
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--log",
                "warn",
                "server",
                "--listen",
                "127.0.0.1:0",
                "--blobs",
                "memory://",
            ])
            .arg("--store")
            .arg(store)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(limit) = launch.max_in_flight {
            command.args(["--max-in-flight-requests", &limit.to_string()]);
        }
        command.arg(format!(
            "--adaptive-in-flight-limit={}",
            !launch.fixed_limit
        ));
        if let Some(split) = launch.cpus {
            pin_this_thread(&split.server)?;
        }
        let spawned = command.spawn().context("cannot start the server process");
        if let Some(split) = launch.cpus {
            pin_this_thread(&split.load)?;
        }
        let mut child = spawned?;
        let url = match wait_for_url(&mut child) {
            Ok(url) => url,
            Err(err) => {
                stop_child(&mut child);
                let log =
                    std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                return Err(err.context(format!("the server's log:\n{log}")));
            }
        };
        let admin_token = match &launch.admin_token {
            Some(token) => token.clone(),
            None => read_token(&data.join(ADMIN_TOKEN_FILE))?,
        };
        Ok(Self {
            child,
            url,
            admin_token,
            _dir: dir,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A submitter token of the default tenant, and `queue` created there.
    pub async fn submitter_for(&self, queue: &str) -> Result<String> {
        let admin = Client::new(&self.url, Some(self.admin_token.clone()))?;
        super::harness::create_queue(&admin, queue).await?;
        super::harness::token(&admin, "bench-overload", Role::Submitter).await
    }

    /// The server's resident set size in MiB, read from /proc.
    pub fn rss_mib(&self) -> Option<f64> {
        super::procfs::rss_mib(self.pid())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// SIGTERM, then SIGKILL if the child has not exited within [`DEADLINE`].
fn stop_child(child: &mut Child) {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let _ = kill(pid, Signal::SIGTERM);
    let until = Instant::now() + DEADLINE;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The URL from the server's "listening" line, within [`DEADLINE`].
fn wait_for_url(child: &mut Child) -> Result<String> {
    let stdout = child
        .stdout
        .take()
        .context("the server's stdout was not piped")?;
    let (found, url) = mpsc::channel();
    // Reads to the end so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(url) = line.strip_prefix(LISTENING) {
                let _ = found.send(url.trim().to_string());
            }
        }
    });
    match url.recv_timeout(DEADLINE) {
        Ok(url) => Ok(url),
        Err(_) => match child.try_wait() {
            Ok(Some(status)) => bail!("the server process exited ({status}) before listening"),
            _ => bail!("the server process did not listen within {DEADLINE:?}"),
        },
    }
}

fn read_token(path: &Path) -> Result<String> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin token at {}", path.display()))?;
    Ok(token.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_gets_the_first_half_of_the_cpus_and_one_cpu_is_not_split() {
        let split = CpuSplit::halves(&[0, 1]).expect("two CPUs split");
        assert_eq!(
            (split.server_cpus(), split.load_cpus()),
            (&[0][..], &[1][..])
        );
        let split = CpuSplit::halves(&[2, 3, 5, 7, 8]).expect("five CPUs split");
        assert_eq!(split.server_cpus(), &[2, 3]);
        assert_eq!(split.load_cpus(), &[5, 7, 8]);
        assert!(CpuSplit::halves(&[4]).is_none());
        assert!(CpuSplit::halves(&[]).is_none());
    }
}
