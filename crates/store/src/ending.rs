//! How a lease ends, worked out before anything is written; shared by both backends.
//!
//! A failure, a release and the reaper each read the leased rows they may end ([`Held`]),
//! decide every task's fate here in plain Rust ([`Held::failed`], [`Held::released`],
//! [`Held::expired`]; the retry policy lives in `spillway_core::retry`), then write all the
//! [`Ending`]s at once. No IO here, and no randomness: the caller draws the backoff's jitter.

use std::time::Duration;

use spillway_core::api::ReleaseReason;
use spillway_core::retry::{FailureDecision, decide_failure};
use spillway_core::state::{AttemptOutcome, TaskState};
use spillway_core::{TaskId, Timestamp};

/// A leased task as read (and, on PostgreSQL, locked) before its lease ends.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) id: TaskId,
    pub(crate) token: String,
    pub(crate) tenant: String,
    pub(crate) queue: String,
    pub(crate) job_id: String,
    pub(crate) attempt: i32,
    pub(crate) failures: u32,
    pub(crate) preemptions: u32,
    pub(crate) max_attempts: u32,
    pub(crate) worker: Option<String>,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) cancel_requested: bool,
    /// Whether the task's job is burstable (with tenant and queue: the counter it is in).
    pub(crate) burstable: bool,
}

/// How one attempt ends: the task's new row values and the attempt's outcome. The lease
/// (token, worker, expiry) is cleared with it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ending {
    pub(crate) id: TaskId,
    pub(crate) job_id: String,
    /// The task's tenant, queue and burstability: the task counters the ending moves it between.
    pub(crate) tenant: String,
    pub(crate) queue: String,
    pub(crate) burstable: bool,
    pub(crate) attempt: i32,
    pub(crate) state: TaskState,
    pub(crate) failures: u32,
    pub(crate) preemptions: u32,
    /// The new `run_at`; `None` keeps it.
    pub(crate) run_at: Option<Timestamp>,
    pub(crate) finished_at: Option<Timestamp>,
    pub(crate) exit_code: Option<i32>,
    /// The new `last_error`; `None` keeps it.
    pub(crate) error: Option<String>,
    /// The new `avoid_pool`; `None` keeps it.
    pub(crate) avoid_pool: Option<String>,
    pub(crate) outcome: AttemptOutcome,
    pub(crate) log_tail: String,
}

impl Ending {
    fn new(held: &Held, outcome: AttemptOutcome, log_tail: String) -> Self {
        Ending {
            id: held.id,
            job_id: held.job_id.clone(),
            tenant: held.tenant.clone(),
            queue: held.queue.clone(),
            burstable: held.burstable,
            attempt: held.attempt,
            state: TaskState::Leased,
            failures: held.failures,
            preemptions: held.preemptions,
            run_at: None,
            finished_at: None,
            exit_code: None,
            error: None,
            avoid_pool: None,
            outcome,
            log_tail,
        }
    }

    /// Whether the task is finished (so its job may be too).
    pub(crate) fn finished(&self) -> bool {
        self.finished_at.is_some()
    }
}

/// What a worker said about a failed attempt.
#[derive(Debug, Clone)]
pub(crate) struct Failed {
    pub(crate) error: String,
    pub(crate) exit_code: Option<i32>,
    pub(crate) retryable: bool,
    pub(crate) log_tail: String,
}

impl Held {
    /// The fate of a failed attempt: retry after backoff, dead, or cancelled when the job was
    /// cancelled meanwhile (a retry would never be leased and the job would never finish).
    /// `jitter` in [0, 1) spreads the backoff.
    pub(crate) fn failed(
        &self,
        f: Failed,
        outcome: AttemptOutcome,
        now: Timestamp,
        jitter: f64,
    ) -> Ending {
        let failures = self.failures + 1;
        let mut end = Ending::new(self, outcome, f.log_tail);
        end.failures = failures;
        end.exit_code = f.exit_code;
        end.error = Some(f.error);
        if self.cancel_requested {
            end.state = TaskState::Cancelled;
            end.finished_at = Some(now);
            return end;
        }
        match decide_failure(
            failures,
            self.max_attempts,
            f.retryable,
            self.backoff_base,
            self.backoff_max,
            now,
            jitter,
        ) {
            FailureDecision::Retry { at } => {
                end.state = TaskState::Retrying;
                end.run_at = Some(at);
            }
            FailureDecision::Dead => {
                end.state = TaskState::Dead;
                end.finished_at = Some(now);
            }
        }
        end
    }

    /// The fate of a lease that expired before `now`: a retryable failure with no exit code.
    pub(crate) fn expired(&self, now: Timestamp, jitter: f64) -> Ending {
        let failed = Failed {
            error: format!(
                "lease expired: worker {} sent no heartbeat in time",
                self.worker.as_deref().unwrap_or("unknown")
            ),
            exit_code: None,
            retryable: true,
            log_tail: String::new(),
        };
        self.failed(failed, AttemptOutcome::LeaseExpired, now, jitter)
    }

    /// The fate of a lease handed back: a preempted task is available again at once (its
    /// `run_at` kept, so it goes back to the front of its queue) with `preemptions + 1` and
    /// `worker_pool` to avoid; a cancelled one, or a preempted one of a cancelled job (a
    /// requeue would strand it), is cancelled.
    pub(crate) fn released(
        &self,
        reason: ReleaseReason,
        worker_pool: Option<String>,
        log_tail: String,
        now: Timestamp,
    ) -> Ending {
        if reason == ReleaseReason::Preempted && !self.cancel_requested {
            let mut end = Ending::new(self, AttemptOutcome::Preempted, log_tail);
            end.state = TaskState::Available;
            end.preemptions = self.preemptions + 1;
            end.avoid_pool = worker_pool;
            end
        } else {
            let mut end = Ending::new(self, AttemptOutcome::Cancelled, log_tail);
            end.state = TaskState::Cancelled;
            end.finished_at = Some(now);
            end
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn held() -> Held {
        Held {
            id: 7,
            token: "t".into(),
            tenant: "acme".into(),
            queue: "render".into(),
            job_id: "j".into(),
            attempt: 1,
            failures: 0,
            preemptions: 0,
            max_attempts: 2,
            worker: Some("w1".into()),
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(60),
            cancel_requested: false,
            burstable: false,
        }
    }

    fn now() -> Timestamp {
        Utc.timestamp_opt(1_700_000_000, 0)
            .single()
            .unwrap_or_else(|| panic!("a valid time"))
    }

    fn failure(retryable: bool) -> Failed {
        Failed {
            error: "exit status 3".into(),
            exit_code: Some(3),
            retryable,
            log_tail: "boom".into(),
        }
    }

    #[test]
    fn a_failure_retries_while_attempts_remain_then_dies() {
        let first = held().failed(failure(true), AttemptOutcome::Failed, now(), 0.5);
        assert_eq!((first.state, first.failures), (TaskState::Retrying, 1));
        assert!(first.run_at.is_some_and(|at| at > now()));
        assert!(!first.finished());
        assert_eq!(first.error.as_deref(), Some("exit status 3"));
        let last = Held {
            failures: 1,
            ..held()
        }
        .failed(failure(true), AttemptOutcome::Failed, now(), 0.5);
        assert_eq!((last.state, last.failures), (TaskState::Dead, 2));
        assert_eq!(last.finished_at, Some(now()));
        let fatal = held().failed(failure(false), AttemptOutcome::Failed, now(), 0.5);
        assert_eq!(fatal.state, TaskState::Dead);
    }

    #[test]
    fn a_failure_of_a_cancelled_job_is_cancelled_but_counted() {
        let h = Held {
            cancel_requested: true,
            ..held()
        };
        let end = h.failed(failure(true), AttemptOutcome::Failed, now(), 0.5);
        assert_eq!((end.state, end.failures), (TaskState::Cancelled, 1));
        assert!(end.finished());
    }

    #[test]
    fn an_expired_lease_is_a_retryable_failure_naming_the_worker() {
        let end = held().expired(now(), 0.0);
        assert_eq!(end.outcome, AttemptOutcome::LeaseExpired);
        assert_eq!(end.state, TaskState::Retrying);
        assert_eq!(end.exit_code, None);
        assert!(end.error.unwrap_or_default().contains("w1"));
    }

    #[test]
    fn a_preempted_release_requeues_unless_the_job_was_cancelled() {
        let pool = Some("spot".to_string());
        let end = held().released(ReleaseReason::Preempted, pool.clone(), "x".into(), now());
        assert_eq!(end.state, TaskState::Available);
        assert_eq!((end.failures, end.preemptions), (0, 1));
        assert_eq!((end.run_at, end.finished_at), (None, None));
        assert_eq!(end.avoid_pool, pool);
        assert_eq!(end.outcome, AttemptOutcome::Preempted);
        let cancelled_job = Held {
            cancel_requested: true,
            ..held()
        };
        for (h, reason) in [
            (held(), ReleaseReason::Cancelled),
            (cancelled_job, ReleaseReason::Preempted),
        ] {
            let end = h.released(reason, pool.clone(), String::new(), now());
            assert_eq!(end.state, TaskState::Cancelled);
            assert_eq!(end.outcome, AttemptOutcome::Cancelled);
            assert_eq!((end.preemptions, end.avoid_pool), (0, None));
            assert_eq!(end.finished_at, Some(now()));
        }
    }
}
