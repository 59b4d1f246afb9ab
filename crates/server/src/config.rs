//! The server's typed configuration. Unknown fields are errors; sizes and durations are given
//! in human units (`"10MiB"`, `"30s"`); every field has a named default.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spillway_core::Error;

use crate::size::ByteSize;

/// Default listen address: loopback only, so a fresh install is not reachable from outside.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// Default largest JSON request body.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Default largest payload of one task.
pub const DEFAULT_MAX_PAYLOAD_BYTES: u64 = spillway_core::model::DEFAULT_MAX_PAYLOAD_BYTES as u64;
/// Default largest single file upload (inputs and results).
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 1024 * 1024 * 1024;
/// Default time between lease reaper passes.
pub const DEFAULT_REAPER_INTERVAL: Duration = Duration::from_secs(1);
/// Default silence after which a worker is marked down.
pub const DEFAULT_WORKER_DOWN_AFTER: Duration = Duration::from_secs(30);
/// Default time between checks for silent workers.
pub const DEFAULT_WORKER_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Default time between retention cleaner passes.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// Default time a waiting lease call waits before looking again without a wake-up (retries
/// and delayed tasks become due without any signal).
pub const DEFAULT_LEASE_RECHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Default for asking a token on `/metrics`: no, so existing scrapers keep working.
pub const DEFAULT_METRICS_AUTH: bool = false;
/// Default time between passes that delete inputs of succeeded jobs.
pub const DEFAULT_INPUT_CLEANER_INTERVAL: Duration = Duration::from_secs(60);
/// Default most bytes of output kept per attempt in its whole log (the worker counts what goes
/// beyond and says so at the log's end).
pub const DEFAULT_MAX_LOG_BYTES: u64 = spillway_core::model::DEFAULT_MAX_LOG_BYTES;
/// Default time between passes of the log sealer, which writes the live logs of ended
/// attempts as objects.
pub const DEFAULT_LOG_SEAL_INTERVAL: Duration = Duration::from_secs(1);
/// Default time between readings of the database's clock on PostgreSQL: between them time goes
/// on by the monotonic clock, which drifts from the database's by parts per million, so a few
/// seconds keep replicas within milliseconds of each other for three tiny queries each.
pub const DEFAULT_CLOCK_SYNC_INTERVAL: Duration = Duration::from_secs(5);
/// Default bound on requests served at once (see [`crate::admission`]). A request costs a
/// task, its buffers (up to max_body_bytes for a JSON body) and a socket; 1024 of them is
/// several times what one machine's store can work on at once (the SQLite writer folds at most
/// 512 writes into a commit, a PostgreSQL pool has tens of connections), so the limit only
/// bites once answers would queue anyway, and it stays clear of the common 1024 open-files
/// limit being reached through requests alone.
pub const DEFAULT_MAX_IN_FLIGHT_REQUESTS: usize = 1024;
/// Default bound on lease long-polls parked waiting for work: ten thousand idle workers per
/// server, each parked call a small future and a socket, far under the in-flight cost.
pub const DEFAULT_MAX_LONG_POLLS: usize = 10_000;

/// How the HTTP server runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The URL clients reach this server at (e.g. behind a proxy); shown in the OpenAPI
    /// document. Default: none.
    pub public_url: Option<String>,
    /// Largest JSON request body.
    pub max_body_bytes: ByteSize,
    /// Largest payload of one task.
    pub max_payload_bytes: ByteSize,
    /// Largest single uploaded file (job input or task result).
    pub max_upload_bytes: ByteSize,
    /// Time between lease reaper passes.
    #[serde(with = "humantime_serde")]
    pub reaper_interval: Duration,
    /// Time a waiting lease call waits before looking again without a wake-up.
    #[serde(with = "humantime_serde")]
    pub lease_recheck_interval: Duration,
    /// A worker silent this long is marked down.
    #[serde(with = "humantime_serde")]
    pub worker_down_after: Duration,
    /// Time between checks for silent workers.
    #[serde(with = "humantime_serde")]
    pub worker_check_interval: Duration,
    /// Time between retention cleaner passes.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// Time between passes that delete the inputs of succeeded jobs.
    #[serde(with = "humantime_serde")]
    pub input_cleaner_interval: Duration,
    /// Most bytes of output kept per attempt in its whole log; a worker's chunks past it are
    /// refused (the worker counts what it drops and says so at the log's end).
    pub max_log_bytes: ByteSize,
    /// Time between passes of the log sealer, which writes the live log of each ended
    /// attempt as one object and deletes its chunks from the database.
    #[serde(with = "humantime_serde")]
    pub log_seal_interval: Duration,
    /// Time between readings of the database's clock, which replicas on PostgreSQL keep time
    /// by (unused on SQLite, where the server keeps time by the host's clock).
    #[serde(with = "humantime_serde")]
    pub clock_sync_interval: Duration,
    /// Ask for a bearer token on `/metrics`, of role `metrics` or `admin`: one with no tenant
    /// sees every series, one with a tenant only that tenant's queue series. Default false:
    /// `/metrics` answers anyone who can reach the server and lists every tenant's queues.
    pub metrics_auth: bool,
    /// Most requests served at once; more are answered 503 with Retry-After at once. Probes
    /// and /metrics are never refused; parked lease long-polls are not counted.
    pub max_in_flight_requests: usize,
    /// Most lease long-polls parked waiting for work; more are answered 503 with Retry-After.
    pub max_long_polls: usize,
    /// Serve fewer API requests at once than `max_in_flight_requests` while answers queue, so
    /// the ones admitted keep their latency (see [`crate::admission`]). Default true; false
    /// keeps the limit fixed.
    pub adaptive_in_flight_limit: bool,
    /// Pools of workers the autoscaler resizes (`[[server.pools]]`). Default: none, and
    /// then no autoscaler runs.
    pub pools: Vec<spillway_autoscale::config::PoolConfig>,
    /// How the autoscaler weighs backlog against time (`[server.autoscale]`).
    pub autoscale: spillway_autoscale::config::PolicyConfig,
    /// The `spillway` binary that `local` pools run as `spillway worker`. Default: the
    /// running program.
    pub worker_program: Option<std::path::PathBuf>,
    /// Mark the dashboard's cookies `Secure`, so browsers send them over HTTPS only; turn on
    /// when the dashboard is reached over HTTPS (e.g. behind a TLS proxy). Default: false.
    pub secure_cookies: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            max_body_bytes: ByteSize(DEFAULT_MAX_BODY_BYTES),
            max_payload_bytes: ByteSize(DEFAULT_MAX_PAYLOAD_BYTES),
            max_upload_bytes: ByteSize(DEFAULT_MAX_UPLOAD_BYTES),
            reaper_interval: DEFAULT_REAPER_INTERVAL,
            lease_recheck_interval: DEFAULT_LEASE_RECHECK_INTERVAL,
            worker_down_after: DEFAULT_WORKER_DOWN_AFTER,
            worker_check_interval: DEFAULT_WORKER_CHECK_INTERVAL,
            retention_interval: DEFAULT_RETENTION_INTERVAL,
            input_cleaner_interval: DEFAULT_INPUT_CLEANER_INTERVAL,
            max_log_bytes: ByteSize(DEFAULT_MAX_LOG_BYTES),
            log_seal_interval: DEFAULT_LOG_SEAL_INTERVAL,
            clock_sync_interval: DEFAULT_CLOCK_SYNC_INTERVAL,
            metrics_auth: DEFAULT_METRICS_AUTH,
            max_in_flight_requests: DEFAULT_MAX_IN_FLIGHT_REQUESTS,
            max_long_polls: DEFAULT_MAX_LONG_POLLS,
            adaptive_in_flight_limit: true,
            pools: Vec::new(),
            autoscale: spillway_autoscale::config::PolicyConfig::default(),
            worker_program: None,
            secure_cookies: false,
        }
    }
}

fn default_listen() -> SocketAddr {
    // A constant literal that always parses; checked by the tests below.
    DEFAULT_LISTEN
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7070)))
}

impl ServerConfig {
    /// Check the values are usable; the error names the field and how to fix it.
    pub fn validate(&self) -> spillway_core::Result<()> {
        for (name, size) in [
            ("max_body_bytes", self.max_body_bytes),
            ("max_payload_bytes", self.max_payload_bytes),
            ("max_upload_bytes", self.max_upload_bytes),
            ("max_log_bytes", self.max_log_bytes),
        ] {
            if size.0 == 0 {
                return Err(Error::invalid(format!(
                    "{name} is zero: give a size such as \"10MiB\""
                )));
            }
        }
        for (name, interval) in [
            ("reaper_interval", self.reaper_interval),
            ("lease_recheck_interval", self.lease_recheck_interval),
            ("worker_down_after", self.worker_down_after),
            ("worker_check_interval", self.worker_check_interval),
            ("retention_interval", self.retention_interval),
            ("input_cleaner_interval", self.input_cleaner_interval),
            ("clock_sync_interval", self.clock_sync_interval),
            ("log_seal_interval", self.log_seal_interval),
        ] {
            if interval.is_zero() {
                return Err(Error::invalid(format!(
                    "{name} is zero: give a duration such as \"5s\""
                )));
            }
        }
        for (name, limit) in [
            ("max_in_flight_requests", self.max_in_flight_requests),
            ("max_long_polls", self.max_long_polls),
        ] {
            if limit == 0 {
                return Err(Error::invalid(format!(
                    "{name} is zero: no request could be served; give at least 1 (default {})",
                    if name == "max_long_polls" {
                        DEFAULT_MAX_LONG_POLLS
                    } else {
                        DEFAULT_MAX_IN_FLIGHT_REQUESTS
                    }
                )));
            }
        }
        spillway_autoscale::config::validate_pools(&self.pools)?;
        self.autoscale.validate()?;
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Error::invalid(format!(
                "public_url {url:?} is not an http(s) URL: give e.g. \"https://spillway.example.com\""
            )));
        }
        Ok(())
    }

    /// The JSON body limit as a `usize` for the router.
    pub fn body_limit(&self) -> usize {
        usize::try_from(self.max_body_bytes.0).unwrap_or(usize::MAX)
    }

    /// The payload limit as a `usize` for validation.
    pub fn payload_limit(&self) -> usize {
        usize::try_from(self.max_payload_bytes.0).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = ServerConfig::default();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.max_body_bytes.0, 10 * 1024 * 1024);
        assert!(!config.metrics_auth);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn human_units_parse() {
        let config: ServerConfig = serde_json::from_value(serde_json::json!({
            "listen": "0.0.0.0:8080",
            "max_upload_bytes": "2GiB",
            "worker_down_after": "1m",
        }))
        .expect("config parses");
        assert_eq!(config.max_upload_bytes.0, 2 * 1024 * 1024 * 1024);
        assert_eq!(config.worker_down_after, Duration::from_secs(60));
        assert_eq!(config.reaper_interval, DEFAULT_REAPER_INTERVAL);
    }

    #[test]
    fn pools_parse_and_are_validated() {
        let config: ServerConfig = serde_json::from_value(serde_json::json!({
            "pools": [
                {"name": "home", "provider": "local", "queues": ["default"], "max": 4},
                {"name": "spot", "provider": "external", "queues": ["default"], "tier": 1},
            ],
            "autoscale": {"drain_target": "2m"},
            "worker_program": "/usr/local/bin/spillway",
        }))
        .expect("config parses");
        assert_eq!(config.pools.len(), 2);
        assert_eq!(config.autoscale.drain_target, Duration::from_secs(120));
        config.validate().expect("valid pools");

        let mut burst_only = config.clone();
        burst_only.pools.remove(0);
        let err = burst_only
            .validate()
            .expect_err("burst pool without home pool");
        assert!(err.message().contains("no tier-0 pool"), "{err}");

        let mut cloud = config;
        cloud.pools[1].provider = "kubernetes".to_string();
        cloud
            .validate()
            .expect("provider names are checked by the registry the binary plugs in");
        let err = crate::autoscale::ProviderRegistry::builtin()
            .check_pools(&cloud.pools)
            .expect_err("the server alone has no kubernetes provider");
        assert!(err.message().contains("\"kubernetes\""), "{err}");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let err = serde_json::from_value::<ServerConfig>(serde_json::json!({"listne": "x"}))
            .expect_err("typo accepted");
        assert!(err.to_string().contains("listne"), "{err}");
    }

    #[test]
    fn zero_limits_are_rejected() {
        let config = ServerConfig {
            max_body_bytes: ByteSize(0),
            ..Default::default()
        };
        let err = config.validate().expect_err("zero accepted");
        assert!(err.message().contains("max_body_bytes"), "{err}");
        let config = ServerConfig {
            max_in_flight_requests: 0,
            ..Default::default()
        };
        let err = config.validate().expect_err("zero accepted");
        assert!(err.message().contains("max_in_flight_requests"), "{err}");
    }
}
