//! Pool providers the server implements itself: `local` (child processes) and `external`
//! (workers started by someone else), both joining instances to registered workers through
//! the store, and [`deferred::DeferredProvider`] for providers built on first use. The binary
//! registers them, and the cloud providers, in a [`ProviderRegistry`](super::ProviderRegistry).

pub mod deferred;
pub mod external;
pub mod local;

use spillway_autoscale::provider::InstanceState;
use spillway_core::model::{Worker, WorkerState};

/// How a registered worker's state reads as an instance state.
pub(crate) fn instance_state(worker: &Worker) -> InstanceState {
    match worker.state {
        WorkerState::Active => InstanceState::Running,
        WorkerState::Draining => InstanceState::Draining,
        WorkerState::Down | WorkerState::Exited => InstanceState::Down,
    }
}

/// The URL workers on this machine reach the server at: `public_url`, else the listen
/// address (a wildcard address read as loopback).
pub fn own_url(config: &crate::config::ServerConfig) -> String {
    if let Some(url) = &config.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{addr}")
}
