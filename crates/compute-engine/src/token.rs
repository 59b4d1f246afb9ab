//! Where the bearer tokens of Compute API calls come from.
//!
//! In production [`GoogleTokens`] asks `gcp_auth`: a service-account key named by the pool's
//! `credentials_file` or by `GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server of the
//! machine (a Compute Engine VM or GKE pod with a service account), else gcloud's login.
//! Tests pass a [`StaticToken`].

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use spillway_core::{Error, Result};
use tokio::sync::OnceCell;

/// The OAuth scope of Compute API calls.
pub const COMPUTE_SCOPE: &str = "https://www.googleapis.com/auth/compute";

/// Hands out access tokens for the Compute API.
#[async_trait]
pub trait TokenSource: Send + Sync + 'static {
    /// A valid access token (cached by the source until it expires).
    async fn token(&self) -> Result<String>;
}

/// A shared handle to any token source.
pub type DynTokenSource = Arc<dyn TokenSource>;

/// Always the same token: for tests against a fake.
#[derive(Debug, Clone)]
pub struct StaticToken(pub String);

#[async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<String> {
        Ok(self.0.clone())
    }
}

/// Tokens from `gcp_auth`, found on first use (so building a provider does no IO).
pub struct GoogleTokens {
    key_file: Option<PathBuf>,
    provider: OnceCell<Arc<dyn gcp_auth::TokenProvider>>,
}

impl GoogleTokens {
    /// Application default credentials: `GOOGLE_APPLICATION_CREDENTIALS`, the metadata
    /// server, or gcloud's login, in gcp_auth's order.
    pub fn application_default() -> Self {
        Self {
            key_file: None,
            provider: OnceCell::new(),
        }
    }

    /// A service-account key file.
    pub fn key_file(path: impl Into<PathBuf>) -> Self {
        Self {
            key_file: Some(path.into()),
            provider: OnceCell::new(),
        }
    }

    async fn provider(&self) -> Result<&Arc<dyn gcp_auth::TokenProvider>> {
        self.provider
            .get_or_try_init(|| async {
                match &self.key_file {
                    Some(path) => gcp_auth::CustomServiceAccount::from_file(path)
                        .map(|p| Arc::new(p) as Arc<dyn gcp_auth::TokenProvider>)
                        .map_err(|e| {
                            Error::invalid(format!(
                                "could not read the service-account key {}: check compute_engine.credentials_file names a JSON key file",
                                path.display()
                            ))
                            .with_source(e)
                        }),
                    None => gcp_auth::provider().await.map_err(|e| {
                        Error::unavailable(
                            "no Google credentials found: run the server on a VM with a service account, or set GOOGLE_APPLICATION_CREDENTIALS to a key file",
                        )
                        .with_source(e)
                    }),
                }
            })
            .await
    }
}

#[async_trait]
impl TokenSource for GoogleTokens {
    async fn token(&self) -> Result<String> {
        let token = self
            .provider()
            .await?
            .token(&[COMPUTE_SCOPE])
            .await
            .map_err(|e| {
                Error::unavailable("could not get a Google access token for the Compute API")
                    .with_source(e)
            })?;
        Ok(token.as_str().to_string())
    }
}
