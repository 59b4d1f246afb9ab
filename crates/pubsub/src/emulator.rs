//! The Pub/Sub emulator as a child process, for tests: started on 127.0.0.1 with a free
//! port, polled until it answers, killed when its guard drops.
//!
//! The emulator is found through `SPILLWAY_PUBSUB_EMULATOR` (the path of
//! `cloud-pubsub-emulator`), else at the Google Cloud SDK's default place. It needs java.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use spillway_core::{Error, Result};

use crate::client::PubSub;

/// The variable naming the emulator's start script.
pub const EMULATOR_ENV: &str = "SPILLWAY_PUBSUB_EMULATOR";
/// Where the Google Cloud SDK (apt package `google-cloud-cli-pubsub-emulator`) puts it.
pub const DEFAULT_EMULATOR: &str =
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator";
/// How long the emulator (a JVM) may take to answer after starting.
const START_DEADLINE: Duration = Duration::from_secs(45);
/// Starts tried, each on a fresh port.
const START_ATTEMPTS: u32 = 3;
/// How much of the emulator's output an error quotes.
const LOG_TAIL_BYTES: usize = 2000;
/// Pause between two readiness checks.
const POLL: Duration = Duration::from_millis(100);

/// The emulator's start script, if there is one.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os(EMULATOR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_EMULATOR));
    path.is_file().then_some(path)
}

/// The emulator for a test, or `None` after printing why the test is skipped. Under CI
/// (`CI=true`) a missing emulator panics instead, so CI cannot pass by skipping.
pub fn find_or_skip(test: &str) -> Option<PathBuf> {
    let reason = match find() {
        Some(path) if java_found() => return Some(path),
        Some(path) => format!(
            "the Pub/Sub emulator at {} needs java, and none was found on PATH or in JAVA_HOME",
            path.display()
        ),
        None => format!(
            "the Pub/Sub emulator was not found (set {EMULATOR_ENV} to cloud-pubsub-emulator, or install it at {DEFAULT_EMULATOR}; it needs java)"
        ),
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {reason}; CI=true, so this is a failure, not a skip");
    }
    eprintln!("SKIPPED {test}: {reason}");
    None
}

/// Whether the emulator's start script will find java (it looks in JAVA_HOME, then PATH).
fn java_found() -> bool {
    let in_java_home = std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin/java"))
        .is_some_and(|java| java.is_file());
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("java").is_file()));
    in_java_home || on_path
}

/// A running emulator; killed with its process group on drop.
pub struct Emulator {
    child: Child,
    host: String,
    log: PathBuf,
    // Holds the log until the guard drops.
    _dir: tempfile::TempDir,
}

impl Emulator {
    /// Start the emulator at `script` on a free port and wait until it answers. A port taken
    /// by someone else between choosing and binding it makes the start try again on another.
    pub async fn start(script: &std::path::Path) -> Result<Emulator> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Emulator::start_once(script).await {
                Ok(emulator) => return Ok(emulator),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::unavailable("the Pub/Sub emulator did not start")))
    }

    async fn start_once(script: &std::path::Path) -> Result<Emulator> {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir()
            .map_err(|e| Error::unavailable("cannot make a temp dir").with_source(e))?;
        let log = dir.path().join("emulator.log");
        let out = std::fs::File::create(&log)
            .map_err(|e| Error::unavailable("cannot create the emulator log").with_source(e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::unavailable("cannot create the emulator log").with_source(e))?;
        let port = free_port()?;
        let host = format!("127.0.0.1:{port}");
        let child = Command::new(script)
            .arg("--host=127.0.0.1")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group, so the guard can kill the JVM the script execs.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                Error::unavailable(format!("cannot start {}", script.display())).with_source(e)
            })?;
        let mut emulator = Emulator {
            child,
            host,
            log,
            _dir: dir,
        };
        emulator.wait_ready().await?;
        Ok(emulator)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let http = reqwest::Client::new();
        let url = format!("http://{}/", self.host);
        let until = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::unavailable(format!(
                    "the Pub/Sub emulator exited with {status} while starting (is java installed?): {}",
                    self.log_tail()
                )));
            }
            if self.log_tail().contains("Address already in use") {
                return Err(Error::unavailable(format!(
                    "port of {} was taken before the emulator bound it",
                    self.host
                )));
            }
            // The emulator answers "Ok" on `/`; anything else on the port is not it.
            if let Ok(answer) = http.get(&url).send().await
                && answer.status().is_success()
                && answer.text().await.is_ok_and(|body| body.trim() == "Ok")
            {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(Error::unavailable(format!(
                    "the Pub/Sub emulator did not answer on {} within {START_DEADLINE:?}: {}",
                    self.host,
                    self.log_tail()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The end of the emulator's output, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(LOG_TAIL_BYTES);
        let start = (start..=text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    /// `127.0.0.1:PORT`, the value for `PUBSUB_EMULATOR_HOST`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A client for it.
    pub fn client(&self) -> Result<PubSub> {
        PubSub::emulator(&self.host)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Ok(raw) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::unavailable("cannot find a free port").with_source(e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::unavailable("cannot find a free port").with_source(e))
}
