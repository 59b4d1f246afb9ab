//! What became of each reported lease, in words shared by both backends.
//!
//! A report (complete, fail, release) names a task and a lease token; the store answers each
//! one with a [`Reported`]. The caller's tenant is part of every report's condition, so a
//! task of another tenant is answered exactly as a task that does not exist.

use spillway_core::TaskId;
use spillway_core::api::ReportResult;

/// What became of one reported lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// The report was applied.
    Applied,
    /// No task with this id in the caller's tenant (it does not exist or belongs to another
    /// tenant); nothing changed.
    NotFound,
    /// The task is the caller's but the lease is no longer current (reaped, reported or
    /// handed to another worker); nothing changed.
    NotCurrent,
}

/// The store's answer to one reported lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    /// The task reported on.
    pub task_id: TaskId,
    /// What became of the report.
    pub outcome: ReportOutcome,
}

impl Reported {
    /// An applied report on `task_id`.
    pub fn applied(task_id: TaskId) -> Self {
        Reported {
            task_id,
            outcome: ReportOutcome::Applied,
        }
    }

    /// A report on a task the caller's tenant does not have.
    pub fn not_found(task_id: TaskId) -> Self {
        Reported {
            task_id,
            outcome: ReportOutcome::NotFound,
        }
    }

    /// A report on a lease that is no longer current.
    pub fn not_current(task_id: TaskId) -> Self {
        Reported {
            task_id,
            outcome: ReportOutcome::NotCurrent,
        }
    }

    /// Whether the report was applied.
    pub fn ok(&self) -> bool {
        self.outcome == ReportOutcome::Applied
    }

    /// Why the report was refused, in words for the worker; `None` when it was applied.
    pub fn refusal(&self) -> Option<String> {
        let id = self.task_id;
        match self.outcome {
            ReportOutcome::Applied => None,
            ReportOutcome::NotFound => Some(format!(
                "task {id} not found: report only tasks leased by your tenant"
            )),
            ReportOutcome::NotCurrent => Some(format!(
                "the lease on task {id} is not current: it was reaped, reported or handed to another worker; drop this result"
            )),
        }
    }
}

impl From<Reported> for ReportResult {
    fn from(r: Reported) -> Self {
        ReportResult {
            task_id: r.task_id,
            ok: r.ok(),
            error: r.refusal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_why_and_applied_reports_say_nothing() {
        let applied = ReportResult::from(Reported::applied(1));
        assert!(applied.ok && applied.error.is_none());
        let missing = ReportResult::from(Reported::not_found(2));
        assert!(!missing.ok);
        assert!(
            missing
                .error
                .unwrap_or_default()
                .contains("task 2 not found")
        );
        let stale = ReportResult::from(Reported::not_current(3));
        assert!(!stale.ok);
        assert!(stale.error.unwrap_or_default().contains("not current"));
    }
}
