//! Retry policy: exponential backoff with jitter, and the decision between retry and dead.

use std::time::Duration;

use crate::Timestamp;
use crate::backoff::{Backoff, Jitter};

/// Default number of failed attempts before a task becomes a dead letter.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default delay before the first retry.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Default longest delay between retries.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(600);

/// The delay before retry number `failures` (1 for the first failure).
///
/// `base * 2^(failures-1)`, capped at `max`, then "equal jitter": half of it fixed and the
/// other half scaled by `jitter` (a number in `[0, 1)`), so that a burst of failures does not
/// come back as a burst of retries.
pub fn backoff_delay(failures: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    Backoff::new(base, max)
        .with_jitter(Jitter::Equal)
        .delay(failures, jitter)
}

/// What happens to a task after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureDecision {
    /// Try again once `at` has passed.
    Retry {
        /// When the task becomes leasable again.
        at: Timestamp,
    },
    /// No attempts left, or the failure is not retryable: a dead letter.
    Dead,
}

/// Decide the fate of a task that has now failed `failures` times (this failure included).
pub fn decide_failure(
    failures: u32,
    max_attempts: u32,
    retryable: bool,
    base: Duration,
    max: Duration,
    now: Timestamp,
    jitter: f64,
) -> FailureDecision {
    if !retryable || failures >= max_attempts {
        return FailureDecision::Dead;
    }
    FailureDecision::Retry {
        at: crate::clock::add(now, backoff_delay(failures, base, max, jitter)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(10);
        assert_eq!(backoff_delay(1, base, max, 1.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(2, base, max, 1.0), Duration::from_secs(2));
        assert_eq!(backoff_delay(3, base, max, 1.0), Duration::from_secs(4));
        assert_eq!(backoff_delay(30, base, max, 1.0), max);
        assert_eq!(backoff_delay(3, base, max, 0.0), Duration::from_secs(2));
    }

    #[test]
    fn last_attempt_is_dead() {
        let now = chrono::Utc::now();
        let b = Duration::from_secs(1);
        assert!(matches!(
            decide_failure(4, 5, true, b, b, now, 0.5),
            FailureDecision::Retry { .. }
        ));
        assert_eq!(
            decide_failure(5, 5, true, b, b, now, 0.5),
            FailureDecision::Dead
        );
        assert_eq!(
            decide_failure(1, 5, false, b, b, now, 0.5),
            FailureDecision::Dead
        );
    }
}
