//! Spillway's one Google token source, shared by the Compute Engine provider and the Pub/Sub
//! bridge so both find credentials, cache tokens and report failures the same way.
//!
//! [`GoogleTokens`] asks `gcp_auth`: a service-account key file when one is named, else
//! application default credentials (`GOOGLE_APPLICATION_CREDENTIALS`, the metadata server of
//! a Compute Engine VM or GKE pod with a service account, or gcloud's login, in gcp_auth's
//! order). Credentials are found on first use, so building a source does no IO; tokens are
//! cached by gcp_auth until they expire. Tests pass a [`StaticToken`] instead.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use spillway_core::{Error, Result};
use tokio::sync::OnceCell;

/// Hands out access tokens for one Google API.
#[async_trait]
pub trait TokenSource: Send + Sync + 'static {
    /// A valid access token (cached by the source until it expires).
    async fn token(&self) -> Result<String>;
}

/// A shared handle to any token source.
pub type DynTokenSource = Arc<dyn TokenSource>;

/// Always the same token: for tests against a fake or an emulator.
#[derive(Debug, Clone)]
pub struct StaticToken(pub String);

#[async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<String> {
        Ok(self.0.clone())
    }
}

/// Where [`GoogleTokens`] finds its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Credentials {
    /// `GOOGLE_APPLICATION_CREDENTIALS`, the metadata server, or gcloud's login.
    ApplicationDefault,
    /// A service-account key file, and the setting that named it (for error messages).
    KeyFile {
        path: PathBuf,
        setting: Option<&'static str>,
    },
}

/// Tokens for one OAuth scope from `gcp_auth`, found on first use.
pub struct GoogleTokens {
    scope: &'static str,
    credentials: Credentials,
    provider: OnceCell<Arc<dyn gcp_auth::TokenProvider>>,
}

impl std::fmt::Debug for GoogleTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleTokens")
            .field("scope", &self.scope)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl GoogleTokens {
    /// Tokens for `scope` from application default credentials:
    /// `GOOGLE_APPLICATION_CREDENTIALS`, the metadata server, or gcloud's login, in
    /// gcp_auth's order.
    pub fn application_default(scope: &'static str) -> Self {
        Self {
            scope,
            credentials: Credentials::ApplicationDefault,
            provider: OnceCell::new(),
        }
    }

    /// Tokens for `scope` from a service-account key file.
    pub fn key_file(path: impl Into<PathBuf>, scope: &'static str) -> Self {
        Self {
            scope,
            credentials: Credentials::KeyFile {
                path: path.into(),
                setting: None,
            },
            provider: OnceCell::new(),
        }
    }

    /// Name the setting the key file came from (such as `compute_engine.credentials_file`),
    /// so an unreadable key says what to fix. No effect on application default credentials.
    pub fn named_by(mut self, setting: &'static str) -> Self {
        if let Credentials::KeyFile { setting: named, .. } = &mut self.credentials {
            *named = Some(setting);
        }
        self
    }

    /// The OAuth scope tokens are asked for.
    pub fn scope(&self) -> &'static str {
        self.scope
    }

    /// Find the credentials now rather than on the first token, so that a process that
    /// cannot work without them fails at start-up. Done once; later calls reuse the result.
    pub async fn check(&self) -> Result<()> {
        self.provider().await.map(|_| ())
    }

    async fn provider(&self) -> Result<&Arc<dyn gcp_auth::TokenProvider>> {
        self.provider
            .get_or_try_init(|| async {
                match &self.credentials {
                    Credentials::KeyFile { path, setting } => {
                        gcp_auth::CustomServiceAccount::from_file(path)
                            .map(|p| Arc::new(p) as Arc<dyn gcp_auth::TokenProvider>)
                            .map_err(|e| key_file_error(path, *setting).with_source(e))
                    }
                    Credentials::ApplicationDefault => gcp_auth::provider().await.map_err(|e| {
                        Error::unauthenticated(
                            "no Google credentials found: run on Compute Engine or GKE with a \
                             service account, set GOOGLE_APPLICATION_CREDENTIALS to a key file, \
                             or run `gcloud auth application-default login`",
                        )
                        .with_source(e)
                    }),
                }
            })
            .await
    }
}

fn key_file_error(path: &std::path::Path, setting: Option<&str>) -> Error {
    let fix = match setting {
        Some(setting) => format!("check {setting} names a JSON key file of a service account"),
        None => "give a JSON key file of a service account".to_string(),
    };
    Error::invalid(format!(
        "could not read the service-account key {}: {fix}",
        path.display()
    ))
}

#[async_trait]
impl TokenSource for GoogleTokens {
    async fn token(&self) -> Result<String> {
        let token = self
            .provider()
            .await?
            .token(&[self.scope])
            .await
            .map_err(|e| {
                Error::unavailable(format!(
                    "could not get a Google access token for scope {}",
                    self.scope
                ))
                .with_source(e)
            })?;
        Ok(token.as_str().to_string())
    }
}

#[cfg(test)]
mod tests {
    use spillway_core::ErrorKind;

    use super::*;

    #[tokio::test]
    async fn a_static_token_is_handed_out_as_is() {
        let source: DynTokenSource = Arc::new(StaticToken("t-1".into()));
        assert_eq!(source.token().await.expect("token"), "t-1");
    }

    #[tokio::test]
    async fn a_missing_key_file_is_an_invalid_argument_naming_file_and_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-such-key.json");
        let tokens = GoogleTokens::key_file(&missing, "https://example.invalid/scope")
            .named_by("compute_engine.credentials_file");
        for err in [
            tokens.check().await.expect_err("no key file"),
            tokens.token().await.expect_err("no key file"),
        ] {
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
            assert!(err.message().contains("no-such-key.json"), "{err}");
            assert!(
                err.message().contains("compute_engine.credentials_file"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn a_key_file_that_is_not_a_key_is_refused_without_a_setting_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.json");
        std::fs::write(&path, "{\"type\": \"not a key\"}").expect("write");
        let tokens = GoogleTokens::key_file(&path, "https://example.invalid/scope");
        assert_eq!(tokens.scope(), "https://example.invalid/scope");
        let err = tokens.token().await.expect_err("not a key");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.message().contains("key.json"), "{err}");
        assert!(err.message().contains("give a JSON key file"), "{err}");
    }

    #[test]
    fn named_by_only_applies_to_key_files() {
        let adc = GoogleTokens::application_default("s").named_by("x.credentials_file");
        assert_eq!(adc.credentials, Credentials::ApplicationDefault);
    }
}
