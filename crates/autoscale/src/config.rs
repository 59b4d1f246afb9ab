//! Typed configuration of pools (`[[pools]]` in `spillway.toml`) and of the scaling policy
//! (`[autoscale]`). Unknown fields are errors, durations are human (`"90s"`, `"5m"`) and every
//! default is a named constant.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use spillway_core::model::Resources;
use spillway_core::names::validate_name;
use spillway_core::{Error, Result};

/// Default smallest size of a pool: pools may scale to zero.
pub const DEFAULT_MIN_WORKERS: u32 = 0;
/// Default largest size of a pool.
pub const DEFAULT_MAX_WORKERS: u32 = 10;
/// Default tasks one worker runs at once.
pub const DEFAULT_CONCURRENCY: u32 = 1;
/// Default tier: 0, the home pools that take every task.
pub const DEFAULT_TIER: u32 = 0;
/// Default cost of one worker for one hour (in whatever currency the operator uses).
pub const DEFAULT_COST_PER_HOUR: f64 = 0.0;
/// Default expected time from asking for a worker to that worker leasing tasks.
pub const DEFAULT_STARTUP: Duration = Duration::from_secs(60);
/// Default time a worker must have been idle before it may be drained.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default time within which the backlog should be gone.
pub const DEFAULT_DRAIN_TARGET: Duration = Duration::from_secs(60);
/// Default time the policy must want fewer workers before it drains any.
pub const DEFAULT_SCALE_IN_WINDOW: Duration = Duration::from_secs(60);
/// Default task duration assumed for a queue before any of its tasks has finished.
pub const DEFAULT_ASSUMED_TASK_DURATION: Duration = Duration::from_secs(60);
/// Default time between two passes of the autoscaler.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Largest pool size accepted, to catch typos such as an extra zero or two.
pub const MAX_POOL_SIZE: u32 = 100_000;

/// The provider of the in-memory fake of [`crate::memory`], for tests and the simulator.
pub const MEMORY_PROVIDER: &str = "memory";
/// The tenant whose queues every pool serves and whose workers make up its instances. A
/// worker of another tenant that registers with a pool's name is not one of the pool's.
pub const POOL_TENANT: &str = spillway_core::model::DEFAULT_TENANT;

/// One `[[pools]]` entry: a named group of workers the autoscaler resizes.
///
/// The fields every pool has are typed here; a provider's own settings sit in a table named
/// after the provider (`kubernetes = { … }`), which only that provider's crate reads and checks
/// (see [`PoolConfig::section`]). Unknown fields are refused by [`PoolConfig::validate`]: serde
/// cannot deny them itself once the provider tables are collected with `flatten`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolConfig {
    /// The pool's name; workers report it when they register.
    pub name: String,
    /// The name of the provider that starts and stops its workers (`"local"`, `"external"`,
    /// `"kubernetes"`, `"compute_engine"`, `"memory"`: whatever the binary registered).
    pub provider: String,
    /// The queues its workers serve (at least one).
    pub queues: Vec<String>,
    /// Fewest workers, kept even when there is no work. Default 0.
    #[serde(default = "default_min")]
    pub min: u32,
    /// Most workers. Default 10.
    #[serde(default = "default_max")]
    pub max: u32,
    /// Tasks one worker runs at once. Default 1.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// 0 for home pools, which take every task; 1, 2, … for burst tiers, which take only tasks
    /// of burstable jobs and are used in order once the tiers below are full. Default 0.
    #[serde(default = "default_tier")]
    pub tier: u32,
    /// Cost of one worker for one hour; within a tier the cheaper pool is used first. Default 0.
    #[serde(default = "default_cost")]
    pub cost_per_hour: f64,
    /// Expected time from asking for a worker to it leasing tasks. Default 60s. An instance
    /// whose worker has not registered by then is a `never_registered` pool problem.
    #[serde(default = "default_startup", with = "humantime_serde")]
    pub startup: Duration,
    /// A worker idle this long may be drained when the pool is too large. Default 2m.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// What one worker offers (cpu, memory_mb, gpu).
    #[serde(default)]
    pub resources: Resources,
    /// Every other key of the entry: the provider's own section (its name is the provider's),
    /// or a mistake that [`PoolConfig::validate`] reports.
    #[serde(flatten)]
    pub sections: BTreeMap<String, serde_json::Value>,
}

fn default_min() -> u32 {
    DEFAULT_MIN_WORKERS
}
fn default_max() -> u32 {
    DEFAULT_MAX_WORKERS
}
fn default_concurrency() -> u32 {
    DEFAULT_CONCURRENCY
}
fn default_tier() -> u32 {
    DEFAULT_TIER
}
fn default_cost() -> f64 {
    DEFAULT_COST_PER_HOUR
}
fn default_startup() -> Duration {
    DEFAULT_STARTUP
}
fn default_idle_timeout() -> Duration {
    DEFAULT_IDLE_TIMEOUT
}

impl PoolConfig {
    /// A pool with every optional field at its default.
    pub fn new(name: impl Into<String>, provider: &str, queues: Vec<String>) -> Self {
        Self {
            name: name.into(),
            provider: provider.to_string(),
            queues,
            min: DEFAULT_MIN_WORKERS,
            max: DEFAULT_MAX_WORKERS,
            concurrency: DEFAULT_CONCURRENCY,
            tier: DEFAULT_TIER,
            cost_per_hour: DEFAULT_COST_PER_HOUR,
            startup: DEFAULT_STARTUP,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            resources: Resources::default(),
            sections: BTreeMap::new(),
        }
    }

    /// The tenant whose workers make up this pool ([`POOL_TENANT`]): providers count and drain
    /// only the workers of this tenant that registered with the pool's name.
    pub fn tenant(&self) -> &'static str {
        POOL_TENANT
    }

    /// The provider's own section (`kubernetes = { … }` of a `kubernetes` pool), parsed as `T`;
    /// `None` when the pool has none. Provider crates own `T` and check it.
    pub fn section<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let Some(value) = self.sections.get(&self.provider) else {
            return Ok(None);
        };
        serde_json::from_value(value.clone()).map(Some).map_err(|e| {
            Error::invalid(format!(
                "pool {:?} has an invalid {} section: {e}; see the provider's guide in docs/ for its fields",
                self.name, self.provider
            ))
        })
    }

    /// Set the provider's own section from `section` (tests and tools that build pools in code).
    pub fn set_section<T: Serialize>(&mut self, section: &T) -> Result<()> {
        let value = serde_json::to_value(section).map_err(|e| {
            Error::invalid(format!(
                "pool {:?}: its {} section cannot be written: {e}",
                self.name, self.provider
            ))
        })?;
        self.sections.insert(self.provider.clone(), value);
        Ok(())
    }

    /// Whether its workers serve `queue`.
    pub fn serves(&self, queue: &str) -> bool {
        self.queues.iter().any(|q| q == queue)
    }

    /// Refuse a size outside `[min, max]` as invalid, naming the bounds: every provider's
    /// `pool_resize` starts with this.
    pub fn check_size(&self, desired: u32) -> Result<()> {
        if desired < self.min || desired > self.max {
            return Err(Error::invalid(format!(
                "desired size {desired} of pool {:?} is outside [{}, {}]: clamp it to the pool's min and max",
                self.name, self.min, self.max
            )));
        }
        Ok(())
    }

    /// Check one pool on its own.
    pub fn validate(&self) -> Result<()> {
        validate_name("pool", &self.name)?;
        let name = &self.name;
        if self.queues.is_empty() {
            return Err(Error::invalid(format!(
                "pool {name:?} serves no queue: list at least one in `queues`"
            )));
        }
        for queue in &self.queues {
            validate_name("queue", queue)?;
        }
        if self.max == 0 || self.max > MAX_POOL_SIZE {
            return Err(Error::invalid(format!(
                "pool {name:?} has max {}: use 1 to {MAX_POOL_SIZE}",
                self.max
            )));
        }
        if self.min > self.max {
            return Err(Error::invalid(format!(
                "pool {name:?} has min {} above max {}: lower min or raise max",
                self.min, self.max
            )));
        }
        if self.concurrency == 0 || self.concurrency > 1024 {
            return Err(Error::invalid(format!(
                "pool {name:?} has concurrency {}: use 1 to 1024",
                self.concurrency
            )));
        }
        if !(self.cost_per_hour.is_finite() && self.cost_per_hour >= 0.0) {
            return Err(Error::invalid(format!(
                "pool {name:?} has cost_per_hour {}: use a number of at least 0",
                self.cost_per_hour
            )));
        }
        if self.provider.is_empty() {
            return Err(Error::invalid(format!(
                "pool {name:?} has an empty provider: set provider = \"local\", \"external\", \"kubernetes\" or \"compute_engine\""
            )));
        }
        if let Some(other) = self.sections.keys().find(|key| **key != self.provider) {
            return Err(Error::invalid(format!(
                "pool {name:?} has unknown field or section {other:?} (its provider is {:?}): fix the spelling, or remove the section or set provider = {other:?}",
                self.provider
            )));
        }
        Ok(())
    }
}

/// Check a whole `[[pools]]` list: each pool, unique names, and a home pool (tier 0) for every
/// queue a pool serves, since tasks of jobs that are not burstable run only on tier 0.
pub fn validate_pools(pools: &[PoolConfig]) -> Result<()> {
    let mut names = BTreeSet::new();
    for pool in pools {
        pool.validate()?;
        if !names.insert(pool.name.as_str()) {
            return Err(Error::invalid(format!(
                "pool {:?} is listed twice: give each [[pools]] entry its own name",
                pool.name
            )));
        }
    }
    for pool in pools.iter().filter(|p| p.tier > 0) {
        for queue in &pool.queues {
            if !pools.iter().any(|p| p.tier == 0 && p.serves(queue)) {
                return Err(Error::invalid(format!(
                    "queue {queue:?} has burst pool {:?} but no tier-0 pool: tasks of jobs that are not burstable would never run; add a tier-0 pool for it",
                    pool.name
                )));
            }
        }
    }
    Ok(())
}

/// `[autoscale]`: how the policy weighs backlog against time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// How soon the backlog should be gone; the pool is sized so it is. Default 60s.
    #[serde(with = "humantime_serde")]
    pub drain_target: Duration,
    /// How long the policy must want fewer workers before it drains any. Default 60s.
    #[serde(with = "humantime_serde")]
    pub scale_in_window: Duration,
    /// Task duration assumed for a queue until one of its tasks has finished. Default 60s.
    #[serde(with = "humantime_serde")]
    pub assumed_task_duration: Duration,
    /// Time between two passes of the autoscaler. Default 10s.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            drain_target: DEFAULT_DRAIN_TARGET,
            scale_in_window: DEFAULT_SCALE_IN_WINDOW,
            assumed_task_duration: DEFAULT_ASSUMED_TASK_DURATION,
            interval: DEFAULT_INTERVAL,
        }
    }
}

impl PolicyConfig {
    /// Check the durations are usable.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("drain_target", self.drain_target),
            ("assumed_task_duration", self.assumed_task_duration),
            ("interval", self.interval),
        ] {
            if value.is_zero() {
                return Err(Error::invalid(format!(
                    "autoscale {field} is 0: give a positive duration such as \"30s\""
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        autoscale: PolicyConfig,
        pools: Vec<PoolConfig>,
    }

    const SAMPLE: &str = r#"
[autoscale]
drain_target = "2m"

[[pools]]
name = "home"
provider = "local"
queues = ["default"]
min = 1
max = 4
concurrency = 2
cost_per_hour = 0.1
startup = "5s"
resources = { cpu = 2.0, memory_mb = 4096 }

[[pools]]
name = "spot"
provider = "compute_engine"
compute_engine = { project = "p", zone = "europe-west4-a", instance_group = "workers" }
queues = ["default"]
max = 100
tier = 1
cost_per_hour = 0.3
idle_timeout = "90s"
"#;

    #[test]
    fn sample_parses_with_defaults_filled_in() {
        let file: File = toml::from_str(SAMPLE).expect("sample parses");
        assert_eq!(file.autoscale.drain_target, Duration::from_secs(120));
        assert_eq!(file.autoscale.scale_in_window, DEFAULT_SCALE_IN_WINDOW);
        let [home, spot] = &file.pools[..] else {
            panic!("two pools expected: {:?}", file.pools)
        };
        assert_eq!((home.min, home.max, home.concurrency), (1, 4, 2));
        assert_eq!(home.startup, Duration::from_secs(5));
        assert_eq!(home.resources.memory_mb, 4096);
        assert_eq!(spot.provider, "compute_engine");
        assert!(spot.sections.contains_key("compute_engine"), "{spot:?}");
        assert_eq!((spot.min, spot.tier), (DEFAULT_MIN_WORKERS, 1));
        assert_eq!(spot.startup, DEFAULT_STARTUP);
        assert_eq!(spot.idle_timeout, Duration::from_secs(90));
        validate_pools(&file.pools).expect("sample is valid");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let text = SAMPLE.replace("tier = 1", "teir = 1");
        let file: File = toml::from_str(&text).expect("provider sections are collected");
        let err = validate_pools(&file.pools).expect_err("typo must fail");
        assert!(err.to_string().contains("teir"), "{err}");
    }

    #[test]
    fn a_section_of_another_provider_is_refused() {
        let text = SAMPLE.replace("provider = \"compute_engine\"", "provider = \"kubernetes\"");
        let file: File = toml::from_str(&text).expect("parses");
        let err = validate_pools(&file.pools).expect_err("section of another provider");
        assert!(err.message().contains("\"compute_engine\""), "{err}");
        assert!(
            err.message().contains("provider is \"kubernetes\""),
            "{err}"
        );
    }

    #[test]
    fn the_provider_section_round_trips() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Section {
            zone: String,
        }
        let mut pool = PoolConfig::new("p", "cloud", vec!["q".into()]);
        assert_eq!(pool.section::<Section>().expect("none"), None);
        let section = Section { zone: "z".into() };
        pool.set_section(&section).expect("set");
        assert_eq!(pool.section::<Section>().expect("parse"), Some(section));
        pool.sections
            .insert("cloud".into(), serde_json::json!({"zone": 3}));
        let err = pool.section::<Section>().expect_err("wrong type");
        assert!(err.message().contains("invalid cloud section"), "{err}");
    }

    #[test]
    fn invalid_pools_are_refused_with_the_fix() {
        let base = PoolConfig::new("p", MEMORY_PROVIDER, vec!["q".into()]);
        type Change = Box<dyn Fn(&mut PoolConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            ("serves no queue", Box::new(|p| p.queues.clear())),
            ("max 0", Box::new(|p| p.max = 0)),
            ("above max", Box::new(|p| p.min = 11)),
            ("concurrency 0", Box::new(|p| p.concurrency = 0)),
            ("cost_per_hour", Box::new(|p| p.cost_per_hour = -1.0)),
            (
                "invalid pool name",
                Box::new(|p| p.name = "Bad Name".into()),
            ),
        ];
        for (want, change) in cases {
            let mut pool = base.clone();
            change(&mut pool);
            let err = pool.validate().expect_err(want);
            assert!(err.message().contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn sizes_outside_the_bounds_are_invalid() {
        let mut pool = PoolConfig::new("spot", MEMORY_PROVIDER, vec!["q".into()]);
        pool.min = 1;
        pool.max = 3;
        pool.check_size(1).expect("min");
        pool.check_size(3).expect("max");
        let err = pool.check_size(4).expect_err("above");
        assert!(err.message().contains("outside [1, 3]"), "{err}");
        assert!(pool.check_size(0).is_err());
    }

    #[test]
    fn burst_pool_without_home_pool_is_refused() {
        let mut spot = PoolConfig::new("spot", MEMORY_PROVIDER, vec!["q".into()]);
        spot.tier = 1;
        let err = validate_pools(&[spot.clone()]).expect_err("no home pool");
        assert!(err.message().contains("no tier-0 pool"), "{err}");
        let home = PoolConfig::new("home", MEMORY_PROVIDER, vec!["q".into()]);
        validate_pools(&[home.clone(), spot]).expect("home pool present");
        let err = validate_pools(&[home.clone(), home]).expect_err("duplicate");
        assert!(err.message().contains("listed twice"), "{err}");
    }
}
