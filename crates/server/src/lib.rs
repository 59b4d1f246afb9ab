//! Spillway's HTTP server: the /v1 API, auth, problem+json errors, /metrics, the OpenAPI
//! document and the background services (lease reaper, worker-down marker, retention and
//! input cleaners).
//!
//! Build an [`AppState`] over a store, a blob store and a clock, then either mount
//! [`router`] yourself or call [`serve`]; start the background work with [`spawn_services`].

pub mod admission;
pub mod app;
pub mod auth;
pub mod autoscale;
pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod extract;
pub mod headers;
pub mod ids;
mod leases;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod services;
pub mod size;
pub mod state;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::future::Future;

use spillway_core::{Error, Result};
use tokio::net::TcpListener;

pub use bootstrap::bootstrap;
pub use clock::SteadyClock;
pub use config::ServerConfig;
pub use routes::router;
pub use services::{Services, spawn_services};
pub use state::AppState;

/// Serve the API on `listener` until `shutdown` resolves, then stop taking requests, let
/// waiting lease calls answer at once, and finish the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "serving HTTP");
    // Made into a service once: served as a bare `Router`, axum rebuilds the route table for
    // every connection, about 150 KB each (2,000 idle connections held 300 MB).
    let app = router(state.clone()).into_make_service();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests in flight");
            state.begin_shutdown();
        })
        .await
        .map_err(|e| Error::unavailable("the HTTP server stopped with an error").with_source(e))
}
