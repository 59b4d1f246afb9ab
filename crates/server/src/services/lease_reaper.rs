//! The lease reaper: fails every lease that ran out, so a crashed worker's tasks are retried.

use std::time::Duration;

use spillway_core::Result;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Outcome, UNKNOWN_QUEUE};
use crate::services::Service;
use crate::state::AppState;
use spillway_store::LeaseReap;

/// Default time between passes.
pub const DEFAULT_INTERVAL: Duration = crate::config::DEFAULT_REAPER_INTERVAL;

/// How the reaper runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between passes.
    pub interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
        }
    }
}

/// One pass: fail expired leases; returns how many.
pub async fn pass(state: &AppState) -> Result<u64> {
    let reaped = state
        .store
        .lease_reap(LeaseReap {
            now: state.clock.now(),
        })
        .await?;
    // The store does not say which queues the leases were in.
    state
        .metrics
        .outcome(UNKNOWN_QUEUE, Outcome::LeaseExpired, reaped);
    Ok(reaped)
}

/// Start the reaper.
pub fn spawn(state: AppState, config: Config, stop: CancellationToken) -> Service {
    Service::spawn("lease_reaper", config.interval, stop, move || {
        let state = state.clone();
        async move { pass(&state).await }
    })
}
