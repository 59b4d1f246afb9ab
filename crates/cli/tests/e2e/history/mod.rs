//! The history checker: fault runs whose every client-visible operation is recorded by a
//! proxy and checked afterwards against the queue's promises (nothing acknowledged is lost,
//! no task runs under two valid leases, no stale lease reports, reported successes stick,
//! no task succeeds twice).
//!
//! - [`record`]: the history (one event per task and request, with times) and how a request
//!   seen by the proxy becomes events;
//! - [`proxy`]: the recording proxy, one door per process, each able to refuse or stall its
//!   traffic (for partition runs), and a broken mode that defeats fencing;
//! - [`checker`]: the pure check over a history and the final state;
//! - this file: [`Rig`], a server, its proxy and workers behind it, a load generator, and the
//!   check at the end, so a fault run is a few lines;
//! - `runs`: the fault runs;
//! - `clock`: the run whose replica's wall clock steps (libfaketime).
//!
//! Run them with `cargo nextest run -p spillway --test e2e history`.
//!
//! A new fault run starts a [`Rig`], starts workers with [`Rig::worker`] (each behind its own
//! door), drives a [`Load`], injects its faults, and ends with [`Rig::check`] and
//! `assert_clean`. A network partition of one worker is `rig.proxy.set_mode(name,
//! Mode::Refuse)` (or `Stall`), and back to `Mode::Open`; a second replica gets doors of its
//! own with [`proxy::Proxy::door_to`], recording into the same history. The checker maps the
//! API's wall-clock expiries onto its monotonic timeline through one anchor read at the start,
//! so a run that steps the server's clock has to record the step and shift expiries by it (or
//! widen [`checker::SLACK`]) before checking.

pub mod checker;
mod clock;
mod leader;
pub mod pg_cluster;
pub mod proxy;
pub mod record;
mod runs;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spillway_client::Client;
use spillway_core::api::SubmitJob;
use spillway_core::model::QueueSettings;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::{
    ChildGuard, STATE_DEADLINE, Server, ServerExtras, WorkerSpec, all_tasks, create_queue,
    free_port, start_worker, start_worker_on, wait_job_final,
};
use checker::{Checked, FinalState, FinalTask};
use proxy::Proxy;
use record::{History, Op};

/// The queue every run uses.
pub const QUEUE: &str = "q";
/// Tasks per run unless `SPILLWAY_FAULT_TASKS` says otherwise: small enough for CI.
pub const DEFAULT_TASKS: u32 = 300;
/// How long a run may take to settle after its load and faults, plus [`SETTLE_PER_TASK`]
/// for each task of the run.
const SETTLE_DEADLINE: Duration = Duration::from_secs(180);
/// Extra settling time per task, for runs larger than the CI size.
const SETTLE_PER_TASK: Duration = Duration::from_millis(100);

/// Tasks a run submits: `SPILLWAY_FAULT_TASKS`, else [`DEFAULT_TASKS`].
pub fn fault_tasks() -> u32 {
    match std::env::var("SPILLWAY_FAULT_TASKS") {
        Ok(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("SPILLWAY_FAULT_TASKS={n} is not a number of tasks")),
        Err(_) => DEFAULT_TASKS,
    }
}

/// A server (restartable on its data), a recording proxy in front of it, and an admin client
/// that talks to the server directly (its reads are not part of the history).
pub struct Rig {
    /// Scratch space: data directory, worker scratch and logs.
    pub dir: TempDir,
    data: PathBuf,
    port: u16,
    store: Option<String>,
    extras: ServerExtras,
    starts: u32,
    /// The server.
    pub server: Server,
    /// The proxy every worker and the load generator go through.
    pub proxy: Proxy,
    /// An admin client straight to the server.
    pub admin: Client,
}

impl Rig {
    /// A server over `store` (SQLite in the data directory when `None`) with queue [`QUEUE`].
    pub async fn start(store: Option<String>, settings: QueueSettings) -> Rig {
        Rig::start_at(None, store, settings).await
    }

    /// As [`Rig::start`], with the data directory at `data` (a small filesystem, say).
    pub async fn start_at(
        data: Option<PathBuf>,
        store: Option<String>,
        settings: QueueSettings,
    ) -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        Rig::start_in(dir, data, store, settings, ServerExtras::default()).await
    }

    /// As [`Rig::start_at`], in the scratch directory `dir` (where the test may have written
    /// a config file), with `extras` for every server the rig starts.
    pub async fn start_in(
        dir: TempDir,
        data: Option<PathBuf>,
        store: Option<String>,
        settings: QueueSettings,
        extras: ServerExtras,
    ) -> Rig {
        let data = data.unwrap_or_else(|| dir.path().join("data"));
        let port = free_port();
        let server = Server::start_with("server-1", &data, port, store.as_deref(), &extras).await;
        let admin = server.client();
        create_queue(&admin, QUEUE, settings).await;
        let proxy = Proxy::new(&server.url);
        Rig {
            dir,
            data,
            port,
            store,
            extras,
            starts: 1,
            server,
            proxy,
            admin,
        }
    }

    /// Start `spillway worker` named `name`, talking through its own proxy door.
    pub async fn worker(&self, name: &str, spec: &WorkerSpec<'_>) -> ChildGuard {
        let url = self.proxy.door(name).await;
        start_worker(name, self.dir.path(), &url, &self.server.token, spec)
    }

    /// Start `spillway worker` named `name` on the test host `host`, talking through its own
    /// proxy door on the test network (so cutting the host cuts it off).
    pub async fn worker_on(
        &self,
        host: &crate::netns::TestHost,
        server_ip: std::net::Ipv4Addr,
        name: &str,
        spec: &WorkerSpec<'_>,
    ) -> ChildGuard {
        let url = self.proxy.door_on(name, server_ip).await;
        start_worker_on(host, name, self.dir.path(), &url, &self.server.token, spec)
    }

    /// A client with the admin token through the proxy door `name`.
    pub async fn client(&self, name: &str) -> Client {
        let url = self.proxy.door(name).await;
        Client::new(&url, Some(self.server.token.clone())).expect("client")
    }

    /// Start `spillway worker` named `name`, talking through its own proxy door to `upstream`
    /// (another replica).
    pub async fn worker_to(&self, name: &str, upstream: &str, spec: &WorkerSpec<'_>) -> ChildGuard {
        let url = self.proxy.door_to(name, upstream).await;
        start_worker(name, self.dir.path(), &url, &self.server.token, spec)
    }

    /// SIGKILL the server.
    pub fn kill_server(&mut self) {
        self.server.process.kill9();
    }

    /// Start the server again on the same port and data.
    pub async fn restart_server(&mut self) {
        self.starts += 1;
        let name = format!("server-{}", self.starts);
        self.server = Server::start_with(
            &name,
            &self.data,
            self.port,
            self.store.as_deref(),
            &self.extras,
        )
        .await;
    }

    /// Start another replica named `name` on its own port, over the same data directory and
    /// store (PostgreSQL, for replicas to share), with the same extras.
    pub async fn replica(&self, name: &str, port: u16) -> Server {
        Server::start_with(name, &self.data, port, self.store.as_deref(), &self.extras).await
    }

    /// As [`Rig::replica`], with `extras` of its own instead of the rig's (a replica that
    /// alone runs with a faked clock, say).
    pub async fn replica_with(&self, name: &str, port: u16, extras: &ServerExtras) -> Server {
        Server::start_with(name, &self.data, port, self.store.as_deref(), extras).await
    }

    /// The scratch directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Wait until the acknowledged jobs are finished (or [`SETTLE_DEADLINE`] passed: the
    /// checker then names what is not), read the final state and check the history. Prints
    /// the summary line and returns what was found.
    pub async fn check(&self, run: &str, faults: usize) -> Checked {
        let history = self.proxy.history();
        let acked: Vec<String> = history
            .events
            .iter()
            .filter_map(|e| match &e.op {
                Op::Submitted { job, .. } => Some(job.clone()),
                _ => None,
            })
            .collect();
        let deadline = SETTLE_DEADLINE + SETTLE_PER_TASK * fault_tasks();
        let settle = async {
            for job in &acked {
                wait_job_final(&self.admin, job, deadline + STATE_DEADLINE).await;
            }
        };
        if tokio::time::timeout(deadline, settle).await.is_err() {
            eprintln!("history {run}: not every acknowledged job finished in {deadline:?}");
        }
        // The history again: reports sent while settling count too.
        let history = self.proxy.history();
        let state = final_state(&self.admin, &history).await;
        let checked = checker::check(&history, &state);
        println!("{}", checked.summary(run, faults));
        checked
    }
}

/// The tasks of every job the history names, read from the API as admin.
pub async fn final_state(admin: &Client, history: &History) -> FinalState {
    let mut jobs = HashSet::new();
    for event in &history.events {
        match &event.op {
            Op::Submitted { job, .. } | Op::Granted { job, .. } => {
                jobs.insert(job.clone());
            }
            _ => {}
        }
    }
    let mut state = FinalState::default();
    for job in jobs {
        let tasks = all_tasks(admin, &job)
            .await
            .into_iter()
            .map(|t| FinalTask {
                id: t.id,
                state: t.state,
                attempt: t.attempt,
            })
            .collect();
        state.jobs.insert(job, tasks);
    }
    state
}

/// Leases granted to `actor` that it has not reported yet, by task.
pub fn held_by(history: &History, actor: &str) -> Vec<(i64, u32)> {
    let reported: HashSet<&str> = history
        .events
        .iter()
        .filter_map(|e| match &e.op {
            Op::Report { token, .. } => Some(token.as_str()),
            _ => None,
        })
        .collect();
    history
        .events
        .iter()
        .filter(|e| e.actor == actor)
        .filter_map(|e| match &e.op {
            Op::Granted {
                task,
                attempt,
                token,
                ..
            } if !reported.contains(token.as_str()) => Some((*task, *attempt)),
            _ => None,
        })
        .collect()
}

/// Completes the API applied so far.
pub fn completed(history: &History) -> usize {
    history
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.op,
                Op::Report {
                    kind: record::ReportKind::Complete,
                    answer: record::ReportAnswer::Applied,
                    ..
                }
            )
        })
        .count()
}

/// The latest lease expiry the API has announced (in a grant or a heartbeat answer).
pub fn latest_expiry(history: &History) -> Option<chrono::DateTime<chrono::Utc>> {
    history
        .events
        .iter()
        .filter_map(|e| match &e.op {
            Op::Granted { expires, .. } => Some(*expires),
            Op::Heartbeat {
                answer: record::BeatAnswer::Extended(at),
                ..
            } => Some(*at),
            _ => None,
        })
        .max()
}

/// Whether `task` was granted to someone else than `actor` on an attempt after `attempt`.
pub fn granted_again(history: &History, actor: &str, task: i64, attempt: u32) -> bool {
    history.events.iter().any(|e| {
        e.actor != actor
            && matches!(e.op, Op::Granted { task: t, attempt: a, .. } if t == task && a > attempt)
    })
}

/// A load generator: a job of `per_job` tasks running `argv` every `every`, submitted
/// through the proxy door `client` until `target` tasks were acknowledged (a refused or
/// unanswered submit is simply not counted).
pub struct Load {
    stop: CancellationToken,
    submitter: JoinHandle<()>,
    /// How long the submitter may take: twice its pace, and a state deadline on top.
    deadline: Duration,
}

impl Load {
    /// Start submitting.
    pub async fn start(
        rig: &Rig,
        argv: &[&str],
        per_job: u32,
        target: u32,
        every: Duration,
    ) -> Load {
        let client = rig.client("client").await;
        let stop = CancellationToken::new();
        let mut request = SubmitJob::command(QUEUE, argv.iter().map(|a| a.to_string()).collect());
        request.count = Some(per_job);
        let submitter = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut acked = 0;
                while !stop.is_cancelled() && acked < target {
                    if client.job_submit(&request).await.is_ok() {
                        acked += per_job;
                    }
                    // Pacing, not synchronisation: a steady load rather than a maximal one.
                    tokio::time::sleep(every).await;
                }
            })
        };
        let deadline = every * (target / per_job.max(1) + 1) * 2 + STATE_DEADLINE;
        Load {
            stop,
            submitter,
            deadline,
        }
    }

    /// Wait until the target is reached and the submitter is done.
    pub async fn finish(self) {
        let submitter = self.submitter;
        let done = tokio::time::timeout(self.deadline, submitter).await;
        self.stop.cancel();
        done.expect("the load generator to reach its target")
            .expect("load generator");
    }
}
