//! A real Spillway server for a test: SQLite in a temporary folder, blobs in memory, HTTP on a
//! free port of 127.0.0.1, stopped when dropped.

use std::sync::Arc;

use spillway_blob::{BlobStore, ObjectBlobs};
use spillway_core::clock::{Clock, ManualClock, SystemClock};
use spillway_server::autoscale::ProviderRegistry;
use spillway_server::{AppState, ServerConfig};
use spillway_store::DynStore;
use spillway_store::sqlite::SqliteStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How to start a [`TestServer`].
#[derive(Default)]
pub struct TestServerBuilder {
    config: ServerConfig,
    manual_clock: bool,
    providers: Option<ProviderRegistry>,
}

impl TestServerBuilder {
    /// Use `config` (its listen address is ignored: a free port on 127.0.0.1).
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Drive the server with a [`ManualClock`] the test moves (default: the system clock).
    pub fn manual_clock(mut self) -> Self {
        self.manual_clock = true;
        self
    }

    /// Plug in these pool providers, as the binary does (default: the server's built-in ones).
    pub fn providers(mut self, providers: ProviderRegistry) -> Self {
        self.providers = Some(providers);
        self
    }

    /// Start it.
    ///
    /// # Panics
    /// When the store, the listener or the bootstrap fail: a test cannot go on without them.
    pub async fn start(self) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary folder for the test server");
        let store: DynStore = Arc::new(
            SqliteStore::open(&dir.path().join("spillway.db"))
                .await
                .expect("open the SQLite store"),
        );
        let blobs: Arc<dyn BlobStore> = Arc::new(
            ObjectBlobs::from_url("memory://", &Default::default()).expect("memory blobs"),
        );
        let manual = ManualClock::new(chrono::Utc::now());
        let clock: Arc<dyn Clock> = if self.manual_clock {
            Arc::new(manual.clone())
        } else {
            Arc::new(SystemClock)
        };
        let admin = spillway_server::bootstrap(&store, clock.now())
            .await
            .expect("bootstrap")
            .expect("first start makes an admin token");
        let mut state = AppState::new(store.clone(), blobs.clone(), clock, self.config);
        if let Some(providers) = self.providers {
            state = state
                .with_providers(providers)
                .expect("the providers accept the configured pools");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let serving = state.clone();
        let task = tokio::spawn(async move {
            spillway_server::serve(listener, serving, async move { stopped.cancelled().await })
                .await
                .expect("serve");
        });
        TestServer {
            base,
            admin,
            store,
            blobs,
            clock: manual,
            state,
            stop,
            task: Some(task),
            dir,
        }
    }
}

/// A running server and direct handles on what it writes to.
pub struct TestServer {
    /// Its URL, `http://127.0.0.1:PORT`.
    pub base: String,
    /// The admin token the first start made.
    pub admin: String,
    /// Its store.
    pub store: DynStore,
    /// Its blob store.
    pub blobs: Arc<dyn BlobStore>,
    /// The clock the test moves, when started with [`TestServerBuilder::manual_clock`].
    pub clock: ManualClock,
    /// Its state, for calling the server's services directly.
    pub state: AppState,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl TestServer {
    /// How to start one with settings other than the defaults.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// A server with the default config and the system clock.
    pub async fn start() -> TestServer {
        Self::builder().start().await
    }

    /// A client of its API with the admin token.
    ///
    /// # Panics
    /// When the client cannot be built (a malformed base URL, which cannot happen here).
    pub fn admin_client(&self) -> spillway_client::Client {
        spillway_client::Client::new(&self.base, Some(self.admin.clone())).expect("admin client")
    }

    /// A folder that lives as long as the server, for scratch space.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stop serving and wait until the server has finished.
    ///
    /// # Panics
    /// When the server task panicked.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
