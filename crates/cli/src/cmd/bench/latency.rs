//! Submit-to-start latency: a worker waits in a long-poll on an empty queue; one task is
//! submitted; the sample is the time from just before the submit request to the arrival of
//! the lease answer carrying that task.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;

use super::harness::BenchServer;
use super::throughput::{completion, job, lease_request, payload};

/// Long-poll of the waiting worker; far above any sample, so it never answers empty.
const LEASE_WAIT: Duration = Duration::from_secs(20);
/// Time given to the lease call to reach the server and park before the submit. A call that
/// has not parked yet finds the task at once, which can only lower a sample, never raise it.
const PARK_PAUSE: Duration = Duration::from_millis(5);
/// Unrecorded samples first, so connection set-up and cold caches are not measured.
const WARM_UP: u32 = 10;

/// The percentiles of one run, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Median time of the submit request alone, to tell commit time from wake-up time.
    pub submit_p50_ms: f64,
}

/// Take `samples` samples on a fresh queue.
pub async fn measure(server: &BenchServer, samples: u32) -> Result<Latency> {
    let queue = "bench-latency";
    server.queue(queue).await?;
    let id = server.register_worker(queue, 1).await?;
    let request = lease_request(&id, queue, 1);
    // Microseconds, from 1 µs to 60 s, 3 significant figures.
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .context("cannot make the latency histogram")?;
    let mut submits = histogram.clone();
    for i in 0..WARM_UP + samples {
        let worker = server.worker.clone();
        let lease_request = request.clone();
        let waiting = tokio::spawn(async move {
            let leased = worker.task_lease(&lease_request).await;
            (Instant::now(), leased)
        });
        tokio::time::sleep(PARK_PAUSE).await;
        let start = Instant::now();
        server
            .submitter
            .job_submit(&job(queue, Some(vec![payload(i)])))
            .await
            .context("submit failed")?;
        let submitted = Instant::now();
        let (arrived, leased) = tokio::time::timeout(LEASE_WAIT * 2, waiting)
            .await
            .context("the waiting lease call never answered")?
            .context("the lease task panicked")?;
        let leased = leased.context("lease failed")?;
        let Some(task) = leased.tasks.first() else {
            bail!("the waiting lease call answered without the submitted task");
        };
        if i >= WARM_UP {
            histogram.saturating_record(micros(arrived.duration_since(start)));
            submits.saturating_record(micros(submitted.duration_since(start)));
        }
        server
            .worker
            .task_complete_one(&completion(task))
            .await
            .context("complete failed")?;
    }
    Ok(Latency {
        p50_ms: histogram.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        submit_p50_ms: submits.value_at_quantile(0.50) as f64 / 1000.0,
    })
}

/// Whole microseconds, at least 1 (the histogram's lowest value).
fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}
