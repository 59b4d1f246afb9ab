//! Streaming bodies: files to request bodies and answer bodies to files, chunk by chunk.

use std::path::Path;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::Body;
use spillway_core::{Error, Result};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

/// A stream of chunks of one downloaded object.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// A request body that streams the file at `path`, and the file's size.
pub async fn file_body(path: &Path) -> Result<(Body, u64)> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::invalid(format!("could not open {}", path.display())).with_source(e))?;
    open_file_body(file, path).await
}

/// A request body that streams `file`, already open (by a caller that checked what it
/// opened), and its size; `path` names it in errors.
pub async fn open_file_body(file: tokio::fs::File, path: &Path) -> Result<(Body, u64)> {
    let size = file
        .metadata()
        .await
        .map_err(|e| Error::internal(format!("could not stat {}", path.display())).with_source(e))?
        .len();
    Ok((Body::wrap_stream(ReaderStream::new(file)), size))
}

/// Write `stream` to a new file at `dest` (replacing any file there); returns the bytes
/// written. The file is flushed before this returns.
pub async fn stream_to_file(mut stream: ByteStream, dest: &Path) -> Result<u64> {
    let io_err = |what: &str, e: std::io::Error| {
        Error::internal(format!("could not {what} {}", dest.display())).with_source(e)
    };
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| io_err("create", e))?;
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        file.write_all(&chunk)
            .await
            .map_err(|e| io_err("write", e))?;
        written += chunk.len() as u64;
    }
    file.flush().await.map_err(|e| io_err("flush", e))?;
    Ok(written)
}

/// The body of a successful answer as a [`ByteStream`].
pub(crate) fn response_stream(response: reqwest::Response) -> ByteStream {
    let url = response.url().clone();
    Box::pin(
        response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| crate::error::body_read(&url, e))),
    )
}
