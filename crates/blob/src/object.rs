//! [`ObjectBlobs`]: the one [`BlobStore`] implementation, over the `object_store` crate.

use std::fmt;
use std::path::Path as FsPath;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use spillway_core::api::ObjectInfo;
use spillway_core::{Error, Result};
use tokio::io::AsyncWriteExt;

use crate::options::{DEFAULT_PART_SIZE, MIN_PART_SIZE};
use crate::{BlobOptions, BlobStore, ByteStream, backend, error, key};

/// Parts of one upload in flight at once; with the part being filled, this bounds the memory
/// one upload holds to `(MAX_PARTS_IN_FLIGHT + 1) * part_size`.
const MAX_PARTS_IN_FLIGHT: usize = 4;

/// Copies in flight at once during [`BlobStore::copy_prefix`].
const MAX_COPIES_IN_FLIGHT: usize = 8;

/// A [`BlobStore`] over any `object_store` backend.
#[derive(Clone)]
pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    part_size: usize,
    /// Where the objects live, for logs (a URL holds no secrets: they come in options).
    location: String,
}

impl fmt::Debug for ObjectBlobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBlobs")
            .field("location", &self.location)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

impl ObjectBlobs {
    /// Open the store that `url` names:
    ///
    /// - `file:///absolute/path`: a folder on local disk, created if missing;
    /// - `memory://`: a fresh, empty in-process store (for tests);
    /// - `s3://bucket[/prefix]`: S3 or an S3-compatible service (see [`BlobOptions::endpoint`]);
    /// - `gs://bucket[/prefix]`: Google Cloud Storage.
    ///
    /// With a prefix, every key lives below it. Credentials come from `options`, then from the
    /// backend's usual environment variables. Nothing is contacted until the first call.
    pub fn from_url(url: &str, options: &BlobOptions) -> Result<ObjectBlobs> {
        if options.part_size < MIN_PART_SIZE {
            return Err(Error::invalid(format!(
                "blob part size {} is below the minimum of {MIN_PART_SIZE} bytes (5 MiB) that S3 and GCS accept",
                options.part_size
            )));
        }
        let store = backend::build(url, options)?;
        tracing::debug!(url, part_size = options.part_size, "opened blob store");
        Ok(ObjectBlobs {
            store,
            part_size: options.part_size,
            location: url.to_owned(),
        })
    }

    /// A store in the folder `dir` on local disk, created if missing.
    pub fn local(dir: &FsPath) -> Result<ObjectBlobs> {
        let store = backend::local(dir)?;
        Ok(ObjectBlobs {
            store: Arc::new(store),
            part_size: DEFAULT_PART_SIZE,
            location: format!("file://{}", dir.display()),
        })
    }

    /// Where the objects live, as given (for logs and diagnostics).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Every object under `prefix` with its full path.
    async fn list_full(&self, prefix: Option<&Path>, shown: &str) -> Result<Vec<(Path, u64)>> {
        let mut found = Vec::new();
        let mut listing = self.store.list(prefix);
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(meta) => meta,
                // On local disk, a prefix that runs through a file (`a/file/x`) is a walk
                // into a non-folder; like a bucket, that has nothing under it.
                Err(e) if error::is_not_a_directory(&e) => return Ok(Vec::new()),
                Err(e) => return Err(error::map("list", shown, e)),
            };
            // Segment-wise prefixes already exclude `a/bc` from `a/b`; check anyway, because
            // a leak here would hand one job another job's files.
            if key::relative(&meta.location, prefix).is_some() {
                found.push((meta.location, meta.size));
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl BlobStore for ObjectBlobs {
    async fn put(&self, key: &str, mut body: ByteStream) -> Result<u64> {
        let path = key::key_path(key)?;
        let mut writer = BufWriter::with_capacity(Arc::clone(&self.store), path, self.part_size)
            .with_max_concurrency(MAX_PARTS_IN_FLIGHT);
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let written = match chunk {
                Ok(chunk) => {
                    size += chunk.len() as u64;
                    writer
                        .put(chunk)
                        .await
                        .map_err(|e| error::map("write", key, e))
                }
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                // Abort so no half-written multipart upload lingers in the bucket.
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key, error = %abort, "could not abort a failed upload");
                }
                return Err(e);
            }
        }
        writer
            .shutdown()
            .await
            .map_err(|e| error::map_io("write", key, e))?;
        tracing::debug!(key, size, "stored object");
        Ok(size)
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        let path = key::key_path(key)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| error::map("read", key, e))?;
        let key = key.to_owned();
        Ok(Box::pin(
            result
                .into_stream()
                .map_err(move |e| error::map("read", &key, e)),
        ))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let prefix_path = key::prefix_path(prefix)?;
        let mut objects: Vec<ObjectInfo> = self
            .list_full(prefix_path.as_ref(), prefix)
            .await?
            .into_iter()
            .filter_map(|(location, size)| {
                key::relative(&location, prefix_path.as_ref()).map(|path| ObjectInfo {
                    path: path.to_owned(),
                    size,
                })
            })
            .collect();
        objects.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(objects)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let Some(prefix_path) = key::prefix_path(prefix)? else {
            return Err(Error::invalid(
                "refusing to delete with an empty prefix, which would delete every object",
            ));
        };
        let found = self.list_full(Some(&prefix_path), prefix).await?;
        let locations =
            futures::stream::iter(found.into_iter().map(|(location, _)| Ok(location))).boxed();
        let mut deleted = 0u64;
        let mut results = self.store.delete_stream(locations);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => deleted += 1,
                // Someone else deleted it meanwhile: the outcome is the one asked for.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(error::map("delete", prefix, e)),
            }
        }
        tracing::debug!(prefix, deleted, "deleted objects");
        Ok(deleted)
    }

    async fn copy_prefix(&self, from: &str, to: &str) -> Result<u64> {
        let (Some(from_path), Some(to_path)) = (key::prefix_path(from)?, key::prefix_path(to)?)
        else {
            return Err(Error::invalid(format!(
                "cannot copy from {from:?} to {to:?}: both prefixes must be non-empty"
            )));
        };
        if from_path == to_path {
            return Err(Error::invalid(format!(
                "cannot copy prefix {from:?} onto itself"
            )));
        }
        // The listing is taken first, so copying into a folder below `from` cannot loop.
        let found = self.list_full(Some(&from_path), from).await?;
        let copies = found
            .into_iter()
            .map(|(source, _)| {
                let rel = key::relative(&source, Some(&from_path)).unwrap_or_default();
                let target = key::key_path(&format!("{to}/{rel}"))?;
                Ok((source, target))
            })
            .collect::<Result<Vec<_>>>()?;
        let copied = futures::stream::iter(copies)
            .map(|(source, target)| async move {
                self.store
                    .copy(&source, &target)
                    .await
                    .map_err(|e| error::map("copy", source.as_ref(), e))
            })
            .buffer_unordered(MAX_COPIES_IN_FLIGHT)
            .try_fold(0u64, |n, ()| async move { Ok(n + 1) })
            .await?;
        tracing::debug!(from, to, copied, "copied objects");
        Ok(copied)
    }
}
