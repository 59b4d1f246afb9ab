//! What every handler shares: the store, blobs, clock, config, metrics and a few small
//! in-memory caches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use spillway_blob::BlobStore;
use spillway_core::Error;
use spillway_core::clock::Clock;
use spillway_store::DynStore;
use tokio_util::sync::CancellationToken;

use crate::admission::Admission;
use crate::auth::TokenCache;
use crate::autoscale::{PoolBoard, ProviderContext, ProviderRegistry};
use crate::config::ServerConfig;
use crate::leases::LeaseLedger;
use crate::metrics::Metrics;
use spillway_store::WorkerList;

/// The state behind every request. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Durable state.
    pub store: DynStore,
    /// Staged inputs and results.
    pub blobs: Arc<dyn BlobStore>,
    /// The source of time for every store call.
    pub clock: Arc<dyn Clock>,
    /// Limits and intervals.
    pub config: Arc<ServerConfig>,
    /// Exported metrics.
    pub metrics: Arc<Metrics>,
    /// The pool providers the caller plugged in (default: [`ProviderRegistry::builtin`]).
    pub providers: Arc<ProviderRegistry>,
    pub(crate) shared: Arc<Shared>,
}

/// In-memory helpers; losing them (a restart) only costs a store round trip or a metric sample.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) tokens: TokenCache,
    /// Dashboard sessions served lately (the store keeps them all).
    pub(crate) sessions: crate::dashboard::Sessions,
    pub(crate) workers: WorkerCache,
    pub(crate) leases: LeaseLedger,
    /// Autoscaled pools: config, last status and decisions, local instance tokens.
    pub(crate) pools: Arc<PoolBoard>,
    /// Cancelled when the server begins shutting down, so long-polls answer at once.
    pub(crate) shutdown: CancellationToken,
    /// The bounds on requests served at once and parked long-polls.
    pub(crate) admission: Arc<Admission>,
}

impl AppState {
    /// State over the given store, blobs, clock and config, with fresh metrics.
    pub fn new(
        store: DynStore,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
        config: ServerConfig,
    ) -> Self {
        let shared = Shared {
            admission: Arc::new(if config.adaptive_in_flight_limit {
                Admission::new(config.max_in_flight_requests, config.max_long_polls)
            } else {
                Admission::fixed(config.max_in_flight_requests, config.max_long_polls)
            }),
            ..Shared::default()
        };
        shared.pools.configure(config.pools.clone());
        Self {
            store,
            blobs,
            clock,
            config: Arc::new(config),
            metrics: Arc::new(Metrics::new()),
            providers: Arc::new(ProviderRegistry::builtin()),
            shared: Arc::new(shared),
        }
    }

    /// The same state with `providers` instead of the built-in ones, once they accept every
    /// configured pool (an unknown provider or a bad section is an error here, at start-up).
    pub fn with_providers(mut self, providers: ProviderRegistry) -> Result<Self, Error> {
        providers.check_pools(&self.config.pools)?;
        self.providers = Arc::new(providers);
        Ok(self)
    }

    /// What providers are built from: this server's store, pool board, URL and worker binary.
    pub fn provider_context(&self) -> ProviderContext {
        let program = self
            .config
            .worker_program
            .clone()
            .or_else(|| std::env::current_exe().ok())
            .unwrap_or_else(|| "spillway".into());
        ProviderContext {
            store: self.store.clone(),
            pools: self.shared.pools.clone(),
            server_url: crate::autoscale::providers::own_url(&self.config),
            worker_program: program,
        }
    }

    /// The autoscaled pools: their config (with `PATCH` changes), status and decisions.
    pub fn pools(&self) -> &Arc<PoolBoard> {
        &self.shared.pools
    }

    /// Admission control: requests served now and lease long-polls parked.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.shared.admission
    }

    /// Make long-polling lease calls answer now instead of waiting out their deadline.
    pub fn begin_shutdown(&self) {
        self.shared.shutdown.cancel();
    }
}

/// What the server needs to know about a worker on every lease call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkerRef {
    pub(crate) tenant: String,
    pub(crate) pool: String,
    /// Said goodbye: it must register again before it leases.
    pub(crate) exited: bool,
    /// Said it is draining: its lease calls answer with no tasks.
    pub(crate) draining: bool,
}

/// Registered workers by id; filled at registration and on first use after a restart.
#[derive(Debug, Default)]
pub(crate) struct WorkerCache {
    workers: Mutex<HashMap<String, WorkerRef>>,
}

impl WorkerCache {
    pub(crate) fn insert(&self, id: &str, worker: WorkerRef) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.insert(id.to_string(), worker);
    }

    pub(crate) fn remove(&self, id: &str) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.remove(id);
    }

    fn get(&self, id: &str) -> Option<WorkerRef> {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.get(id).cloned()
    }
}

impl AppState {
    /// The registered worker `id` as seen from `scope`; not found when it does not exist or
    /// belongs to another tenant.
    pub(crate) async fn worker(&self, scope: Option<&str>, id: &str) -> Result<WorkerRef, Error> {
        let not_found = || {
            Error::not_found(format!(
                "worker {id:?} not found: register it with POST /v1/workers first"
            ))
        };
        let cached = self.shared.workers.get(id);
        let worker = match cached {
            Some(worker) => worker,
            None => {
                let listed = self
                    .store
                    .worker_list(WorkerList {
                        tenant: scope.map(str::to_string),
                        now: self.clock.now(),
                    })
                    .await?;
                let found = listed
                    .into_iter()
                    .find(|w| w.id == id)
                    .ok_or_else(not_found)?;
                let worker = WorkerRef {
                    tenant: found.tenant,
                    pool: found.pool,
                    exited: found.state == spillway_core::model::WorkerState::Exited,
                    draining: found.state == spillway_core::model::WorkerState::Draining,
                };
                self.shared.workers.insert(id, worker.clone());
                worker
            }
        };
        if scope.is_some_and(|tenant| tenant != worker.tenant) {
            return Err(not_found());
        }
        Ok(worker)
    }
}
