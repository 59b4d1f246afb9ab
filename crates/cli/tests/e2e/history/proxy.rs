//! The recording proxy: listens on 127.0.0.1, forwards every request to the server and
//! records the operations the checker needs ([`super::record`]).
//!
//! Each process gets its own *door* (a port of its own, named after it), so the history says
//! who sent what, and a fault run can cut one door off: [`Mode::Refuse`] closes new
//! connections at once and answers requests on open ones 503 without forwarding them;
//! [`Mode::Stall`] holds requests until the mode changes. In *broken* mode the proxy rewrites
//! a stale lease token in heartbeats, reports and uploads to the task's newest one, which is
//! what a server without fencing would accept: the checker's own test uses it to show that a
//! missing lease check is caught.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use spillway_core::TaskId;
use spillway_core::api::LeaseResponse;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::record::{Exchange, History, Recorder, Route, ops_of, request_leases};

/// The header carrying the lease token of a result upload.
const LEASE_TOKEN_HEADER: &str = "spillway-lease-token";
/// Largest request or answer the proxy buffers.
const MAX_BODY: usize = 64 << 20;

/// What a door does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Open,
    /// Close new connections at once; answer requests on open ones 503, unforwarded.
    Refuse,
    /// Hold requests (unforwarded) until the mode changes.
    Stall,
}

/// What every door shares.
struct Shared {
    /// Where doors forward unless told otherwise.
    upstream: String,
    http: reqwest::Client,
    recorder: Recorder,
    broken: AtomicBool,
    /// The newest lease token handed out per task (for broken mode).
    newest: Mutex<HashMap<TaskId, String>>,
    stalled: AtomicUsize,
    unanswered: AtomicUsize,
}

/// One door's state.
#[derive(Clone)]
struct Door {
    name: Arc<str>,
    upstream: Arc<str>,
    shared: Arc<Shared>,
    mode: watch::Receiver<Mode>,
}

/// An open door, as the proxy keeps it.
struct Opened {
    url: String,
    mode: watch::Sender<Mode>,
    served: JoinHandle<()>,
}

/// A recording proxy in front of one server URL.
pub struct Proxy {
    shared: Arc<Shared>,
    doors: Mutex<HashMap<String, Opened>>,
}

impl Proxy {
    /// A proxy forwarding to `upstream` (e.g. `http://127.0.0.1:8080`), recording from now.
    pub fn new(upstream: &str) -> Proxy {
        // No timeout: a lease long-polls, and the client sets its own.
        let http = reqwest::Client::builder()
            .build()
            .expect("an HTTP client for the proxy");
        Proxy {
            shared: Arc::new(Shared {
                upstream: upstream.trim_end_matches('/').to_string(),
                http,
                recorder: Recorder::new(),
                broken: AtomicBool::new(false),
                newest: Mutex::new(HashMap::new()),
                stalled: AtomicUsize::new(0),
                unanswered: AtomicUsize::new(0),
            }),
            doors: Mutex::new(HashMap::new()),
        }
    }

    /// The URL of the door named `name` to the proxy's upstream, opened on first use.
    pub async fn door(&self, name: &str) -> String {
        let upstream = self.shared.upstream.clone();
        self.door_to(name, &upstream).await
    }

    /// The URL of the door named `name` to `upstream` (another replica, say), opened on first
    /// use; every door records into the same history.
    pub async fn door_to(&self, name: &str, upstream: &str) -> String {
        self.door_at(name, upstream, std::net::Ipv4Addr::LOCALHOST)
            .await
    }

    /// The URL of the door named `name` to the upstream, listening on `ip` (an address of a
    /// test network, for workers on test hosts), opened on first use.
    pub async fn door_on(&self, name: &str, ip: std::net::Ipv4Addr) -> String {
        let upstream = self.shared.upstream.clone();
        self.door_at(name, &upstream, ip).await
    }

    async fn door_at(&self, name: &str, upstream: &str, ip: std::net::Ipv4Addr) -> String {
        if let Some(opened) = self.doors.lock().expect("doors lock").get(name) {
            return opened.url.clone();
        }
        let listener = TcpListener::bind((ip, 0)).await.expect("bind a proxy door");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let (set, mode) = watch::channel(Mode::Open);
        let door = Door {
            name: Arc::from(name),
            upstream: Arc::from(upstream.trim_end_matches('/')),
            shared: self.shared.clone(),
            mode: mode.clone(),
        };
        let app = Router::new().fallback(forward).with_state(door);
        let gated = Gated {
            inner: listener,
            mode,
        };
        let served = tokio::spawn(async move {
            let _ = axum::serve(gated, app).await;
        });
        self.doors.lock().expect("doors lock").insert(
            name.to_string(),
            Opened {
                url: url.clone(),
                mode: set,
                served,
            },
        );
        url
    }

    /// Set what the door `name` does with traffic.
    pub fn set_mode(&self, name: &str, mode: Mode) {
        let doors = self.doors.lock().expect("doors lock");
        let opened = doors
            .get(name)
            .unwrap_or_else(|| panic!("no proxy door named {name}"));
        opened.mode.send_replace(mode);
    }

    /// Rewrite stale lease tokens to the newest (a server without fencing), or stop doing so.
    pub fn set_broken(&self, broken: bool) {
        self.shared.broken.store(broken, Ordering::SeqCst);
    }

    /// Requests held by stalled doors right now.
    pub fn stalled(&self) -> usize {
        self.shared.stalled.load(Ordering::SeqCst)
    }

    /// Requests the server gave no answer to (it was down or died mid-request) so far.
    pub fn unanswered(&self) -> usize {
        self.shared.unanswered.load(Ordering::SeqCst)
    }

    /// What was recorded so far.
    pub fn history(&self) -> History {
        self.shared.recorder.history()
    }

    /// How many events were recorded so far.
    pub fn recorded(&self) -> usize {
        self.shared.recorder.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for (_, opened) in self.doors.lock().expect("doors lock").drain() {
            opened.served.abort();
        }
    }
}

/// A listener that drops new connections while its door refuses traffic.
struct Gated {
    inner: TcpListener,
    mode: watch::Receiver<Mode>,
}

impl axum::serve::Listener for Gated {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    if *self.mode.borrow() == Mode::Refuse {
                        drop(stream);
                        continue;
                    }
                    return (stream, addr);
                }
                // Out of file descriptors and the like: the next accept may work.
                Err(_) => tokio::task::yield_now().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

fn answer(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank", "title": "proxy", "status": status.as_u16(),
        "detail": detail, "code": "unavailable",
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Headers that belong to one hop, not to the request.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for name in [
        header::HOST,
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ] {
        out.remove(name);
    }
    out
}

async fn forward(State(mut door): State<Door>, request: Request) -> Response {
    // The gate: refused, held, or on.
    loop {
        let mode = *door.mode.borrow_and_update();
        match mode {
            Mode::Open => break,
            Mode::Refuse => return answer(StatusCode::SERVICE_UNAVAILABLE, "partitioned"),
            Mode::Stall => {
                door.shared.stalled.fetch_add(1, Ordering::SeqCst);
                let changed = door.mode.changed().await;
                door.shared.stalled.fetch_sub(1, Ordering::SeqCst);
                if changed.is_err() {
                    return answer(StatusCode::SERVICE_UNAVAILABLE, "proxy closed");
                }
            }
        }
    }
    let shared = door.shared.clone();
    let start = shared.recorder.now();
    let (parts, body) = request.into_parts();
    let Ok(sent) = axum::body::to_bytes(body, MAX_BODY).await else {
        return answer(StatusCode::BAD_REQUEST, "could not read the request body");
    };
    let route = Route::of(parts.method.as_str(), parts.uri.path());
    let mut headers = end_to_end(&parts.headers);
    let upload_token = parts
        .headers
        .get(LEASE_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (forwarded, rewritten) = match &route {
        Some(route) if shared.broken.load(Ordering::SeqCst) => {
            shared.rewrite(route, &sent, &mut headers)
        }
        _ => (sent.clone(), false),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let upstream = shared
        .http
        .request(parts.method.clone(), format!("{}{path}", door.upstream))
        .headers(headers)
        .body(forwarded)
        .send()
        .await;
    let (status, response_headers, received) = match upstream {
        Ok(response) => {
            let status = response.status();
            let headers = end_to_end(response.headers());
            match response.bytes().await {
                Ok(bytes) => (Some(status), headers, bytes),
                Err(_) => (None, HeaderMap::new(), Bytes::new()),
            }
        }
        Err(_) => (None, HeaderMap::new(), Bytes::new()),
    };
    let end = shared.recorder.now();
    if let Some(route) = route {
        let exchange = Exchange {
            actor: &door.name,
            route,
            start,
            end,
            request: &sent,
            upload_token: upload_token.as_deref(),
            status: status.map(|s| s.as_u16()),
            response: &received,
            rewritten,
        };
        if exchange.route == Route::Lease
            && let Ok(leased) = serde_json::from_slice::<LeaseResponse>(&received)
        {
            let mut newest = shared.newest.lock().expect("tokens lock");
            for task in leased.tasks {
                newest.insert(task.task_id, task.lease_token);
            }
        }
        shared.recorder.push(&exchange, ops_of(&exchange));
    }
    let Some(status) = status else {
        shared.unanswered.fetch_add(1, Ordering::SeqCst);
        return answer(StatusCode::BAD_GATEWAY, "the server gave no answer");
    };
    let mut response = Response::new(Body::from(received));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

impl Shared {
    /// Broken mode: the request with every stale lease token replaced by the task's newest.
    fn rewrite(&self, route: &Route, body: &Bytes, headers: &mut HeaderMap) -> (Bytes, bool) {
        let newest = self.newest.lock().expect("tokens lock");
        if let Route::Upload(task, _) = route {
            let sent = headers
                .get(LEASE_TOKEN_HEADER)
                .and_then(|v| v.to_str().ok());
            let Some(current) = newest.get(task) else {
                return (body.clone(), false);
            };
            if sent == Some(current.as_str()) {
                return (body.clone(), false);
            }
            let Ok(value) = HeaderValue::from_str(current) else {
                return (body.clone(), false);
            };
            headers.insert(LEASE_TOKEN_HEADER, value);
            return (body.clone(), true);
        }
        let stale: HashMap<String, String> = request_leases(route, body)
            .into_iter()
            .filter_map(|lease| {
                let current = newest.get(&lease.task_id)?;
                (*current != lease.lease_token).then(|| (lease.lease_token, current.clone()))
            })
            .collect();
        if stale.is_empty() {
            return (body.clone(), false);
        }
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return (body.clone(), false);
        };
        replace_tokens(&mut value, &stale);
        (Bytes::from(value.to_string()), true)
    }
}

/// Replace every `lease_token` found in `stale` anywhere in `value`.
fn replace_tokens(value: &mut serde_json::Value, stale: &HashMap<String, String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key == "lease_token"
                    && let Some(current) = item.as_str().and_then(|t| stale.get(t))
                {
                    *item = serde_json::Value::String(current.clone());
                } else {
                    replace_tokens(item, stale);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                replace_tokens(item, stale);
            }
        }
        _ => {}
    }
}
