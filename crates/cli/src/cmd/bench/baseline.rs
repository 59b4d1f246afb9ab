//! The plain-SQL baseline on PostgreSQL: the classic `FOR UPDATE SKIP LOCKED` queue on one
//! table, driven the way the batched scenario drives Spillway (batches inserted while
//! `workers` connections take up to [`LEASE_BATCH`] rows at a time and mark them done).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::task::JoinSet;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

use super::harness::short_id;
use super::throughput::join_all;
use super::{JOB_SIZE, LEASE_BATCH};

/// Pause of a consumer that found nothing; the baseline has no wake-ups, so it polls.
const EMPTY_POLL_PAUSE: Duration = Duration::from_millis(1);

/// Insert and consume `tasks` rows in a fresh schema; tasks per second from the first insert to
/// the last row marked done. The schema is dropped afterwards.
pub async fn run(url: &str, tasks: u32, workers: u32) -> Result<f64> {
    let schema = format!("spillway_bench_baseline_{}", short_id());
    let admin = connect(url).await?;
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.jobs_baseline (
                 id bigserial PRIMARY KEY,
                 state text NOT NULL DEFAULT 'available',
                 payload jsonb,
                 attempt int NOT NULL DEFAULT 0,
                 created_at timestamptz NOT NULL DEFAULT now(),
                 updated_at timestamptz NOT NULL DEFAULT now()
             );
             CREATE INDEX jobs_baseline_available ON {schema}.jobs_baseline (id)
                 WHERE state = 'available';"
        ))
        .await
        .with_context(|| format!("cannot create the baseline schema {schema}"))?;
    let outcome = consume(url, &schema, tasks, workers).await;
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .with_context(|| format!("cannot drop the baseline schema {schema}"))?;
    outcome
}

async fn consume(url: &str, schema: &str, tasks: u32, workers: u32) -> Result<f64> {
    let inserter = connect(url).await?;
    let mut consumers = Vec::new();
    for _ in 0..workers {
        consumers.push(connect(url).await?);
    }
    let insert = format!(
        "INSERT INTO {schema}.jobs_baseline (payload) SELECT p::jsonb FROM unnest($1::text[]) AS p"
    );
    let take = format!(
        "UPDATE {schema}.jobs_baseline SET state = 'running', attempt = attempt + 1, updated_at = now()
         WHERE id IN (SELECT id FROM {schema}.jobs_baseline WHERE state = 'available'
                      ORDER BY id LIMIT {LEASE_BATCH} FOR UPDATE SKIP LOCKED)
         RETURNING id, payload"
    );
    let finish = format!(
        "UPDATE {schema}.jobs_baseline SET state = 'done', updated_at = now() WHERE id = ANY($1)"
    );

    let done = Arc::new(AtomicU64::new(0));
    let finished = CancellationToken::new();
    let start = Instant::now();
    let mut set: JoinSet<Result<()>> = JoinSet::new();
    set.spawn(async move {
        let statement = inserter
            .prepare(&insert)
            .await
            .context("cannot prepare the insert")?;
        let mut next = 0;
        while next < tasks {
            let size = JOB_SIZE.min(tasks - next);
            let payloads: Vec<String> = (next..next + size)
                .map(|i| serde_json::json!({ "item": i }).to_string())
                .collect();
            inserter
                .execute(&statement, &[&payloads])
                .await
                .context("baseline insert failed")?;
            next += size;
        }
        Ok(())
    });
    for client in consumers {
        let (take, finish) = (take.clone(), finish.clone());
        let (done, finished) = (done.clone(), finished.clone());
        set.spawn(async move {
            let take = client
                .prepare(&take)
                .await
                .context("cannot prepare the take")?;
            let finish = client
                .prepare(&finish)
                .await
                .context("cannot prepare the finish")?;
            while !finished.is_cancelled() {
                let rows = client
                    .query(&take, &[])
                    .await
                    .context("baseline take failed")?;
                if rows.is_empty() {
                    tokio::time::sleep(EMPTY_POLL_PAUSE).await;
                    continue;
                }
                let ids = rows
                    .iter()
                    .map(|r| r.try_get::<_, i64>(0))
                    .collect::<Result<Vec<_>, _>>()
                    .context("baseline take returned no id")?;
                client
                    .execute(&finish, &[&ids])
                    .await
                    .context("baseline finish failed")?;
                let n = ids.len() as u64;
                if done.fetch_add(n, Ordering::SeqCst) + n >= u64::from(tasks) {
                    finished.cancel();
                }
            }
            Ok(())
        });
    }
    join_all(set, &finished).await?;
    Ok(f64::from(tasks) / start.elapsed().as_secs_f64())
}

/// One connection; its driver runs until the client is dropped.
async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .context("cannot connect to PostgreSQL for the baseline")?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "baseline connection ended with an error");
        }
    });
    Ok(client)
}
