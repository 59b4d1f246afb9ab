//! The SQL of the SQLite backend, as plain functions over a connection.
//!
//! Functions that change rows run on the writer thread inside its group transaction; the
//! others run on a read connection. None of them opens or commits a transaction itself.

pub(crate) mod admin;
pub(crate) mod counts;
pub(crate) mod demand;
pub(crate) mod jobs;
pub(crate) mod logs;
pub(crate) mod report;
pub(crate) mod sessions;
pub(crate) mod tasks;
