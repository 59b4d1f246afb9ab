//! Wait on a condition with a deadline: the poll loops of the test suites.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// How long a condition may take before the test fails, unless the caller says otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// Time between two looks at the condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Poll `check` until it gives a value, and return it; panic with `what` once `deadline` has
/// passed, so a test that waits for something that never happens fails instead of hanging.
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Look with `look` until what it sees satisfies `done`, and return that; panic with `what`
/// and the last thing seen once `deadline` has passed. [`wait_until`] for a value the test
/// watches change, so a failure shows where it stopped.
pub async fn wait_until_seen<T, F, Fut>(
    what: &str,
    deadline: Duration,
    mut look: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let seen = look().await;
        if done(&seen) {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}; last seen {seen:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_condition_holds() {
        let calls = AtomicU32::new(0);
        let got = wait_until("the third call", DEFAULT_DEADLINE, || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting for never")]
    async fn fails_at_the_deadline() {
        wait_until("never", Duration::from_millis(50), || async { None::<()> }).await;
    }

    #[tokio::test]
    async fn returns_what_was_seen_once_it_is_done() {
        let calls = AtomicU32::new(0);
        let got = wait_until_seen(
            "the third look",
            DEFAULT_DEADLINE,
            || async { calls.fetch_add(1, Ordering::SeqCst) + 1 },
            |n| *n == 3,
        )
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting for seven; last seen 1")]
    async fn fails_at_the_deadline_showing_the_last_look() {
        wait_until_seen(
            "seven",
            Duration::from_millis(50),
            || async { 1 },
            |n| *n == 7,
        )
        .await;
    }
}
