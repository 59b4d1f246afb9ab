//! Capped exponential backoff, the one used everywhere something is retried: task retries,
//! a worker calling an unreachable server, the Kubernetes and Compute Engine clients, the
//! Pub/Sub bridge, the PostgreSQL listener and `spillway up`'s worker supervisor.
//!
//! [`Backoff`] is a plain value: the delay before retry number `n` is
//! `initial * factor^(n-1)`, at most `max`, then jittered when [`Jitter::Equal`] is chosen.
//! [`Backoff::delay`] takes the jitter as a number, so every rule here is deterministic in
//! tests; [`Retries`] walks the delays one failure at a time for retry loops and draws the
//! jitter at random.

use std::time::Duration;

/// How much of each delay is left to chance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Every delay is exactly the capped exponential value.
    None,
    /// "Equal jitter": half of the delay is fixed and the other half is scaled by a random
    /// number in `[0, 1]`, so a burst of failures does not come back as a burst of retries.
    Equal,
}

/// A capped exponential backoff: `initial`, times `factor` per failure, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    factor: u32,
    jitter: Jitter,
}

impl Backoff {
    /// Delays that double from `initial` up to `max`, without jitter.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            factor: 2,
            jitter: Jitter::None,
        }
    }

    /// The same backoff, growing by `factor` per failure instead of doubling (1 keeps every
    /// delay at `initial`; 0 is taken as 1).
    pub const fn with_factor(mut self, factor: u32) -> Self {
        self.factor = if factor == 0 { 1 } else { factor };
        self
    }

    /// The same backoff with the given jitter.
    pub const fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The first delay, before jitter.
    pub const fn initial(&self) -> Duration {
        self.initial
    }

    /// The longest delay.
    pub const fn max(&self) -> Duration {
        self.max
    }

    /// The delay before retry number `attempt` (1 after the first failure) before jitter:
    /// `initial * factor^(attempt-1)`, at most `max`. Attempt 0 counts as 1.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1);
        let grown = u128::from(self.factor)
            .checked_pow(exponent)
            .and_then(|m| self.initial.as_nanos().checked_mul(m));
        let max = self.max.as_nanos();
        let nanos = grown.map_or(max, |n| n.min(max));
        from_nanos(nanos)
    }

    /// The delay before retry number `attempt` (1 after the first failure), with `jitter` (a
    /// number in `[0, 1]`, clamped) applied as this backoff's [`Jitter`] says. The same
    /// arguments always give the same delay.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let full = self.ceiling(attempt);
        match self.jitter {
            Jitter::None => full,
            Jitter::Equal => {
                let half = full / 2;
                half + half.mul_f64(jitter.clamp(0.0, 1.0))
            }
        }
    }

    /// The delay before retry number `attempt`, with a random jitter when this backoff has one.
    pub fn random_delay(&self, attempt: u32) -> Duration {
        match self.jitter {
            Jitter::None => self.ceiling(attempt),
            Jitter::Equal => self.delay(attempt, rand::random_range(0.0..=1.0)),
        }
    }

    /// A retry loop's walk through this backoff, starting at the first failure.
    pub const fn retries(&self) -> Retries {
        Retries {
            backoff: *self,
            failures: 0,
        }
    }
}

/// The delays of one retry loop: each [`Retries::next_delay`] is the next failure's delay,
/// [`Retries::reset`] starts over after a success.
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    failures: u32,
}

impl Retries {
    /// Count one more failure and return the delay to wait before retrying (random jitter
    /// when the backoff has one).
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.backoff.random_delay(self.failures)
    }

    /// [`Retries::next_delay`] with the given jitter instead of a random one.
    pub fn next_delay_with(&mut self, jitter: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.backoff.delay(self.failures, jitter)
    }

    /// Failures counted since the start or the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Start again from the first delay, after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A duration of `nanos` nanoseconds; `nanos` is never above a `Duration`'s own nanoseconds.
fn from_nanos(nanos: u128) -> Duration {
    const PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / PER_SEC).unwrap_or(u64::MAX);
    // Below one billion, so it fits.
    let sub = (nanos % PER_SEC) as u32;
    Duration::new(secs, sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff::new(MS(100), MS(350));
        let waits: Vec<_> = (1..=4).map(|n| b.delay(n, 0.7)).collect();
        assert_eq!(waits, [MS(100), MS(200), MS(350), MS(350)]);
        assert_eq!(b.delay(0, 0.0), MS(100), "attempt 0 counts as the first");
    }

    #[test]
    fn huge_attempts_and_factors_saturate_at_the_cap() {
        let b = Backoff::new(Duration::from_nanos(1), Duration::from_secs(600));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(600));
        // 2^39 ns is about 550 s: still below the cap, not stuck at a u32 multiplier.
        assert_eq!(b.ceiling(40), Duration::from_nanos(1 << 39));
        let b = Backoff::new(MS(1), Duration::MAX).with_factor(u32::MAX);
        assert_eq!(b.ceiling(u32::MAX), Duration::MAX);
    }

    #[test]
    fn factor_sets_the_growth() {
        let b = Backoff::new(MS(10), Duration::from_secs(1)).with_factor(3);
        let waits: Vec<_> = (1..=5).map(|n| b.ceiling(n)).collect();
        assert_eq!(waits, [MS(10), MS(30), MS(90), MS(270), MS(810)]);
        let flat = Backoff::new(MS(10), Duration::from_secs(1)).with_factor(0);
        assert_eq!(flat.ceiling(9), MS(10));
    }

    #[test]
    fn equal_jitter_keeps_half_fixed() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10))
            .with_jitter(Jitter::Equal);
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(3, 0.5), Duration::from_secs(3));
        assert_eq!(b.delay(3, 7.0), Duration::from_secs(4), "jitter is clamped");
        for _ in 0..100 {
            let d = b.random_delay(3);
            assert!(
                d >= Duration::from_secs(2) && d <= Duration::from_secs(4),
                "{d:?}"
            );
        }
    }

    #[test]
    fn no_jitter_ignores_the_number() {
        let b = Backoff::new(MS(100), MS(1000));
        assert_eq!(b.delay(2, 0.0), MS(200));
        assert_eq!(b.random_delay(2), MS(200));
    }

    #[test]
    fn retries_walk_the_delays_and_reset() {
        let mut r = Backoff::new(MS(200), Duration::from_secs(1)).retries();
        let waits: Vec<_> = (0..5).map(|_| r.next_delay()).collect();
        assert_eq!(
            waits,
            [MS(200), MS(400), MS(800), MS(1000), MS(1000)],
            "{waits:?}"
        );
        assert_eq!(r.failures(), 5);
        r.reset();
        assert_eq!(r.failures(), 0);
        assert_eq!(r.next_delay(), MS(200));

        let mut r = Backoff::new(MS(200), Duration::from_secs(1))
            .with_jitter(Jitter::Equal)
            .retries();
        assert_eq!(r.next_delay_with(0.0), MS(100));
        assert_eq!(r.next_delay_with(1.0), MS(400));
    }

    #[test]
    fn initial_above_max_is_capped() {
        let b = Backoff::new(Duration::from_secs(5), Duration::from_secs(2));
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(2));
    }
}
