//! A provider built on first use, for providers whose construction is async and can fail
//! (loading a kubeconfig, finding cloud credentials).
//!
//! The server starts even when a cloud provider cannot be built yet: the error shows on the
//! pool's status (`spillway pools`, the dashboard) on every pass, and the next pass tries again,
//! so fixing a mounted credential file needs no restart.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use spillway_autoscale::provider::{
    DynPoolProvider, PoolObservation, PoolObserve, PoolProvider, PoolResize,
};
use spillway_core::{Error, Result};
use tokio::sync::OnceCell;

type BuildFuture = Pin<Box<dyn Future<Output = Result<DynPoolProvider>> + Send>>;

/// Builds its provider on the first call that needs it, retrying on later calls until it works.
pub struct DeferredProvider {
    name: &'static str,
    build: Box<dyn Fn() -> BuildFuture + Send + Sync>,
    built: OnceCell<DynPoolProvider>,
}

impl DeferredProvider {
    /// A provider named `name` (for logs and metrics) made by `build` when first needed.
    pub fn new<F, Fut>(name: &'static str, build: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<DynPoolProvider>> + Send + 'static,
    {
        Self {
            name,
            build: Box::new(move || Box::pin(build())),
            built: OnceCell::new(),
        }
    }

    async fn inner(&self) -> Result<&DynPoolProvider> {
        self.built
            .get_or_try_init(|| (self.build)())
            .await
            .map_err(|err| {
                Error::unavailable(format!(
                    "cannot start the {} provider: {}",
                    self.name,
                    err.message()
                ))
            })
    }
}

#[async_trait]
impl PoolProvider for DeferredProvider {
    fn provider_name(&self) -> &'static str {
        self.name
    }

    async fn pool_observe(&self, params: PoolObserve<'_>) -> Result<PoolObservation> {
        self.inner().await?.pool_observe(params).await
    }

    async fn pool_resize(&self, params: PoolResize<'_>) -> Result<()> {
        self.inner().await?.pool_resize(params).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use spillway_autoscale::conformance::{t0, test_pool};
    use spillway_autoscale::memory::MemoryProvider;
    use spillway_core::ErrorKind;

    use super::*;

    #[tokio::test]
    async fn a_failed_build_is_an_unavailable_error_and_is_retried() {
        let attempts = Arc::new(AtomicU32::new(0));
        let counter = attempts.clone();
        let provider = DeferredProvider::new("kubernetes", move || {
            let attempt = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt == 0 {
                    Err(Error::invalid("no kubeconfig at /nowhere"))
                } else {
                    Ok(Arc::new(MemoryProvider::new()) as DynPoolProvider)
                }
            }
        });
        let pool = test_pool("p");
        let observe = || {
            provider.pool_observe(PoolObserve {
                pool: &pool,
                now: t0(),
            })
        };

        let err = observe().await.expect_err("first build fails");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.message().contains("no kubeconfig at /nowhere"), "{err}");

        observe().await.expect("second build works");
        observe().await.expect("built once, then reused");
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
    }
}
