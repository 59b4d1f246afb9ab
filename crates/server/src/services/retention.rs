//! The retention cleaner: deletes finished jobs past their queue's retention, then their
//! inputs, results and logs.

use std::time::Duration;

use spillway_core::Result;
use spillway_core::keys::{inputs_prefix, job_results_prefix, logs_prefix};
use tokio_util::sync::CancellationToken;

use crate::services::Service;
use crate::state::AppState;
use spillway_store::RetentionSweep;

/// Default time between passes.
pub const DEFAULT_INTERVAL: Duration = crate::config::DEFAULT_RETENTION_INTERVAL;
/// Default jobs deleted per store call.
pub const DEFAULT_BATCH: u32 = 500;
/// Default most store calls per pass, so one pass never runs unbounded.
pub const DEFAULT_MAX_BATCHES: u32 = 20;

/// How the cleaner runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between passes.
    pub interval: Duration,
    /// Jobs deleted per store call.
    pub batch: u32,
    /// Most store calls per pass.
    pub max_batches: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            batch: DEFAULT_BATCH,
            max_batches: DEFAULT_MAX_BATCHES,
        }
    }
}

/// One pass: delete expired jobs and their files; returns how many jobs.
pub async fn pass(state: &AppState, config: &Config) -> Result<u64> {
    let mut deleted = 0;
    for _ in 0..config.max_batches {
        let swept = state
            .store
            .retention_sweep(RetentionSweep {
                now: state.clock.now(),
                limit: config.batch,
            })
            .await?;
        for (tenant, job_id, had_inputs) in &swept {
            // The rows are gone; a failed blob delete only leaves files behind, so log it.
            if *had_inputs
                && let Err(error) = state
                    .blobs
                    .delete_prefix(&inputs_prefix(tenant, job_id))
                    .await
            {
                tracing::warn!(%tenant, %job_id, %error, "could not delete inputs of a removed job");
            }
            if let Err(error) = state
                .blobs
                .delete_prefix(&job_results_prefix(tenant, job_id))
                .await
            {
                tracing::warn!(%tenant, %job_id, %error, "could not delete results of a removed job");
            }
            // Live chunks left went with the job's tasks; the sealed logs go here.
            if let Err(error) = state
                .blobs
                .delete_prefix(&logs_prefix(tenant, job_id))
                .await
            {
                tracing::warn!(%tenant, %job_id, %error, "could not delete logs of a removed job");
            }
        }
        deleted += swept.len() as u64;
        if (swept.len() as u64) < u64::from(config.batch) {
            break;
        }
    }
    Ok(deleted)
}

/// Start the cleaner.
pub fn spawn(state: AppState, config: Config, stop: CancellationToken) -> Service {
    Service::spawn("retention", config.interval, stop, move || {
        let state = state.clone();
        let config = config.clone();
        async move { pass(&state, &config).await }
    })
}
