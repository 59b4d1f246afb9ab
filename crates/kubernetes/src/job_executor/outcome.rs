//! How a Job and its pod's status map to a task outcome (pure functions, no IO).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use spillway_executor::ExitKind;

use super::spec::CONTAINER_NAME;

/// Exit code reported when the task's container never ran (image not pulled, pod not
/// scheduled, Job deleted, no container status): the code `docker run` uses when it cannot
/// run a container. The task then retries or fails through the queue's policy.
pub const NOT_RUN_EXIT_CODE: i32 = 125;
/// Exit code of a container killed for going over its memory limit (128 + SIGKILL).
pub const OOM_EXIT_CODE: i32 = 137;

/// Waiting reasons after which a container can never start, so there is no point waiting.
const HOPELESS_WAITING: [&str; 2] = ["InvalidImageName", "ErrImageNeverPull"];

/// How an attempt ended, with a line for the log tail explaining what Kubernetes said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The outcome reported to the worker.
    pub exit: ExitKind,
    /// Appended to the log tail, so `spillway logs` shows why.
    pub note: Option<String>,
}

impl Ending {
    fn not_run(note: String) -> Self {
        Self {
            exit: ExitKind::Exited(NOT_RUN_EXIT_CODE),
            note: Some(note),
        }
    }
}

/// The terminal condition of a Job (`Complete` or `Failed` with status `True`), with its
/// reason and message.
fn terminal_condition(job: &Job) -> Option<(&str, Option<&str>, Option<&str>)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
        .map(|c| (c.type_.as_str(), c.reason.as_deref(), c.message.as_deref()))
}

/// The terminated state of the task's container in `pod`.
fn terminated(pod: &Pod) -> Option<&ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == CONTAINER_NAME)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
}

/// The outcome of a finished Job, or `None` while it runs. `pod` is the attempt's pod when
/// one was found; `timeout` the task's (reported as the time it ran past).
pub fn finished(job: &Job, pod: Option<&Pod>, timeout: Option<Duration>) -> Option<Ending> {
    let (kind, reason, message) = terminal_condition(job)?;
    if kind == "Complete" {
        return Some(Ending {
            exit: ExitKind::Exited(0),
            note: None,
        });
    }
    if reason == Some("DeadlineExceeded") {
        let deadline = job
            .spec
            .as_ref()
            .and_then(|s| s.active_deadline_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs);
        return Some(Ending {
            exit: ExitKind::TimedOut(timeout.or(deadline).unwrap_or_default()),
            note: Some(format!(
                "kubernetes: the Job ran past its deadline (activeDeadlineSeconds): {}",
                message.unwrap_or("no message")
            )),
        });
    }
    match pod.and_then(terminated) {
        Some(state) if state.reason.as_deref() == Some("OOMKilled") => Some(Ending {
            exit: ExitKind::Exited(OOM_EXIT_CODE),
            note: Some(
                "kubernetes: OOMKilled: the container went over its memory limit".to_string(),
            ),
        }),
        Some(state) if state.exit_code != 0 => Some(Ending {
            exit: ExitKind::Exited(state.exit_code),
            note: None,
        }),
        // Failed with a clean exit (or none at all): the pod was evicted, deleted, or the Job
        // failed for a reason of its own; the task must not count as a success.
        _ => {
            let pod_reason = pod
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.reason.clone().or_else(|| s.message.clone()));
            Some(Ending::not_run(format!(
                "kubernetes: the Job failed without a container exit code: {} ({}){}",
                reason.unwrap_or("no reason"),
                message.unwrap_or("no message"),
                pod_reason
                    .map(|r| format!("; pod: {r}"))
                    .unwrap_or_default()
            )))
        }
    }
}

/// Whether an attempt whose pod has not started after `waited` should be given up, and how
/// it ends. `pod` is `None` when no pod exists yet (quota, admission); `limit` is how long a
/// pod may stay pending.
pub fn stuck(pod: Option<&Pod>, waited: Duration, limit: Duration) -> Option<Ending> {
    let limit_text = format!("{limit:?}");
    let Some(pod) = pod else {
        return (waited >= limit).then(|| {
            Ending::not_run(format!(
                "kubernetes: no pod was created for the Job within {limit_text}: check the \
                 namespace's quota and the Job's events (kubectl describe job)"
            ))
        });
    };
    let status = pod.status.as_ref();
    if status.and_then(|s| s.phase.as_deref()) != Some("Pending") {
        return None;
    }
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|statuses| statuses.iter().find(|s| s.name == CONTAINER_NAME))
        .and_then(|s| s.state.as_ref()?.waiting.as_ref());
    if let Some(waiting) = waiting {
        let reason = waiting.reason.as_deref().unwrap_or("waiting");
        let message = waiting.message.as_deref().unwrap_or("no message");
        if HOPELESS_WAITING.contains(&reason) || waited >= limit {
            return Some(Ending::not_run(format!(
                "kubernetes: the container did not start: {reason}: {message}"
            )));
        }
        return None;
    }
    if waited < limit {
        return None;
    }
    let unschedulable = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        });
    Some(Ending::not_run(match unschedulable {
        Some(c) => format!(
            "kubernetes: the pod was not scheduled within {limit_text}: {}: {}",
            c.reason.as_deref().unwrap_or("no reason"),
            c.message.as_deref().unwrap_or("no message")
        ),
        None => format!("kubernetes: the pod stayed pending for {limit_text}"),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use serde_json::json;

    use super::*;

    fn job(condition: &str, reason: &str) -> Job {
        serde_json::from_value(json!({
            "metadata": { "name": "spillway-1-1" },
            "spec": { "activeDeadlineSeconds": 30, "template": {} },
            "status": { "conditions": [
                { "type": "FailureTarget", "status": "True", "reason": reason },
                { "type": condition, "status": "True", "reason": reason, "message": "said so" },
            ]},
        }))
        .unwrap()
    }

    fn running_job() -> Job {
        serde_json::from_value(json!({
            "metadata": { "name": "spillway-1-1" },
            "status": { "active": 1 },
        }))
        .unwrap()
    }

    fn pod(phase: &str, state: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "spillway-1-1-abcde" },
            "status": {
                "phase": phase,
                "containerStatuses": [{
                    "name": "task", "image": "busybox", "imageID": "", "ready": false,
                    "restartCount": 0, "state": state,
                }],
            },
        }))
        .unwrap()
    }

    fn exited(code: i32, reason: &str) -> Pod {
        pod(
            "Failed",
            json!({ "terminated": { "exitCode": code, "reason": reason } }),
        )
    }

    #[test]
    fn a_running_job_has_no_outcome() {
        assert_eq!(finished(&running_job(), None, None), None);
    }

    #[test]
    fn complete_is_exit_zero() {
        let ending = finished(&job("Complete", "CompletionsReached"), None, None).unwrap();
        assert_eq!(ending.exit, ExitKind::Exited(0));
        assert_eq!(ending.note, None);
    }

    #[test]
    fn failed_reports_the_container_exit_code() {
        let pod = exited(3, "Error");
        let ending = finished(&job("Failed", "BackoffLimitExceeded"), Some(&pod), None).unwrap();
        assert_eq!(ending.exit, ExitKind::Exited(3));
    }

    #[test]
    fn oom_killed_is_137_with_the_reason() {
        let pod = exited(137, "OOMKilled");
        let ending = finished(&job("Failed", "BackoffLimitExceeded"), Some(&pod), None).unwrap();
        assert_eq!(ending.exit, ExitKind::Exited(OOM_EXIT_CODE));
        assert!(ending.note.unwrap().contains("OOMKilled"));
    }

    #[test]
    fn deadline_exceeded_is_a_timeout() {
        let failed = job("Failed", "DeadlineExceeded");
        let ending = finished(&failed, None, Some(Duration::from_secs(20))).unwrap();
        assert_eq!(ending.exit, ExitKind::TimedOut(Duration::from_secs(20)));
        // Without the task's own timeout, the Job's deadline is reported.
        let ending = finished(&failed, None, None).unwrap();
        assert_eq!(ending.exit, ExitKind::TimedOut(Duration::from_secs(30)));
    }

    #[test]
    fn failed_without_an_exit_code_is_not_a_success() {
        let evicted: Pod = serde_json::from_value(json!({
            "metadata": { "name": "p" },
            "status": { "phase": "Failed", "reason": "Evicted" },
        }))
        .unwrap();
        let ending = finished(&job("Failed", "PodFailurePolicy"), Some(&evicted), None).unwrap();
        assert_eq!(ending.exit, ExitKind::Exited(NOT_RUN_EXIT_CODE));
        let note = ending.note.unwrap();
        assert!(
            note.contains("PodFailurePolicy") && note.contains("Evicted"),
            "{note}"
        );
        // A zero exit code on a failed Job is not a success either.
        let clean = exited(0, "Completed");
        let ending = finished(&job("Failed", "BackoffLimitExceeded"), Some(&clean), None).unwrap();
        assert_eq!(ending.exit, ExitKind::Exited(NOT_RUN_EXIT_CODE));
    }

    #[test]
    fn image_pull_failures_give_up_past_the_limit() {
        let limit = Duration::from_secs(300);
        let pulling = pod(
            "Pending",
            json!({ "waiting": { "reason": "ImagePullBackOff", "message": "no such image" } }),
        );
        assert_eq!(stuck(Some(&pulling), Duration::from_secs(10), limit), None);
        let ending = stuck(Some(&pulling), limit, limit).unwrap();
        assert_eq!(ending.exit, ExitKind::Exited(NOT_RUN_EXIT_CODE));
        assert!(
            ending
                .note
                .unwrap()
                .contains("ImagePullBackOff: no such image")
        );
    }

    #[test]
    fn an_invalid_image_name_gives_up_at_once() {
        let invalid = pod(
            "Pending",
            json!({ "waiting": { "reason": "InvalidImageName", "message": "bad" } }),
        );
        let ending = stuck(Some(&invalid), Duration::ZERO, Duration::from_secs(300)).unwrap();
        assert_eq!(ending.exit, ExitKind::Exited(NOT_RUN_EXIT_CODE));
    }

    #[test]
    fn an_unschedulable_pod_gives_up_past_the_limit_with_the_scheduler_reason() {
        let unscheduled: Pod = serde_json::from_value(json!({
            "metadata": { "name": "p" },
            "status": { "phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu.",
            }]},
        }))
        .unwrap();
        let limit = Duration::from_secs(60);
        assert_eq!(
            stuck(Some(&unscheduled), Duration::from_secs(59), limit),
            None
        );
        let note = stuck(Some(&unscheduled), limit, limit)
            .unwrap()
            .note
            .unwrap();
        assert!(note.contains("Insufficient cpu"), "{note}");
    }

    #[test]
    fn running_pods_are_never_stuck_and_missing_pods_are_after_the_limit() {
        let running = pod("Running", json!({ "running": {} }));
        let limit = Duration::from_secs(60);
        assert_eq!(
            stuck(Some(&running), Duration::from_secs(3600), limit),
            None
        );
        assert_eq!(stuck(None, Duration::from_secs(1), limit), None);
        let note = stuck(None, limit, limit).unwrap().note.unwrap();
        assert!(note.contains("no pod was created"), "{note}");
    }
}
