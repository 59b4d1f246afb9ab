//! Pure decisions of the provider: how a managed instance reads as a pool instance, which
//! error codes mean which pool problem, which registered worker runs on an instance, and what
//! target size a resize asks for. No IO here.

use spillway_autoscale::provider::{InstanceState, PoolProblemKind};
use spillway_core::model::{Worker, WorkerState};

use crate::api::{ErrorItem, ManagedInstance};

/// Whether the group is already deleting or abandoning the instance: it no longer counts in
/// the target size.
pub fn is_leaving(instance: &ManagedInstance) -> bool {
    matches!(instance.current_action.as_str(), "DELETING" | "ABANDONING")
}

/// How a managed instance reads as a pool instance; `draining` says Spillway asked its
/// worker to drain (or deleted it).
pub fn instance_state(instance: &ManagedInstance, draining: bool) -> InstanceState {
    let seen = match instance.current_action.as_str() {
        "NONE" => match instance.instance_status.as_deref() {
            Some("RUNNING") => InstanceState::Running,
            Some("STOPPING" | "SUSPENDING") => InstanceState::Draining,
            Some("TERMINATED" | "STOPPED" | "SUSPENDED") => InstanceState::Down,
            // PROVISIONING, STAGING, REPAIRING or not yet reported.
            _ => InstanceState::Starting,
        },
        "DELETING" | "ABANDONING" | "STOPPING" | "SUSPENDING" => InstanceState::Draining,
        // CREATING, CREATING_WITHOUT_RETRIES, RECREATING, VERIFYING, STARTING, RESUMING,
        // REFRESHING, RESTARTING: on its way up.
        _ => InstanceState::Starting,
    };
    if seen.is_live() && draining {
        InstanceState::Draining
    } else {
        seen
    }
}

/// Which pool problem a Compute error code (from `lastAttempt.errors` or an operation's
/// `error.errors`) means.
pub fn problem_kind(code: &str) -> PoolProblemKind {
    let code = code.to_ascii_uppercase();
    if code.contains("QUOTA") {
        PoolProblemKind::Quota
    } else if code.contains("RESOURCE_POOL_EXHAUSTED")
        || code.contains("STOCKOUT")
        || code == "RESOURCE_NOT_AVAILABLE"
    {
        PoolProblemKind::StockOut
    } else if code.contains("PERMISSION")
        || code.contains("FORBIDDEN")
        || code.contains("ACCESS_DENIED")
        || code.contains("UNAUTHORIZED")
    {
        PoolProblemKind::Permission
    } else {
        PoolProblemKind::StartFailed
    }
}

/// A problem's message: the group, Google's code and words, and what to do about it.
pub fn problem_message(group: &str, item: &ErrorItem, instance: Option<&str>) -> String {
    let advice = match problem_kind(&item.code) {
        PoolProblemKind::Quota => {
            "request a quota increase (IAM & Admin > Quotas) or lower the pool's max"
        }
        PoolProblemKind::StockOut => {
            "the zone has no capacity of this machine type now; the group keeps trying, and a pool in another region can take the work"
        }
        PoolProblemKind::Permission => {
            "grant the missing permission (see docs/compute-engine.md, IAM)"
        }
        PoolProblemKind::StartFailed => "check the group's instance template",
        PoolProblemKind::NeverRegistered => {
            "check that the instance template starts `spillway worker` with the server's URL and a worker token"
        }
    };
    let on = instance
        .map(|i| format!(" creating {i}"))
        .unwrap_or_default();
    format!("{group}{on}: {}: {}; {advice}", item.code, item.message)
}

/// One problem per kind from the instances the group is still trying to create, in the
/// order of first appearance: `(kind, message)`.
pub fn instance_problems(
    group: &str,
    instances: &[ManagedInstance],
) -> Vec<(PoolProblemKind, String)> {
    let mut problems: Vec<(PoolProblemKind, String)> = Vec::new();
    for instance in instances.iter().filter(|i| i.current_action != "NONE") {
        let errors = instance
            .last_attempt
            .as_ref()
            .and_then(|a| a.errors.as_ref())
            .map_or(&[][..], |e| &e.errors[..]);
        for item in errors {
            let kind = problem_kind(&item.code);
            if !problems.iter().any(|(k, _)| *k == kind) {
                let name = crate::api::resource_name(&instance.instance);
                problems.push((kind, problem_message(group, item, Some(name))));
            }
        }
    }
    problems
}

/// One problem per kind from an operation's errors.
pub fn operation_problems(group: &str, errors: &[ErrorItem]) -> Vec<(PoolProblemKind, String)> {
    let mut problems: Vec<(PoolProblemKind, String)> = Vec::new();
    for item in errors {
        let kind = problem_kind(&item.code);
        if !problems.iter().any(|(k, _)| *k == kind) {
            problems.push((kind, problem_message(group, item, None)));
        }
    }
    problems
}

/// The registered worker running on instance `name`: its hostname is the instance name (or
/// starts with it and a dot, for a fully qualified one). Among several, one of this pool that
/// has not exited, then the newest, is taken.
pub fn worker_for<'a>(name: &str, pool: &str, workers: &'a [Worker]) -> Option<&'a Worker> {
    workers
        .iter()
        .filter(|w| {
            w.hostname == name
                || w.hostname
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
        .max_by_key(|w| (w.pool == pool, w.state != WorkerState::Exited, w.started_at))
}

/// Whether a drained instance may be deleted: its worker has exited or is down, or no worker
/// ever registered on it (so it holds no task).
pub fn ready_to_delete(worker: Option<&Worker>) -> bool {
    worker.is_none_or(|w| matches!(w.state, WorkerState::Exited | WorkerState::Down))
}

/// The target size to ask for, if the group must grow: `desired` live instances plus those
/// still in the group while their workers drain. Never lower than the current target:
/// lowering it would let the group pick victims, and only named instances may stop.
pub fn resize_target(current_target: u32, desired: u32, draining_held: u32) -> Option<u32> {
    let wanted = desired.saturating_add(draining_held);
    (wanted > current_target).then_some(wanted)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::api::{ErrorList, LastAttempt};

    fn mi(action: &str, status: Option<&str>) -> ManagedInstance {
        ManagedInstance {
            instance: "https://www.googleapis.com/compute/v1/projects/p/zones/z/instances/w-1"
                .into(),
            instance_status: status.map(str::to_string),
            current_action: action.into(),
            last_attempt: None,
        }
    }

    fn worker(id: &str, hostname: &str, pool: &str, state: WorkerState, at: i64) -> Worker {
        let t = chrono::Utc
            .timestamp_opt(at, 0)
            .single()
            .expect("valid time");
        Worker {
            id: id.into(),
            tenant: "t".into(),
            pool: pool.into(),
            hostname: hostname.into(),
            queues: vec!["q".into()],
            concurrency: 1,
            state,
            running: 0,
            started_at: t,
            last_seen: t,
        }
    }

    #[test]
    fn instance_states_follow_action_then_status() {
        use InstanceState::*;
        let cases = [
            ("CREATING", None, Starting),
            ("RECREATING", Some("STAGING"), Starting),
            ("VERIFYING", Some("RUNNING"), Starting),
            ("STARTING", Some("STOPPED"), Starting),
            ("NONE", Some("RUNNING"), Running),
            ("NONE", Some("PROVISIONING"), Starting),
            ("NONE", Some("TERMINATED"), Down),
            ("NONE", Some("STOPPING"), Draining),
            ("DELETING", Some("RUNNING"), Draining),
            ("ABANDONING", Some("RUNNING"), Draining),
            ("STOPPING", Some("RUNNING"), Draining),
        ];
        for (action, status, want) in cases {
            assert_eq!(
                instance_state(&mi(action, status), false),
                want,
                "{action} {status:?}"
            );
        }
    }

    #[test]
    fn a_drained_instance_is_draining_until_it_is_down() {
        assert_eq!(
            instance_state(&mi("NONE", Some("RUNNING")), true),
            InstanceState::Draining
        );
        assert_eq!(
            instance_state(&mi("CREATING", None), true),
            InstanceState::Draining
        );
        assert_eq!(
            instance_state(&mi("NONE", Some("TERMINATED")), true),
            InstanceState::Down
        );
    }

    #[test]
    fn error_codes_map_to_problem_kinds() {
        use PoolProblemKind::*;
        let cases = [
            ("QUOTA_EXCEEDED", Quota),
            ("quotaExceeded", Quota),
            ("ZONE_RESOURCE_POOL_EXHAUSTED", StockOut),
            ("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", StockOut),
            ("REGION_RESOURCE_POOL_EXHAUSTED", StockOut),
            ("PERMISSIONS_ERROR", Permission),
            ("FORBIDDEN", Permission),
            ("INVALID_FIELD_VALUE", StartFailed),
            ("RESOURCE_NOT_FOUND", StartFailed),
        ];
        for (code, want) in cases {
            assert_eq!(problem_kind(code), want, "{code}");
        }
    }

    #[test]
    fn instance_problems_are_one_per_kind_and_only_while_trying() {
        let errors = |codes: &[&str]| LastAttempt {
            errors: Some(ErrorList {
                errors: codes
                    .iter()
                    .map(|c| ErrorItem {
                        code: c.to_string(),
                        message: format!("{c} in europe-west4-a"),
                    })
                    .collect(),
            }),
        };
        let mut a = mi("CREATING", None);
        a.last_attempt = Some(errors(&["ZONE_RESOURCE_POOL_EXHAUSTED"]));
        let mut b = mi("CREATING", None);
        b.last_attempt = Some(errors(&["ZONE_RESOURCE_POOL_EXHAUSTED", "QUOTA_EXCEEDED"]));
        let mut done = mi("NONE", Some("RUNNING"));
        done.last_attempt = Some(errors(&["SOMETHING_OLD"]));
        let problems = instance_problems("group \"g\"", &[a, b, done]);
        let kinds: Vec<_> = problems.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            vec![PoolProblemKind::StockOut, PoolProblemKind::Quota]
        );
        assert!(
            problems[0].1.contains("ZONE_RESOURCE_POOL_EXHAUSTED"),
            "{problems:?}"
        );
        assert!(problems[0].1.contains("creating w-1"), "{problems:?}");
        assert!(problems[1].1.contains("quota increase"), "{problems:?}");
    }

    #[test]
    fn worker_for_prefers_this_pool_live_and_newest() {
        let workers = vec![
            worker("old", "w-1", "spot", WorkerState::Exited, 10),
            worker("new", "w-1.c.proj.internal", "spot", WorkerState::Active, 5),
            worker("other-pool", "w-1", "home", WorkerState::Active, 20),
            worker("prefix", "w-10", "spot", WorkerState::Active, 30),
        ];
        assert_eq!(
            worker_for("w-1", "spot", &workers).map(|w| w.id.as_str()),
            Some("new")
        );
        assert_eq!(
            worker_for("w-1", "home", &workers).map(|w| w.id.as_str()),
            Some("other-pool")
        );
        assert!(worker_for("w-2", "spot", &workers).is_none());
    }

    #[test]
    fn drained_instances_are_deleted_once_their_worker_is_gone() {
        assert!(ready_to_delete(None));
        for (state, want) in [
            (WorkerState::Active, false),
            (WorkerState::Draining, false),
            (WorkerState::Exited, true),
            (WorkerState::Down, true),
        ] {
            let w = worker("a", "w-1", "p", state, 0);
            assert_eq!(ready_to_delete(Some(&w)), want, "{state:?}");
        }
    }

    #[test]
    fn resize_target_only_ever_grows() {
        assert_eq!(resize_target(2, 5, 0), Some(5));
        assert_eq!(resize_target(3, 3, 0), None);
        assert_eq!(
            resize_target(3, 1, 0),
            None,
            "no victims chosen by the group"
        );
        assert_eq!(
            resize_target(3, 3, 1),
            Some(4),
            "a draining instance still counts"
        );
    }
}
