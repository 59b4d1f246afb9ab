//! The provider's decisions, free of IO: what a pod's state means for its instance, which
//! conditions are pool problems, how many replicas to ask for and which pods to mark or
//! delete when draining, and what a work-queue pool still needs.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use spillway_autoscale::provider::{InstanceState, PoolProblemKind};
use spillway_core::model::{Worker, WorkerState};

/// Infix of the ids of instances asked for whose pods do not exist yet.
pub const WANTED_INFIX: &str = "-wanted-";

/// Waiting reasons of a container that mean the pod will not start by itself.
const START_FAILURES: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Whether a pod has ended (phase Succeeded or Failed).
pub fn pod_ended(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A pod's instance state from the pod alone: ended → Down; being deleted (SIGTERM sent) →
/// Draining; running and ready → Running; anything else (pending, pulling, creating
/// containers, not ready yet) → Starting.
pub fn pod_state(pod: &Pod) -> InstanceState {
    if pod_ended(pod) {
        InstanceState::Down
    } else if pod.metadata.deletion_timestamp.is_some() {
        InstanceState::Draining
    } else if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && pod_ready(pod)
    {
        InstanceState::Running
    } else {
        InstanceState::Starting
    }
}

/// A pod's state once its worker (if registered) is known: a draining worker makes the
/// instance draining; a registered active worker in a live pod is running.
pub fn instance_state(pod: &Pod, worker: Option<&Worker>) -> InstanceState {
    let state = pod_state(pod);
    match (state, worker.map(|w| w.state)) {
        (InstanceState::Starting | InstanceState::Running, Some(WorkerState::Draining)) => {
            InstanceState::Draining
        }
        (InstanceState::Starting, Some(WorkerState::Active)) => InstanceState::Running,
        _ => state,
    }
}

/// The worker that registered from this pod (hostname = pod name) for this pool, the most
/// recently started one if it restarted.
pub fn worker_of<'a>(workers: &'a [Worker], pool: &str, pod_name: &str) -> Option<&'a Worker> {
    workers
        .iter()
        .filter(|w| w.pool == pool && w.hostname == pod_name)
        .max_by_key(|w| w.started_at)
}

/// Why a pod keeps a pool short, if it does: unschedulable (no node has room) is a stock-out;
/// an image that cannot be pulled or a container crashing on start is a start failure.
pub fn pod_problem(pod: &Pod) -> Option<(PoolProblemKind, String)> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    if pod_ended(pod) || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    if let Some(c) = unschedulable {
        return Some((
            PoolProblemKind::StockOut,
            format!(
                "pod {name} is unschedulable: {}",
                c.message.as_deref().unwrap_or("no node has room")
            ),
        ));
    }
    for container in status.container_statuses.iter().flatten() {
        let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or("");
        if START_FAILURES.contains(&reason) {
            return Some((
                PoolProblemKind::StartFailed,
                format!(
                    "pod {name} cannot start container {}: {reason}{}",
                    container.name,
                    waiting
                        .message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            ));
        }
    }
    None
}

/// Problems a Deployment reports on itself: `ReplicaFailure` (the ReplicaSet could not create
/// pods), a quota problem when a ResourceQuota refused them.
pub fn deployment_problem(deployment: &Deployment) -> Option<(PoolProblemKind, String)> {
    let name = deployment.metadata.name.as_deref().unwrap_or("?");
    let condition = deployment
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")?;
    let message = condition.message.clone().unwrap_or_default();
    let kind = if message.contains("exceeded quota") {
        PoolProblemKind::Quota
    } else if message.contains("forbidden") {
        PoolProblemKind::Permission
    } else {
        PoolProblemKind::StartFailed
    };
    Some((
        kind,
        format!("deployment {name} cannot create pods: {message}"),
    ))
}

/// Problems a Job reports: a Failed condition means its pods kept failing.
pub fn job_problem(job: &Job) -> Option<(PoolProblemKind, String)> {
    let name = job.metadata.name.as_deref().unwrap_or("?");
    let failed = job
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    Some((
        PoolProblemKind::StartFailed,
        format!(
            "job {name} failed ({}): {}; look at its pods' logs",
            failed.reason.as_deref().unwrap_or("?"),
            failed.message.as_deref().unwrap_or("")
        ),
    ))
}

/// One problem per kind, the first message naming how many pods share it.
pub fn merge_problems(found: Vec<(PoolProblemKind, String)>) -> Vec<(PoolProblemKind, String)> {
    let mut out: Vec<(PoolProblemKind, String, usize)> = Vec::new();
    for (kind, message) in found {
        match out.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, _, n)) => *n += 1,
            None => out.push((kind, message, 1)),
        }
    }
    out.into_iter()
        .map(|(kind, message, n)| {
            if n > 1 {
                (kind, format!("{message} (and {} more like it)", n - 1))
            } else {
                (kind, message)
            }
        })
        .collect()
}

/// The label selector of a Deployment as a query string (`a=b,c in (d)`); `None` when it
/// selects nothing usable.
pub fn selector_string(selector: &LabelSelector) -> Option<String> {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            _ => return None,
        });
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// Ids of instances asked for whose pods the controller has not created yet.
pub fn wanted_ids(owner: &str, count: u32) -> Vec<String> {
    (1..=count)
        .map(|k| format!("{owner}{WANTED_INFIX}{k}"))
        .collect()
}

/// What to do to a Deployment for one resize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentPlan {
    /// Replicas to ask for.
    pub replicas: u32,
    /// Pods to give the lowest deletion cost, so a scale-down removes them first.
    pub mark: Vec<String>,
    /// Pods to delete directly: the drained ones, when the replica count does not fall far
    /// enough for the ReplicaSet to remove them all.
    pub delete: Vec<String>,
}

/// Plan a resize of a Deployment. `live` are its live pods (starting or running), `replicas`
/// its current `spec.replicas`, `drain` the instances to drain.
///
/// Unnamed live pods and pods still to be created are kept: replicas never fall below them
/// (`max(desired, kept)`). When the new count equals the unnamed live pods, the ReplicaSet's
/// scale-down removes exactly the named pods (they have the lowest deletion cost); otherwise
/// (the pool stays as large or grows while draining) the named pods are deleted directly and
/// the ReplicaSet replaces them up to `desired`.
pub fn deployment_plan(
    deployment: &str,
    desired: u32,
    replicas: u32,
    live: &[String],
    drain: &[String],
) -> DeploymentPlan {
    let named: Vec<String> = live.iter().filter(|p| drain.contains(p)).cloned().collect();
    let unnamed = (live.len() - named.len()) as u32;
    let pending = replicas.saturating_sub(live.len() as u32);
    let named_pending = wanted_ids(deployment, pending)
        .iter()
        .filter(|id| drain.contains(id))
        .count() as u32;
    let kept = unnamed + pending - named_pending;
    let target = desired.max(kept);
    let delete = if named.is_empty() || target == unnamed {
        Vec::new()
    } else {
        named.clone()
    };
    DeploymentPlan {
        replicas: target,
        mark: named,
        delete,
    }
}

/// A Job of a work-queue pool as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueJob {
    /// Its name.
    pub name: String,
    /// `spec.parallelism`.
    pub parallelism: u32,
    /// Pods not ended and not being deleted.
    pub active: u32,
    /// Whether a pod has succeeded (then the Job starts no more pods) or the Job is finished
    /// or being deleted.
    pub closed: bool,
}

impl QueueJob {
    /// Pods the Job controller is still to create.
    pub fn pending(&self) -> u32 {
        if self.closed {
            0
        } else {
            self.parallelism.saturating_sub(self.active)
        }
    }
}

/// What to do to a work-queue pool for one resize.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueuePlan {
    /// Parallelism of a new Job to create, if more instances are needed.
    pub new_job: Option<u32>,
    /// Jobs whose parallelism drops (name, new parallelism): drained instances not started.
    pub lower: Vec<(String, u32)>,
}

/// Plan a resize of a work-queue pool: `live` are live pods (not draining), `drain` the
/// instances to drain. Named pods are drained by the caller; named instances not created yet
/// lower their Job's parallelism; a deficit starts a new Job.
pub fn queue_plan(
    desired: u32,
    jobs: &[QueueJob],
    live: u32,
    named_live: u32,
    drain: &[String],
) -> QueuePlan {
    let mut lower = Vec::new();
    let mut pending = 0;
    for job in jobs {
        let wanted = job.pending();
        let named = wanted_ids(&job.name, wanted)
            .iter()
            .filter(|id| drain.contains(id))
            .count() as u32;
        if named > 0 {
            lower.push((job.name.clone(), job.parallelism - named));
        }
        pending += wanted - named;
    }
    let kept = live - named_live + pending;
    QueuePlan {
        new_job: (desired > kept).then(|| desired - kept),
        lower,
    }
}

/// Whether a work-queue Job is finished (Complete or Failed) and all its pods ended, so that
/// it can be deleted.
pub fn job_done(job: &Job, pods_left: usize) -> bool {
    let finished = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        });
    finished && pods_left == 0
}

/// A Kubernetes object name from a pool name: lowercase, `_` and `.` become `-`, at most
/// 52 characters so that generated Job and pod names stay within 63.
pub fn object_name(pool: &str) -> String {
    let name: String = pool
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .take(52)
        .collect();
    name.trim_matches('-').to_string()
}

/// Kubernetes quantity of CPU cores: `1`, `500m`.
pub fn cpu_quantity(cores: f64) -> String {
    let milli = (cores * 1000.0).round() as u64;
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("pod")
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pod_states() {
        let pending = pod(json!({"metadata": {"name": "a"}, "status": {"phase": "Pending"}}));
        assert_eq!(pod_state(&pending), InstanceState::Starting);
        let running_not_ready = pod(
            json!({"metadata": {"name": "a"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}]}}),
        );
        assert_eq!(pod_state(&running_not_ready), InstanceState::Starting);
        let ready = pod(
            json!({"metadata": {"name": "a"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(pod_state(&ready), InstanceState::Running);
        let deleting = pod(
            json!({"metadata": {"name": "a", "deletionTimestamp": "2030-01-01T00:00:00Z"},
            "status": {"phase": "Running"}}),
        );
        assert_eq!(pod_state(&deleting), InstanceState::Draining);
        for phase in ["Succeeded", "Failed"] {
            let ended = pod(json!({"metadata": {"name": "a"}, "status": {"phase": phase}}));
            assert_eq!(pod_state(&ended), InstanceState::Down);
        }
    }

    fn worker(hostname: &str, state: WorkerState, started: i64) -> Worker {
        let at = chrono::DateTime::from_timestamp(started, 0).unwrap_or_default();
        Worker {
            id: format!("w-{hostname}-{started}"),
            tenant: "default".into(),
            pool: "p".into(),
            hostname: hostname.into(),
            queues: vec!["default".into()],
            concurrency: 1,
            state,
            running: 0,
            started_at: at,
            last_seen: at,
        }
    }

    #[test]
    fn workers_join_pods_by_hostname() {
        let starting = pod(json!({"metadata": {"name": "a"}, "status": {"phase": "Running"}}));
        let workers = vec![
            worker("a", WorkerState::Exited, 1),
            worker("a", WorkerState::Active, 2),
            worker("b", WorkerState::Draining, 3),
        ];
        let joined = worker_of(&workers, "p", "a").expect("worker of a");
        assert_eq!(
            joined.state,
            WorkerState::Active,
            "the latest registration wins"
        );
        assert!(
            worker_of(&workers, "other", "a").is_none(),
            "pools must match"
        );
        assert_eq!(
            instance_state(&starting, Some(joined)),
            InstanceState::Running
        );
        let draining = worker_of(&workers, "p", "b");
        assert_eq!(instance_state(&starting, draining), InstanceState::Draining);
        assert_eq!(instance_state(&starting, None), InstanceState::Starting);
        let ended = pod(json!({"metadata": {"name": "b"}, "status": {"phase": "Succeeded"}}));
        assert_eq!(instance_state(&ended, draining), InstanceState::Down);
    }

    #[test]
    fn unschedulable_is_a_stock_out_and_pull_errors_a_start_failure() {
        let unschedulable = pod(
            json!({"metadata": {"name": "a"}, "status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu."}]}}),
        );
        let (kind, message) = pod_problem(&unschedulable).expect("problem");
        assert_eq!(kind, PoolProblemKind::StockOut);
        assert!(message.contains("Insufficient cpu"), "{message}");
        let pull = pod(
            json!({"metadata": {"name": "a"}, "status": {"phase": "Pending",
            "containerStatuses": [{"name": "worker", "image": "x", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}),
        );
        assert_eq!(
            pod_problem(&pull).map(|p| p.0),
            Some(PoolProblemKind::StartFailed)
        );
        let creating = pod(
            json!({"metadata": {"name": "a"}, "status": {"phase": "Pending",
            "containerStatuses": [{"name": "worker", "image": "x", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}}),
        );
        assert_eq!(pod_problem(&creating), None);
    }

    #[test]
    fn quota_on_a_deployment_is_a_quota_problem() {
        let deployment: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"},
            "status": {"conditions": [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": "pods \"d-1\" is forbidden: exceeded quota: q"}]}}))
        .expect("deployment");
        assert_eq!(
            deployment_problem(&deployment).map(|p| p.0),
            Some(PoolProblemKind::Quota)
        );
    }

    #[test]
    fn problems_merge_per_kind() {
        let merged = merge_problems(vec![
            (PoolProblemKind::StockOut, "pod a".into()),
            (PoolProblemKind::StockOut, "pod b".into()),
            (PoolProblemKind::Quota, "q".into()),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].1, "pod a (and 1 more like it)");
    }

    #[test]
    fn smaller_size_without_names_keeps_every_pod() {
        let plan = deployment_plan("d", 1, 3, &names(&["a", "b", "c"]), &[]);
        assert_eq!(
            plan,
            DeploymentPlan {
                replicas: 3,
                mark: vec![],
                delete: vec![]
            }
        );
    }

    #[test]
    fn draining_lowers_replicas_by_the_named_pods_only() {
        let plan = deployment_plan("d", 2, 3, &names(&["a", "b", "c"]), &names(&["b"]));
        assert_eq!(
            plan,
            DeploymentPlan {
                replicas: 2,
                mark: names(&["b"]),
                delete: vec![]
            }
        );
        // Never below what the caller wants: the named pods are deleted and replaced.
        let plan = deployment_plan("d", 3, 3, &names(&["a", "b", "c"]), &names(&["b"]));
        assert_eq!(
            plan,
            DeploymentPlan {
                replicas: 3,
                mark: names(&["b"]),
                delete: names(&["b"])
            }
        );
        // Names of pods already gone change nothing.
        let plan = deployment_plan("d", 2, 2, &names(&["a", "c"]), &names(&["b"]));
        assert_eq!(
            plan,
            DeploymentPlan {
                replicas: 2,
                mark: vec![],
                delete: vec![]
            }
        );
    }

    #[test]
    fn pods_not_created_yet_count_as_kept_unless_named() {
        // 3 asked, 1 exists: the two to come are kept.
        let plan = deployment_plan("d", 1, 3, &names(&["a"]), &[]);
        assert_eq!(plan.replicas, 3);
        let plan = deployment_plan(
            "d",
            0,
            3,
            &names(&["a"]),
            &names(&["d-wanted-1", "d-wanted-2", "a"]),
        );
        assert_eq!(
            plan,
            DeploymentPlan {
                replicas: 0,
                mark: names(&["a"]),
                delete: vec![]
            }
        );
        // Draining a pod while others are still to come: delete it directly.
        let plan = deployment_plan("d", 2, 3, &names(&["a"]), &names(&["a"]));
        assert_eq!(
            plan,
            DeploymentPlan {
                replicas: 2,
                mark: names(&["a"]),
                delete: names(&["a"])
            }
        );
    }

    #[test]
    fn work_queue_starts_a_job_for_the_deficit() {
        let jobs = vec![QueueJob {
            name: "p-1".into(),
            parallelism: 3,
            active: 1,
            closed: false,
        }];
        // 1 live + 2 to come = 3.
        assert_eq!(queue_plan(3, &jobs, 1, 0, &[]), QueuePlan::default());
        assert_eq!(queue_plan(5, &jobs, 1, 0, &[]).new_job, Some(2));
        // Smaller without names: nothing.
        assert_eq!(queue_plan(1, &jobs, 1, 0, &[]), QueuePlan::default());
        // A named instance not created yet lowers the Job's parallelism.
        let plan = queue_plan(2, &jobs, 1, 0, &names(&["p-1-wanted-2"]));
        assert_eq!(
            plan,
            QueuePlan {
                new_job: None,
                lower: vec![("p-1".into(), 2)]
            }
        );
        // A closed Job starts nothing more: its missing pods are not counted.
        let closed = vec![QueueJob {
            closed: true,
            ..jobs[0].clone()
        }];
        assert_eq!(queue_plan(3, &closed, 1, 0, &[]).new_job, Some(2));
        // Draining one of two live pods while keeping two: one new pod.
        assert_eq!(queue_plan(2, &[], 2, 1, &names(&["x"])).new_job, Some(1));
    }

    #[test]
    fn names_and_quantities() {
        assert_eq!(object_name("GPU_pool.eu"), "gpu-pool-eu");
        assert_eq!(cpu_quantity(1.0), "1");
        assert_eq!(cpu_quantity(0.25), "250m");
        let sel: LabelSelector = serde_json::from_value(json!({"matchLabels": {"app": "w"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}))
        .expect("selector");
        assert_eq!(
            selector_string(&sel).as_deref(),
            Some("app=w,tier in (a,b)")
        );
    }
}
