//! Spillway's domain: the nouns (tenants, queues, jobs, tasks, attempts, workers, tokens),
//! the task lifecycle, retry policy, validation and the wire types of the HTTP API.
//!
//! Nothing in this crate performs IO. Time comes in as a value (see [`clock`]) so every rule
//! here can be tested by moving a clock rather than waiting.

pub mod api;
pub mod auth;
pub mod backoff;
pub mod clock;
pub mod error;
pub mod keys;
pub mod model;
pub mod names;
pub mod retry;
pub mod state;
pub mod trace_context;

pub use error::{Error, ErrorKind, Result};

/// A point in time, always UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// A job's id: a UUIDv7 in its hyphenated text form, so ids sort by creation time.
pub type JobId = String;

/// A task's id: a number unique across the whole deployment.
pub type TaskId = i64;
