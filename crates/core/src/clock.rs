//! Injected time, so that leases, backoff and retention can be tested by moving a clock.

use std::sync::{Arc, Mutex};

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
}
