//! Overload: how the server behaves when offered ten times what it can serve.
//!
//! The server is a `spillway server` child process on half of the machine's CPUs; the load
//! runs on the other half, from a lean HTTP client ([`RawPost`]), so that it can offer ten
//! times what the server serves and its own work neither slows the server nor delays its sends
//! (see [`server_process`](super::server_process)). On a single CPU the two share it, and the
//! report says so.
//!
//! First the sustainable rate of submitting a job (one task, or `--submit-tasks`) is measured closed
//! loop: [`CAPACITY_LOOPS`] loops, each sending its next submit when the last one answered, for
//! [`CAPACITY_TIME`]; its latencies are the reference. Then [`OVERLOAD_FACTOR`] times that rate
//! is offered open loop for [`OVERLOAD_TIME`]: arrivals at fixed times, each sent whether or not
//! earlier ones have answered, so a slow server cannot slow the load down. Every answer is
//! sorted into admitted (2xx), shed (503 or 429, and whether it carried `Retry-After`) and
//! other; latencies are counted from the arrival's planned time, so time spent waiting to be
//! sent is not hidden. The server's RSS is read from /proc before, during (the peak) and after.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::mpsc;

use super::raw_http::{Answer, RawPost};
use super::server_process::{CpuSplit, ServerProcess};
use super::throughput::{job, payload};

/// The queue the submits go to.
const QUEUE: &str = "bench-overload";
/// Concurrent closed-loop submitters that find the sustainable rate: enough to fill the
/// SQLite writer's commit groups, far under the server's in-flight limit.
const CAPACITY_LOOPS: usize = 32;
/// How long the sustainable rate is measured.
const CAPACITY_TIME: Duration = Duration::from_secs(3);
/// The offered load as a multiple of the sustainable rate.
pub const OVERLOAD_FACTOR: f64 = 10.0;
/// How long the overload is offered.
const OVERLOAD_TIME: Duration = Duration::from_secs(5);
/// Most requests the generator keeps outstanding (each on a connection of its own); later
/// arrivals are counted as not sent. Twice the server's default in-flight limit (1024), which
/// is what is being measured, and within the server's default open-files limit.
const MAX_OUTSTANDING: usize = 2048;
/// Longest one request may take; a request that takes longer counts as other.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the RSS is sampled while the overload runs.
const RSS_SAMPLE: Duration = Duration::from_millis(100);

/// The figures of one overload run.
#[derive(Debug, Clone, Serialize)]
pub struct OverloadRun {
    /// The server's in-flight request limit.
    pub max_in_flight: usize,
    /// Tasks in each submitted job.
    pub submit_tasks: u32,
    /// Whether the server adapted its limit to latency (`adaptive_in_flight_limit`), or kept
    /// it fixed.
    pub adaptive: bool,
    /// The CPUs the server ran on; empty when it shared the only CPU with the load.
    pub server_cpus: Vec<usize>,
    /// The CPUs the load ran on; empty when shared.
    pub load_cpus: Vec<usize>,
    /// Submits per second answered 2xx in the closed-loop phase.
    pub sustainable_rps: f64,
    /// Median latency in the closed-loop phase, ms.
    pub sustainable_p50_ms: f64,
    /// 99th percentile latency in the closed-loop phase, ms.
    pub sustainable_p99_ms: f64,
    /// The rate offered open loop, submits per second.
    pub offered_rps: f64,
    /// Requests sent during the overload.
    pub sent: u64,
    /// Requests sent per second of the overload: below `offered_rps` when the generator
    /// could not keep up or was at its cap.
    pub sent_rps: f64,
    /// Arrivals not sent because [`MAX_OUTSTANDING`] requests were outstanding.
    pub not_sent: u64,
    /// Answered 2xx.
    pub admitted: u64,
    /// Answered 503.
    pub shed_503: u64,
    /// Answered 429.
    pub shed_429: u64,
    /// Answered 503 or 429 with a `Retry-After` header.
    pub shed_with_retry_after: u64,
    /// Any other status, a transport error or a timeout.
    pub other: u64,
    /// Median latency of admitted requests, ms.
    pub admitted_p50_ms: f64,
    /// 99th percentile latency of admitted requests, ms.
    pub admitted_p99_ms: f64,
    /// Median latency of shed requests, ms.
    pub shed_p50_ms: f64,
    /// The server's RSS before the overload, MiB.
    pub rss_before_mib: Option<f64>,
    /// Highest RSS sampled during the overload, MiB.
    pub rss_peak_mib: Option<f64>,
    /// RSS once every request has been answered, MiB.
    pub rss_after_mib: Option<f64>,
}

impl OverloadRun {
    /// Share of sent requests answered 2xx, percent.
    pub fn admitted_pct(&self) -> f64 {
        percent(self.admitted, self.sent)
    }

    /// Share of sent requests answered 503 or 429, percent.
    pub fn shed_pct(&self) -> f64 {
        percent(self.shed_503 + self.shed_429, self.sent)
    }

    /// Share of shed answers that carried `Retry-After`, percent.
    pub fn retry_after_pct(&self) -> f64 {
        percent(self.shed_with_retry_after, self.shed_503 + self.shed_429)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Start a server process, measure its sustainable rate, then offer ten times it (the
/// server's in-flight limit is `max_in_flight`, or the default, and `adaptive` or fixed). Blocking: it pins the calling
/// thread to the load's CPUs, so run it on a thread of its own.
pub fn run_pinned(
    max_in_flight: Option<usize>,
    submit_tasks: u32,
    adaptive: bool,
) -> Result<OverloadRun> {
    let split = CpuSplit::of_this_process()?;
    let server = ServerProcess::start(max_in_flight, adaptive, split.as_ref())?;
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
    .context("cannot start the load's async runtime")?;
    let mut run = runtime.block_on(run_once(&server, max_in_flight, submit_tasks))?;
    run.adaptive = adaptive;
    if let Some(split) = &split {
        run.server_cpus = split.server_cpus().to_vec();
        run.load_cpus = split.load_cpus().to_vec();
    }
    Ok(run)
}

async fn run_once(
    server: &ServerProcess,
    max_in_flight: Option<usize>,
    submit_tasks: u32,
) -> Result<OverloadRun> {
    let token = server.submitter_for(QUEUE).await?;
    let tasks = (0..submit_tasks).map(payload).collect();
    let body =
        serde_json::to_vec(&job(QUEUE, Some(tasks))).context("cannot encode the submit body")?;
    let load = Arc::new(RawPost::new(&server.url, "/v1/jobs", &token, &body)?);
    let (sustainable_rps, reference) = sustainable(&load).await?;
    let offered_rps = sustainable_rps * OVERLOAD_FACTOR;
    eprintln!(
        "  sustainable   {sustainable_rps:>10.0} submits/s (p50 {:.3} ms, p99 {:.3} ms); offering {offered_rps:.0}/s",
        millis(&reference, 0.50),
        millis(&reference, 0.99)
    );
    let rss_before_mib = server.rss_mib();
    let mut rss_peak_mib = rss_before_mib;
    let (answers, mut answered) = mpsc::unbounded_channel::<(Answer, Duration)>();
    let outstanding = Arc::new(AtomicUsize::new(0));
    let interval = Duration::from_secs_f64(1.0 / offered_rps.max(1.0));
    let total = (offered_rps * OVERLOAD_TIME.as_secs_f64()).ceil() as u64;
    let (mut next, mut sent, mut not_sent) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut sampled = start;
    while next < total {
        let due = start + interval.mul_f64(next as f64);
        tokio::time::sleep_until(due.into()).await;
        // The timer is coarser than the interval: send every arrival that is due by now.
        let now = Instant::now();
        while next < total {
            let planned = start + interval.mul_f64(next as f64);
            if planned > now {
                break;
            }
            next += 1;
            if outstanding.load(Ordering::Relaxed) >= MAX_OUTSTANDING {
                not_sent += 1;
                continue;
            }
            sent += 1;
            outstanding.fetch_add(1, Ordering::Relaxed);
            let (load, answers, outstanding) = (load.clone(), answers.clone(), outstanding.clone());
            tokio::spawn(async move {
                let answer = tokio::time::timeout(REQUEST_TIMEOUT, load.send())
                    .await
                    .unwrap_or(Answer::Other);
                // The receiver lives until every sender is gone.
                let _ = answers.send((answer, planned.elapsed()));
                outstanding.fetch_sub(1, Ordering::Relaxed);
            });
        }
        if now.duration_since(sampled) >= RSS_SAMPLE {
            sampled = now;
            rss_peak_mib = max_rss(rss_peak_mib, server.rss_mib());
        }
    }
    let generated = start.elapsed();
    drop(answers);

    let mut admitted_hist = histogram()?;
    let mut shed_hist = histogram()?;
    let mut run = OverloadRun {
        max_in_flight: max_in_flight
            .unwrap_or(spillway_server::config::DEFAULT_MAX_IN_FLIGHT_REQUESTS),
        submit_tasks,
        adaptive: false,
        server_cpus: Vec::new(),
        load_cpus: Vec::new(),
        sustainable_rps,
        sustainable_p50_ms: millis(&reference, 0.50),
        sustainable_p99_ms: millis(&reference, 0.99),
        offered_rps,
        sent,
        sent_rps: sent as f64 / generated.as_secs_f64().max(f64::EPSILON),
        not_sent,
        admitted: 0,
        shed_503: 0,
        shed_429: 0,
        shed_with_retry_after: 0,
        other: 0,
        admitted_p50_ms: 0.0,
        admitted_p99_ms: 0.0,
        shed_p50_ms: 0.0,
        rss_before_mib,
        rss_peak_mib,
        rss_after_mib: None,
    };
    // Every request ends within REQUEST_TIMEOUT, so this ends too.
    while let Some((answer, latency)) = answered.recv().await {
        match answer {
            Answer::Admitted => {
                run.admitted += 1;
                admitted_hist.saturating_record(micros(latency));
            }
            Answer::Shed {
                status,
                retry_after,
            } => {
                if status == 429 {
                    run.shed_429 += 1;
                } else {
                    run.shed_503 += 1;
                }
                run.shed_with_retry_after += u64::from(retry_after);
                shed_hist.saturating_record(micros(latency));
            }
            Answer::Other => run.other += 1,
        }
    }
    run.admitted_p50_ms = millis(&admitted_hist, 0.50);
    run.admitted_p99_ms = millis(&admitted_hist, 0.99);
    run.shed_p50_ms = millis(&shed_hist, 0.50);
    run.rss_after_mib = server.rss_mib();
    run.rss_peak_mib = max_rss(run.rss_peak_mib, run.rss_after_mib);
    Ok(run)
}

/// The closed-loop phase: submits per second answered 2xx, and their latencies.
async fn sustainable(load: &Arc<RawPost>) -> Result<(f64, Histogram<u64>)> {
    let start = Instant::now();
    let until = start + CAPACITY_TIME;
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..CAPACITY_LOOPS {
        let load = load.clone();
        loops.spawn(async move {
            let mut latencies = histogram()?;
            while Instant::now() < until {
                let sent = Instant::now();
                if let Answer::Admitted = load.send().await {
                    latencies.saturating_record(micros(sent.elapsed()));
                }
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = histogram()?;
    while let Some(latencies) = loops.join_next().await {
        let latencies = latencies.context("a load loop panicked")??;
        all.add(&latencies)
            .context("cannot merge latency histograms")?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        !all.is_empty(),
        "no submit was answered 2xx in {CAPACITY_TIME:?}: is the server working?"
    );
    Ok((all.len() as f64 / elapsed, all))
}

/// Microseconds, from 1 µs to 60 s, 3 significant figures.
fn histogram() -> Result<Histogram<u64>> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("cannot make a latency histogram")
}

fn millis(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// Whole microseconds, at least 1 (the histogram's lowest value).
fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn max_rss(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
impl OverloadRun {
    /// A run with round figures, for tests.
    pub fn example() -> Self {
        OverloadRun {
            max_in_flight: 1024,
            submit_tasks: 1,
            adaptive: true,
            server_cpus: vec![0],
            load_cpus: vec![1],
            sustainable_rps: 100.0,
            sustainable_p50_ms: 1.0,
            sustainable_p99_ms: 2.0,
            offered_rps: 1000.0,
            sent: 200,
            sent_rps: 40.0,
            not_sent: 0,
            admitted: 50,
            shed_503: 140,
            shed_429: 10,
            shed_with_retry_after: 75,
            other: 0,
            admitted_p50_ms: 1.0,
            admitted_p99_ms: 2.0,
            shed_p50_ms: 0.5,
            rss_before_mib: None,
            rss_peak_mib: None,
            rss_after_mib: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_of_sent_requests_and_never_divide_by_zero() {
        let run = OverloadRun::example();
        assert_eq!(run.admitted_pct(), 25.0);
        assert_eq!(run.shed_pct(), 75.0);
        assert_eq!(run.retry_after_pct(), 50.0);
        assert_eq!(percent(1, 0), 0.0);
    }
}
