//! Where the bearer tokens of Compute API calls come from: the one Google token source,
//! [`spillway_gcp_auth`], asked for [`COMPUTE_SCOPE`].
//!
//! In production the provider uses [`key_file`] for a pool with `credentials_file`, else
//! [`application_default`] (`GOOGLE_APPLICATION_CREDENTIALS`, the metadata server of the
//! machine, or gcloud's login). Tests pass a [`StaticToken`].

use std::path::PathBuf;

pub use spillway_gcp_auth::{DynTokenSource, GoogleTokens, StaticToken, TokenSource};

/// The OAuth scope of Compute API calls.
pub const COMPUTE_SCOPE: &str = "https://www.googleapis.com/auth/compute";

/// Compute API tokens from application default credentials, found on first use.
pub fn application_default() -> GoogleTokens {
    GoogleTokens::application_default(COMPUTE_SCOPE)
}

/// Compute API tokens from a pool's service-account key file, read on first use.
pub fn key_file(path: impl Into<PathBuf>) -> GoogleTokens {
    GoogleTokens::key_file(path, COMPUTE_SCOPE).named_by("compute_engine.credentials_file")
}
