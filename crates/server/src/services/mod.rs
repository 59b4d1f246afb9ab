//! Background services: lease reaper, worker-down marker, retention cleaner, input cleaner,
//! dashboard session sweeper and, when pools are configured, the autoscaler ([`crate::autoscale::service`]). On
//! PostgreSQL the caller also runs the clock sync ([`clock_sync`]), which the server's clock is
//! built on before the rest starts.
//!
//! Each runs a pass every interval until its stop signal fires. A pass can also be asked for
//! at once ([`Service::run_pass`]), and tests wait for "one more pass done" on a counter
//! instead of sleeping.

pub mod clock_sync;
pub mod input_cleaner;
pub mod lease_reaper;
pub mod log_sealer;
pub mod retention;
pub mod session_sweeper;
pub mod worker_down;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use spillway_core::Result;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// A running background service.
#[derive(Debug)]
pub struct Service {
    name: &'static str,
    passes: watch::Receiver<Passes>,
    kick: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Service {
    /// Run `pass` every `interval` (and whenever kicked) until `stop` fires. A failed pass is
    /// logged and counted like any other, so one bad pass never stops the service.
    pub fn spawn<F, Fut>(
        name: &'static str,
        interval: Duration,
        stop: CancellationToken,
        mut pass: F,
    ) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64>> + Send,
    {
        let (progress, passes) = watch::channel(Passes::default());
        let kick = Arc::new(Notify::new());
        let kicked = kick.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(interval) => {}
                    _ = kicked.notified() => {}
                }
                progress.send_modify(|p| p.started += 1);
                match pass().await {
                    Ok(0) => {}
                    Ok(changed) => tracing::info!(service = name, changed, "pass done"),
                    Err(error) => {
                        tracing::warn!(service = name, %error, "pass failed; trying again next interval")
                    }
                }
                progress.send_modify(|p| p.finished += 1);
            }
            tracing::debug!(service = name, "stopped");
        });
        Self {
            name,
            passes,
            kick,
            task,
        }
    }

    /// A handle that starts a pass soon when notified (for wake-ups from outside).
    pub fn kicker(&self) -> Arc<Notify> {
        self.kick.clone()
    }

    /// The service's name, for logs.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// How many passes have finished.
    pub fn passes(&self) -> u64 {
        self.passes.borrow().finished
    }

    /// Start a pass now and wait until a pass that began after this call has finished (or
    /// the service stopped), so it saw every change made before the call.
    pub async fn run_pass(&mut self) {
        let started_before = self.passes.borrow_and_update().started;
        self.kick.notify_one();
        // An error only means the service stopped; there is nothing left to wait for.
        let _ = self.passes.wait_for(|p| p.finished > started_before).await;
    }

    /// Wait until the service has stopped.
    pub async fn join(self) {
        if let Err(error) = self.task.await {
            tracing::error!(service = self.name, %error, "service task failed");
        }
    }
}

/// Passes begun and finished.
#[derive(Debug, Clone, Copy, Default)]
struct Passes {
    started: u64,
    finished: u64,
}

/// Every background service of the server.
#[derive(Debug)]
pub struct Services {
    /// Fails leases that ran out.
    pub lease_reaper: Service,
    /// Marks silent workers down.
    pub worker_down: Service,
    /// Deletes finished jobs past their retention, with their files.
    pub retention: Service,
    /// Deletes the inputs of succeeded jobs that asked for it.
    pub input_cleaner: Service,
    /// Deletes ended dashboard sessions.
    pub session_sweeper: Service,
    /// Writes the live logs of ended attempts as objects.
    pub log_sealer: Service,
    /// Resizes the configured pools; `None` when no pool is configured.
    pub autoscaler: Option<Service>,
}

impl Services {
    /// Wait for every service to stop (after the stop signal fired).
    pub async fn join(self) {
        self.lease_reaper.join().await;
        self.worker_down.join().await;
        self.retention.join().await;
        self.input_cleaner.join().await;
        self.session_sweeper.join().await;
        self.log_sealer.join().await;
        if let Some(autoscaler) = self.autoscaler {
            autoscaler.join().await;
        }
    }
}

/// Start every background service with the intervals of the server config; they stop when
/// `stop` is cancelled.
pub fn spawn_services(state: &AppState, stop: CancellationToken) -> Services {
    let config = &state.config;
    Services {
        lease_reaper: lease_reaper::spawn(
            state.clone(),
            lease_reaper::Config {
                interval: config.reaper_interval,
            },
            stop.clone(),
        ),
        worker_down: worker_down::spawn(
            state.clone(),
            worker_down::Config {
                interval: config.worker_check_interval,
                down_after: config.worker_down_after,
            },
            stop.clone(),
        ),
        retention: retention::spawn(
            state.clone(),
            retention::Config {
                interval: config.retention_interval,
                ..Default::default()
            },
            stop.clone(),
        ),
        input_cleaner: input_cleaner::spawn(
            state.clone(),
            input_cleaner::Config {
                interval: config.input_cleaner_interval,
                ..Default::default()
            },
            stop.clone(),
        ),
        session_sweeper: session_sweeper::spawn(
            state.clone(),
            session_sweeper::Config::default(),
            stop.clone(),
        ),
        log_sealer: log_sealer::spawn(
            state.clone(),
            log_sealer::Config {
                interval: config.log_seal_interval,
                ..Default::default()
            },
            stop.clone(),
        ),
        autoscaler: (!config.pools.is_empty()).then(|| {
            let autoscaler = crate::autoscale::Autoscaler::with_registered_providers(state.clone());
            crate::autoscale::service::spawn(
                Arc::new(autoscaler),
                crate::autoscale::service::Config {
                    interval: config.autoscale.interval,
                    ..Default::default()
                },
                stop,
            )
        }),
    }
}
