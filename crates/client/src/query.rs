//! Filters and paging of the list routes, sent as query parameters.

use std::collections::{BTreeMap, BTreeSet};

use spillway_core::state::{JobState, TaskState};

/// Filter and page `GET /v1/jobs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobListQuery {
    /// Only jobs of this queue.
    pub queue: Option<String>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs carrying every one of these labels (sent as `label=k=v`).
    pub labels: BTreeMap<String, String>,
    /// Only jobs that have every one of these label keys, whatever the value (sent as
    /// `label=k`).
    pub label_keys: BTreeSet<String>,
    /// Page size.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Act in this tenant (only for admins of every tenant).
    pub tenant: Option<String>,
}

impl JobListQuery {
    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        push(&mut pairs, "queue", self.queue.clone());
        push(
            &mut pairs,
            "state",
            self.state.map(|s| s.as_str().to_string()),
        );
        for (k, v) in &self.labels {
            pairs.push(("label", format!("{k}={v}")));
        }
        for k in &self.label_keys {
            pairs.push(("label", k.clone()));
        }
        push(&mut pairs, "limit", self.limit.map(|l| l.to_string()));
        push(&mut pairs, "cursor", self.cursor.clone());
        push(&mut pairs, "tenant", self.tenant.clone());
        pairs
    }
}

/// Filter and page `GET /v1/jobs/{id}/tasks`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskListQuery {
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Page size.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl TaskListQuery {
    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        push(
            &mut pairs,
            "state",
            self.state.map(|s| s.as_str().to_string()),
        );
        push(&mut pairs, "limit", self.limit.map(|l| l.to_string()));
        push(&mut pairs, "cursor", self.cursor.clone());
        pairs
    }
}

/// Filter and page `GET /v1/dead`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeadListQuery {
    /// Only dead tasks of this queue.
    pub queue: Option<String>,
    /// Only dead tasks whose job matches every one of these label conditions, each
    /// `key=value` or `key` (sent as `label=…`).
    pub labels: Vec<String>,
    /// Page size.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl DeadListQuery {
    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        push(&mut pairs, "queue", self.queue.clone());
        for label in &self.labels {
            pairs.push(("label", label.clone()));
        }
        push(&mut pairs, "limit", self.limit.map(|l| l.to_string()));
        push(&mut pairs, "cursor", self.cursor.clone());
        pairs
    }
}

fn push(pairs: &mut Vec<(&'static str, String)>, key: &'static str, value: Option<String>) {
    if let Some(value) = value {
        pairs.push((key, value));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn job_query_sends_only_set_fields_and_one_label_pair_each() {
        let q = JobListQuery {
            queue: Some("q".into()),
            state: Some(JobState::Running),
            labels: BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]),
            label_keys: BTreeSet::from(["c".into()]),
            limit: Some(5),
            ..Default::default()
        };
        assert_eq!(
            q.pairs(),
            vec![
                ("queue", "q".to_string()),
                ("state", "running".to_string()),
                ("label", "a=1".to_string()),
                ("label", "b=2".to_string()),
                ("label", "c".to_string()),
                ("limit", "5".to_string()),
            ]
        );
        assert!(JobListQuery::default().pairs().is_empty());
    }
}
