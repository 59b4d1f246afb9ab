//! The one error type of the library crates, sorted into the categories that callers act on.

use std::fmt;

/// What kind of failure an [`Error`] is; the server maps each to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller sent something malformed or out of range (HTTP 400 / 422).
    InvalidArgument,
    /// The thing named does not exist, or the caller may not see it (HTTP 404).
    NotFound,
    /// The request conflicts with the current state, such as a stale lease token (HTTP 409).
    Conflict,
    /// The caller did not prove who they are (HTTP 401).
    Unauthenticated,
    /// The caller is known but their role does not allow this (HTTP 403).
    PermissionDenied,
    /// The request is larger than allowed (HTTP 413).
    TooLarge,
    /// A dependency (database, object store) is unreachable for now; retrying may help (HTTP 503).
    Unavailable,
    /// A bug or an unexpected condition (HTTP 500).
    Internal,
}

impl ErrorKind {
    /// A stable, machine-readable code used in problem documents and metrics labels.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error with a category, a message for people and an optional cause.
///
/// Messages are lowercase, name the offending value and say how to fix it where that is known.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Shorthand for results in the library crates.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying cause; it is printed once, by whoever prints the chain.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The caller sent something invalid.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// The named thing does not exist (or is not visible to the caller).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// The request conflicts with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// A dependency is unavailable for now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// An unexpected internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The caller is not authenticated.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, message)
    }

    /// The caller's role or tenant does not allow this.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, message)
    }

    /// The request is too large.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, message)
    }

    /// This error's category.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message for people, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable)
    }
}
