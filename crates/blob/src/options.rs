//! Settings for reaching an object store, beyond what its URL says.

use std::fmt;
use std::path::PathBuf;

/// Default size of one part of a multipart upload, and of the buffer a small body is held in
/// before it is sent in one request.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// Smallest part size accepted: S3 and GCS reject smaller parts (except the last one).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// Settings for [`ObjectBlobs::from_url`](crate::ObjectBlobs::from_url).
///
/// Unset fields fall back to the backend's usual environment variables (`AWS_*` for S3,
/// `GOOGLE_*` for GCS) and then to its defaults.
#[derive(Clone)]
pub struct BlobOptions {
    /// S3: the endpoint of an S3-compatible service (`http://127.0.0.1:9000`). Setting it
    /// switches to path-style requests, which such services expect.
    pub endpoint: Option<String>,
    /// S3: the region (`us-east-1`).
    pub region: Option<String>,
    /// S3: allow plain `http://` endpoints (off by default).
    pub allow_http: bool,
    /// S3: the access key id.
    pub access_key_id: Option<String>,
    /// S3: the secret access key; never printed.
    pub secret_access_key: Option<String>,
    /// GCS: path of a service account JSON key file.
    pub service_account_path: Option<PathBuf>,
    /// Size of one multipart upload part, at least [`MIN_PART_SIZE`]. A body is held in
    /// memory up to this size; bigger bodies stream with a few parts in flight at once.
    pub part_size: usize,
}

impl Default for BlobOptions {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            service_account_path: None,
            part_size: DEFAULT_PART_SIZE,
        }
    }
}

impl fmt::Debug for BlobOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobOptions")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("service_account_path", &self.service_account_path)
            .field("part_size", &self.part_size)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let options = BlobOptions {
            secret_access_key: Some("hunter2".into()),
            ..BlobOptions::default()
        };
        let shown = format!("{options:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
