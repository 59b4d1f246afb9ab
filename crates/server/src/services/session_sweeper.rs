//! The session sweeper: deletes dashboard sessions that ended (idle past their expiry, signed
//! out elsewhere, or of a revoked or expired token), a bounded batch per call.

use std::time::Duration;

use spillway_core::Result;
use spillway_store::SessionSweep;
use tokio_util::sync::CancellationToken;

use crate::services::Service;
use crate::state::AppState;

/// Default time between passes: ended sessions are refused when read, so sweeping only
/// keeps the table small.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Default most sessions deleted by one store call.
pub const DEFAULT_BATCH: u32 = 500;
/// Most batches in one pass, so a pass's work stays bounded; the rest waits for the next.
const BATCHES_PER_PASS: u32 = 20;

/// How the sweeper runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between passes.
    pub interval: Duration,
    /// Most sessions deleted by one store call.
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

/// One pass: delete ended sessions, batch by batch, up to [`BATCHES_PER_PASS`] batches;
/// returns how many went.
pub async fn pass(state: &AppState, batch: u32) -> Result<u64> {
    let now = state.clock.now();
    let mut swept = 0;
    for _ in 0..BATCHES_PER_PASS {
        let deleted = state
            .store
            .session_sweep(SessionSweep { now, limit: batch })
            .await?;
        swept += deleted;
        if deleted < u64::from(batch) {
            break;
        }
    }
    if swept > 0 {
        tracing::info!(swept, "ended dashboard sessions deleted");
    }
    Ok(swept)
}

/// Start the sweeper.
pub fn spawn(state: AppState, config: Config, stop: CancellationToken) -> Service {
    Service::spawn("session_sweeper", config.interval, stop, move || {
        let state = state.clone();
        async move { pass(&state, config.batch).await }
    })
}
