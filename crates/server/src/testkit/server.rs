//! A real Spillway server for a test: SQLite in a temporary folder, blobs in memory (or on local
//! disk), HTTP on a free port of 127.0.0.1, stopped when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use spillway_blob::{BlobStore, ObjectBlobs};
use spillway_core::Timestamp;
use spillway_core::clock::{Clock, ManualClock, SystemClock};
use spillway_store::DynStore;
use spillway_store::sqlite::SqliteStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::autoscale::ProviderRegistry;
use crate::{AppState, ServerConfig, SteadyClock};

/// How to start a [`TestServer`].
#[derive(Default)]
pub struct TestServerBuilder {
    config: ServerConfig,
    manual_clock: bool,
    wall_clock: Option<Arc<dyn Clock>>,
    providers: Option<ProviderRegistry>,
    disk_blobs: bool,
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

    /// Read the wall clock from `wall` (e.g. a [`SteppedClock`] the test steps) through the
    /// server's [`SteadyClock`], as a server reads the system clock.
    pub fn wall_clock(mut self, wall: Arc<dyn Clock>) -> Self {
        self.wall_clock = Some(wall);
        self
    }

    /// Plug in these pool providers, as the binary does (default: the server's built-in ones).
    pub fn providers(mut self, providers: ProviderRegistry) -> Self {
        self.providers = Some(providers);
        self
    }

    /// Keep blobs on local disk (`file://` in the server's temporary folder) instead of in
    /// memory, for behaviour only a file system shows.
    pub fn disk_blobs(mut self) -> Self {
        self.disk_blobs = true;
        self
    }

    /// Start it.
    ///
    /// # Panics
    /// When the store, the listener or the bootstrap fail: a test cannot go on without them.
    pub async fn start(self) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary folder for the test server");
        let database = dir.path().join("spillway.db");
        let store = open(&database).await;
        let blobs_url = if self.disk_blobs {
            let folder = dir.path().join("blobs");
            std::fs::create_dir_all(&folder).expect("blob folder");
            format!("file://{}", folder.display())
        } else {
            "memory://".to_string()
        };
        let blobs: Arc<dyn BlobStore> =
            Arc::new(ObjectBlobs::from_url(&blobs_url, &Default::default()).expect("test blobs"));
        let manual = ManualClock::new(chrono::Utc::now());
        let clock: Arc<dyn Clock> = match (self.manual_clock, self.wall_clock) {
            (true, _) => Arc::new(manual.clone()),
            (false, Some(wall)) => Arc::new(SteadyClock::over(wall)),
            (false, None) => Arc::new(SteadyClock::system()),
        };
        let admin = crate::bootstrap(&store, clock.now())
            .await
            .expect("bootstrap")
            .expect("first start makes an admin token");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let setup = Setup {
            config: self.config,
            providers: self.providers,
            clock,
        };
        let state = setup.state(store.clone(), blobs.clone());
        let (stop, task) = spawn(listener, state.clone());
        TestServer {
            base: format!("http://{addr}"),
            admin,
            store,
            blobs,
            clock: manual,
            state,
            stop,
            task: Some(task),
            addr,
            database,
            databases: 1,
            setup,
            dir,
        }
    }
}

/// What every (re)start builds its [`AppState`] from.
struct Setup {
    config: ServerConfig,
    providers: Option<ProviderRegistry>,
    clock: Arc<dyn Clock>,
}

impl Setup {
    fn state(&self, store: DynStore, blobs: Arc<dyn BlobStore>) -> AppState {
        let state = AppState::new(store, blobs, self.clock.clone(), self.config.clone());
        match &self.providers {
            Some(providers) => state
                .with_providers(providers.clone())
                .expect("the providers accept the configured pools"),
            None => state,
        }
    }
}

async fn open(database: &Path) -> DynStore {
    Arc::new(
        SqliteStore::open(database)
            .await
            .expect("open the SQLite store"),
    )
}

fn spawn(
    listener: tokio::net::TcpListener,
    state: AppState,
) -> (CancellationToken, JoinHandle<()>) {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        crate::serve(listener, state, async move { stopped.cancelled().await })
            .await
            .expect("serve");
    });
    (stop, task)
}

/// A running server and direct handles on what it writes to.
pub struct TestServer {
    /// Its URL, `http://127.0.0.1:PORT`; the same across restarts.
    pub base: String,
    /// The admin token its database's first start made.
    pub admin: String,
    /// Its store.
    pub store: DynStore,
    /// Its blob store, kept across restarts.
    pub blobs: Arc<dyn BlobStore>,
    /// The clock the test moves, when started with [`TestServerBuilder::manual_clock`].
    pub clock: ManualClock,
    /// Its state, for calling the server's services directly.
    pub state: AppState,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    addr: SocketAddr,
    database: PathBuf,
    databases: u32,
    setup: Setup,
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

    /// A folder that lives as long as the server, for scratch space.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stop serving and wait until the server has finished.
    ///
    /// # Panics
    /// When the server task panicked.
    pub async fn stop(mut self) {
        self.stop_serving().await;
    }

    /// Stop serving, as a server that went down, and wait until it has finished; the store,
    /// the blobs and the address stay for [`TestServer::serve_again`].
    ///
    /// # Panics
    /// When the server task panicked.
    pub async fn stop_serving(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }

    /// Serve again after [`TestServer::stop_serving`], as a restarted process: on the same
    /// address, over the same database file (opened again) and blobs, with a new state.
    ///
    /// # Panics
    /// When it is still serving, or the address or the database cannot be opened again.
    pub async fn serve_again(&mut self) {
        assert!(self.task.is_none(), "serve_again while still serving");
        let store = open(&self.database).await;
        self.serve(store).await;
    }

    /// Stop serving and serve again: [`TestServer::stop_serving`], then
    /// [`TestServer::serve_again`].
    pub async fn restart(&mut self) {
        self.stop_serving().await;
        self.serve_again().await;
    }

    /// Restart on the same address over a new, empty database, as a server whose state was
    /// lost: bootstrapped (a new [`TestServer::admin`] token), then handed to `seed`, which
    /// writes what must exist before the first request arrives, then served.
    ///
    /// # Panics
    /// When the new database, the bootstrap or the address fail.
    pub async fn restart_empty<F, Fut>(&mut self, seed: F)
    where
        F: FnOnce(DynStore) -> Fut,
        Fut: Future<Output = ()>,
    {
        self.stop_serving().await;
        self.databases += 1;
        self.database = self
            .dir
            .path()
            .join(format!("spillway-{}.db", self.databases));
        let store = open(&self.database).await;
        self.admin = crate::bootstrap(&store, self.setup.clock.now())
            .await
            .expect("bootstrap")
            .expect("an empty database makes an admin token");
        seed(store.clone()).await;
        self.serve(store).await;
    }

    async fn serve(&mut self, store: DynStore) {
        crate::bootstrap(&store, self.setup.clock.now())
            .await
            .expect("bootstrap");
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .unwrap_or_else(|e| panic!("bind {} again: {e}", self.addr));
        self.state = self.setup.state(store.clone(), self.blobs.clone());
        self.store = store;
        let (stop, task) = spawn(listener, self.state.clone());
        self.stop = stop;
        self.task = Some(task);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The system clock plus an offset a test can step forward and back, as `date -s` would on
/// one machine.
#[derive(Debug, Default, Clone)]
pub struct SteppedClock {
    offset_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl SteppedClock {
    /// Step the clock by `by` (negative: back).
    pub fn step(&self, by: chrono::TimeDelta) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for SteppedClock {
    fn now(&self) -> Timestamp {
        let offset = self.offset_ms.load(std::sync::atomic::Ordering::SeqCst);
        SystemClock.now() + chrono::TimeDelta::milliseconds(offset)
    }
}
