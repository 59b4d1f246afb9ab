//! A background sampler that keeps the last hour of per-queue numbers in memory, one sample
//! a minute, for the overview's charts. Losing them on a restart only empties the charts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use spillway_core::Timestamp;
use spillway_core::api::PoolStatus;
use spillway_core::model::QueueStats;

use super::Dashboard;
use crate::state::AppState;
use spillway_store::QueueStatsQuery;

/// How often a sample is taken.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(60);
/// Samples kept per queue: one hour at one a minute.
pub const SAMPLES_KEPT: usize = 60;

/// One queue's numbers at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was taken.
    pub at: Timestamp,
    /// Tasks waiting (scheduled, available, retrying).
    pub waiting: u64,
    /// Tasks under lease.
    pub running: u64,
    /// Tasks that finished (succeeded or dead) since the previous sample.
    pub throughput: u64,
    /// Age in seconds of the oldest task that could be leased now.
    pub oldest_age: f64,
}

/// One pool's size at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSample {
    /// When it was taken.
    pub at: Timestamp,
    /// Workers the autoscaler wants.
    pub desired: u32,
    /// Workers the pool has.
    pub actual: u32,
}

#[derive(Debug, Default)]
struct Series {
    samples: VecDeque<Sample>,
    /// Succeeded plus dead at the last sample, to turn totals into a rate.
    finished: Option<u64>,
}

/// Recent samples by (tenant, queue).
#[derive(Debug, Default)]
pub struct Samples {
    series: Mutex<HashMap<(String, String), Series>>,
    pools: Mutex<HashMap<String, VecDeque<PoolSample>>>,
}

impl Samples {
    /// Record one sample per queue from `stats`, dropping the oldest beyond an hour.
    pub fn record(&self, stats: &[QueueStats], at: Timestamp) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        // Queues that no longer exist stop being charted.
        series.retain(|(tenant, queue), _| {
            stats
                .iter()
                .any(|s| &s.tenant == tenant && &s.queue == queue)
        });
        for s in stats {
            let entry = series
                .entry((s.tenant.clone(), s.queue.clone()))
                .or_default();
            let finished = s.counts.succeeded + s.counts.dead;
            // Retention deletes finished tasks, so a total can shrink: count that as zero.
            let throughput = entry
                .finished
                .map_or(0, |before| finished.saturating_sub(before));
            entry.finished = Some(finished);
            entry.samples.push_back(Sample {
                at,
                waiting: s.counts.scheduled + s.counts.available + s.counts.retrying,
                running: s.counts.leased,
                throughput,
                oldest_age: s.oldest_available_age_seconds.unwrap_or(0.0),
            });
            while entry.samples.len() > SAMPLES_KEPT {
                entry.samples.pop_front();
            }
        }
    }

    /// Record one sample per pool from `pools`, dropping the oldest beyond an hour.
    pub fn record_pools(&self, pools: &[PoolStatus], at: Timestamp) {
        let mut series = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        series.retain(|name, _| pools.iter().any(|p| &p.name == name));
        for p in pools {
            let entry = series.entry(p.name.clone()).or_default();
            entry.push_back(PoolSample {
                at,
                desired: p.desired,
                actual: p.actual,
            });
            while entry.len() > SAMPLES_KEPT {
                entry.pop_front();
            }
        }
    }

    /// The samples of one pool, oldest first.
    pub fn of_pool(&self, pool: &str) -> Vec<PoolSample> {
        let series = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        series
            .get(pool)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The samples of one queue, oldest first.
    pub fn of(&self, tenant: &str, queue: &str) -> Vec<Sample> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .get(&(tenant.to_string(), queue.to_string()))
            .map(|s| s.samples.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// Start sampling, if there is a runtime to sample on.
pub(super) fn spawn(state: &AppState, dashboard: &Arc<Dashboard>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::debug!("no tokio runtime: the dashboard's charts stay empty");
        return;
    };
    let state = state.clone();
    let dashboard = Arc::downgrade(dashboard);
    runtime.spawn(run(state, dashboard));
}

async fn run(state: AppState, dashboard: Weak<Dashboard>) {
    let shutdown = state.shared.shutdown.clone();
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // The router (and with it the dashboard) is gone: nobody will read samples.
        let Some(dashboard) = dashboard.upgrade() else {
            return;
        };
        let now = state.clock.now();
        match state
            .store
            .queue_stats(QueueStatsQuery { tenant: None, now })
            .await
        {
            Ok(stats) => dashboard.samples.record(&stats, now),
            Err(error) => tracing::warn!(%error, "dashboard sampler could not read queue stats"),
        }
        dashboard
            .samples
            .record_pools(&state.pools().statuses(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_core::state::StateCounts;

    fn stats(succeeded: u64, available: u64) -> QueueStats {
        QueueStats {
            tenant: "t".into(),
            queue: "q".into(),
            counts: StateCounts {
                succeeded,
                available,
                ..Default::default()
            },
            oldest_available_age_seconds: Some(3.0),
            paused: false,
        }
    }

    #[test]
    fn throughput_is_the_difference_and_the_ring_keeps_an_hour() {
        let samples = Samples::default();
        let at = chrono::Utc::now();
        samples.record(&[stats(10, 5)], at);
        samples.record(&[stats(25, 1)], at);
        samples.record(&[stats(3, 0)], at); // retention removed jobs
        let got = samples.of("t", "q");
        let rates: Vec<u64> = got.iter().map(|s| s.throughput).collect();
        assert_eq!(rates, vec![0, 15, 0]);
        assert_eq!(got[1].waiting, 1);
        for _ in 0..100 {
            samples.record(&[stats(3, 0)], at);
        }
        assert_eq!(samples.of("t", "q").len(), SAMPLES_KEPT);
        samples.record(&[], at);
        assert!(samples.of("t", "q").is_empty());
    }

    #[test]
    fn pool_samples_follow_desired_and_actual_and_forget_removed_pools() {
        let samples = Samples::default();
        let at = chrono::Utc::now();
        let pool = |desired, actual| PoolStatus {
            name: "p".into(),
            provider: "external".into(),
            tier: 0,
            min: 0,
            max: 5,
            desired,
            actual,
            busy: 0,
            idle: 0,
            draining: 0,
            down: 0,
            problems: Vec::new(),
            decisions: Vec::new(),
        };
        samples.record_pools(&[pool(0, 0)], at);
        samples.record_pools(&[pool(3, 1)], at);
        let got: Vec<(u32, u32)> = samples
            .of_pool("p")
            .iter()
            .map(|s| (s.desired, s.actual))
            .collect();
        assert_eq!(got, vec![(0, 0), (3, 1)]);
        for _ in 0..100 {
            samples.record_pools(&[pool(3, 3)], at);
        }
        assert_eq!(samples.of_pool("p").len(), SAMPLES_KEPT);
        samples.record_pools(&[], at);
        assert!(samples.of_pool("p").is_empty());
    }
}
