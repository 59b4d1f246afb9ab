//! The clock sync: replicas on PostgreSQL keep time by the database's clock.
//!
//! Lease expiries are wall-clock timestamps that one replica writes and another compares with
//! its own time, so the replicas must agree on the time whatever their hosts' clocks say: a
//! replica whose clock stepped an hour ahead would otherwise reap the others' live leases. Every
//! [`Config::interval`] this service reads the database's clock ([`Store::clock_now`]) a few
//! times in a row, keeps the reading with the shortest round trip
//! ([`spillway_core::clock::best_reading`]) and anchors [`AnchoredTime`] at its midpoint;
//! between readings time goes on by the monotonic clock, which never steps. The server reads
//! that time through a [`SteadyClock`], so a step of the database's own clock is slewed at 5%
//! like a step of the system clock on SQLite. When the database cannot be reached, time goes on
//! from the last anchor and every failed pass is a warning.
//!
//! The host's wall clock is read only to report how far it is off (the
//! `spillway_clock_offset_seconds` gauge, and a warning when that is more than
//! [`OFFSET_WARNING`]), never to tell the time.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use spillway_core::clock::{Clock, MAX_ROUND_TRIP, Reading, best_reading};
use spillway_core::{Error, Result};
use spillway_store::{DynStore, Store};
use tokio_util::sync::CancellationToken;

use crate::clock::{AnchoredTime, SteadyClock};
use crate::metrics::Metrics;
use crate::services::Service;

/// Default time between readings.
pub const DEFAULT_INTERVAL: Duration = crate::config::DEFAULT_CLOCK_SYNC_INTERVAL;
/// Readings taken in a row each pass; the quickest is kept (the first may have to open a
/// connection, a later one finds it open).
pub const DEFAULT_SAMPLES: usize = 3;
/// How far the host's wall clock may be from the database's before it is reported: NTP keeps
/// hosts within milliseconds, so a second means a clock that stepped or is not synchronised.
pub const OFFSET_WARNING: TimeDelta = TimeDelta::seconds(1);
/// The reference clock's name in metrics and logs.
pub const REFERENCE: &str = "database";

/// How the clock sync runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time between passes.
    pub interval: Duration,
    /// Readings taken in a row each pass.
    pub samples: usize,
    /// Readings with a longer round trip are not anchored to.
    pub max_round_trip: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            samples: DEFAULT_SAMPLES,
            max_round_trip: MAX_ROUND_TRIP,
        }
    }
}

/// Read the store's clock `config.samples` times in a row and keep the best reading.
pub async fn read(store: &dyn Store, config: &Config) -> Result<Reading> {
    let mut readings = Vec::with_capacity(config.samples.max(1));
    for _ in 0..config.samples.max(1) {
        let sent = Instant::now();
        let time = store.clock_now().await?;
        readings.push(Reading {
            sent,
            received: Instant::now(),
            time,
        });
    }
    best_reading(&readings, config.max_round_trip).ok_or_else(|| {
        Error::unavailable(format!(
            "the database took longer than {:?} to tell its time, {} times in a row",
            config.max_round_trip,
            readings.len()
        ))
    })
}

/// The database's time for this replica, and what keeps it anchored.
pub struct ClockSync {
    store: DynStore,
    time: Arc<AnchoredTime>,
    config: Config,
    offset: Mutex<OffsetReport>,
}

impl ClockSync {
    /// Anchor to the store's clock (a server on PostgreSQL does not start without it).
    pub async fn start(store: DynStore, config: Config) -> Result<Self> {
        let first = read(&*store, &config).await.map_err(|e| {
            Error::unavailable(format!(
                "cannot read the database's clock, which replicas keep time by: {e}"
            ))
        })?;
        tracing::info!(
            round_trip_us = u64::try_from(first.round_trip().as_micros()).unwrap_or(u64::MAX),
            "keeping time by the database's clock"
        );
        Ok(Self {
            store,
            time: Arc::new(AnchoredTime::new(first.anchor())),
            config,
            offset: Mutex::new(OffsetReport::default()),
        })
    }

    /// The clock the server runs on: the anchored time through a [`SteadyClock`], so a step of
    /// the database's clock is slewed.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(SteadyClock::following(REFERENCE, self.time.clone()))
    }

    /// One pass: read the database's clock and anchor to it, then report how far the host's
    /// wall clock is from it. Returns 0: nothing in the store changed.
    pub async fn pass(&self, metrics: &Metrics) -> Result<u64> {
        let reading = read(&*self.store, &self.config).await.map_err(|e| {
            Error::unavailable(format!(
                "cannot read the database's clock ({e}): time goes on by the monotonic clock from the last reading"
            ))
        })?;
        self.time.set(reading.anchor());
        let offset = chrono::Utc::now() - self.time.now();
        metrics.clock_offset(REFERENCE, offset);
        let note = self
            .offset
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(offset);
        match note {
            Some(OffsetNote::Off) => tracing::warn!(
                offset_ms = offset.num_milliseconds(),
                "this host's wall clock is off from the database's; leases and schedules keep the database's time"
            ),
            Some(OffsetNote::Agrees) => tracing::info!(
                offset_ms = offset.num_milliseconds(),
                "this host's wall clock agrees with the database's again"
            ),
            None => {}
        }
        Ok(0)
    }

    /// Run a pass every interval until `stop` fires, publishing the host's offset in `metrics`.
    pub fn spawn(self, metrics: Arc<Metrics>, stop: CancellationToken) -> Service {
        let interval = self.config.interval;
        let sync = Arc::new(self);
        Service::spawn("clock_sync", interval, stop, move || {
            let (sync, metrics) = (sync.clone(), metrics.clone());
            async move { sync.pass(&metrics).await }
        })
    }
}

/// What a reading of the host's offset calls for in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OffsetNote {
    /// Off by more than [`OFFSET_WARNING`], for the first time or by a new amount: a warning.
    Off,
    /// Within [`OFFSET_WARNING`] again after a warning.
    Agrees,
}

/// The host's offset last warned about, so that a steady offset is reported once.
#[derive(Debug, Default)]
struct OffsetReport {
    warned: Option<TimeDelta>,
}

impl OffsetReport {
    fn note(&mut self, offset: TimeDelta) -> Option<OffsetNote> {
        if offset.abs() <= OFFSET_WARNING {
            return self.warned.take().map(|_| OffsetNote::Agrees);
        }
        if self
            .warned
            .is_some_and(|last| (offset - last).abs() <= OFFSET_WARNING)
        {
            return None;
        }
        self.warned = Some(offset);
        Some(OffsetNote::Off)
    }
}

#[cfg(test)]
mod tests {
    use spillway_store::sqlite::SqliteStore;

    use super::*;

    async fn store() -> (tempfile::TempDir, DynStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("spillway.db"))
            .await
            .expect("open the store");
        (dir, Arc::new(store))
    }

    #[tokio::test]
    async fn a_pass_anchors_to_the_store_clock_and_reports_the_hosts_offset() {
        let (_dir, store) = store().await;
        let sync = ClockSync::start(store.clone(), Config::default())
            .await
            .expect("first reading");
        let metrics = Metrics::new();
        sync.pass(&metrics).await.expect("a pass");
        let clock = sync.clock();
        let drift = (clock.now() - chrono::Utc::now()).abs();
        assert!(drift < TimeDelta::seconds(1), "{drift}");
        // SQLite's clock is the host's: no offset worth a warning.
        assert_eq!(sync.offset.lock().expect("lock").warned, None);
        let text = metrics
            .render(&*store, clock.now())
            .await
            .expect("metrics render");
        assert!(
            text.contains("spillway_clock_offset_seconds{reference=\"database\"}"),
            "{text}"
        );
    }

    #[test]
    fn a_steady_offset_is_warned_about_once_and_its_end_noted() {
        let mut report = OffsetReport::default();
        let ms = TimeDelta::milliseconds;
        assert_eq!(report.note(ms(300)), None, "within the tolerance");
        assert_eq!(report.note(TimeDelta::hours(1)), Some(OffsetNote::Off));
        assert_eq!(
            report.note(TimeDelta::hours(1) + ms(500)),
            None,
            "the same offset again"
        );
        assert_eq!(
            report.note(-TimeDelta::hours(1)),
            Some(OffsetNote::Off),
            "a new offset"
        );
        assert_eq!(report.note(ms(-20)), Some(OffsetNote::Agrees));
        assert_eq!(report.note(ms(-20)), None, "said once");
    }
}
