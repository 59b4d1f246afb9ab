//! A typed HTTP client for Spillway's `/v1` API, used by the worker and the CLI.
//!
//! One async method per route, named noun-first (`job_submit`, `task_lease`, …). Every failure
//! is a [`spillway_core::Error`]: a `application/problem+json` answer keeps the server's
//! `detail` as its message and maps the HTTP status to an [`ErrorKind`](spillway_core::ErrorKind);
//! a server that cannot be reached is [`Unavailable`](spillway_core::ErrorKind::Unavailable),
//! so callers can retry it. Uploads and downloads are streamed, never held whole in memory.

mod error;
mod query;
mod routes_admin;
mod routes_jobs;
mod routes_logs;
mod routes_work;
mod stream;

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;
use spillway_core::{Error, Result};

pub use error::kind_for_status;
pub use query::{DeadListQuery, JobListQuery, TaskListQuery};
pub use reqwest::Body;
pub use routes_logs::{LogEvent, LogEvents};
pub use routes_work::LEASE_TOKEN_HEADER;
pub use stream::{ByteStream, file_body, open_file_body, stream_to_file};

/// How long to wait for a TCP (and TLS) connection to the server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Total time allowed for an ordinary (non-streaming, non-long-poll) request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest silence while reading an answer; above the longest lease long-poll so that a
/// waiting lease call is never cut short, yet a stalled download is noticed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an idle pooled connection is kept for reuse.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A handle to one Spillway server. Cheap to clone; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    tenant: Option<String>,
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8080`), sending `token`
    /// as `Authorization: Bearer …` when given.
    pub fn new(base_url: &str, token: Option<String>) -> Result<Client> {
        let base = Url::parse(base_url).map_err(|e| {
            Error::invalid(format!(
                "invalid server url {base_url:?}: give an absolute http(s) url such as http://127.0.0.1:8080"
            ))
            .with_source(e)
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::invalid(format!(
                "invalid server url {base_url:?}: the scheme must be http or https"
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("spillway-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::internal("could not build the http client").with_source(e))?;
        Ok(Client {
            http,
            base,
            token,
            tenant: None,
        })
    }

    /// Act in `tenant` on every request (only honoured for admins of every tenant); it is sent
    /// as the `tenant` query parameter.
    pub fn with_tenant(mut self, tenant: Option<String>) -> Client {
        self.tenant = tenant;
        self
    }

    /// The server's base url.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The url of `segments` below the base url; each segment is percent-encoded on its own,
    /// so a segment can never add a '/' or a query.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            // `new` checked that the base can have path segments, so this cannot fail.
            if let Ok(mut path) = url.path_segments_mut() {
                path.pop_if_empty().extend(segments);
            }
        }
        url
    }

    /// The url of a fixed route prefix followed by a user path such as `data/part-1.csv`,
    /// whose '/' separators are kept.
    fn url_with_path(&self, segments: &[&str], path: &str) -> Url {
        let mut all: Vec<&str> = segments.to_vec();
        all.extend(path.split('/'));
        self.url(&all)
    }

    /// A request with auth, tenant and the given total timeout (none for streaming bodies).
    fn request_to(&self, method: Method, url: Url, timeout: Option<Duration>) -> RequestBuilder {
        let mut rb = self.http.request(method, url);
        if let Some(timeout) = timeout {
            rb = rb.timeout(timeout);
        }
        if let Some(token) = &self.token {
            rb = rb.bearer_auth(token);
        }
        if let Some(tenant) = &self.tenant {
            rb = rb.query(&[("tenant", tenant)]);
        }
        rb
    }

    /// An ordinary request to `segments` with the default timeout.
    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.request_to(method, self.url(segments), Some(REQUEST_TIMEOUT))
    }

    /// Send `rb`; a transport failure or a non-success answer becomes an [`Error`].
    async fn send(&self, rb: RequestBuilder) -> Result<Response> {
        let request = rb
            .build()
            .map_err(|e| Error::internal("could not build the request").with_source(e))?;
        let method = request.method().clone();
        let url = request.url().clone();
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| error::transport(&method, &url, e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(error::from_response(&method, &url, response).await)
        }
    }

    /// Send `rb` and decode its JSON answer.
    async fn send_json<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T> {
        let response = self.send(rb).await?;
        let url = response.url().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| error::body_read(&url, e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::internal(format!(
                "could not decode the server's answer from {url}: is the server the same version as this client?"
            ))
            .with_source(e)
        })
    }

    /// Send `rb` and ignore the body of its (successful) answer.
    async fn send_empty(&self, rb: RequestBuilder) -> Result<()> {
        self.send(rb).await.map(drop)
    }

    /// Send `rb` and return its answer as text.
    async fn send_text(&self, rb: RequestBuilder) -> Result<String> {
        let response = self.send(rb).await?;
        let url = response.url().clone();
        response.text().await.map_err(|e| error::body_read(&url, e))
    }
}
