//! Reading one task: its details, attempts and log tail.

use spillway_core::api::TaskDetail;
use spillway_core::auth::Action;
use spillway_core::model::{Attempt, Task};
use spillway_core::{Result, TaskId};

use super::Caller;
use crate::state::AppState;

/// A task with its attempts.
pub async fn get(state: &AppState, caller: Caller<'_>, id: TaskId) -> Result<TaskDetail> {
    caller.require(Action::Read)?;
    let scope = caller.scope()?;
    let task = visible_task(state, caller, scope.as_deref(), id).await?;
    let attempts = state.store.task_attempts(scope.as_deref(), id).await?;
    Ok(TaskDetail { task, attempts })
}

/// The task `id` of `scope`, not found unless the caller's queue scope covers its queue.
pub(crate) async fn visible_task(
    state: &AppState,
    caller: Caller<'_>,
    scope: Option<&str>,
    id: TaskId,
) -> Result<Task> {
    let task = state.store.task_get(scope, id).await?;
    caller.check_visible(&task.tenant, &task.queue, || format!("task {id} not found"))?;
    Ok(task)
}

/// Fail as for a missing task unless the caller's queue scope covers task `id`'s queue (a
/// store read only for a queue-scoped caller).
async fn check_task_visible(
    state: &AppState,
    caller: Caller<'_>,
    scope: Option<&str>,
    id: TaskId,
) -> Result<()> {
    if caller.principal.queue_scope().is_some() {
        visible_task(state, caller, scope, id).await?;
    }
    Ok(())
}

/// The log tail of attempt `attempt` (from 1) of a task, or of its latest attempt.
pub async fn log(
    state: &AppState,
    caller: Caller<'_>,
    id: TaskId,
    attempt: Option<u32>,
) -> Result<String> {
    caller.require(Action::Read)?;
    let scope = caller.scope()?;
    check_task_visible(state, caller, scope.as_deref(), id).await?;
    let attempts = state.store.task_attempts(scope.as_deref(), id).await?;
    Ok(super::logs::pick_attempt(id, attempts, attempt)?.log_tail)
}

/// A task's attempts, oldest first.
pub async fn attempts(state: &AppState, caller: Caller<'_>, id: TaskId) -> Result<Vec<Attempt>> {
    caller.require(Action::Read)?;
    let scope = caller.scope()?;
    check_task_visible(state, caller, scope.as_deref(), id).await?;
    state.store.task_attempts(scope.as_deref(), id).await
}
