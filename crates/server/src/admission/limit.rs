//! The adaptive part of the in-flight limit: how many API requests to serve at once, from the
//! latency of those served. Pure arithmetic on the samples it is given; the caller brings the
//! clock.
//!
//! A fixed limit bounds memory but not latency: past the server's capacity, requests queue
//! inside it (for the SQLite writer, a PostgreSQL connection, the CPU) until every answer takes
//! `limit / throughput`, 200 ms at 1024 requests and 5,000 a second. So the limit follows the
//! latency instead, as TCP Vegas and Netflix's concurrency limits do:
//!
//! - Latencies are gathered in windows of at least [`WINDOW`] and [`MIN_SAMPLES`] answers; a
//!   window's median is its latency, robust to a few slow calls.
//! - The baseline is the lowest window latency of the last [`BASELINE_HORIZON`]: what the
//!   server answers in when little queues.
//! - A window slower than [`TOLERANCE`] times the baseline (never less than [`FLOOR`]) cuts the
//!   limit in proportion to the excess, at most by half. A window within it that saw requests
//!   turned away raises the limit by its square root, so the limit climbs back quickly once the
//!   server keeps up.
//! - The limit stays between [`MIN_LIMIT`] and the configured `max_in_flight_requests`, where it
//!   starts: a server that is never overloaded behaves exactly as with a fixed limit.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Shortest window of samples.
pub const WINDOW: Duration = Duration::from_millis(100);
/// Fewest samples in a window: fewer say little about the median.
pub const MIN_SAMPLES: usize = 16;
/// How long a window's latency may serve as the baseline.
pub const BASELINE_HORIZON: Duration = Duration::from_secs(30);
/// How much slower than the baseline a window may be before the limit is cut.
pub const TOLERANCE: f64 = 2.0;
/// A latency the limit never cuts for, whatever the baseline: with an idle server's baseline
/// of a fraction of a millisecond, twice it would turn away work that is answered fast enough.
pub const FLOOR: Duration = Duration::from_millis(5);
/// The lowest the limit goes (or the configured limit, when lower): enough requests at once
/// for the SQLite writer to group commits and for a burst of a few dozen workers to be served
/// without a turn away.
pub const MIN_LIMIT: usize = 32;

/// The limit, its window and its baseline.
#[derive(Debug)]
pub struct AdaptiveLimit {
    limit: f64,
    min: f64,
    max: f64,
    window: Vec<Duration>,
    window_start: Instant,
    turned_away: bool,
    /// Window latencies of the last [`BASELINE_HORIZON`], oldest first.
    recent: VecDeque<(Instant, Duration)>,
}

impl AdaptiveLimit {
    /// A limit starting at, and never above, `max`.
    pub fn new(max: usize, now: Instant) -> Self {
        let max = max.max(1) as f64;
        Self {
            limit: max,
            min: (MIN_LIMIT as f64).min(max),
            max,
            window: Vec::with_capacity(MIN_SAMPLES * 4),
            window_start: now,
            turned_away: false,
            recent: VecDeque::new(),
        }
    }

    /// Requests to serve at once now.
    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// A request was turned away because the limit was reached.
    pub fn turned_away(&mut self) {
        self.turned_away = true;
    }

    /// An answered request's latency; at the end of a window, the limit is adjusted. Returns
    /// the new limit when it changed.
    pub fn sample(&mut self, latency: Duration, now: Instant) -> Option<usize> {
        self.window.push(latency);
        if self.window.len() < MIN_SAMPLES || now.duration_since(self.window_start) < WINDOW {
            return None;
        }
        let middle = self.window.len() / 2;
        let (_, median, _) = self.window.select_nth_unstable(middle);
        let median = *median;
        self.window.clear();
        self.window_start = now;
        let turned_away = std::mem::take(&mut self.turned_away);

        while let Some(&(at, _)) = self.recent.front() {
            if now.duration_since(at) <= BASELINE_HORIZON {
                break;
            }
            self.recent.pop_front();
        }
        self.recent.push_back((now, median));
        let baseline = self
            .recent
            .iter()
            .map(|&(_, latency)| latency)
            .min()
            .unwrap_or(median);

        let before = self.limit();
        let allowed = baseline.mul_f64(TOLERANCE).max(FLOOR);
        if median > allowed {
            let cut = (allowed.as_secs_f64() / median.as_secs_f64()).max(0.5);
            self.limit = (self.limit * cut).max(self.min);
        } else if turned_away {
            self.limit = (self.limit + self.limit.sqrt().max(1.0)).min(self.max);
        }
        (self.limit() != before).then_some(self.limit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A window of `MIN_SAMPLES` answers of `latency`, ending `WINDOW` after the last one.
    fn window(limit: &mut AdaptiveLimit, now: &mut Instant, latency: Duration) -> usize {
        *now += WINDOW;
        for _ in 0..MIN_SAMPLES {
            limit.sample(latency, *now);
        }
        limit.limit()
    }

    #[test]
    fn a_server_that_keeps_up_keeps_its_configured_limit() {
        let mut now = Instant::now();
        let mut limit = AdaptiveLimit::new(1024, now);
        for _ in 0..100 {
            assert_eq!(window(&mut limit, &mut now, 3 * MS), 1024);
        }
        // Slower, but under the floor: still nothing is cut.
        assert_eq!(window(&mut limit, &mut now, 4 * MS), 1024);
    }

    #[test]
    fn queueing_cuts_the_limit_in_proportion_at_most_by_half_and_never_below_the_minimum() {
        let mut now = Instant::now();
        let mut limit = AdaptiveLimit::new(1000, now);
        window(&mut limit, &mut now, 4 * MS);
        // Twice the baseline (4 ms) is 8 ms; 10 ms is 25% over, so the limit loses a fifth.
        assert_eq!(window(&mut limit, &mut now, 10 * MS), 800);
        // Far over: halved, not more.
        assert_eq!(window(&mut limit, &mut now, 200 * MS), 400);
        for _ in 0..20 {
            window(&mut limit, &mut now, 200 * MS);
        }
        assert_eq!(limit.limit(), MIN_LIMIT);
    }

    #[test]
    fn the_limit_climbs_back_only_while_requests_are_turned_away_and_latency_is_good() {
        let mut now = Instant::now();
        let mut limit = AdaptiveLimit::new(1024, now);
        window(&mut limit, &mut now, 2 * MS);
        for _ in 0..20 {
            window(&mut limit, &mut now, 300 * MS);
        }
        assert_eq!(limit.limit(), MIN_LIMIT);
        // Fast again, but nobody waiting: no reason to admit more.
        assert_eq!(window(&mut limit, &mut now, 2 * MS), MIN_LIMIT);
        limit.turned_away();
        // Up by the square root: 32 + 5.7.
        assert_eq!(window(&mut limit, &mut now, 2 * MS), 37);
        for _ in 0..200 {
            limit.turned_away();
            window(&mut limit, &mut now, 2 * MS);
        }
        assert_eq!(
            limit.limit(),
            1024,
            "climbs to the configured limit and stops"
        );
    }

    #[test]
    fn a_window_needs_both_its_time_and_its_samples() {
        let mut now = Instant::now();
        let mut limit = AdaptiveLimit::new(100, now);
        window(&mut limit, &mut now, MS);
        // Many slow samples at once: not a window until WINDOW has passed.
        for _ in 0..100 {
            assert_eq!(limit.sample(Duration::from_secs(1), now), None);
        }
        // Time has passed: one sample more ends the window, and the limit is cut.
        now += WINDOW;
        assert_eq!(limit.sample(Duration::from_secs(1), now), Some(50));
        // A long quiet spell with few samples: no window, no change.
        now += Duration::from_secs(60);
        for _ in 0..MIN_SAMPLES - 1 {
            assert_eq!(limit.sample(Duration::from_secs(9), now), None);
        }
    }

    #[test]
    fn the_baseline_forgets_windows_older_than_its_horizon() {
        let mut now = Instant::now();
        let mut limit = AdaptiveLimit::new(1000, now);
        window(&mut limit, &mut now, 3 * MS);
        // 20 ms steady for longer than the horizon: first cut, then, once the fast window is
        // forgotten, 20 ms is the baseline and nothing more is cut.
        let mut cuts = Vec::new();
        let until = now + BASELINE_HORIZON + WINDOW * 2;
        while now < until {
            cuts.push(window(&mut limit, &mut now, 20 * MS));
        }
        let settled = *cuts.last().expect("windows ran");
        assert!(settled < 1000, "the slow windows cut the limit: {cuts:?}");
        assert_eq!(window(&mut limit, &mut now, 20 * MS), settled);
        assert_eq!(
            window(&mut limit, &mut now, 35 * MS),
            settled,
            "35 ms is within twice 20 ms"
        );
    }
}
