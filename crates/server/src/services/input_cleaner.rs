//! The input cleaner: deletes the staged inputs of succeeded jobs that asked for it.

use std::time::Duration;

use spillway_core::Result;
use spillway_core::keys::inputs_prefix;
use tokio_util::sync::CancellationToken;

use crate::services::Service;
use crate::state::AppState;

/// Default time between passes.
pub const DEFAULT_INTERVAL: Duration = crate::config::DEFAULT_INPUT_CLEANER_INTERVAL;
/// Default jobs handled per pass.
pub const DEFAULT_BATCH: u32 = 100;

/// How the cleaner runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between passes.
    pub interval: Duration,
    /// Jobs handled per pass.
    pub batch: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            batch: DEFAULT_BATCH,
        }
    }
}

/// One pass: delete inputs of succeeded jobs; returns how many jobs were cleaned.
pub async fn pass(state: &AppState, config: &Config) -> Result<u64> {
    let jobs = state.store.job_inputs_to_delete(config.batch).await?;
    let mut cleaned = 0;
    for (tenant, job_id) in jobs {
        // Delete the files first: if that fails the job stays on the list for the next pass.
        state
            .blobs
            .delete_prefix(&inputs_prefix(&tenant, &job_id))
            .await?;
        state.store.job_inputs_deleted(&job_id).await?;
        cleaned += 1;
    }
    Ok(cleaned)
}

/// Start the cleaner.
pub fn spawn(state: AppState, config: Config, stop: CancellationToken) -> Service {
    Service::spawn("input_cleaner", config.interval, stop, move || {
        let state = state.clone();
        let config = config.clone();
        async move { pass(&state, &config).await }
    })
}
