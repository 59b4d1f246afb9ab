//! The server's clock: the wall clock's rate without its steps.
//!
//! Lease expiries, backoff and retention are wall-clock timestamps in the store, so a server
//! that read the system clock directly would expire every running lease at once when the clock
//! jumps forward (an NTP step, a VM resumed after a pause) and keep dead leases for an hour when
//! it jumps back. [`SteadyClock`] answers with the wall clock while it keeps time, and slews
//! towards it at 5% when it steps ([`spillway_core::clock::steer`]), warning once per step.
//!
//! That is enough for one server, not for replicas on PostgreSQL: their expiries are compared
//! across hosts, and a replica whose wall clock stepped an hour ahead would stay ahead of the
//! others for hours and reap their live leases. There the server runs on [`AnchoredTime`], the
//! database's clock read every few seconds ([`crate::services::clock_sync`]) and carried on by
//! the monotonic clock in between, through a [`SteadyClock`] so that a step of the database's
//! own clock is slewed too.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use spillway_core::Timestamp;
use spillway_core::clock::{Anchor, Clock, SystemClock, steer};

/// A clock that follows `wall` but slews across its steps.
pub struct SteadyClock {
    wall: Arc<dyn Clock>,
    /// What `wall` is, for the warnings: "system" or "database".
    source: &'static str,
    last: Mutex<Reading>,
}

struct Reading {
    now: Timestamp,
    at: Instant,
    /// Whether a step is being slewed away (so it is reported once, not on every reading).
    stepping: bool,
}

impl SteadyClock {
    /// A steady clock over the system clock: what a server runs with.
    pub fn system() -> Self {
        Self::over(Arc::new(SystemClock))
    }

    /// A steady clock over `wall` (a test's clock that steps).
    pub fn over(wall: Arc<dyn Clock>) -> Self {
        Self::following("system", wall)
    }

    /// A steady clock over `wall`, named `source` in its warnings ("database").
    pub fn following(source: &'static str, wall: Arc<dyn Clock>) -> Self {
        let now = wall.now();
        Self {
            wall,
            source,
            last: Mutex::new(Reading {
                now,
                at: Instant::now(),
                stepping: false,
            }),
        }
    }
}

impl Clock for SteadyClock {
    fn now(&self) -> Timestamp {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let at = Instant::now();
        let steered = steer(
            last.now,
            at.saturating_duration_since(last.at),
            self.wall.now(),
        );
        match (steered.step, last.stepping) {
            (Some(gap), false) => tracing::warn!(
                clock = self.source,
                gap_ms = gap.num_milliseconds(),
                "the clock stepped; leases and schedules keep steady time and catch up at 5%"
            ),
            (None, true) => tracing::info!(
                clock = self.source,
                "the steady clock has caught up with the clock it follows"
            ),
            _ => {}
        }
        *last = Reading {
            now: steered.now,
            at,
            stepping: steered.step.is_some(),
        };
        steered.now
    }
}

/// A reference clock (the database's) as this process knows it: the latest [`Anchor`], carried
/// on by the monotonic clock. Reading it takes a lock held for a copy, never a round trip; the
/// anchor is replaced by whoever reads the reference clock
/// ([`crate::services::clock_sync`]), and between readings, or while the reference cannot be
/// reached, time goes on from the last anchor.
#[derive(Debug)]
pub struct AnchoredTime {
    anchor: RwLock<Anchor>,
}

impl AnchoredTime {
    /// Time from `first` on.
    pub fn new(first: Anchor) -> Self {
        Self {
            anchor: RwLock::new(first),
        }
    }

    /// Go on from `anchor` (a newer reading).
    pub fn set(&self, anchor: Anchor) {
        *self.anchor.write().unwrap_or_else(PoisonError::into_inner) = anchor;
    }

    /// The anchor time goes on from.
    pub fn anchor(&self) -> Anchor {
        *self.anchor.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for AnchoredTime {
    fn now(&self) -> Timestamp {
        self.anchor().time_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeDelta;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("a valid time")
    }

    #[test]
    fn anchored_time_goes_on_from_the_latest_anchor() {
        let base = Instant::now();
        let time = AnchoredTime::new(Anchor {
            at: base,
            time: at(0),
        });
        let first = time.now();
        assert!(first >= at(0), "{first}");
        assert!(first < at(60), "{first}");
        time.set(Anchor {
            at: base + Duration::from_secs(3_600),
            time: at(100),
        });
        // The new anchor lies in the monotonic future: now is before it.
        assert!(time.now() < at(100), "{}", time.now());
    }

    #[test]
    fn a_step_of_the_anchored_time_is_slewed_by_the_steady_clock() {
        let anchored = Arc::new(AnchoredTime::new(Anchor {
            at: Instant::now(),
            time: at(0),
        }));
        let steady = SteadyClock::following("database", anchored.clone());
        let before = steady.now();
        // The reference clock is read again and says an hour later than expected.
        anchored.set(Anchor {
            at: Instant::now(),
            time: at(3_600),
        });
        let after = steady.now();
        assert!(
            after - before < TimeDelta::seconds(1),
            "the step went through: {before} -> {after}"
        );
    }
}
