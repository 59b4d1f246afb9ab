//! The worker's pauses between retries of calls to an unreachable server: the one
//! [`spillway_core::backoff::Backoff`], doubling from [`BACKOFF_INITIAL`] with equal jitter
//! (up to half of each pause taken off at random) so many workers do not retry in step.

use std::time::Duration;

use spillway_core::backoff::{Backoff, Jitter, Retries};

/// First pause after a failure.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(200);

/// A retry loop whose pauses double from [`BACKOFF_INITIAL`] and never exceed `max`.
pub fn retries(max: Duration) -> Retries {
    Backoff::new(BACKOFF_INITIAL, max)
        .with_jitter(Jitter::Equal)
        .retries()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_stay_under_the_cap() {
        let mut b = retries(Duration::from_secs(2));
        let delays: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= BACKOFF_INITIAL);
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(delays[9] >= Duration::from_secs(1), "{delays:?}");
        b.reset();
        assert!(b.next_delay() <= BACKOFF_INITIAL);
    }
}
