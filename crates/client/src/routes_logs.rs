//! A task's live log: the whole log of an attempt, and following it as it grows.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use reqwest::Method;
use serde::Deserialize;
use spillway_core::{Error, Result, TaskId};

use crate::Client;
use crate::stream::{ByteStream, response_stream};

/// What a follower of a log is told (`GET /v1/tasks/{id}/logs/follow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// More of the log, as text. It is the task's own output: print it, never interpret it.
    Text(String),
    /// The attempt ended with `outcome` (`succeeded`, `failed`, …); nothing more comes.
    End {
        /// The attempt, from 1.
        attempt: u32,
        /// How it ended.
        outcome: String,
    },
}

/// The events of a followed log, ending after [`LogEvent::End`].
pub type LogEvents = Pin<Box<dyn Stream<Item = Result<LogEvent>> + Send>>;

#[derive(Deserialize)]
struct Text {
    text: String,
}

#[derive(Deserialize)]
struct End {
    attempt: u32,
    outcome: String,
}

#[derive(Deserialize)]
struct Failed {
    detail: Option<String>,
}

impl Client {
    /// `GET /v1/tasks/{id}/logs/full`: the whole log of `attempt` (the latest when `None`) as
    /// it is now: all of a finished attempt's output, a running one's so far.
    pub async fn task_log_full(&self, id: TaskId, attempt: Option<u32>) -> Result<ByteStream> {
        let id = id.to_string();
        let url = self.url(&["v1", "tasks", &id, "logs", "full"]);
        let mut rb = self.request_to(Method::GET, url, None);
        if let Some(attempt) = attempt {
            rb = rb.query(&[("attempt", attempt)]);
        }
        Ok(response_stream(self.send(rb).await?))
    }

    /// `GET /v1/tasks/{id}/logs/follow`: what the log of `attempt` (the latest when `None`)
    /// holds, then what arrives, then its end.
    pub async fn task_log_follow(&self, id: TaskId, attempt: Option<u32>) -> Result<LogEvents> {
        let id = id.to_string();
        let url = self.url(&["v1", "tasks", &id, "logs", "follow"]);
        let mut rb = self.request_to(Method::GET, url, None);
        if let Some(attempt) = attempt {
            rb = rb.query(&[("attempt", attempt)]);
        }
        let body = response_stream(self.send(rb).await?);
        Ok(Box::pin(events(body)))
    }
}

/// Parse a `text/event-stream` body into log events; the stream ends after the end event.
fn events(body: ByteStream) -> impl Stream<Item = Result<LogEvent>> + Send {
    struct Parse {
        body: ByteStream,
        buf: Vec<u8>,
        ended: bool,
    }
    futures::stream::unfold(
        Parse {
            body,
            buf: Vec::new(),
            ended: false,
        },
        |mut p| async move {
            loop {
                if p.ended {
                    return None;
                }
                // One event is a block of lines ended by an empty line.
                if let Some(end) = find_blank_line(&p.buf) {
                    let block: Vec<u8> = p.buf.drain(..end.0).collect();
                    p.buf.drain(..end.1 - end.0);
                    match event(&String::from_utf8_lossy(&block)) {
                        Ok(Some(e)) => {
                            p.ended = matches!(e, LogEvent::End { .. });
                            return Some((Ok(e), p));
                        }
                        Ok(None) => continue,
                        Err(e) => {
                            p.ended = true;
                            return Some((Err(e), p));
                        }
                    }
                }
                match p.body.next().await {
                    Some(Ok(bytes)) => p.buf.extend_from_slice(&bytes),
                    Some(Err(e)) => {
                        p.ended = true;
                        return Some((Err(e), p));
                    }
                    None => {
                        p.ended = true;
                        return Some((
                            Err(Error::unavailable(
                                "the log stream ended before the attempt did: follow it again",
                            )),
                            p,
                        ));
                    }
                }
            }
        },
    )
}

/// The first blank line of `buf`: (where the event before it ends, where the next begins).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let text = buf;
    (0..text.len()).find_map(|i| {
        if text[i..].starts_with(b"\n\n") {
            Some((i, i + 2))
        } else if text[i..].starts_with(b"\r\n\r\n") {
            Some((i, i + 4))
        } else {
            None
        }
    })
}

/// One event block: `event:` and `data:` lines; comments (keep-alives) and unknown events
/// are `None`.
fn event(block: &str) -> Result<Option<LogEvent>> {
    let mut name = "message";
    let mut data = String::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim_start();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    let decode = |e: serde_json::Error| {
        Error::internal(
            "could not decode an event of the log stream: is the server the same version as this client?",
        )
        .with_source(e)
    };
    match name {
        "log" => {
            let t: Text = serde_json::from_str(&data).map_err(decode)?;
            Ok(Some(LogEvent::Text(t.text)))
        }
        "end" => {
            let e: End = serde_json::from_str(&data).map_err(decode)?;
            Ok(Some(LogEvent::End {
                attempt: e.attempt,
                outcome: e.outcome,
            }))
        }
        "error" => {
            let f: Failed = serde_json::from_str(&data).map_err(decode)?;
            Err(Error::unavailable(format!(
                "the server could not go on reading the log: {}; follow it again",
                f.detail.unwrap_or_default()
            )))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[tokio::test]
    async fn events_are_parsed_across_reads_and_end_at_the_end_event() {
        let parts = [
            ": keep-alive\n\nevent: log\nda",
            "ta: {\"text\":\"a\\nb\"}\nretry: 2000\n\n",
            "event: end\ndata: {\"attempt\":2,\"outcome\":\"succeeded\"}\n\nevent: log\ndata: {\"text\":\"x\"}\n\n",
        ];
        let body: ByteStream = Box::pin(futures::stream::iter(
            parts.map(|p| Ok(Bytes::from(p.to_string()))),
        ));
        let seen: Vec<LogEvent> = events(body).map(|e| e.expect("event")).collect().await;
        assert_eq!(
            seen,
            vec![
                LogEvent::Text("a\nb".into()),
                LogEvent::End {
                    attempt: 2,
                    outcome: "succeeded".into()
                }
            ]
        );
    }
}
