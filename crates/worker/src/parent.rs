//! Shutting down when the process that started the worker goes away, so workers spawned by
//! `spillway up` do not live on as orphans when it is killed outright (SIGKILL leaves it no
//! chance to stop them).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the parent process id is looked at.
pub(crate) const PARENT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Cancel `shutdown` once this process's parent is no longer `parent` (an orphan is adopted by
/// init or a subreaper, so its parent id changes); returns when either happens.
pub(crate) async fn watch(parent: u32, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(PARENT_POLL_INTERVAL);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = std::os::unix::process::parent_id();
        if now != parent {
            tracing::warn!(
                parent,
                parent_now = now,
                "the parent process is gone; shutting down"
            );
            shutdown.cancel();
            return;
        }
    }
}
