//! `spillway server`: the HTTP API, metrics and background services over a store and blobs.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use spillway_autoscale::config::PolicyConfig;
use spillway_blob::{BlobStore, ObjectBlobs};
use spillway_core::clock::Clock;
use spillway_server::services::clock_sync::{self, ClockSync};
use spillway_server::size::ByteSize;
use spillway_server::{AppState, ServerConfig};
use spillway_store::DynStore;
use spillway_store::sqlite::{SqliteOptions, SqliteStore};
use tokio_util::sync::CancellationToken;

use super::Ctx;
use crate::config::{ADMIN_TOKEN_FILE, FileConfig};

/// Options of `spillway server` (and of the server inside `spillway up`).
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address to listen on (default 127.0.0.1:7070).
    #[arg(long, env = "SPILLWAY_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// State store: `sqlite:///path/spillway.db` (default: in the data directory) or
    /// `postgres://user@host:5432/db` for several server replicas on one database.
    #[arg(long, env = "SPILLWAY_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Object storage for inputs and results: `file:///path` (default: in the data
    /// directory), `s3://bucket/prefix`, `gs://bucket/prefix` or `memory://`.
    #[arg(long, env = "SPILLWAY_BLOBS", value_name = "URL")]
    pub blobs: Option<String>,
    /// Ask for a bearer token of role metrics or admin on /metrics (`--metrics-auth`, or
    /// `--metrics-auth=false` to turn off what spillway.toml turned on). Default: off,
    /// /metrics answers anyone who can reach the server.
    #[arg(
        long,
        env = "SPILLWAY_METRICS_AUTH",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub metrics_auth: Option<bool>,
    /// Mark the dashboard's cookies Secure (sent over HTTPS only): use when the dashboard is
    /// reached over HTTPS, e.g. behind a TLS proxy (also `secure_cookies` in [server]).
    #[arg(long, env = "SPILLWAY_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// Most requests served at once; more are answered 503 with Retry-After (default 1024;
    /// probes, /metrics and parked lease long-polls are not counted).
    #[arg(long, env = "SPILLWAY_MAX_IN_FLIGHT_REQUESTS", value_name = "N")]
    pub max_in_flight_requests: Option<usize>,
    /// Serve fewer API requests at once than --max-in-flight-requests while answers queue, so
    /// those admitted keep their latency and the rest get 503 with Retry-After at once
    /// (default true; `--adaptive-in-flight-limit=false` keeps the limit fixed).
    #[arg(
        long,
        env = "SPILLWAY_ADAPTIVE_IN_FLIGHT_LIMIT",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub adaptive_in_flight_limit: Option<bool>,
    /// Most lease long-polls parked waiting for work; more are answered 503 with Retry-After
    /// (default 10000).
    #[arg(long, env = "SPILLWAY_MAX_LONG_POLLS", value_name = "N")]
    pub max_long_polls: Option<usize>,
    /// Memory for SQLite's page cache, e.g. `64MiB` (the default) or `256MiB` for a large
    /// database on a roomy machine; at least 1MiB. The server's memory grows with the
    /// database up to this much, then stays put. Not used with PostgreSQL.
    #[arg(long, env = "SPILLWAY_SQLITE_CACHE", value_name = "SIZE", value_parser = ByteSize::parse)]
    pub sqlite_cache: Option<ByteSize>,
}

/// A server running in this process.
pub struct Running {
    /// The URL clients use.
    pub url: String,
    /// The admin token, when this start created it or it was found in the data directory.
    pub admin_token: Option<String>,
    /// The server's state, for operations of the process that started it (`up`).
    pub state: AppState,
    /// Ends when the server has stopped.
    pub task: tokio::task::JoinHandle<Result<()>>,
}

/// Open the store named by `url`; `sqlite` applies to a SQLite file.
pub async fn open_store(url: &str, sqlite: SqliteOptions) -> Result<DynStore> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = spillway_store::postgres::PostgresStore::connect(url, None)
            .await
            .with_context(|| format!("cannot open the PostgreSQL store {}", redact(url)))?;
        return Ok(Arc::new(store));
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    if path.is_empty() {
        bail!("store URL {url:?} names no file: use sqlite:///absolute/path.db or postgres://…");
    }
    let store = SqliteStore::open_with(Path::new(path), sqlite)
        .await
        .with_context(|| format!("cannot open the SQLite store {path}"))?;
    Ok(Arc::new(store))
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Start the server described by the config file and `args`; it stops when `stop` is
/// cancelled.
pub async fn start(ctx: &Ctx, args: &ServerArgs, stop: CancellationToken) -> Result<Running> {
    let config = server_config(&ctx.file, args)?;
    create_data_dir(&ctx.data_dir)?;
    let data_dir = ctx
        .data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", ctx.data_dir.display()))?;
    let store_url = args
        .store
        .clone()
        .or_else(|| ctx.file.storage.store.clone())
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("spillway.db").display()));
    let blobs_url = args
        .blobs
        .clone()
        .or_else(|| ctx.file.storage.blobs.clone())
        .unwrap_or_else(|| format!("file://{}", data_dir.join("blobs").display()));

    let sqlite_cache = args
        .sqlite_cache
        .or(ctx.file.storage.sqlite_cache)
        .map_or(SqliteOptions::DEFAULT_CACHE_BYTES, |size| size.0);
    let sqlite = SqliteOptions {
        cache_bytes: sqlite_cache,
    };
    let store = open_store(&store_url, sqlite).await?;
    let blobs: Arc<dyn BlobStore> = Arc::new(
        ObjectBlobs::from_url(&blobs_url, &Default::default())
            .with_context(|| format!("cannot open the object store {blobs_url}"))?,
    );
    // Replicas on PostgreSQL compare each other's lease expiries, so they keep the database's
    // time rather than their hosts'; one process on SQLite keeps its host's, steadied.
    let clock_sync = if store.backend() == "postgres" {
        let sync = ClockSync::start(
            store.clone(),
            clock_sync::Config {
                interval: config.clock_sync_interval,
                ..Default::default()
            },
        )
        .await?;
        Some(sync)
    } else {
        None
    };
    let clock: Arc<dyn Clock> = match &clock_sync {
        Some(sync) => sync.clock(),
        None => Arc::new(spillway_server::SteadyClock::system()),
    };

    let token_path = data_dir.join(ADMIN_TOKEN_FILE);
    let admin_token = match spillway_server::bootstrap(&store, clock.now()).await? {
        Some(secret) => {
            write_secret(&token_path, &secret)?;
            Some(secret)
        }
        None => std::fs::read_to_string(&token_path)
            .ok()
            .map(|t| t.trim().to_string()),
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another server running there?",
                config.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let state =
        AppState::new(store, blobs, clock, config).with_providers(crate::providers::registry())?;
    spillway_server::spawn_services(&state, stop.clone());
    if let Some(sync) = clock_sync {
        sync.spawn(state.metrics.clone(), stop.clone());
    }
    tracing::info!(%url, store = %redact(&store_url), blobs = %blobs_url, "server listening");
    let serving = state.clone();
    let task = tokio::spawn(async move {
        spillway_server::serve(listener, serving, async move { stop.cancelled().await }).await?;
        Ok(())
    });
    Ok(Running {
        url,
        admin_token,
        state,
        task,
    })
}

/// The server's settings: the file's `[server]`, then what flags and environment variables
/// give, then the file's top-level pools and autoscale settings (see [`autoscale_config`]).
pub fn server_config(file: &FileConfig, args: &ServerArgs) -> Result<ServerConfig> {
    let mut config: ServerConfig = file.server.clone().unwrap_or_default();
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    config.secure_cookies |= args.secure_cookies;
    if let Some(metrics_auth) = args.metrics_auth {
        config.metrics_auth = metrics_auth;
    }
    if let Some(limit) = args.max_in_flight_requests {
        config.max_in_flight_requests = limit;
    }
    if let Some(limit) = args.max_long_polls {
        config.max_long_polls = limit;
    }
    if let Some(adaptive) = args.adaptive_in_flight_limit {
        config.adaptive_in_flight_limit = adaptive;
    }
    autoscale_config(file, &mut config)?;
    Ok(config)
}

/// Mode of a data directory this program creates: it holds the admin token, the database
/// and every job's inputs and results, so its owner only.
const DATA_DIR_MODE: u32 = 0o700;

/// Create the data directory (and missing parents) with [`DATA_DIR_MODE`]. An existing one is
/// left as it is, with a warning when other users may look inside.
fn create_data_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(dir)
        .with_context(|| {
            format!(
                "cannot create the data directory {}: choose a writable one with --data-dir",
                dir.display()
            )
        })?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the data directory {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            data_dir = %dir.display(),
            mode = format!("{:o}", mode & 0o7777),
            "other users may look into the data directory (inputs, results, logs): run `chmod 700` on it"
        );
    }
    Ok(())
}

/// Move the file's top-level `[[pools]]` and `[autoscale]` into the server config; each may be
/// given there or under `[server]`, not both.
pub fn autoscale_config(file: &FileConfig, config: &mut ServerConfig) -> Result<()> {
    if !file.pools.is_empty() {
        if !config.pools.is_empty() {
            bail!(
                "pools are given twice, as [[pools]] and [[server.pools]]: keep one of the two lists"
            );
        }
        config.pools = file.pools.clone();
    }
    if let Some(autoscale) = &file.autoscale {
        if config.autoscale != PolicyConfig::default() {
            bail!(
                "autoscale settings are given twice, as [autoscale] and [server.autoscale]: keep one"
            );
        }
        config.autoscale = autoscale.clone();
    }
    config
        .validate()
        .context("invalid server settings in the config file")?;
    crate::providers::registry()
        .check_pools(&config.pools)
        .context("invalid pools in the config file")?;
    Ok(())
}

/// Write a secret readable by its owner only (an existing file is made so before it is
/// written).
pub fn write_secret(path: &Path, secret: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} readable by its owner only", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Run the server until SIGTERM or SIGINT.
pub async fn run(ctx: &Ctx, args: ServerArgs) -> Result<ExitCode> {
    let stop = CancellationToken::new();
    let running = start(ctx, &args, stop.clone()).await?;
    if let Some(token) = &running.admin_token {
        eprintln!(
            "admin token in {}",
            ctx.data_dir.join(ADMIN_TOKEN_FILE).display()
        );
        tracing::debug!(token_len = token.len(), "admin token ready");
    }
    println!("spillway server listening on {}", running.url);
    super::shutdown_signal().await;
    tracing::info!("stopping");
    stop.cancel();
    running.task.await.context("server task panicked")??;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        server: ServerArgs,
    }

    fn with_flags(file: &str, flags: &[&str]) -> ServerConfig {
        let file = FileConfig::parse(file).expect("file parses");
        let args = Flags::try_parse_from(std::iter::once("spillway").chain(flags.iter().copied()))
            .expect("flags parse")
            .server;
        server_config(&file, &args).expect("a valid config")
    }

    #[test]
    fn metrics_auth_comes_from_the_file_or_the_flag() {
        assert!(!with_flags("", &[]).metrics_auth, "off by default");
        assert!(with_flags("", &["--metrics-auth"]).metrics_auth);
        assert!(with_flags("[server]\nmetrics_auth = true\n", &[]).metrics_auth);
        assert!(
            !with_flags("[server]\nmetrics_auth = true\n", &["--metrics-auth=false"]).metrics_auth,
            "the flag overrides the file"
        );
    }

    /// The permission bits of `path`, in octal as `ls -l` readers think of them.
    fn mode(path: &Path) -> String {
        format!(
            "{:o}",
            std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
        )
    }

    #[test]
    fn secrets_are_written_readable_by_their_owner_only_even_over_an_open_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fresh = dir.path().join("fresh.token");
        write_secret(&fresh, "sw_a").expect("write");
        assert_eq!(mode(&fresh), "600");
        let open = dir.path().join("open.token");
        std::fs::write(&open, "old").expect("write");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_secret(&open, "sw_b").expect("write");
        assert_eq!(mode(&open), "600");
        assert_eq!(std::fs::read_to_string(&open).expect("read"), "sw_b\n");
    }

    #[test]
    fn a_new_data_directory_is_its_owners_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("share/spillway");
        create_data_dir(&data).expect("create");
        assert_eq!(mode(&data), "700");
        assert_eq!(mode(&dir.path().join("share")), "700");
    }

    #[test]
    fn top_level_pools_and_autoscale_reach_the_server_config() {
        let file = FileConfig::parse(
            "[autoscale]\ndrain_target = \"2m\"\n[[pools]]\nname = \"home\"\nprovider = \"local\"\nqueues = [\"default\"]\nmax = 4\n",
        )
        .expect("parses");
        let mut config = ServerConfig::default();
        autoscale_config(&file, &mut config).expect("valid");
        assert_eq!(config.pools.len(), 1);
        assert_eq!(config.pools[0].max, 4);
        assert_eq!(config.autoscale.drain_target.as_secs(), 120);
        let err = autoscale_config(&file, &mut config).expect_err("given twice");
        assert!(err.to_string().contains("given twice"), "{err}");
    }

    fn args(argv: &[&str]) -> ServerArgs {
        Flags::try_parse_from(std::iter::once("server").chain(argv.iter().copied()))
            .expect("flags parse")
            .server
    }

    #[test]
    fn secure_cookies_comes_from_the_flag_or_the_server_section() {
        let none = FileConfig::parse("").expect("parses");
        let on = FileConfig::parse("[server]\nsecure_cookies = true\n").expect("parses");
        let config = |file: &FileConfig, argv: &[&str]| {
            server_config(file, &args(argv))
                .expect("valid")
                .secure_cookies
        };
        assert!(!config(&none, &[]), "off by default");
        assert!(config(&none, &["--secure-cookies"]));
        assert!(config(&on, &[]));
    }

    #[test]
    fn admission_limits_come_from_the_flags_over_the_server_section() {
        let none = FileConfig::parse("").expect("parses");
        let file =
            FileConfig::parse("[server]\nmax_in_flight_requests = 64\nmax_long_polls = 500\n")
                .expect("parses");
        let limits = |file: &FileConfig, argv: &[&str]| {
            let config = server_config(file, &args(argv)).expect("valid");
            (config.max_in_flight_requests, config.max_long_polls)
        };
        assert_eq!(limits(&none, &[]), (1024, 10_000), "the defaults");
        assert_eq!(limits(&file, &[]), (64, 500));
        assert_eq!(
            limits(
                &file,
                &["--max-in-flight-requests", "8", "--max-long-polls", "9"]
            ),
            (8, 9)
        );
        let adaptive = |file: &FileConfig, argv: &[&str]| {
            server_config(file, &args(argv))
                .expect("valid")
                .adaptive_in_flight_limit
        };
        let fixed =
            FileConfig::parse("[server]\nadaptive_in_flight_limit = false\n").expect("parses");
        assert!(adaptive(&none, &[]), "adaptive by default");
        assert!(!adaptive(&fixed, &[]));
        assert!(adaptive(&fixed, &["--adaptive-in-flight-limit"]));
        assert!(!adaptive(&none, &["--adaptive-in-flight-limit=false"]));
        let err = server_config(&none, &args(&["--max-in-flight-requests", "0"]))
            .expect_err("zero accepted");
        assert!(
            format!("{err:#}").contains("max_in_flight_requests"),
            "{err:#}"
        );
    }
}
