//! Capped exponential backoff with jitter, for retrying calls to an unreachable server.

use std::time::Duration;

/// First pause after a failure.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(200);

/// The pauses between retries: doubling from [`BACKOFF_INITIAL`] up to a cap, each with up
/// to half of it taken off at random so many workers do not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff whose pauses never exceed `max`.
    pub fn new(max: Duration) -> Self {
        Self {
            next: BACKOFF_INITIAL.min(max),
            max,
        }
    }

    /// The pause before the next retry; each call doubles the following one, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base.mul_f64(rand::random_range(0.5..=1.0))
    }

    /// Start again from the first pause, after a success.
    pub fn reset(&mut self) {
        self.next = BACKOFF_INITIAL.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_stay_under_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let delays: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= BACKOFF_INITIAL);
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(delays[9] >= Duration::from_secs(1), "{delays:?}");
        b.reset();
        assert!(b.next_delay() <= BACKOFF_INITIAL);
    }
}
