//! Scale-up from zero: a server with one `local` pool (min 0, max 4) and no workers gets a
//! 20-task job of `true`. Two samples per run, both from just before the submit on the wall
//! clock (the server stamps decisions with the same machine's wall clock):
//!
//! - decision: to the `at` of the pool's first decision after the submit that asks for more
//!   workers, found by polling `GET /v1/pools`;
//! - first start: to the earliest `started_at` of the job's attempts, i.e. a worker the pool
//!   started has registered and leased a task.
//!
//! The decision includes the autoscaler's wake delay (250 ms by default: it waits that long
//! after work arrives so a burst of submits is sized at once).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use spillway_autoscale::config::PoolConfig;
use spillway_client::TaskListQuery;
use spillway_core::api::SubmitJob;

use super::Backend;
use super::harness::BenchServer;

/// The queue the pool serves.
const QUEUE: &str = "bench-autoscale";
/// The pool's name.
const POOL: &str = "bench-local";
/// Tasks in the submitted job.
const TASKS: u32 = 20;
/// Most workers the pool may start.
const MAX_WORKERS: u32 = 4;
/// Pause between two polls; the resolution of a sample is about this.
const POLL: Duration = Duration::from_millis(10);
/// Longest wait for a decision, a first start or the job's end on a loaded machine.
const WAIT: Duration = Duration::from_secs(120);

/// One run's samples, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct ScaleUp {
    /// Submit to the first scale-up decision.
    pub decision_ms: f64,
    /// Submit to the first task leased by a started worker.
    pub first_start_ms: f64,
}

/// The pool this scenario scales: local workers, one task each, from zero.
pub fn pool() -> Result<PoolConfig> {
    serde_json::from_value(serde_json::json!({
        "name": POOL,
        "provider": "local",
        "queues": [QUEUE],
        "min": 0,
        "max": MAX_WORKERS,
        "concurrency": 1,
    }))
    .context("the benchmark's pool config does not parse")
}

/// One run on a fresh SQLite server; the server is stopped (and its workers with it) after.
pub async fn run_once() -> Result<ScaleUp> {
    let server = BenchServer::start_with_pools(Backend::Sqlite, None, vec![pool()?])
        .await
        .context("cannot start a server with a local pool")?;
    let outcome = measure(&server).await;
    let stopped = server.stop().await;
    let sample = outcome?;
    stopped?;
    Ok(sample)
}

async fn measure(server: &BenchServer) -> Result<ScaleUp> {
    server.queue(QUEUE).await?;
    let admin = server.admin();
    let mut request = SubmitJob::command(QUEUE, vec!["true".to_string()]);
    request.count = Some(TASKS);
    let submitted_at = Utc::now();
    let job = server
        .submitter
        .job_submit(&request)
        .await
        .context("submit failed")?
        .job;

    let decided_at = poll("a scale-up decision", || async {
        let pools = admin.pool_list().await.context("cannot list pools")?;
        let pool = pools.iter().find(|p| p.name == POOL);
        Ok(pool.and_then(|p| {
            p.decisions
                .iter()
                .find(|d| d.at >= submitted_at && d.to > d.from)
                .map(|d| d.at)
        }))
    })
    .await?;

    poll("a first task start", || async {
        let job = admin
            .job_get(&job.id)
            .await
            .context("cannot read the job")?;
        let c = &job.counts;
        Ok((c.leased + c.retrying + c.succeeded + c.dead > 0).then_some(()))
    })
    .await?;
    let started_at = first_start(server, &job.id).await?;

    // Let the workers finish, so stopping the server stops idle workers only.
    poll("the job to finish", || async {
        let job = admin
            .job_get(&job.id)
            .await
            .context("cannot read the job")?;
        Ok(job.state.is_final().then_some(()))
    })
    .await?;
    Ok(ScaleUp {
        decision_ms: millis_between(submitted_at, decided_at),
        first_start_ms: millis_between(submitted_at, started_at),
    })
}

/// The earliest `started_at` over every attempt of the job's tasks.
async fn first_start(server: &BenchServer, job: &str) -> Result<DateTime<Utc>> {
    let admin = server.admin();
    let tasks = admin
        .job_task_list(
            job,
            &TaskListQuery {
                limit: Some(TASKS),
                ..Default::default()
            },
        )
        .await
        .context("cannot list the job's tasks")?;
    let mut earliest: Option<DateTime<Utc>> = None;
    for task in &tasks.items {
        let detail = admin
            .task_get(task.id)
            .await
            .with_context(|| format!("cannot read task {}", task.id))?;
        for attempt in &detail.attempts {
            earliest = Some(earliest.map_or(attempt.started_at, |e| e.min(attempt.started_at)));
        }
    }
    earliest.context("a task was leased but no attempt of the job has a start")
}

/// Call `check` every [`POLL`] until it yields a value; fails after [`WAIT`].
async fn poll<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let until = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() >= until {
            bail!("no sign of {what} after {WAIT:?}: is the local pool able to start workers?");
        }
        tokio::time::sleep(POLL).await;
    }
}

fn millis_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from)
        .to_std()
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on purpose
mod tests {
    use super::*;

    #[test]
    fn the_pool_scales_local_workers_from_zero() {
        let pool = pool().unwrap();
        assert_eq!(pool.provider.as_str(), "local");
        assert_eq!((pool.min, pool.max, pool.concurrency), (0, MAX_WORKERS, 1));
        assert_eq!(pool.queues, [QUEUE]);
    }

    #[test]
    fn an_event_before_the_submit_counts_as_zero() {
        let now = Utc::now();
        assert_eq!(millis_between(now, now - chrono::Duration::seconds(1)), 0.0);
        let later = now + chrono::Duration::milliseconds(250);
        assert!((millis_between(now, later) - 250.0).abs() < 1e-9);
    }
}
