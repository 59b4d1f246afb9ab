//! A lean HTTP/1.1 client for the overload scenario: one prepared request sent again and
//! again over keep-alive connections, and only what the scenario needs read from the answer
//! (status, `Retry-After`, the body's length). A general client costs several times more CPU
//! per request, and the load has to offer ten times what the server can serve from as few
//! CPUs as the server has.
//!
//! [`Connection`] is the same for the many-workers scenario: one keep-alive connection that
//! sends any request and reads its whole answer, a few KiB per connection where a general
//! client keeps a pool per worker.

use std::sync::Mutex;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 2xx.
    Admitted,
    /// 503 or 429, and whether `Retry-After` came with it.
    Shed { status: u16, retry_after: bool },
    /// Any other status, or the connection failed.
    Other,
}

/// The parts of an answer's head the scenario reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    retry_after: bool,
    content_length: usize,
    close: bool,
}

/// A prepared `POST` and the keep-alive connections idle between sends.
pub struct RawPost {
    addr: String,
    request: Vec<u8>,
    idle: Mutex<Vec<BufReader<TcpStream>>>,
}

impl RawPost {
    /// `POST path` to the server at `base_url` (`http://host:port`) with a bearer token and
    /// a JSON body.
    pub fn new(base_url: &str, path: &str, token: &str, body: &[u8]) -> Result<Self> {
        let addr = base_url
            .strip_prefix("http://")
            .context("the overload load speaks plain http:// only")?
            .trim_end_matches('/')
            .to_string();
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        Ok(Self {
            addr,
            request,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Send the request once, on an idle connection or a new one, and read the answer.
    pub async fn send(&self) -> Answer {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => match TcpStream::connect(&self.addr).await {
                Ok(stream) => {
                    // Requests are small and sent whole: no reason to wait for more to send.
                    let _ = stream.set_nodelay(true);
                    BufReader::new(stream)
                }
                Err(_) => return Answer::Other,
            },
        };
        match self.exchange(connection).await {
            Ok((head, connection)) => {
                if let Some(connection) = connection {
                    self.idle
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(connection);
                }
                match head.status {
                    200..=299 => Answer::Admitted,
                    429 | 503 => Answer::Shed {
                        status: head.status,
                        retry_after: head.retry_after,
                    },
                    _ => Answer::Other,
                }
            }
            Err(_) => Answer::Other,
        }
    }

    /// Write the request, read the head and body; the connection back when it stays open.
    async fn exchange(
        &self,
        connection: BufReader<TcpStream>,
    ) -> std::io::Result<(Head, Option<BufReader<TcpStream>>)> {
        let (head, _, connection) = exchange(connection, &self.request).await?;
        Ok((head, connection))
    }
}

/// One keep-alive connection to a server, for requests one after another.
pub struct Connection {
    addr: String,
    token: String,
    stream: Option<BufReader<TcpStream>>,
}

impl Connection {
    /// A connection to the server at `base_url` (`http://host:port`) that sends `token` as
    /// its bearer token; it connects on the first request, and again after the server closed
    /// it.
    pub fn new(base_url: &str, token: &str) -> Result<Self> {
        let addr = base_url
            .strip_prefix("http://")
            .context("the bench's raw client speaks plain http:// only")?
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            addr,
            token: token.to_string(),
            stream: None,
        })
    }

    /// `POST path` with a JSON body; the answer's status and body.
    pub async fn post(&mut self, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.addr,
            self.token,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        let stream = match self.stream.take() {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(&self.addr)
                    .await
                    .with_context(|| format!("cannot connect to {}", self.addr))?;
                // Requests are small and sent whole: no reason to wait for more to send.
                let _ = stream.set_nodelay(true);
                BufReader::new(stream)
            }
        };
        let (head, body, stream) = exchange(stream, &request)
            .await
            .with_context(|| format!("POST {path} failed"))?;
        self.stream = stream;
        Ok((head.status, body))
    }
}

/// Write `request` on `connection`, read the head and the body; the connection back when it
/// stays open.
async fn exchange(
    mut connection: BufReader<TcpStream>,
    request: &[u8],
) -> std::io::Result<(Head, Vec<u8>, Option<BufReader<TcpStream>>)> {
    connection.get_mut().write_all(request).await?;
    let mut text = String::new();
    loop {
        let before = text.len();
        if connection.read_line(&mut text).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if text[before..].trim_end().is_empty() {
            break;
        }
    }
    let head = parse_head(&text)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad head"))?;
    let mut body = vec![0; head.content_length];
    connection.read_exact(&mut body).await?;
    Ok((head, body, (!head.close).then_some(connection)))
}

/// Status, `Retry-After`, `Content-Length` and `Connection: close` from an answer's head.
/// `None` for a head this client cannot follow (no status, or a chunked body).
fn parse_head(text: &str) -> Option<Head> {
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut head = Head {
        status,
        retry_after: false,
        content_length: 0,
        close: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("retry-after") {
            head.retry_after = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return None;
        }
    }
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_gives_status_retry_after_length_and_close() {
        let head = parse_head(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
             Retry-After: 1\r\nContent-Length: 120\r\n\r\n",
        );
        assert_eq!(
            head,
            Some(Head {
                status: 503,
                retry_after: true,
                content_length: 120,
                close: false
            })
        );
        let head = parse_head("HTTP/1.1 201 Created\r\nconnection: close\r\n\r\n").expect("parsed");
        assert_eq!(
            (head.status, head.retry_after, head.close),
            (201, false, true)
        );
        assert_eq!(
            parse_head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
            None
        );
        assert_eq!(parse_head("garbage\r\n\r\n"), None);
    }
}
