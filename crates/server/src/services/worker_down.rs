//! The worker-down marker: workers silent for too long are marked down.

use std::time::Duration;

use spillway_core::Result;
use tokio_util::sync::CancellationToken;

use crate::services::Service;
use crate::state::AppState;
use spillway_store::WorkerMarkDown;

/// Default time between passes.
pub const DEFAULT_INTERVAL: Duration = crate::config::DEFAULT_WORKER_CHECK_INTERVAL;
/// Default silence after which a worker is down.
pub const DEFAULT_DOWN_AFTER: Duration = crate::config::DEFAULT_WORKER_DOWN_AFTER;

/// How the marker runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between passes.
    pub interval: Duration,
    /// A worker silent this long is down.
    pub down_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            down_after: DEFAULT_DOWN_AFTER,
        }
    }
}

/// One pass: mark silent workers down; returns how many.
pub async fn pass(state: &AppState, down_after: Duration) -> Result<u64> {
    let now = state.clock.now();
    let silent_since =
        now - chrono::Duration::from_std(down_after).unwrap_or(chrono::Duration::MAX);
    state
        .store
        .worker_mark_down(WorkerMarkDown { silent_since })
        .await
}

/// Start the marker.
pub fn spawn(state: AppState, config: Config, stop: CancellationToken) -> Service {
    Service::spawn("worker_down", config.interval, stop, move || {
        let state = state.clone();
        async move { pass(&state, config.down_after).await }
    })
}
