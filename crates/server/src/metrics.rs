//! Prometheus metrics. Queue gauges are read from the store at scrape time, so every replica
//! reports the same numbers; counters and histograms count what passed through this server.
//!
//! Label values are stable strings (state names, outcome names, route templates, pool problem
//! kinds), never derived from type names.
//!
//! Families are kept and encoded in OpenMetrics by `prometheus_client`; [`format`] chooses
//! between that and the Prometheus text format 0.0.4 for each scrape and converts.

pub mod format;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use spillway_core::model::QueueStats;
use spillway_core::state::TaskState;
use spillway_core::{Error, Result, Timestamp};
use spillway_store::QueueStatsQuery;
use spillway_store::Store;
use spillway_store::WorkerList;

/// The media type of the metrics text in OpenMetrics, the format `prometheus_client` encodes.
pub const METRICS_CONTENT_TYPE: &str = format::OPENMETRICS_CONTENT_TYPE;

/// The queue label used when the queue of an outcome is not known to this server (a lease
/// taken through another replica, or expired leases counted by the reaper).
pub const UNKNOWN_QUEUE: &str = "unknown";

/// How a task attempt ended, as counted in `spillway_task_outcomes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Completed.
    Succeeded,
    /// Reported failed and retryable.
    Failed,
    /// Reported failed and not retryable: a dead letter at once.
    Dead,
    /// Handed back by a stopping worker.
    Preempted,
    /// The lease ran out without word from the worker.
    LeaseExpired,
    /// Cancelled with its job.
    Cancelled,
}

impl Outcome {
    /// The stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Dead => "dead",
            Outcome::Preempted => "preempted",
            Outcome::LeaseExpired => "lease_expired",
            Outcome::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    tenant: String,
    queue: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    tenant: String,
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    queue: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    pool: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct PoolProblemLabels {
    pool: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClockLabels {
    reference: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    status: String,
}

/// Keeps a lease call counted in `spillway_lease_waiters` while it lives.
#[derive(Debug)]
pub struct LeaseWaiting(Gauge);

impl Drop for LeaseWaiting {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The per-queue gauges, the only series labelled with a tenant: read from the store at scrape
/// time.
#[derive(Debug)]
struct QueueGauges {
    tasks: Family<TaskLabels, Gauge>,
    oldest: Family<QueueLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl QueueGauges {
    /// New gauges, registered in `registry`.
    fn register(registry: &mut Registry) -> Self {
        let tasks = Family::<TaskLabels, Gauge>::default();
        registry.register(
            "spillway_tasks",
            "Tasks by tenant, queue and state",
            tasks.clone(),
        );
        let oldest = Family::<QueueLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "spillway_oldest_available_age_seconds",
            "Age of the oldest task that could be leased now",
            oldest.clone(),
        );
        Self { tasks, oldest }
    }

    /// Replace every series with the queues of `stats`.
    fn fill(&self, stats: &[QueueStats]) {
        self.tasks.clear();
        self.oldest.clear();
        for queue in stats {
            for state in TaskState::ALL {
                let count = i64::try_from(queue.counts.get(state)).unwrap_or(i64::MAX);
                self.tasks
                    .get_or_create(&TaskLabels {
                        tenant: queue.tenant.clone(),
                        queue: queue.queue.clone(),
                        state: state.as_str().to_string(),
                    })
                    .set(count);
            }
            self.oldest
                .get_or_create(&QueueLabels {
                    tenant: queue.tenant.clone(),
                    queue: queue.queue.clone(),
                })
                .set(queue.oldest_available_age_seconds.unwrap_or(0.0));
        }
    }
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    queues: QueueGauges,
    outcomes: Family<OutcomeLabels, Counter>,
    lease_duration: Histogram,
    end_to_end: Histogram,
    http: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram>,
    lease_waiters: Gauge,
    lease_wakeups: Counter,
    in_flight: Gauge,
    in_flight_limit: Gauge,
    pool_desired: Family<PoolLabels, Gauge>,
    pool_workers: Family<PoolStateLabels, Gauge>,
    workers_down: Gauge,
    pool_problems: Family<PoolProblemLabels, Gauge>,
    pool_problem_occurrences: Family<PoolProblemLabels, Counter>,
    /// The (pool, kind) pairs of the last [`Metrics::set_pool_problems`], to count only new ones.
    pool_problems_seen: Mutex<BTreeSet<PoolProblemLabels>>,
    never_registered: Family<PoolLabels, Counter>,
    store_up: Gauge,
    autoscaler_leader: Gauge,
    clock_offset: Family<ClockLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    // Scrapes clear and refill the gauges; one at a time keeps them consistent.
    scrape: tokio::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Register every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let queues = QueueGauges::register(&mut registry);
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "spillway_task_outcomes",
            "Task attempts by how they ended, as reported through this server",
            outcomes.clone(),
        );
        // 0.05s to about 14 hours.
        let lease_duration = Histogram::new(exponential_buckets(0.05, 2.0, 20));
        registry.register(
            "spillway_lease_duration_seconds",
            "Time a task held its lease, from lease to complete or fail",
            lease_duration.clone(),
        );
        let end_to_end = Histogram::new(exponential_buckets(0.05, 2.0, 22));
        registry.register(
            "spillway_task_end_to_end_seconds",
            "Time from a job's submit to one of its tasks finishing",
            end_to_end.clone(),
        );
        let http = Family::<HttpLabels, Counter>::default();
        registry.register(
            "spillway_http_requests",
            "HTTP requests by route template and status",
            http.clone(),
        );
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 5ms to about 20s.
            Histogram::new(exponential_buckets(0.005, 2.0, 13))
        });
        registry.register(
            "spillway_http_request_duration_seconds",
            "Time to answer HTTP requests by route template; a lease call's includes its wait for work",
            http_duration.clone(),
        );
        let lease_waiters = Gauge::default();
        registry.register(
            "spillway_lease_waiters",
            "Lease calls waiting for work right now",
            lease_waiters.clone(),
        );
        let lease_wakeups = Counter::default();
        registry.register(
            "spillway_lease_wakeups",
            "Waiting lease calls woken by new work (each looks for it once; one new task wakes one call)",
            lease_wakeups.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "spillway_http_in_flight",
            "Requests being served now (probes, /metrics and parked lease long-polls not counted)",
            in_flight.clone(),
        );
        let in_flight_limit = Gauge::default();
        registry.register(
            "spillway_http_in_flight_limit",
            "API requests served at once for now: max_in_flight_requests, or fewer while answers queue (the adaptive limit); more are answered 503",
            in_flight_limit.clone(),
        );
        let pool_desired = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "spillway_pool_desired_workers",
            "Workers the autoscaler wants in each pool",
            pool_desired.clone(),
        );
        let pool_workers = Family::<PoolStateLabels, Gauge>::default();
        registry.register(
            "spillway_pool_workers",
            "Workers of each pool by state (busy, idle, starting, draining, down)",
            pool_workers.clone(),
        );
        let workers_down = Gauge::default();
        registry.register(
            "spillway_workers_down",
            "Registered workers that missed their heartbeats",
            workers_down.clone(),
        );
        let pool_problems = Family::<PoolProblemLabels, Gauge>::default();
        registry.register(
            "spillway_pool_problems",
            "Problems keeping each pool below the size asked for, by kind (quota, stock_out, permission, start_failed, never_registered, provider_error), as the autoscaler last saw them; reported by the replica that leads it",
            pool_problems.clone(),
        );
        let pool_problem_occurrences = Family::<PoolProblemLabels, Counter>::default();
        registry.register(
            "spillway_pool_problem_occurrences",
            "Times a problem of this kind appeared on the pool (absent at the autoscaler's previous pass, present at this one)",
            pool_problem_occurrences.clone(),
        );
        let never_registered = Family::<PoolLabels, Counter>::default();
        registry.register(
            "spillway_pool_instances_never_registered",
            "Instances whose worker had not registered within the pool's startup time, each counted once",
            never_registered.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "spillway_store_up",
            "1 when this scrape's reads of the store succeeded, else 0 (the queue series are then left out)",
            store_up.clone(),
        );
        let autoscaler_leader = Gauge::default();
        registry.register(
            "spillway_autoscaler_leader",
            "1 while this replica leads the autoscaler (the one that resizes pools), else 0",
            autoscaler_leader.clone(),
        );
        let clock_offset =
            Family::<ClockLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "spillway_clock_offset_seconds",
            "How far this host's wall clock is ahead of the reference clock the server keeps time by (negative: behind), at the last reading; only on PostgreSQL, where the reference is the database's clock",
            clock_offset.clone(),
        );
        Self {
            clock_offset,
            lease_waiters,
            lease_wakeups,
            in_flight,
            in_flight_limit,
            autoscaler_leader,
            pool_desired,
            pool_workers,
            workers_down,
            pool_problems,
            pool_problem_occurrences,
            pool_problems_seen: Mutex::new(BTreeSet::new()),
            never_registered,
            store_up,
            registry,
            queues,
            outcomes,
            lease_duration,
            end_to_end,
            http,
            http_duration,
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// Count `n` attempts of `queue` that ended as `outcome`.
    pub fn outcome(&self, queue: &str, outcome: Outcome, n: u64) {
        if n == 0 {
            return;
        }
        self.outcomes
            .get_or_create(&OutcomeLabels {
                queue: queue.to_string(),
                outcome: outcome.as_str().to_string(),
            })
            .inc_by(n);
    }

    /// Record how long a lease was held.
    pub fn lease_held(&self, held: Duration) {
        self.lease_duration.observe(held.as_secs_f64());
    }

    /// Record the time from submit to a task finishing.
    pub fn end_to_end(&self, took: Duration) {
        self.end_to_end.observe(took.as_secs_f64());
    }

    /// Count a lease call as waiting until the returned guard is dropped.
    pub fn lease_waiting(&self) -> LeaseWaiting {
        self.lease_waiters.inc();
        LeaseWaiting(self.lease_waiters.clone())
    }

    /// Count one waiting lease call woken by new work.
    pub fn lease_woken(&self) {
        self.lease_wakeups.inc();
    }

    /// Count one HTTP request and how long it took to answer.
    pub fn http_request(&self, route: &str, status: u16, took: Duration) {
        self.http
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Publish the requests in flight and the adaptive limit on them.
    pub fn set_admission(&self, in_flight: usize, limit: usize) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.in_flight.set(gauge(in_flight));
        self.in_flight_limit.set(gauge(limit));
    }

    /// Whether this replica leads the autoscaler now.
    pub fn set_autoscaler_leader(&self, leading: bool) {
        self.autoscaler_leader.set(i64::from(leading));
    }

    /// Publish how far this host's wall clock is ahead of `reference` (the clock the server
    /// keeps time by, `"database"`), negative when behind.
    pub fn clock_offset(&self, reference: &str, offset: chrono::TimeDelta) {
        self.clock_offset
            .get_or_create(&ClockLabels {
                reference: reference.to_string(),
            })
            .set(offset.as_seconds_f64());
    }

    /// Publish what the autoscaler last saw of its pools.
    pub fn set_pools(&self, pools: &[spillway_core::api::PoolStatus]) {
        self.pool_desired.clear();
        self.pool_workers.clear();
        for pool in pools {
            let gauge = |n: u32| i64::from(n);
            self.pool_desired
                .get_or_create(&PoolLabels {
                    pool: pool.name.clone(),
                })
                .set(gauge(pool.desired));
            let starting = pool.actual.saturating_sub(pool.busy + pool.idle);
            for (state, n) in [
                ("busy", pool.busy),
                ("idle", pool.idle),
                ("starting", starting),
                ("draining", pool.draining),
                ("down", pool.down),
            ] {
                self.pool_workers
                    .get_or_create(&PoolStateLabels {
                        pool: pool.name.clone(),
                        state: state.to_string(),
                    })
                    .set(gauge(n));
            }
        }
    }

    /// Publish the problems of each pool the autoscaler looked at in its pass, by kind (stable
    /// label values, see [`spillway_autoscale::provider::PoolProblemKind::as_str`]); pools
    /// left out have none. A (pool, kind) absent from the previous call counts as one
    /// occurrence. A replica that stops leading publishes an empty map.
    pub fn set_pool_problems(&self, problems: &BTreeMap<String, Vec<&str>>) {
        let mut now_seen = BTreeMap::<PoolProblemLabels, i64>::new();
        for (pool, kinds) in problems {
            for kind in kinds {
                *now_seen
                    .entry(PoolProblemLabels {
                        pool: pool.clone(),
                        kind: (*kind).to_string(),
                    })
                    .or_default() += 1;
            }
        }
        let mut seen = lock(&self.pool_problems_seen);
        self.pool_problems.clear();
        for (labels, count) in &now_seen {
            self.pool_problems.get_or_create(labels).set(*count);
            if !seen.contains(labels) {
                self.pool_problem_occurrences.get_or_create(labels).inc();
            }
        }
        *seen = now_seen.into_keys().collect();
    }

    /// Count `n` instances of `pool` whose worker did not register within its startup time.
    pub fn never_registered(&self, pool: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.never_registered
            .get_or_create(&PoolLabels {
                pool: pool.to_string(),
            })
            .inc_by(n);
    }

    /// Refresh the queue gauges from the store and encode every metric as OpenMetrics text:
    /// every tenant's series and the server-wide ones. When the store cannot be read, the
    /// queue series are left out and `spillway_store_up` is 0, so the scrape still answers.
    pub async fn render(&self, store: &dyn Store, now: Timestamp) -> Result<String> {
        let _one_at_a_time = self.scrape.lock().await;
        let up = match self.read_store(store, now).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "metrics: could not read the store; queue series left out");
                self.queues.fill(&[]);
                false
            }
        };
        self.store_up.set(i64::from(up));
        encode(&self.registry)
    }

    async fn read_store(&self, store: &dyn Store, now: Timestamp) -> Result<()> {
        let stats = store
            .queue_stats(QueueStatsQuery { tenant: None, now })
            .await?;
        self.queues.fill(&stats);
        let workers = store.worker_list(WorkerList { tenant: None, now }).await?;
        let down = workers
            .iter()
            .filter(|w| w.state == spillway_core::model::WorkerState::Down)
            .count();
        self.workers_down
            .set(i64::try_from(down).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Encode only `tenant`'s series: its queues' task counts and oldest available age. The
    /// server-wide series (requests, outcomes, latencies, lease waiters, pools, down workers)
    /// are left out, since they count every tenant's work together.
    pub async fn render_tenant(
        &self,
        store: &dyn Store,
        tenant: &str,
        now: Timestamp,
    ) -> Result<String> {
        let stats = store
            .queue_stats(QueueStatsQuery {
                tenant: Some(tenant.to_string()),
                now,
            })
            .await?;
        // A registry of this scrape's own, so the shared gauges are not touched.
        let mut registry = Registry::default();
        QueueGauges::register(&mut registry).fill(&stats);
        encode(&registry)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data that stays consistent across a panic; keep serving it.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn encode(registry: &Registry) -> Result<String> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .map_err(|e| Error::internal("could not encode metrics").with_source(e))?;
    Ok(text)
}
