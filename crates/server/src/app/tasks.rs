//! Reading one task: its details, attempts and log tail.

use spillway_core::api::TaskDetail;
use spillway_core::auth::Action;
use spillway_core::model::Attempt;
use spillway_core::{Result, TaskId};

use super::Caller;
use crate::state::AppState;

/// A task with its attempts.
pub async fn get(state: &AppState, caller: Caller<'_>, id: TaskId) -> Result<TaskDetail> {
    caller.require(Action::Read)?;
    let scope = caller.scope()?;
    let task = state.store.task_get(scope.as_deref(), id).await?;
    let attempts = state.store.task_attempts(scope.as_deref(), id).await?;
    Ok(TaskDetail { task, attempts })
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
    let attempts = state.store.task_attempts(scope.as_deref(), id).await?;
    Ok(super::logs::pick_attempt(id, attempts, attempt)?.log_tail)
}

/// A task's attempts, oldest first.
pub async fn attempts(state: &AppState, caller: Caller<'_>, id: TaskId) -> Result<Vec<Attempt>> {
    caller.require(Action::Read)?;
    let scope = caller.scope()?;
    state.store.task_attempts(scope.as_deref(), id).await
}
