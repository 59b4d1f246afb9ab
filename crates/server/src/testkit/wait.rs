//! Wait on a condition with a deadline: the one poll loop of the test suites.

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
}
