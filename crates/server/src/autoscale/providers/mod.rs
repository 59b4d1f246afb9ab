//! Pool providers the server runs itself: `local` (child processes) and `external` (workers
//! started by someone else). Both join instances to registered workers through the store.

pub mod deferred;
pub mod external;
pub mod local;

use std::collections::HashMap;
use std::sync::Arc;

use spillway_autoscale::config::ProviderKind;
use spillway_autoscale::memory::MemoryProvider;
use spillway_autoscale::provider::{DynPoolProvider, InstanceState};
use spillway_core::model::{Worker, WorkerState};

/// How a registered worker's state reads as an instance state.
pub(crate) fn instance_state(worker: &Worker) -> InstanceState {
    match worker.state {
        WorkerState::Active => InstanceState::Running,
        WorkerState::Draining => InstanceState::Draining,
        WorkerState::Down | WorkerState::Exited => InstanceState::Down,
    }
}

/// The providers the server runs for its configured pools: `local`, `external`,
/// `kubernetes`, `compute_engine` and `memory` (an in-process fake, for trying the autoscaler out).
pub fn standard(state: &crate::state::AppState) -> HashMap<ProviderKind, DynPoolProvider> {
    let config = &state.config;
    let program = config
        .worker_program
        .clone()
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_else(|| "spillway".into());
    let local = local::LocalProvider::new(
        state.store.clone(),
        state.shared.pools.clone(),
        local::LocalConfig {
            program,
            server_url: own_url(config),
        },
    );
    HashMap::from([
        (ProviderKind::Local, Arc::new(local) as DynPoolProvider),
        (
            ProviderKind::External,
            Arc::new(external::ExternalProvider::new(state.store.clone())),
        ),
        (ProviderKind::Memory, Arc::new(MemoryProvider::new())),
        (ProviderKind::ComputeEngine, compute_engine(state)),
        // Builds one client per (kubeconfig, context) of its pools on first use; no IO here.
        (
            ProviderKind::Kubernetes,
            Arc::new(spillway_kubernetes::KubernetesProvider::new(
                state.store.clone(),
            )),
        ),
    ])
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

/// One provider for every `compute_engine` pool; each call reads its group and credentials from
/// the pool's section.
fn compute_engine(state: &crate::state::AppState) -> DynPoolProvider {
    let store = state.store.clone();
    Arc::new(deferred::DeferredProvider::new(
        "compute_engine",
        move || {
            let store = store.clone();
            async move {
                let provider = spillway_compute_engine::ComputeEngineProvider::new(store)?;
                Ok(Arc::new(provider) as DynPoolProvider)
            }
        },
    ))
}
