//! Spillway's object staging: job inputs and task results in object storage.
//!
//! [`BlobStore`] is the seam; [`ObjectBlobs`] implements it once over the `object_store`
//! crate for `file://` (the default, under the data directory), `memory://`, `s3://` and
//! `gs://`. Keys are full object keys built with `spillway_core::keys`; every user-supplied
//! part is validated there, and every key and prefix is checked again here (no `..`, empty
//! segments or leading `/`), so nothing can escape a tenant's prefix. The suite every
//! backend passes is in [`conformance`].

mod backend;
#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
mod error;
mod key;
mod object;
mod options;

pub use object::ObjectBlobs;
pub use options::{BlobOptions, DEFAULT_PART_SIZE, MIN_PART_SIZE};

/// The object path `key` is stored at, after the checks every backend makes before it touches
/// a key; for the fuzz targets and other crates' tests.
#[cfg(feature = "testkit")]
pub fn checked_key(key: &str) -> Result<object_store::path::Path> {
    key::key_path(key)
}

/// The object path `prefix` lists, after the same checks (`None` for the whole store).
#[cfg(feature = "testkit")]
pub fn checked_prefix(prefix: &str) -> Result<Option<object_store::path::Path>> {
    key::prefix_path(prefix)
}

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use spillway_core::Result;
use spillway_core::api::ObjectInfo;

/// A stream of chunks of one object's bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Object storage as Spillway uses it.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Write `body` to `key`, replacing any object there; returns its size. Large bodies are
    /// streamed (multipart where the backend has it), never held whole in memory.
    async fn put(&self, key: &str, body: ByteStream) -> Result<u64>;
    /// Read the object at `key` as a stream; not found if it does not exist.
    async fn get(&self, key: &str) -> Result<ByteStream>;
    /// Every object under `prefix` (a folder, without trailing '/'), with paths relative to it,
    /// sorted by path.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// Delete every object under `prefix`; returns how many were deleted.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64>;
    /// Copy every object under `from` to the same relative path under `to`; returns how many.
    async fn copy_prefix(&self, from: &str, to: &str) -> Result<u64>;
}
