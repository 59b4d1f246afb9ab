//! Which pool providers this server can run, as the caller plugged them in.
//!
//! The server knows only the [`PoolProvider`](spillway_autoscale::provider::PoolProvider) seam.
//! The binary fills a [`ProviderRegistry`] (provider name → a check of a pool's own section and
//! a constructor) and hands it to [`AppState::with_providers`](crate::AppState::with_providers);
//! a provider crate owns its section of `[[pools]]` and exports the check. Adding a provider
//! touches its own crate and one `register` call in the binary, never the server.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use spillway_autoscale::config::{MEMORY_PROVIDER, PoolConfig};
use spillway_autoscale::memory::MemoryProvider;
use spillway_autoscale::provider::DynPoolProvider;
use spillway_core::{Error, Result};
use spillway_store::DynStore;

use super::PoolBoard;
use super::providers::{external, local};

/// What a provider may be built from: the server's own handles, no config file and no IO.
#[derive(Clone)]
pub struct ProviderContext {
    /// Durable state: providers join their instances to registered workers through it.
    pub store: DynStore,
    /// The autoscaled pools, their status and the `local` instances' tokens.
    pub pools: Arc<PoolBoard>,
    /// The URL workers on this machine reach the server at.
    pub server_url: String,
    /// The `spillway` binary that `local` pools run as `spillway worker`.
    pub worker_program: PathBuf,
}

/// Checks a pool's own section (e.g. `kubernetes = { … }`) at start-up, before anything runs.
pub type CheckPool = fn(&PoolConfig) -> Result<()>;

type BuildProvider = Arc<dyn Fn(&ProviderContext) -> DynPoolProvider + Send + Sync>;

#[derive(Clone)]
struct Entry {
    check: CheckPool,
    build: BuildProvider,
}

/// Provider name → how to check a pool of it and how to build it.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    entries: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.keys()).finish()
    }
}

impl ProviderRegistry {
    /// A registry with no provider.
    pub fn new() -> Self {
        Self::default()
    }

    /// The providers the server implements itself: `local` (child processes), `external`
    /// (someone else starts workers) and `memory` (an in-process fake, for trying the
    /// autoscaler out).
    pub fn builtin() -> Self {
        Self::new()
            .register(local::PROVIDER, no_section, |ctx| {
                Arc::new(local::LocalProvider::new(
                    ctx.store.clone(),
                    ctx.pools.clone(),
                    local::LocalConfig {
                        program: ctx.worker_program.clone(),
                        server_url: ctx.server_url.clone(),
                    },
                ))
            })
            .register(external::PROVIDER, no_section, |ctx| {
                Arc::new(external::ExternalProvider::new(ctx.store.clone()))
            })
            .register(MEMORY_PROVIDER, no_section, |_| {
                Arc::new(MemoryProvider::new())
            })
    }

    /// Add (or replace) the provider `name`: `check` validates a pool's own section at
    /// start-up, `build` makes the provider once the server runs (it must do no IO: a provider
    /// that needs credentials builds its client on first use).
    pub fn register(
        mut self,
        name: &str,
        check: CheckPool,
        build: impl Fn(&ProviderContext) -> DynPoolProvider + Send + Sync + 'static,
    ) -> Self {
        self.entries.insert(
            name.to_string(),
            Entry {
                check,
                build: Arc::new(build),
            },
        );
        self
    }

    /// The registered provider names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// Check that every pool names a registered provider and that its provider accepts the
    /// pool's section.
    pub fn check_pools(&self, pools: &[PoolConfig]) -> Result<()> {
        for pool in pools {
            let entry = self.entries.get(&pool.provider).ok_or_else(|| {
                Error::invalid(format!(
                    "pool {:?} has provider {:?}, which this server does not have: use one of {}",
                    pool.name,
                    pool.provider,
                    self.names().join(", ")
                ))
            })?;
            (entry.check)(pool)?;
        }
        Ok(())
    }

    /// One provider per registered name, built over `ctx`.
    pub fn build(&self, ctx: &ProviderContext) -> HashMap<String, DynPoolProvider> {
        self.entries
            .iter()
            .map(|(name, entry)| (name.clone(), (entry.build)(ctx)))
            .collect()
    }
}

/// The check of providers that have no section of their own ([`PoolConfig::validate`] already
/// refuses any section).
fn no_section(_: &PoolConfig) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(pool: &PoolConfig) -> Result<()> {
        Err(Error::invalid(format!("pool {:?}: no zone", pool.name)))
    }

    #[test]
    fn unknown_providers_are_refused_with_the_known_ones() {
        let registry = ProviderRegistry::builtin();
        let pool = PoolConfig::new("k8s", "kubernetes", vec!["q".into()]);
        let err = registry.check_pools(&[pool]).expect_err("not registered");
        assert!(
            err.message().contains("use one of external, local, memory"),
            "{err}"
        );
    }

    #[test]
    fn a_registered_provider_checks_its_own_pools() {
        let registry = ProviderRegistry::builtin()
            .register("cloud", refuse, |_| Arc::new(MemoryProvider::new()));
        assert_eq!(registry.names(), ["cloud", "external", "local", "memory"]);
        let ok = PoolConfig::new("home", "local", vec!["q".into()]);
        registry
            .check_pools(std::slice::from_ref(&ok))
            .expect("local pool");
        let cloud = PoolConfig::new("spot", "cloud", vec!["q".into()]);
        let err = registry.check_pools(&[ok, cloud]).expect_err("cloud check");
        assert!(err.message().contains("no zone"), "{err}");
    }
}
