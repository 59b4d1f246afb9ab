//! Full-cycle throughput: submit, lease and complete every task; tasks per second of wall time
//! from the first submit to the last completion.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use spillway_client::Client;
use spillway_core::api::{
    CompleteRequest, Completion, LeaseRequest, LeasedTask, NewTask, SubmitJob,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::harness::BenchServer;
use super::{JOB_SIZE, LEASE_BATCH, SCENARIO_DEADLINE};

/// Long-poll of the load's lease calls: long enough that an idle worker parks in the server.
const LEASE_WAIT: Duration = Duration::from_secs(5);
/// The command every benchmark task carries; nothing runs it.
const COMMAND: &str = "true";

/// Jobs of [`JOB_SIZE`] tasks submitted one after another while `workers` workers lease up to
/// [`LEASE_BATCH`] tasks per call and complete each batch in one request.
pub async fn batched(server: &BenchServer, tasks: u32, workers: u32) -> Result<f64> {
    let queue = "bench-batched";
    server.queue(queue).await?;
    let mut ids = Vec::new();
    for _ in 0..workers {
        ids.push(server.register_worker(queue, LEASE_BATCH).await?);
    }
    let done = Arc::new(AtomicU64::new(0));
    let finished = CancellationToken::new();
    let start = Instant::now();
    let mut set: JoinSet<Result<()>> = JoinSet::new();

    let submitter = server.submitter.clone();
    set.spawn(async move {
        let mut next = 0;
        while next < tasks {
            let size = JOB_SIZE.min(tasks - next);
            let list = (next..next + size).map(payload).collect();
            submitter
                .job_submit(&job(queue, Some(list)))
                .await
                .context("submit failed")?;
            next += size;
        }
        Ok(())
    });
    for id in ids {
        let (client, done, finished) = (server.worker.clone(), done.clone(), finished.clone());
        set.spawn(async move {
            let request = lease_request(&id, queue, LEASE_BATCH);
            loop {
                let leased = tokio::select! {
                    _ = finished.cancelled() => return Ok(()),
                    leased = client.task_lease(&request) => leased.context("lease failed")?,
                };
                if leased.tasks.is_empty() {
                    continue;
                }
                complete_all(&client, &leased.tasks).await?;
                let n = leased.tasks.len() as u64;
                if done.fetch_add(n, Ordering::SeqCst) + n >= u64::from(tasks) {
                    finished.cancel();
                }
            }
        });
    }
    join_all(set, &finished).await?;
    Ok(f64::from(tasks) / start.elapsed().as_secs_f64())
}

/// `concurrency` loops, each submitting a one-task job, leasing one task and completing it
/// with the single-task route, until `tasks` tasks have gone through.
pub async fn per_request(server: &BenchServer, tasks: u32, concurrency: u32) -> Result<f64> {
    let queue = "bench-single";
    server.queue(queue).await?;
    let loops = concurrency.min(tasks);
    let mut ids = Vec::new();
    for _ in 0..loops {
        ids.push(server.register_worker(queue, 1).await?);
    }
    let finished = CancellationToken::new();
    let start = Instant::now();
    let mut set: JoinSet<Result<()>> = JoinSet::new();
    for (i, id) in (0..loops).zip(ids) {
        // Spread the remainder so the shares add up to `tasks`.
        let share = tasks / loops + u32::from(i < tasks % loops);
        let (submitter, worker) = (server.submitter.clone(), server.worker.clone());
        set.spawn(async move {
            let request = lease_request(&id, queue, 1);
            for n in 0..share {
                submitter
                    .job_submit(&job(queue, Some(vec![payload(n)])))
                    .await
                    .context("submit failed")?;
                // Another loop may have taken this task; every loop submits before it leases,
                // so a task for this lease always arrives.
                let leased = loop {
                    let leased = worker.task_lease(&request).await.context("lease failed")?;
                    if !leased.tasks.is_empty() {
                        break leased;
                    }
                };
                for task in &leased.tasks {
                    worker
                        .task_complete_one(&completion(task))
                        .await
                        .context("complete failed")?;
                }
            }
            Ok(())
        });
    }
    join_all(set, &finished).await?;
    Ok(f64::from(tasks) / start.elapsed().as_secs_f64())
}

/// Wait for every load task; the first error (or the deadline) stops the rest.
pub async fn join_all(mut set: JoinSet<Result<()>>, finished: &CancellationToken) -> Result<()> {
    let outcome = tokio::time::timeout(SCENARIO_DEADLINE, async {
        while let Some(joined) = set.join_next().await {
            joined.context("a load task panicked")??;
        }
        Ok::<(), anyhow::Error>(())
    })
    .await;
    finished.cancel();
    set.abort_all();
    match outcome {
        Ok(result) => result,
        Err(_) => bail!(
            "the scenario did not finish within {}s: tasks were lost or the server stalled",
            SCENARIO_DEADLINE.as_secs()
        ),
    }
}

/// Complete every task of a lease in one request; a refused item means lost work.
async fn complete_all(client: &Client, tasks: &[LeasedTask]) -> Result<()> {
    let completions = tasks.iter().map(completion).collect();
    let report = client
        .task_complete(&CompleteRequest { completions })
        .await
        .context("complete failed")?;
    if let Some(refused) = report.results.iter().find(|r| !r.ok) {
        bail!(
            "the server refused to complete task {}: {}",
            refused.task_id,
            refused.error.as_deref().unwrap_or("no reason given")
        );
    }
    Ok(())
}

/// A job of the benchmark command with the given tasks (or one task).
pub fn job(queue: &str, tasks: Option<Vec<NewTask>>) -> SubmitJob {
    let mut job = SubmitJob::command(queue, vec![COMMAND.to_string()]);
    job.tasks = tasks;
    job
}

/// A small payload like a real task's arguments.
pub fn payload(index: u32) -> NewTask {
    NewTask {
        payload: Some(serde_json::json!({ "item": index })),
    }
}

/// A lease request for `worker` on `queue`.
pub fn lease_request(worker: &str, queue: &str, max_tasks: u32) -> LeaseRequest {
    LeaseRequest {
        worker_id: worker.to_string(),
        queues: vec![queue.to_string()],
        max_tasks,
        wait: Some(LEASE_WAIT),
        tenant: None,
    }
}

/// A successful completion of `task`.
pub fn completion(task: &LeasedTask) -> Completion {
    Completion {
        task_id: task.task_id,
        lease_token: task.lease_token.clone(),
        exit_code: Some(0),
        result: None,
        log_tail: String::new(),
    }
}
