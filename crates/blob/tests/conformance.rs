//! The blob conformance suite against every backend: memory, a local folder, S3 (a real
//! S3-compatible server, see `scripts/s3-server.sh`) and GCS (real GCS only).
//!
//! Environment:
//! - `SPILLWAY_TEST_S3_URL` (`s3://bucket`), `SPILLWAY_TEST_S3_ENDPOINT`,
//!   `SPILLWAY_TEST_S3_REGION`, `SPILLWAY_TEST_S3_ACCESS_KEY_ID`,
//!   `SPILLWAY_TEST_S3_SECRET_ACCESS_KEY`: printed by `scripts/s3-server.sh start`. Without
//!   the URL the S3 cases are skipped, unless `CI=true`, where they fail.
//! - `SPILLWAY_TEST_GCS_URL` (`gs://bucket[/prefix]`), optionally
//!   `SPILLWAY_TEST_GCS_SERVICE_ACCOUNT` (a key file path): without the URL the GCS cases are
//!   skipped, even in CI (the one allowed skip, see below).

use std::sync::Arc;

use spillway_blob::conformance::{one_chunk, read_all};
use spillway_blob::{BlobOptions, BlobStore, MIN_PART_SIZE, ObjectBlobs};

/// Options for tests: the smallest part size, so the large case spans several parts.
fn options() -> BlobOptions {
    BlobOptions {
        part_size: MIN_PART_SIZE,
        ..BlobOptions::default()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A fresh prefix per store, so cases sharing one bucket never see each other's objects.
fn unique_prefix() -> String {
    format!("spillway-test-{}", uuid::Uuid::now_v7())
}

mod memory {
    use super::*;

    async fn make() -> Option<Arc<dyn BlobStore>> {
        let blobs = ObjectBlobs::from_url("memory://", &options());
        Some(Arc::new(
            blobs.unwrap_or_else(|e| panic!("memory store: {e}")),
        ))
    }

    spillway_blob::blob_conformance_tests!(make);
}

mod local {
    use super::*;

    /// The folder lives as long as the test process; the OS temp dir is cleaned by the OS.
    async fn make() -> Option<Arc<dyn BlobStore>> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let url = format!("file://{}/blobs", dir.keep().display());
        let blobs = ObjectBlobs::from_url(&url, &options());
        Some(Arc::new(
            blobs.unwrap_or_else(|e| panic!("local store at {url}: {e}")),
        ))
    }

    spillway_blob::blob_conformance_tests!(make);

    /// Files are plain files under the folder, a second handle sees them, and deleting a
    /// prefix removes the folders it leaves empty.
    #[tokio::test]
    async fn files_live_in_the_folder_and_deletes_tidy_up() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let first = ObjectBlobs::local(dir.path()).unwrap_or_else(|e| panic!("local: {e}"));
        let put = first.put("t/inputs/j/d/a.txt", one_chunk(b"on disk")).await;
        assert!(put.is_ok(), "{:?}", put.err());
        let on_disk = std::fs::read(dir.path().join("t/inputs/j/d/a.txt"));
        assert_eq!(on_disk.ok().as_deref(), Some(&b"on disk"[..]));

        let url = format!("file://{}", dir.path().display());
        let second = ObjectBlobs::from_url(&url, &BlobOptions::default())
            .unwrap_or_else(|e| panic!("from_url {url}: {e}"));
        assert_eq!(read_all(&second, "t/inputs/j/d/a.txt").await, b"on disk");

        let deleted = second.delete_prefix("t/inputs/j").await;
        assert_eq!(deleted.ok(), Some(1));
        assert!(
            !dir.path().join("t/inputs/j").exists(),
            "empty folders were left behind"
        );
    }
}

mod s3 {
    use super::*;

    /// The bucket URL and options from the environment, or `None` (after saying why) when unset.
    fn target() -> Option<(String, BlobOptions)> {
        let Some(url) = env("SPILLWAY_TEST_S3_URL") else {
            let reason = "SPILLWAY_TEST_S3_URL is not set; run `eval \"$(scripts/s3-server.sh start)\"` first";
            if env("CI").as_deref() == Some("true") {
                panic!("S3 conformance cannot run in CI: {reason}");
            }
            eprintln!("skipped: {reason}");
            return None;
        };
        let endpoint = env("SPILLWAY_TEST_S3_ENDPOINT");
        let options = BlobOptions {
            allow_http: endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
            endpoint,
            region: env("SPILLWAY_TEST_S3_REGION"),
            access_key_id: env("SPILLWAY_TEST_S3_ACCESS_KEY_ID"),
            secret_access_key: env("SPILLWAY_TEST_S3_SECRET_ACCESS_KEY"),
            ..options()
        };
        Some((url.trim_end_matches('/').to_owned(), options))
    }

    fn open(url: &str, options: &BlobOptions) -> ObjectBlobs {
        ObjectBlobs::from_url(url, options).unwrap_or_else(|e| panic!("s3 store at {url}: {e}"))
    }

    async fn make() -> Option<Arc<dyn BlobStore>> {
        let (bucket, options) = target()?;
        Some(Arc::new(open(
            &format!("{bucket}/{}", unique_prefix()),
            &options,
        )))
    }

    spillway_blob::blob_conformance_tests!(make);

    /// Objects written through `s3://bucket/prefix` sit under `prefix/` in the bucket.
    #[tokio::test]
    async fn url_prefix_is_honoured() {
        let Some((bucket, options)) = target() else {
            return;
        };
        let prefix = unique_prefix();
        let prefixed = open(&format!("{bucket}/{prefix}/inner"), &options);
        let whole = open(&bucket, &options);
        let key = "t/inputs/j/a.txt";
        let put = prefixed.put(key, one_chunk(b"prefixed")).await;
        assert!(put.is_ok(), "{:?}", put.err());
        let listed = whole
            .list(&prefix)
            .await
            .unwrap_or_else(|e| panic!("list: {e}"));
        let listed: Vec<&str> = listed.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(listed, ["inner/t/inputs/j/a.txt"]);
        let full = format!("{prefix}/inner/{key}");
        assert_eq!(read_all(&whole, &full).await, b"prefixed");
    }
}

mod gcs {
    use super::*;

    async fn make() -> Option<Arc<dyn BlobStore>> {
        let Some(url) = env("SPILLWAY_TEST_GCS_URL") else {
            // The one skip allowed even with CI=true: object_store's GCS client speaks the XML
            // API and no local GCS emulator serves it, so only real GCS can test it.
            eprintln!(
                "skipped: SPILLWAY_TEST_GCS_URL is not set; GCS is tested only against real GCS \
                 (no local emulator serves the XML API object_store uses), so this skip is \
                 allowed even in CI"
            );
            return None;
        };
        let options = BlobOptions {
            service_account_path: env("SPILLWAY_TEST_GCS_SERVICE_ACCOUNT").map(Into::into),
            ..options()
        };
        let url = format!("{}/{}", url.trim_end_matches('/'), unique_prefix());
        let blobs = ObjectBlobs::from_url(&url, &options);
        Some(Arc::new(
            blobs.unwrap_or_else(|e| panic!("gcs store at {url}: {e}")),
        ))
    }

    spillway_blob::blob_conformance_tests!(make);
}
