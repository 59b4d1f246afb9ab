//! Building an `object_store` backend from a blob store URL.

use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use spillway_core::{Error, Result};

use crate::BlobOptions;
use crate::key;

const SUPPORTED: &str =
    "use file:///absolute/path, memory://, s3://bucket[/prefix] or gs://bucket[/prefix]";

/// The backend for `url`; see [`ObjectBlobs::from_url`](crate::ObjectBlobs::from_url).
pub(crate) fn build(url: &str, options: &BlobOptions) -> Result<Arc<dyn ObjectStore>> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(Error::invalid(format!(
            "invalid blob store url {url:?}: it has no scheme; {SUPPORTED}"
        )));
    };
    match scheme {
        "file" => local(FsPath::new(rest)).map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
        "memory" if rest.is_empty() => Ok(Arc::new(InMemory::new())),
        "memory" => Err(Error::invalid(format!(
            "invalid blob store url {url:?}: memory:// takes no path"
        ))),
        "s3" => {
            let (bucket, prefix) = bucket_and_prefix(url, rest)?;
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = &options.endpoint {
                // S3-compatible services rarely have a DNS name per bucket.
                builder = builder
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            if let Some(region) = &options.region {
                builder = builder.with_region(region);
            }
            if options.allow_http {
                builder = builder.with_allow_http(true);
            }
            if let Some(id) = &options.access_key_id {
                builder = builder.with_access_key_id(id);
            }
            if let Some(secret) = &options.secret_access_key {
                builder = builder.with_secret_access_key(secret);
            }
            let store = builder.build().map_err(|e| {
                Error::invalid(format!(
                    "cannot configure s3 for {url:?}; check the endpoint, region and credentials"
                ))
                .with_source(e)
            })?;
            Ok(with_prefix(store, prefix))
        }
        "gs" => {
            let (bucket, prefix) = bucket_and_prefix(url, rest)?;
            let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
            if let Some(path) = &options.service_account_path {
                builder = builder.with_service_account_path(path.to_string_lossy());
            }
            let store = builder.build().map_err(|e| {
                Error::invalid(format!(
                    "cannot configure gcs for {url:?}; check the service account key"
                ))
                .with_source(e)
            })?;
            Ok(with_prefix(store, prefix))
        }
        other => Err(Error::invalid(format!(
            "unsupported blob store scheme {other:?} in {url:?}; {SUPPORTED}"
        ))),
    }
}

/// A store in the folder `dir`, created if missing.
pub(crate) fn local(dir: &FsPath) -> Result<LocalFileSystem> {
    if !dir.is_absolute() {
        return Err(Error::invalid(format!(
            "blob folder {} is not absolute; write file:///absolute/path",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::unavailable(format!(
            "cannot create the blob folder {}; check its permissions",
            dir.display()
        ))
        .with_source(e)
    })?;
    let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| {
        Error::invalid(format!("cannot use {} as the blob folder", dir.display())).with_source(e)
    })?;
    // Remove folders that deletes leave empty, so deleted jobs leave no trace on disk.
    Ok(store.with_automatic_cleanup(true))
}

fn bucket_and_prefix<'a>(url: &str, rest: &'a str) -> Result<(&'a str, &'a str)> {
    let rest = rest.trim_end_matches('/');
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::invalid(format!(
            "invalid blob store url {url:?}: it names no bucket; {SUPPORTED}"
        )));
    }
    key::prefix_path(prefix).map_err(|e| {
        Error::invalid(format!("invalid prefix in blob store url {url:?}")).with_source(e)
    })?;
    Ok((bucket, prefix))
}

fn with_prefix(store: impl ObjectStore, prefix: &str) -> Arc<dyn ObjectStore> {
    if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_core::ErrorKind;

    fn kind_of(url: &str) -> Option<ErrorKind> {
        build(url, &BlobOptions::default()).err().map(|e| e.kind())
    }

    #[test]
    fn rejects_unknown_or_malformed_urls() {
        for bad in [
            "",
            "/tmp/x",
            "ftp://host/x",
            "memory://x",
            "file://relative/path",
            "s3://",
            "s3:///prefix",
            "gs://bucket/a/../b",
            "s3://bucket/a//b",
        ] {
            assert_eq!(kind_of(bad), Some(ErrorKind::InvalidArgument), "{bad:?}");
        }
    }

    #[test]
    fn s3_with_explicit_settings_builds_without_network() {
        let options = BlobOptions {
            endpoint: Some("http://127.0.0.1:1".into()),
            region: Some("us-east-1".into()),
            allow_http: true,
            access_key_id: Some("id".into()),
            secret_access_key: Some("secret".into()),
            ..BlobOptions::default()
        };
        let store = build("s3://bucket/some/prefix", &options);
        assert!(store.is_ok(), "{:?}", store.err());
    }

    #[test]
    fn file_url_creates_the_folder() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let nested = dir.path().join("a/b");
        let url = format!("file://{}", nested.display());
        assert!(build(&url, &BlobOptions::default()).is_ok());
        assert!(nested.is_dir());
    }
}
