//! The task lifecycle. See `docs/lifecycle.md` for the diagram of every transition.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Error;

/// Where a task is in its life. Stored as the lowercase name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for its not-before time (`run_at`). Becomes leasable by itself once that time
    /// passes; nobody has to move it. Set at submit when the job asked for a delay.
    Scheduled,
    /// Ready to run: the next worker that leases from its queue may take it, highest priority
    /// first, then oldest. Set at submit, on requeue by an operator, and when a worker hands a
    /// lease back as preempted.
    Available,
    /// Handed to one worker under a lease token until `lease_expires_at`. The worker moves it on
    /// (complete, fail, release); heartbeats extend the lease; the lease reaper fails it when
    /// the lease expires.
    Leased,
    /// Failed and waiting out its backoff until `run_at`, then leasable again. Set by a failure
    /// (reported or an expired lease) while attempts remain.
    Retrying,
    /// Finished with success. Kept until the job's retention runs out.
    Succeeded,
    /// Failed its last allowed attempt, or failed with a non-retryable error: a dead letter.
    /// Stays until an operator requeues it (back to available) or retention removes it.
    Dead,
    /// Cancelled with its job before it finished. Kept until retention runs out.
    Cancelled,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 7] = [
        TaskState::Scheduled,
        TaskState::Available,
        TaskState::Leased,
        TaskState::Retrying,
        TaskState::Succeeded,
        TaskState::Dead,
        TaskState::Cancelled,
    ];

    /// The stable lowercase name used in storage, the API and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Scheduled => "scheduled",
            TaskState::Available => "available",
            TaskState::Leased => "leased",
            TaskState::Retrying => "retrying",
            TaskState::Succeeded => "succeeded",
            TaskState::Dead => "dead",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Parse the stable name; the error lists the valid names.
    pub fn parse(value: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown task state {value:?}: use one of scheduled, available, leased, retrying, succeeded, dead, cancelled"
                ))
            })
    }

    /// True once nothing will run this task again without an operator.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Dead | TaskState::Cancelled
        )
    }

    /// True while the task waits to be leased (now or after its `run_at`).
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            TaskState::Scheduled | TaskState::Available | TaskState::Retrying
        )
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many of a job's tasks are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateCounts {
    /// Tasks waiting for their not-before time.
    pub scheduled: u64,
    /// Tasks ready to be leased.
    pub available: u64,
    /// Tasks running under a lease.
    pub leased: u64,
    /// Tasks waiting out a retry backoff.
    pub retrying: u64,
    /// Tasks that succeeded.
    pub succeeded: u64,
    /// Tasks that are dead letters.
    pub dead: u64,
    /// Tasks that were cancelled.
    pub cancelled: u64,
}

impl StateCounts {
    /// The count for one state.
    pub fn get(&self, state: TaskState) -> u64 {
        match state {
            TaskState::Scheduled => self.scheduled,
            TaskState::Available => self.available,
            TaskState::Leased => self.leased,
            TaskState::Retrying => self.retrying,
            TaskState::Succeeded => self.succeeded,
            TaskState::Dead => self.dead,
            TaskState::Cancelled => self.cancelled,
        }
    }

    /// Add `n` to the count for one state.
    pub fn add(&mut self, state: TaskState, n: u64) {
        let slot = match state {
            TaskState::Scheduled => &mut self.scheduled,
            TaskState::Available => &mut self.available,
            TaskState::Leased => &mut self.leased,
            TaskState::Retrying => &mut self.retrying,
            TaskState::Succeeded => &mut self.succeeded,
            TaskState::Dead => &mut self.dead,
            TaskState::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }

    /// All tasks counted.
    pub fn total(&self) -> u64 {
        TaskState::ALL.iter().map(|s| self.get(*s)).sum()
    }

    /// Tasks in a final state.
    pub fn finished(&self) -> u64 {
        self.succeeded + self.dead + self.cancelled
    }
}

/// A job's state, derived from its tasks' states; never stored on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// No task has started yet.
    Queued,
    /// Some tasks have started and some are not finished.
    Running,
    /// Every task succeeded.
    Succeeded,
    /// Every task finished and at least one is dead.
    Failed,
    /// The job was cancelled and every task is finished.
    Cancelled,
}

impl JobState {
    /// Derive a job's state from its task counts and whether it was cancelled.
    pub fn derive(counts: &StateCounts, cancel_requested: bool) -> Self {
        let total = counts.total();
        if total > 0 && counts.finished() == total {
            if cancel_requested && counts.cancelled > 0 {
                JobState::Cancelled
            } else if counts.dead > 0 {
                JobState::Failed
            } else if counts.cancelled > 0 {
                JobState::Cancelled
            } else {
                JobState::Succeeded
            }
        } else if counts.leased > 0 || counts.finished() > 0 || counts.retrying > 0 {
            JobState::Running
        } else {
            JobState::Queued
        }
    }

    /// The stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parse the stable name.
    pub fn parse(value: &str) -> Result<Self, Error> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
        .ok_or_else(|| {
            Error::invalid(format!(
                "unknown job state {value:?}: use one of queued, running, succeeded, failed, cancelled"
            ))
        })
    }

    /// True once every task is finished.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one attempt (one lease of a task) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Still running under its lease.
    Running,
    /// The command exited 0 and the worker completed the task.
    Succeeded,
    /// The worker reported a failure (non-zero exit, timeout, staging error).
    Failed,
    /// The lease expired without word from the worker; counted as a failure.
    LeaseExpired,
    /// The worker handed the lease back because it was stopping; not counted as a failure.
    Preempted,
    /// The task was cancelled while this attempt ran.
    Cancelled,
}

impl AttemptOutcome {
    /// The stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Running => "running",
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::LeaseExpired => "lease_expired",
            AttemptOutcome::Preempted => "preempted",
            AttemptOutcome::Cancelled => "cancelled",
        }
    }

    /// Parse the stable name.
    pub fn parse(value: &str) -> Result<Self, Error> {
        [
            AttemptOutcome::Running,
            AttemptOutcome::Succeeded,
            AttemptOutcome::Failed,
            AttemptOutcome::LeaseExpired,
            AttemptOutcome::Preempted,
            AttemptOutcome::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
        .ok_or_else(|| Error::invalid(format!("unknown attempt outcome {value:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_state_names_round_trip() {
        for state in TaskState::ALL {
            assert_eq!(TaskState::parse(state.as_str()).ok(), Some(state));
        }
        assert!(TaskState::parse("running").is_err());
    }

    #[test]
    fn job_state_is_derived_from_counts() {
        let mut counts = StateCounts::default();
        counts.add(TaskState::Available, 3);
        assert_eq!(JobState::derive(&counts, false), JobState::Queued);
        counts.add(TaskState::Leased, 1);
        assert_eq!(JobState::derive(&counts, false), JobState::Running);
        let done = StateCounts {
            succeeded: 4,
            ..Default::default()
        };
        assert_eq!(JobState::derive(&done, false), JobState::Succeeded);
        let failed = StateCounts {
            succeeded: 3,
            dead: 1,
            ..Default::default()
        };
        assert_eq!(JobState::derive(&failed, false), JobState::Failed);
        let cancelled = StateCounts {
            succeeded: 1,
            cancelled: 3,
            ..Default::default()
        };
        assert_eq!(JobState::derive(&cancelled, true), JobState::Cancelled);
    }
}
