//! Injected time, so that leases, backoff and retention can be tested by moving a clock.
//!
//! Also the IO-free parts of the server's clocks: [`steer`] (the wall clock's rate without its
//! steps) and [`Anchor`] (a reference clock, the database's, read over a round trip and carried
//! on by the monotonic clock between readings).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// A clock that only moves when a test tells it to.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Timestamp>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Move the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }

    /// Set the clock to `to`.
    pub fn set(&self, to: Timestamp) {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Add a std duration to a timestamp, saturating instead of overflowing.
pub fn add(at: Timestamp, by: std::time::Duration) -> Timestamp {
    chrono::Duration::from_std(by)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// Subtract a std duration from a timestamp, saturating instead of overflowing.
pub fn sub(at: Timestamp, by: std::time::Duration) -> Timestamp {
    chrono::Duration::from_std(by)
        .ok()
        .and_then(|d| at.checked_sub_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// How far the wall clock may disagree with the steady estimate before it counts as a step.
pub const STEP_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(1);
/// The fastest a steady clock closes the gap to a stepped wall clock: one second of
/// correction per twenty seconds elapsed, so a lease never runs more than 5% short or long.
pub const SLEW_RATE: f64 = 0.05;

/// What [`steer`] made of one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steered {
    /// The steady time to answer with.
    pub now: Timestamp,
    /// How far the wall clock is from where the steady clock would be without correction,
    /// when that is more than [`STEP_TOLERANCE`] (a step being slewed away); otherwise `None`.
    pub step: Option<chrono::TimeDelta>,
}

/// The next reading of a clock that follows the wall clock's rate but not its steps.
///
/// `last` is the previous answer and `elapsed` the monotonic time since it; `wall` is the
/// wall clock now. Within [`STEP_TOLERANCE`] of `last + elapsed` the wall clock is followed
/// (small NTP corrections); beyond it, the answer moves towards the wall clock by at most
/// [`SLEW_RATE`] of `elapsed`. Answers never go backwards. A lease timed by such a clock
/// neither expires all at once when the clock jumps forward (or a suspended VM resumes) nor
/// lasts an hour longer when it jumps back.
pub fn steer(last: Timestamp, elapsed: std::time::Duration, wall: Timestamp) -> Steered {
    let predicted = add(last, elapsed);
    let gap = wall - predicted;
    let tolerance = chrono::TimeDelta::from_std(STEP_TOLERANCE).unwrap_or(chrono::TimeDelta::MAX);
    if gap.abs() <= tolerance {
        return Steered {
            now: wall.max(last),
            step: None,
        };
    }
    let most =
        chrono::TimeDelta::from_std(elapsed.mul_f64(SLEW_RATE)).unwrap_or(chrono::TimeDelta::MAX);
    let correction = gap.clamp(-most, most);
    Steered {
        now: predicted
            .checked_add_signed(correction)
            .unwrap_or(predicted)
            .max(last),
        step: Some(gap),
    }
}

/// The longest round trip a reading of a reference clock may take and still be anchored to:
/// the midpoint of the round trip is then off by at most half of it, well within
/// [`STEP_TOLERANCE`].
pub const MAX_ROUND_TRIP: Duration = Duration::from_secs(1);

/// One reading of a reference clock (the database's): asked at `sent`, answered at `received`
/// (both on this process's monotonic clock), saying `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// When the question left, on the monotonic clock.
    pub sent: Instant,
    /// When the answer arrived, on the monotonic clock.
    pub received: Instant,
    /// What the reference clock said.
    pub time: Timestamp,
}

impl Reading {
    /// How long the question took to be answered.
    pub fn round_trip(&self) -> Duration {
        self.received.saturating_duration_since(self.sent)
    }

    /// The reading as an anchor: the reference clock said `time` at the midpoint of the round
    /// trip (the best guess when the way there and the way back take as long; off by at most
    /// half the round trip otherwise).
    pub fn anchor(&self) -> Anchor {
        Anchor {
            at: self.sent + self.round_trip() / 2,
            time: self.time,
        }
    }
}

/// A reference clock's time at one monotonic instant; its time at any other instant follows by
/// the monotonic clock, which never steps, so the local wall clock is never read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// The monotonic instant.
    pub at: Instant,
    /// The reference clock's time then.
    pub time: Timestamp,
}

impl Anchor {
    /// The reference clock's time at `now`: the anchor's time moved by the monotonic time
    /// between the two (backwards for an instant before the anchor).
    pub fn time_at(&self, now: Instant) -> Timestamp {
        match now.checked_duration_since(self.at) {
            Some(after) => add(self.time, after),
            None => sub(self.time, self.at.saturating_duration_since(now)),
        }
    }
}

/// The reading to anchor to among several taken in a row: the one with the shortest round trip
/// (its midpoint is the most certain), or `None` when none came back within `max_round_trip`.
pub fn best_reading(readings: &[Reading], max_round_trip: Duration) -> Option<Reading> {
    readings
        .iter()
        .filter(|r| r.round_trip() <= max_round_trip)
        .min_by_key(|r| r.round_trip())
        .copied()
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
    fn a_wall_clock_that_keeps_time_is_followed_exactly() {
        let next = steer(at(0), Duration::from_secs(10), at(10));
        assert_eq!(
            next,
            Steered {
                now: at(10),
                step: None
            }
        );
        // A small NTP correction within the tolerance is followed too.
        let corrected = at(10) + TimeDelta::milliseconds(400);
        assert_eq!(
            steer(at(0), Duration::from_secs(10), corrected).now,
            corrected
        );
    }

    #[test]
    fn a_step_forward_is_slewed_at_most_five_percent_of_the_elapsed_time() {
        let next = steer(at(0), Duration::from_secs(10), at(3_610));
        assert_eq!(next.now, at(10) + TimeDelta::milliseconds(500));
        assert_eq!(next.step, Some(TimeDelta::seconds(3_600)));
    }

    #[test]
    fn a_step_back_slows_the_clock_but_never_turns_it_back() {
        let next = steer(at(100), Duration::from_secs(10), at(-3_600));
        assert_eq!(next.now, at(110) - TimeDelta::milliseconds(500));
        assert!(next.now > at(100));
        assert!(next.step.is_some_and(|gap| gap < TimeDelta::zero()));
        // A small backward correction holds the clock still rather than moving it back.
        let held = steer(
            at(100),
            Duration::ZERO,
            at(100) - TimeDelta::milliseconds(300),
        );
        assert_eq!(held.now, at(100));
    }

    #[test]
    fn a_stepped_clock_is_caught_up_with_over_time() {
        // Readings every second after a one-hour step forward: the gap shrinks by 5% of each
        // second and is gone after 20 hours.
        let mut now = at(0);
        let mut wall = at(3_600);
        for _ in 0..72_000 {
            wall += TimeDelta::seconds(1);
            now = steer(now, Duration::from_secs(1), wall).now;
        }
        assert_eq!(now, wall);
    }
    /// A reading asked `sent_ms` after `base`, answered `rtt_ms` later, saying `time`.
    fn reading(base: Instant, sent_ms: u64, rtt_ms: u64, time: Timestamp) -> Reading {
        let sent = base + Duration::from_millis(sent_ms);
        Reading {
            sent,
            received: sent + Duration::from_millis(rtt_ms),
            time,
        }
    }

    #[test]
    fn an_anchor_sits_at_the_midpoint_of_the_round_trip() {
        let base = Instant::now();
        let anchor = reading(base, 1_000, 40, at(0)).anchor();
        assert_eq!(anchor.at, base + Duration::from_millis(1_020));
        assert_eq!(anchor.time, at(0));
        // At the moment the answer arrived the reference clock had moved on by half the trip.
        assert_eq!(
            anchor.time_at(base + Duration::from_millis(1_040)),
            at(0) + TimeDelta::milliseconds(20)
        );
    }

    #[test]
    fn an_anchor_carries_time_on_by_the_monotonic_clock_both_ways() {
        let base = Instant::now();
        let anchor = Anchor {
            at: base + Duration::from_secs(10),
            time: at(0),
        };
        assert_eq!(anchor.time_at(base + Duration::from_secs(15)), at(5));
        assert_eq!(
            anchor.time_at(base + Duration::from_secs(10)),
            at(0),
            "at the anchor itself"
        );
        // A caller that took its instant just before a newer anchor was set.
        assert_eq!(anchor.time_at(base + Duration::from_secs(7)), at(-3));
    }

    #[test]
    fn the_reading_with_the_shortest_round_trip_is_anchored_to() {
        let base = Instant::now();
        let slow = reading(base, 0, 300, at(0));
        let quick = reading(base, 300, 2, at(1));
        let middling = reading(base, 302, 20, at(2));
        assert_eq!(
            best_reading(&[slow, quick, middling], MAX_ROUND_TRIP),
            Some(quick)
        );
        assert_eq!(best_reading(&[], MAX_ROUND_TRIP), None);
    }

    #[test]
    fn readings_slower_than_the_bound_are_not_anchored_to() {
        let base = Instant::now();
        let stalled = reading(base, 0, 1_500, at(0));
        assert_eq!(best_reading(&[stalled], MAX_ROUND_TRIP), None);
        let just = reading(base, 0, 1_000, at(0));
        assert_eq!(best_reading(&[stalled, just], MAX_ROUND_TRIP), Some(just));
    }

    #[test]
    fn a_reference_clock_read_every_few_seconds_is_followed_exactly_and_its_steps_slewed() {
        // The steady clock over an anchored reference (as a replica on PostgreSQL runs): the
        // anchor is replaced every 5s; in between, time is the anchor's plus monotonic time.
        let base = Instant::now();
        let mut anchor = reading(base, 0, 2, at(0)).anchor();
        let mut now = anchor.time_at(anchor.at);
        let mut last_at = anchor.at;
        for second in 1..=60u64 {
            let instant = base + Duration::from_secs(second);
            if second % 5 == 0 {
                // A fresh reading agrees with the last anchor to within a millisecond.
                let sent = instant - Duration::from_millis(1);
                anchor = Reading {
                    sent,
                    received: instant,
                    time: at(i64::try_from(second).expect("small")) - TimeDelta::microseconds(700),
                }
                .anchor();
            }
            let next = steer(now, instant - last_at, anchor.time_at(instant));
            assert_eq!(next.step, None, "no step at {second}s");
            now = next.now;
            last_at = instant;
        }
        assert!((now - at(60)).abs() < TimeDelta::milliseconds(2), "{now}");
        // The database's clock steps an hour ahead: the steady time moves 5% faster, no more.
        anchor = Anchor {
            at: last_at,
            time: at(60 + 3_600),
        };
        let instant = last_at + Duration::from_secs(10);
        let next = steer(now, instant - last_at, anchor.time_at(instant));
        assert!(next.step.is_some());
        assert_eq!(next.now, now + TimeDelta::milliseconds(10_500));
    }
}
