//! Shared set-up: a fake, a SQLite store and a provider pointed at the fake.

use std::sync::Arc;
use std::time::Duration;

use spillway_autoscale::config::PoolConfig;
use spillway_autoscale::conformance::t0;
use spillway_autoscale::provider::{PoolObservation, PoolObserve, PoolProvider, PoolResize};
use spillway_compute_engine::ComputeEngineProvider;
use spillway_compute_engine::client::{ClientSettings, GroupRef, Location};
use spillway_compute_engine::config::ComputeEnginePool;
use spillway_compute_engine::fake::{FAKE_TOKEN, FakeCompute};
use spillway_compute_engine::token::StaticToken;
use spillway_core::Result;
use spillway_store::DynStore;
use spillway_store::sqlite::SqliteStore;
use spillway_testkit::wait_until_seen;

/// Short pacing so retries and operation polls take milliseconds.
pub fn fast_settings() -> ClientSettings {
    ClientSettings {
        request_timeout: Duration::from_secs(5),
        retry_deadline: Duration::from_secs(5),
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        operation_poll_interval: Duration::from_millis(5),
        operation_timeout: Duration::from_secs(5),
    }
}

/// A fake, a store and a provider; the temp dir holds the database.
pub struct Env {
    pub fake: Arc<FakeCompute>,
    pub store: DynStore,
    pub provider: Arc<ComputeEngineProvider>,
    pub _dir: tempfile::TempDir,
}

pub async fn env() -> Env {
    let fake = Arc::new(FakeCompute::start().await.expect("fake starts"));
    let dir = tempfile::tempdir().expect("temp dir");
    let store: DynStore = Arc::new(
        SqliteStore::open(&dir.path().join("spillway.db"))
            .await
            .expect("sqlite store"),
    );
    let provider = ComputeEngineProvider::with_tokens(
        store.clone(),
        Arc::new(StaticToken(FAKE_TOKEN.into())),
        fast_settings(),
    )
    .expect("provider");
    Env {
        fake,
        store,
        provider: Arc::new(provider),
        _dir: dir,
    }
}

/// The pool section naming `group` on the fake.
pub fn section(fake: &FakeCompute, group: &GroupRef) -> ComputeEnginePool {
    let (zone, region) = match &group.location {
        Location::Zone(z) => (Some(z.clone()), None),
        Location::Region(r) => (None, Some(r.clone())),
    };
    ComputeEnginePool {
        project: group.project.clone(),
        zone,
        region,
        instance_group: group.name.clone(),
        api_endpoint: Some(fake.base_url()),
        credentials_file: None,
    }
}

/// A compute_engine pool (max 5) serving `default` on `group`.
pub fn pool(name: &str, fake: &FakeCompute, group: &GroupRef) -> PoolConfig {
    let mut pool = PoolConfig::new(name, "compute_engine", vec!["default".into()]);
    pool.max = 5;
    pool.set_section(&section(fake, group)).expect("section");
    pool.validate().expect("test pool is valid");
    pool
}

impl Env {
    pub async fn observe(&self, pool: &PoolConfig) -> Result<PoolObservation> {
        self.provider
            .pool_observe(PoolObserve { pool, now: t0() })
            .await
    }

    pub async fn resize(&self, pool: &PoolConfig, desired: u32, drain: &[&str]) -> Result<()> {
        self.provider
            .pool_resize(PoolResize {
                pool,
                desired,
                drain: drain.iter().map(|s| s.to_string()).collect(),
                now: t0(),
            })
            .await
    }

    /// Step the fake and observe until `done` holds (deadline 10 s).
    pub async fn wait_until(
        &self,
        pool: &PoolConfig,
        what: &str,
        done: impl Fn(&PoolObservation) -> bool,
    ) -> PoolObservation {
        let look = || async {
            self.fake.step();
            self.observe(pool).await.expect("observe")
        };
        wait_until_seen(what, Duration::from_secs(10), look, done).await
    }
}
