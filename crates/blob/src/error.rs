//! Turning `object_store` errors into Spillway's error categories.

use spillway_core::Error;

/// Map a failure of `op` ("read", "write", ...) on `key` to a Spillway error.
///
/// Missing objects are not found; trouble reaching or authenticating to the store is
/// unavailable (an operator can fix it and a retry may then succeed); the rest is internal.
pub(crate) fn map(op: &str, key: &str, err: object_store::Error) -> Error {
    use object_store::Error as E;
    let error = match &err {
        E::NotFound { .. } => Error::not_found(format!("object {key:?} does not exist")),
        E::Generic { store, .. } => Error::unavailable(format!(
            "could not {op} object {key:?} in the {store} object store; check that it is reachable"
        )),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Error::unavailable(format!(
            "the object store refused to {op} object {key:?}; check its credentials and permissions"
        )),
        _ => Error::internal(format!("could not {op} object {key:?}")),
    };
    error.with_source(err)
}

/// Map a failure reported through `std::io` (the upload writer does), recovering the
/// `object_store` error inside it where there is one.
pub(crate) fn map_io(op: &str, key: &str, err: std::io::Error) -> Error {
    if !err
        .get_ref()
        .is_some_and(|inner| inner.is::<object_store::Error>())
    {
        return Error::unavailable(format!("could not {op} object {key:?}")).with_source(err);
    }
    match err
        .into_inner()
        .map(|inner| inner.downcast::<object_store::Error>())
    {
        Some(Ok(store_err)) => map(op, key, *store_err),
        // Unreachable: the check above saw an object_store error inside.
        _ => Error::internal(format!("could not {op} object {key:?}")),
    }
}

/// Whether `err` comes from walking into something on local disk that is not a folder.
pub(crate) fn is_not_a_directory(err: &object_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::NotADirectory;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_core::ErrorKind;

    #[test]
    fn not_found_names_the_key() {
        let err = map(
            "read",
            "t/inputs/j/a",
            object_store::Error::NotFound {
                path: "t/inputs/j/a".into(),
                source: "gone".into(),
            },
        );
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(
            err.message().contains("\"t/inputs/j/a\""),
            "{}",
            err.message()
        );
    }

    #[test]
    fn transport_trouble_is_retryable() {
        let err = map(
            "write",
            "k",
            object_store::Error::Generic {
                store: "S3",
                source: "connection refused".into(),
            },
        );
        assert!(err.is_retryable());
        assert!(err.message().contains("S3"), "{}", err.message());
    }

    #[test]
    fn io_wrapped_store_errors_keep_their_kind() {
        let wrapped = std::io::Error::other(object_store::Error::InvalidPath {
            source: object_store::path::Error::EmptySegment {
                path: "a//b".into(),
            },
        });
        assert_eq!(map_io("write", "k", wrapped).kind(), ErrorKind::Internal);
        let plain = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe");
        assert_eq!(map_io("write", "k", plain).kind(), ErrorKind::Unavailable);
        let missing = std::io::Error::other(object_store::Error::NotFound {
            path: "k".into(),
            source: "gone".into(),
        });
        assert_eq!(map_io("write", "k", missing).kind(), ErrorKind::NotFound);
    }
}
