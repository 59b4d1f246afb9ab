//! The conformance suite every [`BlobStore`] backend must pass.
//!
//! [`blob_conformance_tests!`](crate::blob_conformance_tests) expands to one `#[tokio::test]`
//! per case. Its argument is an async function returning `Option<Arc<dyn BlobStore>>`: a fresh,
//! empty store for each call, or `None` after printing why the backend is skipped. Each case
//! below is public so a failing one can be run on its own.
//!
//! These are test helpers: they panic with a message on any failed expectation.

use bytes::Bytes;
use futures::StreamExt;
use spillway_core::keys::{MAX_KEY_LEN, MAX_SEGMENT_LEN};
use spillway_core::{Error, ErrorKind, Result};

use crate::{BlobStore, ByteStream};

/// Expand to one `#[tokio::test]` per conformance case for the stores that `$make` opens.
#[macro_export]
macro_rules! blob_conformance_tests {
    ($make:expr) => {
        $crate::blob_conformance_tests!(@cases $make;
            put_get_small,
            put_get_empty,
            put_get_large_in_chunks,
            put_overwrites,
            get_missing_is_not_found,
            list_is_relative_sorted_and_nested,
            list_does_not_leak_sibling_prefixes,
            list_of_empty_prefix_is_empty,
            list_with_no_prefix_sees_everything,
            delete_prefix_leaves_siblings,
            copy_prefix_copies_everything_below,
            invalid_keys_are_rejected,
            unusual_characters_round_trip,
            failed_body_leaves_no_object,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test]
            async fn $case() {
                let Some(blobs) = ($make)().await else {
                    return;
                };
                $crate::conformance::$case(&*blobs).await;
            }
        )*
    };
}

/// Size of the large body: several parts at the minimum part size.
const LARGE_BODY: usize = 11 * 1024 * 1024;
/// Size of each chunk the large body arrives in.
const CHUNK: usize = 1024 * 1024;

/// A body that yields `chunks` in order.
pub fn body(chunks: Vec<Bytes>) -> ByteStream {
    Box::pin(futures::stream::iter(chunks.into_iter().map(Ok)))
}

/// A body of one chunk.
pub fn one_chunk(data: &'static [u8]) -> ByteStream {
    body(vec![Bytes::from_static(data)])
}

/// Read a whole object, panicking with the key on failure.
pub async fn read_all(blobs: &dyn BlobStore, key: &str) -> Vec<u8> {
    let mut stream = ok(blobs.get(key).await, "get", key);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&ok(chunk, "read chunk of", key));
    }
    out
}

async fn put(blobs: &dyn BlobStore, key: &str, data: &'static [u8]) {
    let size = ok(blobs.put(key, one_chunk(data)).await, "put", key);
    assert_eq!(size, data.len() as u64, "put {key} reported a wrong size");
}

async fn paths(blobs: &dyn BlobStore, prefix: &str) -> Vec<String> {
    ok(blobs.list(prefix).await, "list", prefix)
        .into_iter()
        .map(|o| o.path)
        .collect()
}

fn ok<T>(result: Result<T>, op: &str, key: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!(
            "{op} {key:?} failed: {e} ({:?}): {:?}",
            e.kind(),
            std::error::Error::source(&e)
        ),
    }
}

fn kind<T>(result: Result<T>) -> Option<ErrorKind> {
    result.err().as_ref().map(Error::kind)
}

fn pattern(len: usize) -> Vec<u8> {
    // Not a multiple of any part size, so a misplaced part would show.
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A small body comes back byte for byte.
pub async fn put_get_small(blobs: &dyn BlobStore) {
    put(blobs, "t/inputs/j/a.txt", b"hello, world").await;
    assert_eq!(read_all(blobs, "t/inputs/j/a.txt").await, b"hello, world");
}

/// An empty body makes an empty object, which exists.
pub async fn put_get_empty(blobs: &dyn BlobStore) {
    let size = ok(
        blobs.put("t/empty", body(Vec::new())).await,
        "put",
        "t/empty",
    );
    assert_eq!(size, 0);
    assert!(read_all(blobs, "t/empty").await.is_empty());
    let listed = ok(blobs.list("t").await, "list", "t");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].size, 0);
}

/// A multi-MiB body sent in many chunks (a multipart upload) comes back whole and in order.
pub async fn put_get_large_in_chunks(blobs: &dyn BlobStore) {
    let data = pattern(LARGE_BODY);
    let chunks = data.chunks(CHUNK).map(Bytes::copy_from_slice).collect();
    let size = ok(
        blobs.put("t/big.bin", body(chunks)).await,
        "put",
        "t/big.bin",
    );
    assert_eq!(size, LARGE_BODY as u64);
    let back = read_all(blobs, "t/big.bin").await;
    assert_eq!(back.len(), data.len());
    assert!(
        back == data,
        "the large body came back with different bytes"
    );
    let listed = ok(blobs.list("t").await, "list", "t");
    assert_eq!(listed.first().map(|o| o.size), Some(LARGE_BODY as u64));
}

/// A second put to the same key replaces the object.
pub async fn put_overwrites(blobs: &dyn BlobStore) {
    put(blobs, "t/k", b"the first, longer version").await;
    put(blobs, "t/k", b"second").await;
    assert_eq!(read_all(blobs, "t/k").await, b"second");
    let listed = ok(blobs.list("t").await, "list", "t");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].size, 6);
}

/// Reading a missing object is not found, and the message names the key.
pub async fn get_missing_is_not_found(blobs: &dyn BlobStore) {
    let err = match blobs.get("t/inputs/j/missing.txt").await {
        Ok(_) => panic!("get of a missing object succeeded"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("t/inputs/j/missing.txt"), "{err}");
}

/// Listing gives paths relative to the prefix, nested ones included, sorted, with sizes.
pub async fn list_is_relative_sorted_and_nested(blobs: &dyn BlobStore) {
    for key in [
        "t/job/z.txt",
        "t/job/d/e/f.txt",
        "t/job/a.txt",
        "t/job/d/b.txt",
    ] {
        put(blobs, key, b"12345").await;
    }
    let listed = ok(blobs.list("t/job").await, "list", "t/job");
    let got: Vec<(&str, u64)> = listed.iter().map(|o| (o.path.as_str(), o.size)).collect();
    assert_eq!(
        got,
        [("a.txt", 5), ("d/b.txt", 5), ("d/e/f.txt", 5), ("z.txt", 5)]
    );
    assert_eq!(paths(blobs, "t/job/d").await, ["b.txt", "e/f.txt"]);
}

/// `a/b` lists neither `a/bc/...` nor `a/b.txt`.
pub async fn list_does_not_leak_sibling_prefixes(blobs: &dyn BlobStore) {
    for key in [
        "a/b/in.txt",
        "a/bc/out.txt",
        "a/b.txt",
        "a/b-c/out.txt",
        "ab/out.txt",
    ] {
        put(blobs, key, b"x").await;
    }
    assert_eq!(paths(blobs, "a/b").await, ["in.txt"]);
    assert_eq!(paths(blobs, "a/bc").await, ["out.txt"]);
}

/// A prefix with nothing under it lists nothing, without error.
pub async fn list_of_empty_prefix_is_empty(blobs: &dyn BlobStore) {
    assert!(paths(blobs, "nothing/here").await.is_empty());
    put(blobs, "some/thing", b"x").await;
    assert!(paths(blobs, "some/thing/else").await.is_empty());
    assert!(paths(blobs, "some/thin").await.is_empty());
}

/// The empty prefix lists the whole store, with full keys.
pub async fn list_with_no_prefix_sees_everything(blobs: &dyn BlobStore) {
    assert!(
        paths(blobs, "").await.is_empty(),
        "a fresh store is not empty"
    );
    put(blobs, "t2/x", b"x").await;
    put(blobs, "t1/y/z", b"x").await;
    assert_eq!(paths(blobs, "").await, ["t1/y/z", "t2/x"]);
}

/// Deleting a prefix removes everything below it and nothing beside it.
pub async fn delete_prefix_leaves_siblings(blobs: &dyn BlobStore) {
    for key in ["a/b/1", "a/b/2/3", "a/bc/4", "a/b.txt"] {
        put(blobs, key, b"x").await;
    }
    assert_eq!(ok(blobs.delete_prefix("a/b").await, "delete", "a/b"), 2);
    assert!(paths(blobs, "a/b").await.is_empty());
    assert_eq!(read_all(blobs, "a/bc/4").await, b"x");
    assert_eq!(read_all(blobs, "a/b.txt").await, b"x");
    assert_eq!(kind(blobs.get("a/b/1").await), Some(ErrorKind::NotFound));
    // Deleting again is not an error: there is simply nothing left.
    assert_eq!(ok(blobs.delete_prefix("a/b").await, "delete", "a/b"), 0);
    assert_eq!(
        kind(blobs.delete_prefix("").await),
        Some(ErrorKind::InvalidArgument),
        "an empty prefix must not delete the whole store"
    );
    assert_eq!(paths(blobs, "a").await, ["b.txt", "bc/4"]);
}

/// Copying a prefix copies every object below it to the same relative path, leaving the source.
pub async fn copy_prefix_copies_everything_below(blobs: &dyn BlobStore) {
    put(blobs, "up/u1/a.txt", b"aaa").await;
    put(blobs, "up/u1/d/b.txt", b"bb").await;
    put(blobs, "up/u10/c.txt", b"c").await;
    let copied = ok(
        blobs.copy_prefix("up/u1", "t/inputs/j1").await,
        "copy",
        "up/u1",
    );
    assert_eq!(copied, 2);
    assert_eq!(paths(blobs, "t/inputs/j1").await, ["a.txt", "d/b.txt"]);
    assert_eq!(read_all(blobs, "t/inputs/j1/d/b.txt").await, b"bb");
    assert_eq!(paths(blobs, "up/u1").await, ["a.txt", "d/b.txt"]);
    let none = ok(blobs.copy_prefix("up/none", "t/x").await, "copy", "up/none");
    assert_eq!(none, 0);
    assert_eq!(
        kind(blobs.copy_prefix("up/u1", "up/u1").await),
        Some(ErrorKind::InvalidArgument)
    );
    assert_eq!(
        kind(blobs.copy_prefix("", "t/y").await),
        Some(ErrorKind::InvalidArgument)
    );
}

/// Keys and prefixes that could escape their folder are rejected before any IO.
pub async fn invalid_keys_are_rejected(blobs: &dyn BlobStore) {
    let bad = [
        "",
        "/abs",
        "../x",
        "a/../../x",
        "a/./b",
        "a//b",
        "a/",
        "a\\b",
        "a\nb",
    ];
    assert_eq!(
        kind(blobs.put("t/partial#1", one_chunk(b"x")).await),
        Some(ErrorKind::InvalidArgument),
        "put of a name that local disk reserves for partial uploads"
    );
    // Names local disk cannot hold are invalid on every backend, never an IO error there.
    let long_name = format!("t/{}", "n".repeat(MAX_SEGMENT_LEN + 1));
    let long_key = format!("t/{}", "k/".repeat(MAX_KEY_LEN / 2));
    for key in [long_name.as_str(), long_key.trim_end_matches('/')] {
        assert_eq!(
            kind(blobs.put(key, one_chunk(b"x")).await),
            Some(ErrorKind::InvalidArgument),
            "put of a key with a name over {MAX_SEGMENT_LEN} bytes or over {MAX_KEY_LEN} bytes in all"
        );
    }
    let longest = format!("t/{}", "n".repeat(MAX_SEGMENT_LEN));
    blobs
        .put(&longest, one_chunk(b"x"))
        .await
        .expect("a name of the longest length is stored");
    blobs.delete_prefix("t").await.expect("clean up");
    for key in bad {
        assert_eq!(
            kind(blobs.put(key, one_chunk(b"x")).await),
            Some(ErrorKind::InvalidArgument),
            "put {key:?}"
        );
        assert_eq!(
            kind(blobs.get(key).await),
            Some(ErrorKind::InvalidArgument),
            "get {key:?}"
        );
        if !key.is_empty() {
            assert_eq!(
                kind(blobs.list(key).await),
                Some(ErrorKind::InvalidArgument),
                "list {key:?}"
            );
        }
        assert_eq!(
            kind(blobs.delete_prefix(key).await),
            Some(ErrorKind::InvalidArgument),
            "delete_prefix {key:?}"
        );
        assert_eq!(
            kind(blobs.copy_prefix("ok", key).await),
            Some(ErrorKind::InvalidArgument),
            "copy_prefix to {key:?}"
        );
        assert_eq!(
            kind(blobs.copy_prefix(key, "ok").await),
            Some(ErrorKind::InvalidArgument),
            "copy_prefix from {key:?}"
        );
    }
    assert!(
        paths(blobs, "").await.is_empty(),
        "a rejected put wrote something"
    );
}

/// Spaces, punctuation and non-ASCII letters in keys survive put, list and get. (A name
/// ending in '#' and digits is refused everywhere: local disk reserves it.)
pub async fn unusual_characters_round_trip(blobs: &dyn BlobStore) {
    let names = [
        "with space (1) & 100%.txt",
        "hash#1.txt",
        "ünïcødé/名前.csv",
        "a+b=c;d,e@f~g.bin",
    ];
    for name in names {
        let key = format!("t/odd/{name}");
        let size = ok(blobs.put(&key, one_chunk(b"odd")).await, "put", &key);
        assert_eq!(size, 3);
        assert_eq!(read_all(blobs, &key).await, b"odd", "{key}");
    }
    let mut expected = names.to_vec();
    expected.sort_unstable();
    assert_eq!(paths(blobs, "t/odd").await, expected);
}

/// When the body fails midway, put returns that error and no object appears.
pub async fn failed_body_leaves_no_object(blobs: &dyn BlobStore) {
    let chunks = (0..3)
        .map(|_| Ok(Bytes::from(pattern(2 * CHUNK))))
        .chain(std::iter::once(Err(Error::too_large(
            "body is over the test's limit",
        ))));
    let stream: ByteStream = Box::pin(futures::stream::iter(chunks));
    assert_eq!(
        kind(blobs.put("t/partial.bin", stream).await),
        Some(ErrorKind::TooLarge)
    );
    assert_eq!(
        kind(blobs.get("t/partial.bin").await),
        Some(ErrorKind::NotFound)
    );
    assert!(paths(blobs, "t").await.is_empty());
}
