//! Mapping PostgreSQL and pool errors onto [`spillway_core::Error`] kinds.

use deadpool_postgres::PoolError;
use spillway_core::Error;
use tokio_postgres::error::SqlState;

/// Turn a driver error into a store error: a unique violation is a conflict, a lost or refused
/// connection is unavailable (worth retrying), anything else is internal. `context` says what
/// was being done, e.g. "could not lease tasks".
pub(crate) fn db(context: &str, err: tokio_postgres::Error) -> Error {
    let kind = match err.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => return conflict(context, err),
        Some(code) if is_unavailable_code(code) => Kind::Unavailable,
        Some(_) => Kind::Internal,
        None if is_connection_failure(&err) => Kind::Unavailable,
        // No SQLSTATE and not the connection: a parameter or column type mismatch, a bug.
        None => Kind::Internal,
    };
    match kind {
        Kind::Unavailable => Error::unavailable(format!(
            "{context}: postgresql is unreachable or shutting down; retry later"
        ))
        .with_source(err),
        Kind::Internal => {
            Error::internal(format!("{context}: postgresql refused the statement")).with_source(err)
        }
    }
}

/// Shorthand for `map_err(|e| db(context, e))`.
pub(crate) fn ctx(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |err| db(context, err)
}

/// A pool that cannot hand out a connection means the database is unreachable or saturated.
pub(crate) fn pool(err: PoolError) -> Error {
    match err {
        PoolError::Backend(err) => db("could not open a postgresql connection", err),
        other => Error::unavailable(
            "could not get a postgresql connection from the pool: the database is slow or unreachable; retry later",
        )
        .with_source(other),
    }
}

/// A value read from the database that the domain does not accept (a corrupt row).
pub(crate) fn corrupt(what: &str, err: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::internal(format!("stored {what} is not valid")).with_source(err)
}

enum Kind {
    Unavailable,
    Internal,
}

fn conflict(context: &str, err: tokio_postgres::Error) -> Error {
    let constraint = err
        .as_db_error()
        .and_then(|e| e.constraint())
        .unwrap_or("unique")
        .to_string();
    Error::conflict(format!(
        "{context}: it already exists (constraint {constraint})"
    ))
    .with_source(err)
}

fn is_unavailable_code(code: &SqlState) -> bool {
    // Class 08: connection exception; 57P0x: operator intervention (shutdown, crash);
    // 53300: too many connections; 40001/40P01: serialization failure and deadlock, which a
    // retry resolves.
    code.code().starts_with("08")
        || code.code().starts_with("57P0")
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
}

/// Whether an error without SQLSTATE came from the connection rather than from this side.
fn is_connection_failure(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    if std::error::Error::source(err).is_some_and(|s| s.is::<std::io::Error>()) {
        return true;
    }
    // The driver exposes connect failures and timeouts only through their messages.
    let text = err.to_string();
    [
        "error connecting to server",
        "timeout waiting for server",
        "error communicating with the server",
    ]
    .iter()
    .any(|prefix| text.starts_with(prefix))
}
