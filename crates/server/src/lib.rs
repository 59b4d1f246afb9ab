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
pub mod trace;

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
    axum::serve(without_nagle(listener), app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests in flight");
            state.begin_shutdown();
        })
        .await
        .map_err(|e| Error::unavailable("the HTTP server stopped with an error").with_source(e))
}

/// `listener`, with TCP_NODELAY set on every connection it accepts. Answers are small and
/// written at once; with Nagle's algorithm on, a write that follows an unacknowledged one
/// waits for the client's (delayed) ACK, up to 40 ms on Linux.
fn without_nagle(
    listener: TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on an accepted connection");
        }
    })
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener;

    use super::*;

    /// The listener `serve` serves on hands out connections with Nagle's algorithm off.
    #[tokio::test]
    async fn accepted_connections_have_tcp_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let mut listener = without_nagle(listener);
        let client = tokio::net::TcpStream::connect(addr);
        let ((accepted, _), client) = tokio::join!(listener.accept(), client);
        let _client = client.expect("connect");
        assert!(accepted.nodelay().expect("read TCP_NODELAY"));
    }
}
