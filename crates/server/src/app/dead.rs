//! Dead letters: listing and requeueing.

use spillway_core::api::{Page, RequeueRequest};
use spillway_core::auth::Action;
use spillway_core::model::Task;
use spillway_core::names::LabelSelector;
use spillway_core::names::validate_name;
use spillway_core::{Error, Result};
use spillway_store::{DeadList, DeadRequeue};

use super::{Caller, page_limit};
use crate::state::AppState;

/// Dead tasks the caller can see, oldest first; only `queue`'s when given.
pub async fn list(
    state: &AppState,
    caller: Caller<'_>,
    queue: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<Page<Task>> {
    list_labelled(state, caller, queue, &[], limit, cursor).await
}

/// As [`list`], only the tasks whose job satisfies every label condition (`key=value`, or
/// `key` for any value).
pub async fn list_labelled(
    state: &AppState,
    caller: Caller<'_>,
    queue: Option<String>,
    labels: &[String],
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<Page<Task>> {
    caller.require(Action::Read)?;
    let scope = caller.scope()?;
    if let Some(queue) = &queue {
        validate_name("queue", queue)?;
    }
    let labels = labels
        .iter()
        .map(|l| LabelSelector::parse(l))
        .collect::<Result<Vec<_>>>()?;
    let queue = caller.queue_filter(scope.as_deref(), queue)?;
    let mut page = state
        .store
        .dead_list(DeadList {
            tenant: scope,
            queue,
            labels,
            limit: page_limit(limit)?,
            cursor,
        })
        .await?;
    // A token of several queues: its other queues' tasks are left out here, so a page may
    // hold fewer than the limit while `next_cursor` leads on.
    page.items
        .retain(|task| caller.sees_queue(&task.tenant, &task.queue));
    Ok(page)
}

/// Requeue dead tasks: the listed ones, or every dead task of a queue; the answer is how
/// many were requeued. The caller's tenant is the one the request names (`req.tenant`).
pub async fn requeue(state: &AppState, caller: Caller<'_>, req: RequeueRequest) -> Result<u64> {
    caller.require(Action::Requeue)?;
    if req.task_ids.is_empty() == req.queue.is_none() {
        return Err(Error::invalid(
            "give either task_ids or queue: the dead tasks to requeue, or a queue to requeue all of",
        ));
    }
    let scope = match &req.queue {
        // A queue is named within one tenant; check it exists so a typo is a 404, not 0.
        Some(queue) => {
            validate_name("queue", queue)?;
            let tenant = caller.tenant()?;
            caller.principal.require_queue(&tenant, queue)?;
            state.store.queue_get(&tenant, queue).await?;
            Some(tenant)
        }
        None => caller.scope()?,
    };
    if req.queue.is_none() && caller.principal.queue_scope().is_some() {
        for &id in &req.task_ids {
            super::tasks::visible_task(state, caller, scope.as_deref(), id).await?;
        }
    }
    let changed = state
        .store
        .dead_requeue(DeadRequeue {
            tenant: scope,
            task_ids: req.task_ids,
            queue: req.queue,
            now: state.clock.now(),
        })
        .await?;
    tracing::info!(changed, "dead tasks requeued");
    Ok(changed)
}
