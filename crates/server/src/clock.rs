//! The server's clock: the wall clock's rate without its steps.
//!
//! Lease expiries, backoff and retention are wall-clock timestamps in the store, so a server
//! that read the system clock directly would expire every running lease at once when the clock
//! jumps forward (an NTP step, a VM resumed after a pause) and keep dead leases for an hour when
//! it jumps back. [`SteadyClock`] answers with the wall clock while it keeps time, and slews
//! towards it at 5% when it steps ([`spillway_core::clock::steer`]), warning once per step.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use spillway_core::Timestamp;
use spillway_core::clock::{Clock, SystemClock, steer};

/// A clock that follows `wall` but slews across its steps.
pub struct SteadyClock {
    wall: Arc<dyn Clock>,
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
        let now = wall.now();
        Self {
            wall,
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
                gap_ms = gap.num_milliseconds(),
                "the system clock stepped; leases and schedules keep steady time and catch up at 5%"
            ),
            (None, true) => tracing::info!("the steady clock has caught up with the system clock"),
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
