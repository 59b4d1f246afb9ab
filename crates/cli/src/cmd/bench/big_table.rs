//! Big table: a store holding a week of history ([`prefill`](super::prefill)), and what the
//! reads that grow with it cost, against the same store at [`BASELINE_TASKS`].
//!
//! For each size, on each backend: a fresh store (SQLite in a temporary directory, PostgreSQL
//! in a fresh schema) is filled through the `Store` trait, timed. Then, in this process on the
//! same store, one autoscaler pass ([`Autoscaler::pass`] with a `memory` pool serving the
//! queues) and its main query ([`Store::queue_demand`](spillway_store::Store::queue_demand))
//! are timed. Then the store is handed to a `spillway server` child process, whose own RSS is a
//! figure, and each run times over HTTP:
//!
//! - a lease: one worker leasing one task (over every queue) from the waiting backlog and
//!   completing it, one at a time; only the lease call is timed; the backlog is topped up after;
//! - `GET /metrics`, `GET /v1/queues` (the admin's) and the dashboard's overview page (signed in
//!   with the admin token, as a person would: the pages take a session cookie, not a bearer);
//! - the server's RSS once the run is done.
//!
//! Each figure is a p50 and a p99 over its samples; a figure stops sampling after
//! [`FIGURE_BUDGET`] (with at least [`MIN_SAMPLES`]), so a slow query cannot make a run
//! endless.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hdrhistogram::Histogram;
use serde::Serialize;
use spillway_blob::{BlobStore, ObjectBlobs};
use spillway_client::Client;
use spillway_core::api::{LeaseRequest, NewTask};
use spillway_core::auth::Role;
use spillway_core::clock::Clock;
use spillway_server::autoscale::{Autoscaler, ProviderRegistry};
use spillway_server::{AppState, ServerConfig};
use spillway_store::postgres::PostgresStore;
use spillway_store::sqlite::SqliteOptions;
use spillway_store::{DynStore, QueueDemandQuery};

use super::Backend;
use super::prefill::{self, QUEUES, Shape};
use super::server_process::{Launch, ServerProcess};
use super::throughput::{completion, job};

/// The size the big table's figures are compared with.
pub const BASELINE_TASKS: u64 = 10_000;
/// Leases timed per run.
const LEASE_SAMPLES: u32 = 200;
/// Samples per run of each other figure, unless its budget runs out first.
const SAMPLES: u32 = 20;
/// Fewest samples of a figure, whatever its budget.
const MIN_SAMPLES: u32 = 3;
/// Time one figure may take to sample in one run.
const FIGURE_BUDGET: Duration = Duration::from_secs(30);
/// Longest a single request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// The page cache of the prefilling store: the prefill is writes only, so a larger cache
/// than the server's default only saves time.
const PREFILL_CACHE_BYTES: u64 = 256 << 20;
/// The dashboard's session cookie and the sign-in form's CSRF cookie.
const SESSION_COOKIE: &str = "spillway_session";
const LOGIN_COOKIE: &str = "spillway_login";

/// A figure's percentiles over one run's samples.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Samples taken.
    pub samples: u32,
}

/// One run's figures on one store.
#[derive(Debug, Clone, Serialize)]
pub struct BigTableRun {
    /// A lease of one task over HTTP.
    pub lease: Percentiles,
    /// `GET /metrics`.
    pub metrics: Percentiles,
    /// `GET /v1/queues`.
    pub queues: Percentiles,
    /// The dashboard's overview page.
    pub overview: Percentiles,
    /// `Store::queue_demand`, in this process.
    pub queue_demand: Percentiles,
    /// One autoscaler pass, in this process.
    pub autoscaler_pass: Percentiles,
    /// The server's RSS after the run, MiB.
    pub rss_mib: Option<f64>,
}

/// Everything measured on one store.
#[derive(Debug, Clone, Serialize)]
pub struct BigTable {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// What the store held.
    pub shape: Shape,
    /// Dead letters among the tasks.
    pub dead: u64,
    /// Time to fill the store, seconds.
    pub prefill_s: f64,
    /// Each run's figures.
    pub runs: Vec<BigTableRun>,
}

/// Fill a fresh store of `backend` with `tasks` tasks, then measure it `runs` times.
pub async fn run(
    backend: Backend,
    postgres_url: Option<&str>,
    tasks: u64,
    runs: u32,
) -> Result<BigTable> {
    let shape = Shape::of(tasks);
    let label = format!("{} {tasks} tasks", backend.as_str());
    let mut store = Opened::open(backend, postgres_url).await?;
    let outcome = fill_and_measure(&mut store, shape, &label, runs).await;
    let cleaned = store.remove().await;
    let mut table = outcome?;
    cleaned?;
    table.backend = backend.as_str();
    Ok(table)
}

async fn fill_and_measure(
    store: &mut Opened,
    shape: Shape,
    label: &str,
    runs: u32,
) -> Result<BigTable> {
    let dyn_store = store.dyn_store()?;
    let clock = spillway_server::SteadyClock::system();
    let admin_token = spillway_server::bootstrap(&dyn_store, clock.now())
        .await?
        .context("the fresh store already had tokens, so no admin token was made")?;
    let began = Instant::now();
    prefill::fill(&dyn_store, shape, label, clock.now()).await?;
    let prefill_s = began.elapsed().as_secs_f64();
    eprintln!(
        "  prefill       {label}: done in {prefill_s:.1} s ({:.0} tasks/s)",
        shape.tasks as f64 / prefill_s
    );

    // The autoscaler's share, in this process before the server starts, on a store opened
    // as the server opens it.
    drop(dyn_store);
    store.reopen_as_server().await?;
    let dyn_store = store.dyn_store()?;
    eprintln!("  big table     {label}: timing autoscaler passes and queue_demand in process");
    let mut in_process = Vec::new();
    {
        let autoscaler = autoscaler(dyn_store.clone())?;
        for _ in 0..runs {
            let demand = sample(SAMPLES, || async {
                dyn_store
                    .queue_demand(QueueDemandQuery { now: clock.now() })
                    .await
                    .context("queue_demand failed")?;
                Ok(())
            })
            .await?;
            let pass = sample(SAMPLES, || async {
                autoscaler
                    .pass()
                    .await
                    .context("an autoscaler pass failed")?;
                Ok(())
            })
            .await?;
            in_process.push((demand, pass));
        }
    }
    drop(dyn_store);

    let server_store = store.close_for_server().await?;
    let launch = Launch {
        store: Some(server_store),
        admin_token: Some(admin_token),
        ..Default::default()
    };
    let server = tokio::task::spawn_blocking(move || ServerProcess::launch(&launch))
        .await
        .context("starting the server panicked")??;
    eprintln!(
        "  big table     {label}: server process {} started, timing over HTTP",
        server.pid()
    );
    let outcome = over_http(&server, runs, label).await;
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .context("stopping the server panicked")?;
    let http_runs = outcome?;
    let runs = http_runs
        .into_iter()
        .zip(in_process)
        .map(|(mut run, (demand, pass))| {
            run.queue_demand = demand;
            run.autoscaler_pass = pass;
            run
        })
        .collect();
    Ok(BigTable {
        backend: "",
        shape,
        dead: shape.dead(),
        prefill_s,
        runs,
    })
}

/// An autoscaler over `store` with one `memory` pool serving the big table's queues.
fn autoscaler(store: DynStore) -> Result<Autoscaler> {
    let pool = serde_json::from_value(serde_json::json!({
        "name": "bench-big",
        "provider": "memory",
        "queues": QUEUES,
        "min": 0,
        "max": 100,
        "concurrency": 1,
    }))
    .context("the big table's pool config does not parse")?;
    let blobs: Arc<dyn BlobStore> = Arc::new(
        ObjectBlobs::from_url("memory://", &Default::default())
            .context("cannot open in-memory blobs")?,
    );
    let clock: Arc<dyn Clock> = Arc::new(spillway_server::SteadyClock::system());
    let config = ServerConfig {
        pools: vec![pool],
        ..Default::default()
    };
    let state = AppState::new(store, blobs, clock, config)
        .with_providers(ProviderRegistry::builtin())
        .context("the big table's pool is refused")?;
    Ok(Autoscaler::with_registered_providers(state))
}

/// Every run's HTTP figures (the in-process ones left empty).
async fn over_http(server: &ServerProcess, runs: u32, label: &str) -> Result<Vec<BigTableRun>> {
    let admin = Client::new(&server.url, Some(server.admin_token.clone()))?;
    let worker = Client::new(
        &server.url,
        Some(super::harness::token(&admin, "bench-big-worker", Role::Worker).await?),
    )?;
    let submitter = Client::new(
        &server.url,
        Some(super::harness::token(&admin, "bench-big-submitter", Role::Submitter).await?),
    )?;
    let worker_id = worker
        .worker_register(&spillway_core::api::RegisterWorker {
            pool: "default".to_string(),
            hostname: "bench-big".to_string(),
            queues: QUEUES.iter().map(|q| q.to_string()).collect(),
            concurrency: 1,
            tenant: None,
        })
        .await
        .context("cannot register the leasing worker")?
        .id;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("cannot build an HTTP client")?;
    let session = sign_in(&http, &server.url, &server.admin_token).await?;
    let get = |path: &'static str, auth: (reqwest::header::HeaderName, String)| {
        let (http, url) = (http.clone(), format!("{}{path}", server.url));
        move || {
            let (http, url, auth) = (http.clone(), url.clone(), auth.clone());
            async move {
                let answer = http
                    .get(&url)
                    .header(auth.0, auth.1)
                    .send()
                    .await
                    .with_context(|| format!("GET {url} failed"))?;
                let status = answer.status();
                let body = answer
                    .bytes()
                    .await
                    .with_context(|| format!("cannot read the answer to GET {url}"))?;
                ensure!(
                    status.is_success(),
                    "GET {url} was answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
                Ok(())
            }
        }
    };
    let bearer = (
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", server.admin_token),
    );
    let cookie = (reqwest::header::COOKIE, session);
    let metrics = get("/metrics", bearer.clone());
    let queues = get("/v1/queues", bearer);
    let overview = get("/", cookie);
    let lease = LeaseRequest {
        worker_id,
        queues: QUEUES.iter().map(|q| q.to_string()).collect(),
        max_tasks: 1,
        wait: Some(Duration::from_secs(1)),
        tenant: None,
    };
    // Warm the server's caches and connections, as a server that has been up a while has.
    for warm in [&metrics, &queues, &overview] {
        warm().await?;
    }

    let mut out = Vec::new();
    for run in 1..=runs {
        let lease = lease_samples(&worker, &lease).await?;
        // Top the backlog up again, so every run leases from the same number of tasks.
        let refill = (0..LEASE_SAMPLES)
            .map(|i| NewTask {
                payload: Some(serde_json::json!({ "item": i })),
            })
            .collect();
        submitter
            .job_submit(&job(QUEUES[0], Some(refill)))
            .await
            .context("cannot top the waiting backlog up")?;
        let figures = BigTableRun {
            lease,
            metrics: sample(SAMPLES, &metrics).await?,
            queues: sample(SAMPLES, &queues).await?,
            overview: sample(SAMPLES, &overview).await?,
            queue_demand: Percentiles::EMPTY,
            autoscaler_pass: Percentiles::EMPTY,
            rss_mib: server.rss_mib(),
        };
        eprintln!(
            "  big table     {label}, run {run}/{runs}: lease p99 {:.3} ms, /metrics p50 {:.1} ms, /v1/queues p50 {:.1} ms, overview p50 {:.1} ms, rss {:.1} MiB",
            figures.lease.p99_ms,
            figures.metrics.p50_ms,
            figures.queues.p50_ms,
            figures.overview.p50_ms,
            figures.rss_mib.unwrap_or(f64::NAN)
        );
        out.push(figures);
    }
    Ok(out)
}

/// [`LEASE_SAMPLES`] leases of one task, each completed before the next.
async fn lease_samples(worker: &Client, request: &LeaseRequest) -> Result<Percentiles> {
    let mut latencies = histogram()?;
    for _ in 0..LEASE_SAMPLES {
        let sent = Instant::now();
        let leased = worker.task_lease(request).await.context("lease failed")?;
        latencies.saturating_record(micros(sent.elapsed()));
        let Some(task) = leased.tasks.first() else {
            bail!("a lease found the waiting backlog empty");
        };
        worker
            .task_complete_one(&completion(task))
            .await
            .context("complete failed")?;
    }
    Ok(Percentiles::of(&latencies))
}

/// Time `call` up to `samples` times, stopping after [`FIGURE_BUDGET`] once it has
/// [`MIN_SAMPLES`].
async fn sample<F, Fut>(samples: u32, call: F) -> Result<Percentiles>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut latencies = histogram()?;
    let began = Instant::now();
    for taken in 0..samples {
        if taken >= MIN_SAMPLES && began.elapsed() >= FIGURE_BUDGET {
            break;
        }
        let sent = Instant::now();
        call().await?;
        latencies.saturating_record(micros(sent.elapsed()));
    }
    Ok(Percentiles::of(&latencies))
}

impl Percentiles {
    /// No samples.
    const EMPTY: Percentiles = Percentiles {
        p50_ms: 0.0,
        p99_ms: 0.0,
        samples: 0,
    };

    fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            p50_ms: histogram.value_at_quantile(0.50) as f64 / 1000.0,
            p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
            samples: u32::try_from(histogram.len()).unwrap_or(u32::MAX),
        }
    }
}

/// Sign in to the dashboard with `token` as a browser does (the form's CSRF cookie, then the
/// form); the `Cookie` header value that carries the session.
async fn sign_in(http: &reqwest::Client, url: &str, token: &str) -> Result<String> {
    let form = http
        .get(format!("{url}/login"))
        .send()
        .await
        .context("cannot fetch the dashboard's sign-in form")?;
    let csrf = set_cookie(form.headers(), LOGIN_COOKIE)
        .context("the sign-in form came without its CSRF cookie")?;
    let answer = http
        .post(format!("{url}/login"))
        .header(reqwest::header::COOKIE, format!("{LOGIN_COOKIE}={csrf}"))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(format!(
            "token={}&_csrf={}",
            form_encode(token),
            form_encode(&csrf)
        ))
        .send()
        .await
        .context("cannot sign in to the dashboard")?;
    let status = answer.status();
    let session = set_cookie(answer.headers(), SESSION_COOKIE).with_context(|| {
        format!("signing in to the dashboard was answered {status} without a session")
    })?;
    Ok(format!("{SESSION_COOKIE}={session}"))
}

/// The value a `Set-Cookie` header gives cookie `name`.
fn set_cookie(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(k, v)| k.trim() == name && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

/// `application/x-www-form-urlencoded` for one value.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Microseconds, from 1 µs to 10 minutes, 3 significant figures.
fn histogram() -> Result<Histogram<u64>> {
    Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).context("cannot make a latency histogram")
}

/// Whole microseconds, at least 1 (the histogram's lowest value).
fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The store being filled and measured, and how to hand it to a server and remove it.
enum Opened {
    Sqlite {
        dir: tempfile::TempDir,
        store: Option<DynStore>,
    },
    Postgres {
        url: String,
        schema: String,
        store: Arc<PostgresStore>,
    },
}

impl Opened {
    async fn open(backend: Backend, postgres_url: Option<&str>) -> Result<Self> {
        match (backend, postgres_url) {
            (Backend::Sqlite, _) => {
                let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
                let url = format!("sqlite://{}", dir.path().join("spillway.db").display());
                let options = SqliteOptions {
                    cache_bytes: PREFILL_CACHE_BYTES,
                };
                let store = crate::cmd::server::open_store(&url, options).await?;
                Ok(Opened::Sqlite {
                    dir,
                    store: Some(store),
                })
            }
            (Backend::Postgres, Some(url)) => {
                let schema = format!("spillway_bench_{}", super::harness::short_id());
                let store = Arc::new(
                    PostgresStore::connect(url, Some(&schema))
                        .await
                        .with_context(|| format!("cannot open PostgreSQL schema {schema}"))?,
                );
                Ok(Opened::Postgres {
                    url: url.to_string(),
                    schema,
                    store,
                })
            }
            (Backend::Postgres, None) => {
                bail!("no PostgreSQL URL: pass --postgres or set SPILLWAY_TEST_POSTGRES_URL")
            }
        }
    }

    fn dyn_store(&self) -> Result<DynStore> {
        match self {
            Opened::Sqlite { store, .. } => store
                .clone()
                .context("the SQLite store was already handed to the server"),
            Opened::Postgres { store, .. } => Ok(store.clone()),
        }
    }

    /// Open a SQLite store again with the server's default options (the prefill's larger
    /// page cache would flatter the figures); a PostgreSQL store stays as it is.
    async fn reopen_as_server(&mut self) -> Result<()> {
        if let Opened::Sqlite { dir, store } = self {
            let old = store.take();
            tokio::task::spawn_blocking(move || drop(old))
                .await
                .context("closing the SQLite store panicked")?;
            let url = format!("sqlite://{}", dir.path().join("spillway.db").display());
            *store = Some(crate::cmd::server::open_store(&url, SqliteOptions::default()).await?);
        }
        Ok(())
    }

    /// The `--store` URL for a server on this store. A SQLite store is closed first (its
    /// writer commits and stops), so the server is its only user.
    async fn close_for_server(&mut self) -> Result<String> {
        match self {
            Opened::Sqlite { dir, store } => {
                let old = store.take();
                // Dropping the last handle joins the writer thread: off the runtime.
                tokio::task::spawn_blocking(move || drop(old))
                    .await
                    .context("closing the SQLite store panicked")?;
                Ok(format!(
                    "sqlite://{}",
                    dir.path().join("spillway.db").display()
                ))
            }
            Opened::Postgres { url, schema, .. } => Ok(with_search_path(url, schema)),
        }
    }

    /// Remove the store's data.
    async fn remove(self) -> Result<()> {
        match self {
            Opened::Sqlite { dir, store } => {
                tokio::task::spawn_blocking(move || drop(store))
                    .await
                    .context("closing the SQLite store panicked")?;
                dir.close().context("cannot remove the temporary directory")
            }
            Opened::Postgres { store, .. } => store
                .drop_schema()
                .await
                .context("cannot drop the bench schema"),
        }
    }
}

/// `url` with `schema` as every session's search path, for a server process that is given
/// a URL only.
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_cookie_header_gives_its_value() {
        let mut headers = reqwest::header::HeaderMap::new();
        for value in [
            "spillway_login=; Path=/; Max-Age=0",
            "spillway_session=abc-_1; Path=/; HttpOnly",
        ] {
            headers.append(
                reqwest::header::SET_COOKIE,
                reqwest::header::HeaderValue::from_static(value),
            );
        }
        assert_eq!(
            set_cookie(&headers, SESSION_COOKIE).as_deref(),
            Some("abc-_1")
        );
        assert_eq!(set_cookie(&headers, LOGIN_COOKIE), None);
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form_encode("sw_a-b.c"), "sw_a-b.c");
        assert_eq!(form_encode("a b+c/="), "a%20b%2Bc%2F%3D");
    }

    #[test]
    fn the_schema_rides_in_the_url_options() {
        assert_eq!(
            with_search_path("postgres://u@h:5432/db", "s1"),
            "postgres://u@h:5432/db?options=-c%20search_path%3Ds1"
        );
        assert_eq!(
            with_search_path("postgres://u@h/db?sslmode=disable", "s1"),
            "postgres://u@h/db?sslmode=disable&options=-c%20search_path%3Ds1"
        );
    }
}
