//! The live log of one running task: its output goes to the server in chunks while it runs.
//!
//! **Drop and count, never block.** The executor hands output over from its pipe readers
//! ([`LiveOutput`]); it goes into a buffer of at most [`PENDING_LIMIT`] bytes without ever
//! waiting. One sender per task sends the buffer as numbered chunks of at most
//! [`MAX_LOG_CHUNK_BYTES`]: as soon as a full chunk waits, else every [`FLUSH_INTERVAL`].
//! When the server is slow or unreachable a chunk is kept and sent again (under its number,
//! so it is stored once); meanwhile the buffer fills, and output that finds it full is dropped
//! and counted, and the log says at that place how many bytes are missing. So a slow or
//! failing server costs log lines, never the task's progress, and memory stays bounded.
//! Past `max_log_bytes` output is counted only, and the log's last line says how much went.
//! A refused chunk (the lease is no longer this worker's, or the server's limit is reached)
//! ends the stream. Chunks are cut at UTF-8 character boundaries, so each reads as text.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use spillway_client::Client;
use spillway_core::model::MAX_LOG_CHUNK_BYTES;
use spillway_core::{ErrorKind, TaskId};
use spillway_executor::LiveOutput;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Longest time output waits before it is sent.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Most bytes of output held for sending; what arrives while it is full is dropped and counted.
pub const PENDING_LIMIT: usize = 1024 * 1024;
/// How long the last chunks may take to send once the task ended, before they are given up.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// What waits to be sent, and what was dropped.
#[derive(Debug, Default)]
struct Buffer {
    pending: Vec<u8>,
    /// Bytes dropped for want of room since the last note about it.
    dropped: u64,
    /// Bytes of output taken toward the limit.
    taken: u64,
    /// Bytes past the limit.
    over_limit: u64,
    /// The task ended: send everything left, then stop.
    closed: bool,
    /// The server refused the log: keep nothing more.
    refused: bool,
}

impl Buffer {
    /// Take `bytes` of output without waiting; true when a full chunk now waits.
    fn accept(&mut self, bytes: &[u8], max_bytes: u64) -> bool {
        if self.refused || self.closed {
            return false;
        }
        let room = usize::try_from(max_bytes.saturating_sub(self.taken)).unwrap_or(usize::MAX);
        let (kept, over) = bytes.split_at(bytes.len().min(room));
        self.over_limit += over.len() as u64;
        if kept.is_empty() {
            return false;
        }
        let space = PENDING_LIMIT.saturating_sub(self.pending.len());
        if self.dropped > 0 && space > kept.len() + 128 {
            let note = dropped_note(self.dropped);
            self.pending.extend_from_slice(note.as_bytes());
            self.dropped = 0;
        }
        let space = PENDING_LIMIT.saturating_sub(self.pending.len());
        let now = kept.len().min(space);
        self.pending.extend_from_slice(&kept[..now]);
        self.taken += now as u64;
        self.dropped += (kept.len() - now) as u64;
        self.pending.len() >= MAX_LOG_CHUNK_BYTES
    }

    /// The task ended: add the notes of what was dropped.
    fn close(&mut self, max_bytes: u64) {
        self.closed = true;
        if self.dropped > 0 {
            let note = dropped_note(self.dropped);
            self.pending.extend_from_slice(note.as_bytes());
            self.dropped = 0;
        }
        if self.over_limit > 0 {
            let note = format!(
                "\n[spillway: the log reached its limit of {max_bytes} bytes (max_log_bytes); {} more bytes of output were dropped]\n",
                self.over_limit
            );
            self.pending.extend_from_slice(note.as_bytes());
        }
    }

    /// The next chunk to send: a full one, or (when `all`, or once closed) what waits, cut
    /// at a character boundary unless it is the very end.
    fn next_chunk(&mut self, all: bool) -> Vec<u8> {
        let take = self.pending.len().min(MAX_LOG_CHUNK_BYTES);
        if take < MAX_LOG_CHUNK_BYTES && !all && !self.closed {
            return Vec::new();
        }
        let last = self.closed && take == self.pending.len();
        let cut = if last {
            take
        } else {
            utf8_boundary(&self.pending[..take])
        };
        self.pending.drain(..cut).collect()
    }
}

fn dropped_note(bytes: u64) -> String {
    format!(
        "\n[spillway: {bytes} bytes of output dropped here: the server did not take the log fast enough]\n"
    )
}

/// The length of the longest prefix of `bytes` that does not end inside a UTF-8 character
/// (the held-back bytes start the next chunk). Invalid bytes are left as they are.
fn utf8_boundary(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(4) {
        let b = bytes[len - back];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: look further back for its start
        }
        let width = match b {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        return if width > back { len - back } else { len };
    }
    len
}

/// The live log of one running task.
pub(crate) struct LogStream {
    buffer: Arc<Mutex<Buffer>>,
    wake: Arc<Notify>,
    max_bytes: u64,
    /// The sender; aborted if the stream is dropped without [`LogStream::finish`].
    sender: Option<JoinHandle<()>>,
}

impl Drop for LogStream {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            sender.abort();
        }
    }
}

impl LogStream {
    /// Start sending the live log of `task_id`'s attempt under `lease_token` through `client`,
    /// keeping at most `max_bytes` of output.
    pub(crate) fn start(
        client: Client,
        task_id: TaskId,
        lease_token: String,
        max_bytes: u64,
    ) -> Self {
        let buffer = Arc::new(Mutex::new(Buffer::default()));
        let wake = Arc::new(Notify::new());
        let sender = tokio::spawn(send_loop(
            client,
            task_id,
            lease_token,
            buffer.clone(),
            wake.clone(),
        ));
        Self {
            buffer,
            wake,
            max_bytes,
            sender: Some(sender),
        }
    }

    /// Where the executor hands the output: never waits.
    pub(crate) fn output(&self) -> LiveOutput {
        let buffer = self.buffer.clone();
        let wake = self.wake.clone();
        let max_bytes = self.max_bytes;
        LiveOutput::new(move |bytes| {
            let full = buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .accept(bytes, max_bytes);
            if full {
                wake.notify_one();
            }
        })
    }

    /// The task ended: send what is left (with notes of what was dropped), giving up after
    /// [`FINISH_TIMEOUT`] so an unreachable server cannot hold up the report.
    pub(crate) async fn finish(mut self) {
        self.buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .close(self.max_bytes);
        self.wake.notify_one();
        let Some(sender) = self.sender.take() else {
            return;
        };
        let abort = sender.abort_handle();
        if tokio::time::timeout(FINISH_TIMEOUT, sender).await.is_err() {
            abort.abort();
            tracing::warn!(
                "the last lines of a task's live log could not be sent in time; its tail is still reported"
            );
        }
    }
}

/// Send chunks as they become due until the buffer is closed and empty, or the server
/// refuses the log.
async fn send_loop(
    client: Client,
    task_id: TaskId,
    lease_token: String,
    buffer: Arc<Mutex<Buffer>>,
    wake: Arc<Notify>,
) {
    let mut seq: u64 = 0;
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A chunk the server has not taken yet: sent again under its number.
    let mut unsent: Option<Vec<u8>> = None;
    loop {
        // A chunk not taken waits for the tick: no tight loop against a failing server.
        let all = tokio::select! {
            _ = tick.tick() => true,
            () = wake.notified(), if unsent.is_none() => false,
        };
        loop {
            let chunk = match unsent.take() {
                Some(chunk) => chunk,
                None => {
                    let mut b = buffer.lock().unwrap_or_else(PoisonError::into_inner);
                    let chunk = b.next_chunk(all);
                    if chunk.is_empty() {
                        if b.closed && b.pending.is_empty() {
                            return;
                        }
                        break;
                    }
                    chunk
                }
            };
            match client
                .task_log_chunk_put(task_id, &lease_token, seq, chunk.clone())
                .await
            {
                Ok(()) => seq += 1,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Conflict | ErrorKind::NotFound | ErrorKind::TooLarge
                    ) =>
                {
                    tracing::info!(task_id, error = %e, "the server refused the task's live log; no more is sent");
                    let mut b = buffer.lock().unwrap_or_else(PoisonError::into_inner);
                    b.refused = true;
                    b.pending = Vec::new();
                    return;
                }
                Err(e) => {
                    tracing::debug!(task_id, error = %e, "a live log chunk was not taken; sending it again");
                    unsent = Some(chunk);
                    break; // until the next tick
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_end_on_character_boundaries() {
        assert_eq!(utf8_boundary(b"abc"), 3);
        let euro = "a€".as_bytes(); // 1 + 3 bytes
        assert_eq!(utf8_boundary(euro), 4);
        assert_eq!(utf8_boundary(&euro[..3]), 1);
        assert_eq!(utf8_boundary(&euro[..2]), 1);
        assert_eq!(utf8_boundary(&[0xff, 0xfe]), 2);
    }

    #[test]
    fn a_full_buffer_drops_and_counts_and_the_log_says_so() {
        let mut b = Buffer::default();
        b.accept(&vec![b'a'; PENDING_LIMIT], u64::MAX);
        b.accept(b"lost", u64::MAX);
        assert_eq!(b.dropped, 4);
        while !b.next_chunk(true).is_empty() {}
        b.accept(b"after", u64::MAX);
        let text = String::from_utf8(b.next_chunk(true)).expect("text");
        assert!(text.contains("4 bytes of output dropped here"), "{text}");
        assert!(text.ends_with("after"), "{text}");
    }

    #[test]
    fn output_past_the_limit_is_counted_and_noted_at_the_end() {
        let mut b = Buffer::default();
        b.accept(b"0123456789", 4);
        b.accept(b"xy", 4);
        b.close(4);
        let text = String::from_utf8(b.next_chunk(false)).expect("text");
        assert!(text.starts_with("0123\n"), "{text}");
        assert!(text.contains("limit of 4 bytes"), "{text}");
        assert!(text.contains("8 more bytes"), "{text}");
    }
}
