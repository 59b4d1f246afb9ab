//! Live logs, once: a worker's chunks while its task runs, the whole log of an attempt, and
//! following one as it grows.
//!
//! While an attempt runs its chunks live in the store (every replica reads the same ones);
//! once it has ended, the log sealer ([`crate::services::log_sealer`]) writes them as one
//! object, `<tenant>/logs/<job>/<index>/<attempt>.log`, and only then deletes them. A reader
//! therefore takes the chunks after the last one it had and, once they are gone, the rest of
//! the object: it never misses or repeats a byte, whichever replica sealed the log and when.
//! Attempts from before live logs have neither; their log is the tail kept in the database.

use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use spillway_blob::ByteStream;
use spillway_core::auth::Action;
use spillway_core::keys::log_key;
use spillway_core::model::{Attempt, MAX_LOG_CHUNK_BYTES, Task};
use spillway_core::{Error, ErrorKind, Result, TaskId};
use spillway_store::{LogAppend, LogChunks};

use super::Caller;
use crate::state::AppState;

/// Chunks read from the store at once (at most 4 MiB of 64 KiB chunks).
pub const READ_PAGE: u32 = 64;
/// How often a follower looks for new chunks and for the attempt's end.
pub const FOLLOW_POLL: Duration = Duration::from_millis(250);
/// Bytes a worker may send past `max_log_bytes`: its closing note saying how much it dropped.
pub const LIMIT_NOTE_BYTES: u64 = 4096;

/// Append chunk `seq` of the live log of task `id`'s current attempt, under `lease_token`:
/// not found for another tenant's task, a conflict when the lease is not current, too large
/// past the chunk size or the attempt's `max_log_bytes`.
pub async fn append(
    state: &AppState,
    caller: Caller<'_>,
    id: TaskId,
    lease_token: String,
    seq: u64,
    data: Vec<u8>,
) -> Result<()> {
    caller.require(Action::Work)?;
    if data.len() > MAX_LOG_CHUNK_BYTES {
        return Err(Error::too_large(format!(
            "log chunk of {} bytes is over the limit of {MAX_LOG_CHUNK_BYTES} bytes: send smaller chunks",
            data.len()
        )));
    }
    state
        .store
        .log_append(LogAppend {
            tenant: caller.principal.tenant.clone(),
            task_id: id,
            lease_token,
            seq,
            data,
            max_bytes: state
                .config
                .max_log_bytes
                .0
                .saturating_add(LIMIT_NOTE_BYTES),
        })
        .await?;
    Ok(())
}

/// Attempt `attempt` (from 1) of `attempts`, or the latest; not found with how to see them.
pub fn pick_attempt(id: TaskId, attempts: Vec<Attempt>, attempt: Option<u32>) -> Result<Attempt> {
    match attempt {
        Some(n) => attempts
            .into_iter()
            .find(|a| a.attempt == n)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "task {id} has no attempt {n}: see GET /v1/tasks/{id} for its attempts"
                ))
            }),
        None => attempts
            .into_iter()
            .max_by_key(|a| a.attempt)
            .ok_or_else(|| {
                Error::not_found(format!("task {id} has not run yet, so it has no log"))
            }),
    }
}

/// The task and the attempt asked for, if the caller may read the task.
async fn attempt_of(
    state: &AppState,
    caller: Caller<'_>,
    id: TaskId,
    attempt: Option<u32>,
) -> Result<(Task, Attempt)> {
    caller.require(Action::Read)?;
    let scope = caller.scope()?;
    let task = state.store.task_get(scope.as_deref(), id).await?;
    let attempts = state.store.task_attempts(scope.as_deref(), id).await?;
    Ok((task, pick_attempt(id, attempts, attempt)?))
}

/// Where a reader of one attempt's log is: the last chunk it had and the bytes it has had.
struct Cursor {
    task_id: TaskId,
    attempt: u32,
    key: String,
    after: Option<u64>,
    sent: u64,
    /// The sealed object has been read: nothing more can come.
    done: bool,
}

impl Cursor {
    fn new(task: &Task, attempt: u32) -> Self {
        Self {
            task_id: task.id,
            attempt,
            key: log_key(&task.tenant, &task.job_id, task.index, attempt),
            after: None,
            sent: 0,
            done: false,
        }
    }

    /// The bytes there are now after what this cursor had: the next chunks or, when the
    /// attempt had `ended` before this call and its chunks are gone, the rest of the sealed
    /// object. `None` when there is nothing new now (nor ever, once ended).
    async fn next(&mut self, state: &AppState, ended: bool) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        let chunks = state
            .store
            .log_chunks(LogChunks {
                task_id: self.task_id,
                attempt: self.attempt,
                after_seq: self.after,
                limit: READ_PAGE,
            })
            .await?;
        if let Some(last) = chunks.last() {
            self.after = Some(last.seq);
            let data: Vec<u8> = chunks.into_iter().flat_map(|c| c.data).collect();
            self.sent += data.len() as u64;
            return Ok(Some(Bytes::from(data)));
        }
        if !ended {
            return Ok(None);
        }
        self.done = true;
        let object = match state.blobs.get(&self.key).await {
            Ok(object) => object,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let rest = skip(object, self.sent).await?;
        self.sent += rest.len() as u64;
        Ok((!rest.is_empty()).then_some(rest))
    }
}

/// The bytes of `object` after its first `skip` bytes.
async fn skip(mut object: ByteStream, mut skip: u64) -> Result<Bytes> {
    use futures::StreamExt;
    let mut rest = Vec::new();
    while let Some(part) = object.next().await {
        let part = part?;
        let len = part.len() as u64;
        if skip >= len {
            skip -= len;
            continue;
        }
        // skip < len, which is a usize.
        rest.extend_from_slice(&part[usize::try_from(skip).unwrap_or(0)..]);
        skip = 0;
    }
    Ok(Bytes::from(rest))
}

/// The whole log of attempt `attempt` (default the latest) of task `id` as it is now: the
/// sealed object of an ended attempt, the chunks so far of a running one, the database's
/// tail for an attempt from before live logs.
pub async fn whole(
    state: &AppState,
    caller: Caller<'_>,
    id: TaskId,
    attempt: Option<u32>,
) -> Result<ByteStream> {
    let (task, attempt) = attempt_of(state, caller, id, attempt).await?;
    let ended = attempt.ended_at.is_some();
    let mut cursor = Cursor::new(&task, attempt.attempt);
    if ended {
        match state.blobs.get(&cursor.key).await {
            Ok(object) => return Ok(object),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    // Read the first page now, so a failing store is an error answer, not a cut body.
    let first = cursor.next(state, ended).await?;
    if first.is_none() && ended {
        return Ok(Box::pin(futures::stream::iter([Ok(Bytes::from(
            attempt.log_tail,
        ))])));
    }
    let state = state.clone();
    let rest = futures::stream::unfold(
        (cursor, first, state),
        move |(mut cursor, first, state)| async move {
            if let Some(bytes) = first {
                return Some((Ok(bytes), (cursor, None, state)));
            }
            match cursor.next(&state, ended).await {
                Ok(Some(bytes)) => Some((Ok(bytes), (cursor, None, state))),
                Ok(None) => None,
                Err(e) => Some((Err(e), (cursor_done(cursor), None, state))),
            }
        },
    );
    Ok(Box::pin(rest))
}

fn cursor_done(mut cursor: Cursor) -> Cursor {
    cursor.done = true;
    cursor
}

/// What a follower of a log is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Followed {
    /// More of the log (as received: invalid UTF-8 is the reader's to show).
    Output(Bytes),
    /// The attempt ended with this outcome; nothing more comes.
    End {
        /// The attempt.
        attempt: u32,
        /// How it ended (`succeeded`, `failed`, …).
        outcome: String,
    },
}

/// Follow attempt `attempt` (default the latest at the call) of task `id`: what its log
/// holds now, then what arrives (looked for every [`FOLLOW_POLL`], through the store, so a
/// worker writing through another replica is seen too), then its end. The caller's right to
/// read the task is checked first and at every look; the stream ends with the server too.
pub async fn follow(
    state: &AppState,
    caller: Caller<'_>,
    id: TaskId,
    attempt: Option<u32>,
) -> Result<impl Stream<Item = Result<Followed>> + Send + use<>> {
    let (task, picked) = attempt_of(state, caller, id, attempt).await?;
    let scope = caller.scope()?;
    struct Follow {
        state: AppState,
        scope: Option<String>,
        cursor: Cursor,
        task_id: TaskId,
        attempt: u32,
        tail: Option<String>,
        first: bool,
        over: bool,
    }
    let follow = Follow {
        state: state.clone(),
        scope,
        cursor: Cursor::new(&task, picked.attempt),
        task_id: id,
        attempt: picked.attempt,
        tail: Some(picked.log_tail),
        first: true,
        over: false,
    };
    Ok(futures::stream::unfold(follow, |mut f| async move {
        if f.over {
            return None;
        }
        loop {
            if !f.first {
                tokio::select! {
                    () = f.state.shared.shutdown.cancelled() => return None,
                    () = tokio::time::sleep(FOLLOW_POLL) => {}
                }
            }
            f.first = false;
            // The attempt's end is read before its chunks: everything sent before it ended
            // is then in the chunks or the sealed object.
            let ended = match f
                .state
                .store
                .task_attempts(f.scope.as_deref(), f.task_id)
                .await
            {
                Ok(attempts) => match attempts.into_iter().find(|a| a.attempt == f.attempt) {
                    Some(a) => a.ended_at.map(|_| a.outcome.as_str().to_string()),
                    // Deleted (retention) while followed.
                    None => {
                        f.over = true;
                        let gone = Error::not_found(format!(
                            "task {} attempt {} no longer exists: its job was deleted",
                            f.task_id, f.attempt
                        ));
                        return Some((Err(gone), f));
                    }
                },
                Err(e) => {
                    f.over = true;
                    return Some((Err(e), f));
                }
            };
            match f.cursor.next(&f.state, ended.is_some()).await {
                Ok(Some(bytes)) => {
                    f.first = true; // look again at once: there may be more pages
                    return Some((Ok(Followed::Output(bytes)), f));
                }
                Ok(None) => {}
                Err(e) => {
                    f.over = true;
                    return Some((Err(e), f));
                }
            }
            if let Some(outcome) = ended {
                // An attempt from before live logs: its log is the tail.
                if f.cursor.sent == 0
                    && let Some(tail) = f.tail.take().filter(|t| !t.is_empty())
                {
                    f.first = true;
                    return Some((Ok(Followed::Output(Bytes::from(tail))), f));
                }
                f.over = true;
                return Some((
                    Ok(Followed::End {
                        attempt: f.attempt,
                        outcome,
                    }),
                    f,
                ));
            }
        }
    }))
}
