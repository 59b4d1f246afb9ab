//! Parameters and answers of the live-log methods of the [`Store`](crate::Store).
//!
//! While an attempt runs, its worker sends its output in chunks numbered from 0 (`seq`); the
//! store keeps them, so every replica and every follower reads the same log. Once the attempt
//! has ended, the log sealer (in the server) writes the chunks as one object and deletes them.

use spillway_core::{JobId, TaskId};

/// Append one chunk of the live log of a task's current attempt, under its lease.
#[derive(Debug, Clone)]
pub struct LogAppend {
    /// The caller's tenant, part of the condition: another tenant's task is not found. `None`
    /// for a caller of every tenant.
    pub tenant: Option<String>,
    /// The task.
    pub task_id: TaskId,
    /// The lease token the caller holds: a stale one is a conflict.
    pub lease_token: String,
    /// The chunk's number within the attempt, from 0. A chunk sent again under the same
    /// number is stored once.
    pub seq: u64,
    /// The bytes.
    pub data: Vec<u8>,
    /// Most bytes kept per attempt: a chunk that would take the attempt's chunks past it is
    /// refused as too large.
    pub max_bytes: u64,
}

/// What [`Store::log_append`](crate::Store::log_append) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogAppended {
    /// The attempt the chunk belongs to.
    pub attempt: u32,
    /// False when a chunk of that number was already stored (a retried send).
    pub stored: bool,
}

/// Read chunks of one attempt's live log, in order.
#[derive(Debug, Clone)]
pub struct LogChunks {
    /// The task (the caller has checked it may read it).
    pub task_id: TaskId,
    /// The attempt, from 1.
    pub attempt: u32,
    /// Only chunks after this number; `None` from the first.
    pub after_seq: Option<u64>,
    /// Most chunks returned.
    pub limit: u32,
}

/// One stored chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// Its number within the attempt.
    pub seq: u64,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// An ended attempt whose live chunks are still stored: the log sealer's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealableLog {
    /// The task's tenant.
    pub tenant: String,
    /// The task's job.
    pub job_id: JobId,
    /// The task's index in its job.
    pub index: u32,
    /// The task.
    pub task_id: TaskId,
    /// The attempt.
    pub attempt: u32,
}

/// Delete every chunk of one attempt (once its log object is written).
#[derive(Debug, Clone, Copy)]
pub struct LogChunksDelete {
    /// The task.
    pub task_id: TaskId,
    /// The attempt.
    pub attempt: u32,
}

/// Why a chunk under a stale lease is refused: the same words from both backends.
pub(crate) fn not_current(task_id: TaskId) -> spillway_core::Error {
    spillway_core::Error::conflict(format!(
        "the lease on task {task_id} is not current: it was reaped, reported or handed to another worker; stop sending its log"
    ))
}

/// Why a chunk past the attempt's limit is refused.
pub(crate) fn over_limit(task_id: TaskId, attempt: u32, max_bytes: u64) -> spillway_core::Error {
    spillway_core::Error::too_large(format!(
        "the log of task {task_id} attempt {attempt} is at its limit of {max_bytes} bytes (max_log_bytes): the rest of its output is dropped; raise the limit on the server for longer logs"
    ))
}

/// A chunk number as a signed database integer.
pub(crate) fn seq_column(seq: u64) -> spillway_core::Result<i64> {
    i64::try_from(seq).map_err(|_| {
        spillway_core::Error::invalid(format!(
            "log chunk number {seq} is out of range: number chunks from 0"
        ))
    })
}
