//! "Why is this task not running": where a waiting task stands in its queue and what keeps it
//! waiting, in words.

use axum::Json;
use axum::extract::State;
use spillway_core::api::{Problem, TaskWhy, WaitReason, WaitReasonKind};
use spillway_core::auth::Action;
use spillway_core::model::Task;
use spillway_core::state::TaskState;
use spillway_core::{Result, TaskId, Timestamp};
use spillway_store::TaskList;

use crate::auth::Auth;
use crate::extract::{Path, Query};
use crate::problem::ApiResult;
use crate::routes::queues::TenantQuery;
use crate::state::AppState;

/// Most waiting tasks one call reads to find a task's position; past this the position is
/// reported as unknown rather than making one request scan a huge queue.
pub const MAX_POSITION_SCAN: u64 = 20_000;

/// Page size of the position scan.
const SCAN_PAGE: u32 = 1000;

/// Where a task stands and why it is not running.
#[utoipa::path(get, path = "/v1/tasks/{id}/why", tag = "tasks", params(("id" = i64, Path), TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = TaskWhy), (status = "4XX", body = Problem)))]
pub async fn why(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<TaskId>,
    Query(q): Query<TenantQuery>,
) -> ApiResult<Json<TaskWhy>> {
    auth.require(Action::Read)?;
    let scope = auth.scope(q.tenant.as_deref())?;
    let task = state.store.task_get(scope.as_deref(), id).await?;
    let now = state.clock.now();
    let queue = state.store.queue_get(&task.tenant, &task.queue).await?;
    let position = if leasable(&task, now) {
        task_position(&state, &task, now).await?
    } else {
        None
    };
    let reasons = wait_reasons(&task, queue.settings.paused, now);
    Ok(Json(TaskWhy {
        task_id: task.id,
        state: task.state,
        queue: task.queue,
        position,
        estimated_start: None,
        reasons,
    }))
}

/// Whether a worker could lease the task now, queue pause aside.
fn leasable(task: &Task, now: Timestamp) -> bool {
    match task.state {
        TaskState::Available => true,
        TaskState::Scheduled | TaskState::Retrying => task.run_at <= now,
        _ => false,
    }
}

/// Whether `other` is leased before `task`: the lease order is priority (highest first), then
/// `run_at`, then id.
fn ahead(other: &Task, task: &Task) -> bool {
    (-other.priority, other.run_at, other.id) < (-task.priority, task.run_at, task.id)
}

/// Leasable tasks of the task's queue ahead of it, or `None` past [`MAX_POSITION_SCAN`].
async fn task_position(state: &AppState, task: &Task, now: Timestamp) -> Result<Option<u64>> {
    let mut position = 0_u64;
    let mut scanned = 0_u64;
    for waiting in [
        TaskState::Available,
        TaskState::Scheduled,
        TaskState::Retrying,
    ] {
        let mut cursor = None;
        loop {
            let page = state
                .store
                .task_list(TaskList {
                    tenant: Some(task.tenant.clone()),
                    job_id: None,
                    queue: Some(task.queue.clone()),
                    state: Some(waiting),
                    limit: SCAN_PAGE,
                    cursor,
                })
                .await?;
            scanned += page.items.len() as u64;
            position += page
                .items
                .iter()
                .filter(|other| other.id != task.id && leasable(other, now) && ahead(other, task))
                .count() as u64;
            if scanned > MAX_POSITION_SCAN {
                return Ok(None);
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok(Some(position))
}

/// The reasons a task is not running, most important first; empty once it runs or finished.
pub(crate) fn wait_reasons(task: &Task, queue_paused: bool, now: Timestamp) -> Vec<WaitReason> {
    if !task.state.is_waiting() {
        return Vec::new();
    }
    let mut reasons = Vec::new();
    if queue_paused {
        reasons.push(WaitReason {
            kind: WaitReasonKind::QueuePaused,
            message: format!(
                "queue {:?} is paused: resume it with `spillway queues resume {}`",
                task.queue, task.queue
            ),
            until: None,
        });
    }
    if task.run_at > now {
        let (kind, message) = match task.state {
            TaskState::Retrying => (
                WaitReasonKind::Backoff,
                format!(
                    "in backoff after {} failed attempt(s) until {}",
                    task.failures,
                    task.run_at.to_rfc3339()
                ),
            ),
            _ => (
                WaitReasonKind::Scheduled,
                format!("scheduled for {}", task.run_at.to_rfc3339()),
            ),
        };
        reasons.push(WaitReason {
            kind,
            message,
            until: Some(task.run_at),
        });
    }
    if reasons.is_empty() {
        reasons.push(WaitReason {
            kind: WaitReasonKind::WaitingForWorker,
            message: format!("waiting for a worker serving queue {:?}", task.queue),
            until: None,
        });
    }
    reasons
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;

    fn task(state: TaskState, run_at_offset: i64) -> (Task, Timestamp) {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let task: Task = serde_json::from_value(serde_json::json!({
            "id": 7, "job_id": "0190a0a0-0000-7000-8000-000000000000", "tenant": "t",
            "queue": "q", "index": 0, "state": state, "priority": 0, "burstable": false,
            "run_at": now + Duration::seconds(run_at_offset), "attempt": 1, "failures": 1,
            "preemptions": 0, "max_attempts": 3, "payload": null, "lease": null,
            "cancel_requested": false, "exit_code": null, "last_error": null, "result": null,
            "avoid_pool": null, "created_at": now, "finished_at": null,
        }))
        .expect("task fixture parses");
        (task, now)
    }

    fn kinds(reasons: &[WaitReason]) -> Vec<WaitReasonKind> {
        reasons.iter().map(|r| r.kind).collect()
    }

    #[test]
    fn retrying_task_in_the_future_is_in_backoff_until_run_at() {
        let (t, now) = task(TaskState::Retrying, 30);
        let reasons = wait_reasons(&t, false, now);
        assert_eq!(kinds(&reasons), [WaitReasonKind::Backoff]);
        assert_eq!(reasons[0].until, Some(t.run_at));
        assert!(!leasable(&t, now));
    }

    #[test]
    fn delayed_task_is_scheduled_and_paused_queue_comes_first() {
        let (t, now) = task(TaskState::Scheduled, 60);
        let reasons = wait_reasons(&t, true, now);
        assert_eq!(
            kinds(&reasons),
            [WaitReasonKind::QueuePaused, WaitReasonKind::Scheduled]
        );
        assert!(reasons[0].message.contains("resume"), "{:?}", reasons[0]);
    }

    #[test]
    fn due_task_waits_for_a_worker_and_running_task_has_no_reason() {
        let (t, now) = task(TaskState::Retrying, -5);
        assert!(leasable(&t, now));
        assert_eq!(
            kinds(&wait_reasons(&t, false, now)),
            [WaitReasonKind::WaitingForWorker]
        );
        let (running, now) = task(TaskState::Leased, 0);
        assert!(wait_reasons(&running, false, now).is_empty());
    }

    #[test]
    fn lease_order_is_priority_then_run_at_then_id() {
        let (t, _) = task(TaskState::Available, 0);
        let mut higher = t.clone();
        higher.priority = 5;
        higher.id = 100;
        assert!(ahead(&higher, &t));
        let mut older = t.clone();
        older.run_at -= Duration::seconds(1);
        older.id = 100;
        assert!(ahead(&older, &t));
        let mut later_id = t.clone();
        later_id.id = 8;
        assert!(!ahead(&later_id, &t));
        later_id.id = 6;
        assert!(ahead(&later_id, &t));
    }
}
