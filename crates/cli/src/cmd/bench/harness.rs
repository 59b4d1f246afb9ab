//! A fresh server in this process, on an empty store, with tokens and queues for the load.

use std::sync::Arc;

use anyhow::{Context, Result};
use spillway_autoscale::config::PoolConfig;
use spillway_blob::{BlobStore, ObjectBlobs};
use spillway_client::Client;
use spillway_core::api::{CreateQueue, CreateToken, RegisterWorker};
use spillway_core::auth::Role;
use spillway_core::clock::Clock;
use spillway_core::model::DEFAULT_TENANT;
use spillway_server::{AppState, ServerConfig};
use spillway_store::DynStore;
use spillway_store::postgres::PostgresStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Backend;
use crate::cmd::server::open_store;

/// A server started for one benchmark run, and clients to load it with.
pub struct BenchServer {
    /// Submits jobs (a submitter token; its own connection pool).
    pub submitter: Client,
    /// Leases and reports tasks (a worker token; its own connection pool).
    pub worker: Client,
    admin: Client,
    stop: CancellationToken,
    task: JoinHandle<spillway_core::Result<()>>,
    services: spillway_server::Services,
    cleanup: Cleanup,
}

/// What to remove once the server has stopped.
enum Cleanup {
    /// The SQLite database's directory, removed on drop.
    Dir(tempfile::TempDir),
    /// The PostgreSQL store, whose schema is dropped.
    Schema(Arc<PostgresStore>),
}

impl BenchServer {
    /// Start a server on an empty store of `backend` (`postgres_url` for PostgreSQL), listening
    /// on a free loopback port.
    pub async fn start(backend: Backend, postgres_url: Option<&str>) -> Result<Self> {
        Self::start_with_pools(backend, postgres_url, Vec::new()).await
    }

    /// Like [`BenchServer::start`], with `pools` for the autoscaler. Local pools run this
    /// very program as their workers (`spillway worker`), since the benchmark runs inside it.
    pub async fn start_with_pools(
        backend: Backend,
        postgres_url: Option<&str>,
        pools: Vec<PoolConfig>,
    ) -> Result<Self> {
        let (store, cleanup) = match (backend, postgres_url) {
            (Backend::Postgres, Some(url)) => {
                let schema = format!("spillway_bench_{}", short_id());
                let pg = Arc::new(
                    PostgresStore::connect(url, Some(&schema))
                        .await
                        .with_context(|| format!("cannot open PostgreSQL schema {schema}"))?,
                );
                let store: DynStore = pg.clone();
                (store, Cleanup::Schema(pg))
            }
            (Backend::Postgres, None) => {
                anyhow::bail!(
                    "no PostgreSQL URL: pass --postgres or set SPILLWAY_TEST_POSTGRES_URL"
                )
            }
            (Backend::Sqlite, _) => {
                let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
                let url = format!("sqlite://{}", dir.path().join("spillway.db").display());
                (
                    open_store(&url, Default::default()).await?,
                    Cleanup::Dir(dir),
                )
            }
        };
        let clock: Arc<dyn Clock> = Arc::new(spillway_server::SteadyClock::system());
        let blobs: Arc<dyn BlobStore> = Arc::new(
            ObjectBlobs::from_url("memory://", &Default::default())
                .context("cannot open in-memory blobs")?,
        );
        let admin_secret = spillway_server::bootstrap(&store, clock.now())
            .await?
            .context("the fresh store already had tokens, so no admin token was made")?;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let worker_program = if pools.is_empty() {
            None
        } else {
            Some(std::env::current_exe().context("cannot find this program to run as workers")?)
        };
        let config = ServerConfig {
            listen: addr,
            pools,
            worker_program,
            ..Default::default()
        };
        let state = AppState::new(store, blobs, clock, config);
        let stop = CancellationToken::new();
        let services = spillway_server::spawn_services(&state, stop.clone());
        let shutdown = stop.clone();
        let task = tokio::spawn(spillway_server::serve(listener, state, async move {
            shutdown.cancelled().await
        }));

        let url = format!("http://{addr}");
        let admin = Client::new(&url, Some(admin_secret))?;
        let submitter_token = token(&admin, "bench-submitter", Role::Submitter).await?;
        let submitter = Client::new(&url, Some(submitter_token))?;
        let worker = Client::new(
            &url,
            Some(token(&admin, "bench-worker", Role::Worker).await?),
        )?;
        Ok(Self {
            submitter,
            worker,
            admin,
            stop,
            task,
            services,
            cleanup,
        })
    }

    /// Create the queue `name` in the default tenant.
    pub async fn queue(&self, name: &str) -> Result<()> {
        create_queue(&self.admin, name).await
    }

    /// A client with the admin token (pools, tasks of any job).
    pub fn admin(&self) -> &Client {
        &self.admin
    }

    /// Register a worker serving `queue`; returns its id.
    pub async fn register_worker(&self, queue: &str, concurrency: u32) -> Result<String> {
        let worker = self
            .worker
            .worker_register(&RegisterWorker {
                pool: "default".to_string(),
                hostname: "bench".to_string(),
                queues: vec![queue.to_string()],
                concurrency,
                tenant: None,
            })
            .await
            .context("cannot register a worker")?;
        Ok(worker.id)
    }

    /// Stop the server and its services and remove its data.
    pub async fn stop(self) -> Result<()> {
        self.stop.cancel();
        self.task.await.context("the server task panicked")??;
        self.services.join().await;
        match self.cleanup {
            Cleanup::Dir(dir) => dir
                .close()
                .context("cannot remove the temporary directory")?,
            Cleanup::Schema(pg) => pg
                .drop_schema()
                .await
                .context("cannot drop the bench schema")?,
        }
        Ok(())
    }
}

/// Create the queue `name` in the default tenant, as `admin`.
pub(super) async fn create_queue(admin: &Client, name: &str) -> Result<()> {
    admin
        .queue_create(&CreateQueue {
            name: name.to_string(),
            tenant: Some(DEFAULT_TENANT.to_string()),
            settings: Default::default(),
        })
        .await
        .with_context(|| format!("cannot create queue {name}"))?;
    Ok(())
}

pub(super) async fn token(admin: &Client, name: &str, role: Role) -> Result<String> {
    let created = admin
        .token_create(&CreateToken {
            name: name.to_string(),
            role,
            tenant: Some(DEFAULT_TENANT.to_string()),
            expires_at: None,
            queues: None,
        })
        .await
        .with_context(|| format!("cannot create the {name} token"))?;
    Ok(created.token)
}

/// A short random suffix for schema names, so runs never share tables.
pub fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}
