//! Many workers: what thousands of idle, long-polling, heart-beating workers cost one server,
//! and the lease latency they see once work flows.
//!
//! The server is a `spillway server` child process on half of the machine's CPUs (see
//! [`server_process`](super::server_process)); the simulated workers run in this process on
//! the other half. Each simulated worker does what `spillway worker` does with concurrency 1
//! (crates/worker/src/runtime.rs), over two keep-alive connections of its own as the worker's
//! HTTP client would hold (a long-poll occupies one): it registers, long-polls
//! `POST /v1/tasks/lease` for one task with the worker's wait
//! ([`DEFAULT_LEASE_WAIT`]), sends `POST /v1/workers/{id}/heartbeat` every
//! [`DEFAULT_HEARTBEAT_INTERVAL`], and completes what it leases at once. A real fleet starts
//! over time, so the workers' first heartbeats and the end of their first long-polls are spread
//! over one period; after that each keeps its own rhythm.
//!
//! A run measures, in order:
//!
//! 1. the server alone, idle: its RSS and its CPU over a short window;
//! 2. with every worker registered and parked: the server's CPU over the window (utime plus
//!    stime from /proc/PID/stat, as a share of one core) and its RSS, against the bare server's;
//! 3. while work flows: one-task jobs submitted open loop at [`BUSY_RATE`] for the window; the
//!    time from just before each submit to the arrival of the lease answer at a worker (each
//!    task's payload carries its submit time; a submit the server sheds is sent again after its
//!    `Retry-After`, and counted), and the server's CPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hdrhistogram::Histogram;
use serde::Serialize;
use spillway_client::Client;
use spillway_core::ErrorKind;
use spillway_core::api::{
    CompleteRequest, LeaseRequest, LeaseResponse, NewTask, RegisterWorker, WorkerHeartbeat,
};
use spillway_core::auth::Role;
use spillway_core::model::Worker;
use spillway_worker::{DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_LEASE_WAIT};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::procfs::CpuWindow;
use super::raw_http::Connection;
use super::server_process::{CpuSplit, Launch, ServerProcess};
use super::throughput::{completion, job};

/// The queue every simulated worker serves.
const QUEUE: &str = "bench-workers";
/// Tasks per second submitted while work flows, as one-task jobs.
pub const BUSY_RATE: f64 = 200.0;
/// Pause after the server starts and after the workers park, before a window opens, so
/// start-up and the registration burst are not measured.
const SETTLE: Duration = Duration::from_secs(3);
/// The bare server's CPU is measured over this long (or the window, if shorter).
const BARE_WINDOW: Duration = Duration::from_secs(5);
/// Longest wait for every worker to register and park, and for submitted work to be leased.
const DEADLINE: Duration = Duration::from_secs(180);
/// Pause of a simulated worker after a failed request, as the worker's first backoff.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Pause before a shed submit is sent again: the `Retry-After` the server gives.
const SHED_PAUSE: Duration = Duration::from_secs(1);
/// The shortest first long-poll, so even the first worker parks.
const FIRST_WAIT_MIN: Duration = Duration::from_secs(1);

/// The figures of one many-workers run.
#[derive(Debug, Clone, Serialize)]
pub struct ManyWorkersRun {
    /// Simulated workers.
    pub workers: u32,
    /// Length of each measurement window, seconds.
    pub window_s: f64,
    /// The CPUs the server ran on; empty when it shared them with the load.
    pub server_cpus: Vec<usize>,
    /// The CPUs the workers ran on; empty when shared.
    pub load_cpus: Vec<usize>,
    /// The server alone, idle: CPU as a share of one core, percent.
    pub bare_cpu_pct: Option<f64>,
    /// The server alone, idle: RSS, MiB.
    pub bare_rss_mib: Option<f64>,
    /// Every worker parked: the server's CPU as a share of one core, percent.
    pub idle_cpu_pct: Option<f64>,
    /// Every worker parked: the server's RSS at the end of the window, MiB.
    pub idle_rss_mib: Option<f64>,
    /// Requests the workers sent per second while idle (long-polls and heartbeats).
    pub idle_requests_per_s: f64,
    /// While work flowed: the server's CPU as a share of one core, percent.
    pub busy_cpu_pct: Option<f64>,
    /// Tasks submitted while work flowed.
    pub busy_tasks: u64,
    /// Submits the server shed (503) while work flowed; each was sent again a second later,
    /// and its latency counts from the first send.
    pub busy_submits_shed: u64,
    /// Tasks submitted per second, from the first submit to the lease of the last task.
    pub busy_rate: f64,
    /// Submit-to-lease median, ms.
    pub lease_p50_ms: f64,
    /// Submit-to-lease 99th percentile, ms.
    pub lease_p99_ms: f64,
    /// Requests of the workers that failed (a status other than 2xx, or the connection).
    pub errors: u64,
}

impl ManyWorkersRun {
    /// The server's RSS with every worker parked beyond the bare server's, MiB.
    pub fn rss_beyond_bare_mib(&self) -> Option<f64> {
        Some(self.idle_rss_mib? - self.bare_rss_mib?)
    }
}

/// Start a server process and measure it with `workers` simulated workers over windows of
/// `window`. Blocking: it pins the calling thread to the load's CPUs, so run it on a thread of
/// its own.
pub fn run_pinned(workers: u32, window: Duration) -> Result<ManyWorkersRun> {
    let split = CpuSplit::of_this_process()?;
    let server = ServerProcess::launch(&Launch {
        cpus: split.as_ref(),
        ..Default::default()
    })?;
    let load_threads = split.as_ref().map_or(1, |s| s.load_cpus().len());
    // The runtime's threads start from this one, so they run on the load's CPUs too.
    let runtime = if load_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(load_threads);
        builder
    }
    .enable_all()
    .build()
    .context("cannot start the workers' async runtime")?;
    let mut run = runtime.block_on(run_once(&server, workers, window))?;
    if let Some(split) = &split {
        run.server_cpus = split.server_cpus().to_vec();
        run.load_cpus = split.load_cpus().to_vec();
    }
    Ok(run)
}

/// What the simulated workers share.
struct Fleet {
    url: String,
    token: String,
    /// Submit times in task payloads are microseconds since this instant.
    origin: Instant,
    workers: u32,
    /// Submit-to-lease latencies, µs.
    latencies: std::sync::Mutex<Histogram<u64>>,
    registered: AtomicU64,
    long_polls: AtomicU64,
    heartbeats: AtomicU64,
    leased: AtomicU64,
    errors: AtomicU64,
}

impl Fleet {
    fn requests(&self) -> u64 {
        self.long_polls.load(Ordering::Relaxed) + self.heartbeats.load(Ordering::Relaxed)
    }
}

async fn run_once(
    server: &ServerProcess,
    workers: u32,
    window: Duration,
) -> Result<ManyWorkersRun> {
    let admin = Client::new(&server.url, Some(server.admin_token.clone()))?;
    super::harness::create_queue(&admin, QUEUE).await?;
    let worker_token = super::harness::token(&admin, "bench-workers", Role::Worker).await?;
    let submitter = Client::new(
        &server.url,
        Some(super::harness::token(&admin, "bench-workers-submit", Role::Submitter).await?),
    )?;
    let pid = server.pid();

    tokio::time::sleep(SETTLE).await;
    let bare_rss_mib = server.rss_mib();
    let bare = CpuWindow::start(pid);
    tokio::time::sleep(BARE_WINDOW.min(window)).await;
    let bare_cpu_pct = bare
        .and_then(|w| w.percent_of_one_core())
        .map(|(pct, _)| pct);
    eprintln!(
        "  bare server   cpu {}, rss {}",
        pct(bare_cpu_pct),
        mib(bare_rss_mib)
    );

    let fleet = Arc::new(Fleet {
        url: server.url.clone(),
        token: worker_token,
        origin: Instant::now(),
        workers,
        latencies: std::sync::Mutex::new(histogram()?),
        registered: AtomicU64::new(0),
        long_polls: AtomicU64::new(0),
        heartbeats: AtomicU64::new(0),
        leased: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let stop = CancellationToken::new();
    let mut set = JoinSet::new();
    for index in 0..workers {
        let (fleet, stop) = (fleet.clone(), stop.clone());
        set.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => Ok(()),
                done = simulate(fleet, index) => done,
            }
        });
    }
    let outcome = measure(server, &fleet, &submitter, window, &mut set).await;
    stop.cancel();
    while let Some(joined) = set.join_next().await {
        joined.context("a simulated worker panicked")??;
    }
    let (idle, busy) = outcome?;
    Ok(ManyWorkersRun {
        workers,
        window_s: window.as_secs_f64(),
        server_cpus: Vec::new(),
        load_cpus: Vec::new(),
        bare_cpu_pct,
        bare_rss_mib,
        idle_cpu_pct: idle.cpu_pct,
        idle_rss_mib: idle.rss_mib,
        idle_requests_per_s: idle.requests_per_s,
        busy_cpu_pct: busy.cpu_pct,
        busy_tasks: busy.tasks,
        busy_submits_shed: busy.shed,
        busy_rate: busy.rate,
        lease_p50_ms: busy.p50_ms,
        lease_p99_ms: busy.p99_ms,
        errors: fleet.errors.load(Ordering::Relaxed),
    })
}

struct Idle {
    cpu_pct: Option<f64>,
    rss_mib: Option<f64>,
    requests_per_s: f64,
}

struct Busy {
    cpu_pct: Option<f64>,
    tasks: u64,
    shed: u64,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The idle window once every worker is parked, then the busy one.
async fn measure(
    server: &ServerProcess,
    fleet: &Arc<Fleet>,
    submitter: &Client,
    window: Duration,
    workers: &mut JoinSet<Result<()>>,
) -> Result<(Idle, Busy)> {
    let n = u64::from(fleet.workers);
    let until = Instant::now() + DEADLINE;
    // Every worker has registered and sent its first long-poll.
    while fleet.registered.load(Ordering::Relaxed) < n
        || fleet.long_polls.load(Ordering::Relaxed) < n
    {
        if let Some(joined) = workers.try_join_next() {
            joined.context("a simulated worker panicked")??;
            bail!("a simulated worker ended before the measurement");
        }
        ensure!(
            Instant::now() < until,
            "only {} of {n} simulated workers registered and parked within {DEADLINE:?}",
            fleet
                .registered
                .load(Ordering::Relaxed)
                .min(fleet.long_polls.load(Ordering::Relaxed))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(SETTLE).await;

    let pid = server.pid();
    let cpu = CpuWindow::start(pid);
    let requests = fleet.requests();
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let idle = Idle {
        cpu_pct: cpu
            .and_then(|w| w.percent_of_one_core())
            .map(|(pct, _)| pct),
        rss_mib: server.rss_mib(),
        requests_per_s: (fleet.requests() - requests) as f64 / started.elapsed().as_secs_f64(),
    };
    eprintln!(
        "  idle          {} workers: cpu {}, rss {}, {:.0} requests/s",
        fleet.workers,
        pct(idle.cpu_pct),
        mib(idle.rss_mib),
        idle.requests_per_s
    );

    let leased_before = fleet.leased.load(Ordering::Relaxed);
    let shed = Arc::new(AtomicU64::new(0));
    let cpu = CpuWindow::start(pid);
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / BUSY_RATE));
    let mut tasks = 0u64;
    // Open loop: each submit is sent on time whether or not earlier ones have answered, so a
    // slow or shedding server cannot slow the arrivals down.
    let mut submits = JoinSet::new();
    while started.elapsed() < window {
        ticks.tick().await;
        let sent_us = micros_since(fleet.origin);
        let (submitter, shed) = (submitter.clone(), shed.clone());
        submits.spawn(async move { submit_until_admitted(&submitter, sent_us, &shed).await });
        tasks += 1;
    }
    let cpu_pct = cpu
        .and_then(|w| w.percent_of_one_core())
        .map(|(pct, _)| pct);
    while let Some(submitted) = submits.join_next().await {
        submitted.context("a submit panicked")??;
    }
    let until = Instant::now() + DEADLINE;
    while fleet.leased.load(Ordering::Relaxed) - leased_before < tasks {
        ensure!(
            Instant::now() < until,
            "{} of {tasks} submitted tasks were leased within {DEADLINE:?}",
            fleet.leased.load(Ordering::Relaxed) - leased_before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let latencies = fleet
        .latencies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let busy = Busy {
        cpu_pct,
        tasks,
        shed: shed.load(Ordering::Relaxed),
        rate: tasks as f64 / elapsed,
        p50_ms: latencies.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: latencies.value_at_quantile(0.99) as f64 / 1000.0,
    };
    eprintln!(
        "  busy          {:.0} tasks/s: cpu {}, submit-to-lease p50 {:.3} ms, p99 {:.3} ms, {} submits shed",
        busy.rate,
        pct(busy.cpu_pct),
        busy.p50_ms,
        busy.p99_ms,
        busy.shed
    );
    Ok((idle, busy))
}

/// Submit a one-task job stamped `sent_us` until the server admits it; a submit shed with
/// 503 (the server's in-flight limit) is counted and sent again after [`SHED_PAUSE`].
async fn submit_until_admitted(submitter: &Client, sent_us: u64, shed: &AtomicU64) -> Result<()> {
    let payload = NewTask {
        payload: Some(serde_json::json!({ "sent_us": sent_us })),
    };
    let request = job(QUEUE, Some(vec![payload]));
    let until = Instant::now() + DEADLINE;
    loop {
        match submitter.job_submit(&request).await {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Unavailable && Instant::now() < until => {
                shed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(SHED_PAUSE).await;
            }
            Err(e) => return Err(e).context("submit failed"),
        }
    }
}

/// One simulated worker, until its task is dropped.
async fn simulate(fleet: Arc<Fleet>, index: u32) -> Result<()> {
    let mut control = Connection::new(&fleet.url, &fleet.token)?;
    let register = RegisterWorker {
        pool: "default".to_string(),
        hostname: format!("simulated-{index}"),
        queues: vec![QUEUE.to_string()],
        concurrency: 1,
        tenant: None,
    };
    let body = serde_json::to_vec(&register).context("cannot encode a registration")?;
    // As the worker does, a registration turned away (503 under the burst of a whole fleet
    // registering at once) or a connection refused is tried again after a pause.
    let answer = loop {
        match control.post("/v1/workers", &body).await {
            Ok((200..=299, answer)) => break answer,
            Ok((status @ (429 | 503), _)) => {
                tracing::debug!(status, "a simulated worker's registration was turned away");
            }
            Ok((status, answer)) => bail!(
                "registering a simulated worker was answered {status}: {}",
                String::from_utf8_lossy(&answer)
            ),
            Err(error) => tracing::debug!(%error, "a simulated worker could not register"),
        }
        fleet.errors.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(ERROR_PAUSE).await;
    };
    let worker: Worker =
        serde_json::from_slice(&answer).context("cannot read the registration's answer")?;
    fleet.registered.fetch_add(1, Ordering::Relaxed);
    let control = Mutex::new(control);
    // A fleet that started over time: worker `index` of n is `index/n` of a period along.
    let share = f64::from(index) / f64::from(fleet.workers.max(1));
    tokio::join!(
        heartbeats(
            &fleet,
            &worker.id,
            &control,
            DEFAULT_HEARTBEAT_INTERVAL.mul_f64(share)
        ),
        leases(&fleet, &worker.id, &control, share),
    );
    Ok(())
}

/// The worker's own heartbeat every [`DEFAULT_HEARTBEAT_INTERVAL`], the first after `offset`.
async fn heartbeats(fleet: &Fleet, id: &str, control: &Mutex<Connection>, offset: Duration) {
    let path = format!("/v1/workers/{id}/heartbeat");
    let body = serde_json::to_vec(&WorkerHeartbeat {
        running: 0,
        draining: false,
    })
    .unwrap_or_default();
    let mut next = tokio::time::Instant::now() + offset;
    loop {
        tokio::time::sleep_until(next).await;
        next += DEFAULT_HEARTBEAT_INTERVAL;
        fleet.heartbeats.fetch_add(1, Ordering::Relaxed);
        let answer = control.lock().await.post(&path, &body).await;
        if !matches!(answer, Ok((200..=299, _))) {
            fleet.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Long-poll for one task at a time and complete each at once. The first long-poll waits
/// `share` of [`DEFAULT_LEASE_WAIT`], the rest the whole of it.
async fn leases(fleet: &Fleet, id: &str, control: &Mutex<Connection>, share: f64) {
    let mut connection = match Connection::new(&fleet.url, &fleet.token) {
        Ok(connection) => connection,
        Err(_) => {
            fleet.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let mut wait = FIRST_WAIT_MIN.max(DEFAULT_LEASE_WAIT.mul_f64(share));
    loop {
        let request = LeaseRequest {
            worker_id: id.to_string(),
            queues: vec![QUEUE.to_string()],
            max_tasks: 1,
            wait: Some(wait),
            tenant: None,
        };
        wait = DEFAULT_LEASE_WAIT;
        let body = serde_json::to_vec(&request).unwrap_or_default();
        fleet.long_polls.fetch_add(1, Ordering::Relaxed);
        let leased = match connection.post("/v1/tasks/lease", &body).await {
            Ok((200, answer)) => serde_json::from_slice::<LeaseResponse>(&answer).ok(),
            _ => None,
        };
        let Some(leased) = leased else {
            fleet.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(ERROR_PAUSE).await;
            continue;
        };
        if leased.tasks.is_empty() {
            continue;
        }
        let arrived = micros_since(fleet.origin);
        {
            let mut latencies = fleet.latencies.lock().unwrap_or_else(|p| p.into_inner());
            for task in &leased.tasks {
                let sent = task
                    .payload
                    .as_ref()
                    .and_then(|p| p.get("sent_us"))
                    .and_then(serde_json::Value::as_u64);
                if let Some(sent) = sent {
                    latencies.saturating_record(arrived.saturating_sub(sent).max(1));
                }
            }
        }
        let completions = leased.tasks.iter().map(completion).collect();
        let body = serde_json::to_vec(&CompleteRequest { completions }).unwrap_or_default();
        let answer = control.lock().await.post("/v1/tasks/complete", &body).await;
        if !matches!(answer, Ok((200..=299, _))) {
            fleet.errors.fetch_add(1, Ordering::Relaxed);
        }
        fleet
            .leased
            .fetch_add(leased.tasks.len() as u64, Ordering::Relaxed);
    }
}

/// Microseconds, from 1 µs to 10 minutes, 3 significant figures.
fn histogram() -> Result<Histogram<u64>> {
    Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).context("cannot make a latency histogram")
}

fn micros_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn pct(value: Option<f64>) -> String {
    value.map_or_else(|| "unknown".to_string(), |v| format!("{v:.1}% of a core"))
}

fn mib(value: Option<f64>) -> String {
    value.map_or_else(|| "unknown".to_string(), |v| format!("{v:.1} MiB"))
}

#[cfg(test)]
impl ManyWorkersRun {
    /// A run with round figures, for tests.
    pub fn example() -> Self {
        ManyWorkersRun {
            workers: 2000,
            window_s: 20.0,
            server_cpus: vec![0],
            load_cpus: vec![1],
            bare_cpu_pct: Some(0.5),
            bare_rss_mib: Some(16.0),
            idle_cpu_pct: Some(8.0),
            idle_rss_mib: Some(96.0),
            idle_requests_per_s: 300.0,
            busy_cpu_pct: Some(40.0),
            busy_tasks: 4000,
            busy_submits_shed: 0,
            busy_rate: 200.0,
            lease_p50_ms: 1.0,
            lease_p99_ms: 4.0,
            errors: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rss_beyond_the_bare_server_needs_both_readings() {
        let run = ManyWorkersRun::example();
        assert_eq!(run.rss_beyond_bare_mib(), Some(80.0));
        let unknown = ManyWorkersRun {
            bare_rss_mib: None,
            ..run
        };
        assert_eq!(unknown.rss_beyond_bare_mib(), None);
    }
}
