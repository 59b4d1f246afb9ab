//! Queues: create, list with their numbers, read one, change settings.

use spillway_core::api::QueueView;
use spillway_core::auth::Action;
use spillway_core::model::{Queue, QueueSettings, QueueStats};
use spillway_core::names::validate_name;
use spillway_core::{Error, Result};
use spillway_store::QueueCreate;

use super::Caller;
use crate::extract::parse_json;
use crate::state::AppState;
use spillway_store::QueueStatsQuery;

/// Create the queue `name` with `settings` in the caller's tenant.
pub async fn create(
    state: &AppState,
    caller: Caller<'_>,
    name: String,
    settings: QueueSettings,
) -> Result<Queue> {
    caller.require(Action::ManageQueues)?;
    validate_name("queue", &name)?;
    settings.validate()?;
    let tenant = caller.tenant()?;
    let queue = state
        .store
        .queue_create(QueueCreate {
            tenant,
            name,
            settings,
            now: state.clock.now(),
        })
        .await?;
    tracing::info!(tenant = %queue.tenant, queue = %queue.name, "queue created");
    Ok(queue)
}

/// Queues the caller can see, with their numbers.
pub async fn list(state: &AppState, caller: Caller<'_>) -> Result<Vec<QueueView>> {
    caller.require(Action::Read)?;
    let scope = caller.scope()?;
    let mut queues = state.store.queue_list(scope.as_deref()).await?;
    queues.retain(|queue| caller.sees_queue(&queue.tenant, &queue.name));
    let stats = state
        .store
        .queue_stats(QueueStatsQuery {
            tenant: scope,
            now: state.clock.now(),
        })
        .await?;
    Ok(queues
        .into_iter()
        .map(|queue| {
            let stats = stats
                .iter()
                .find(|s| s.tenant == queue.tenant && s.queue == queue.name)
                .cloned();
            view(queue, stats)
        })
        .collect())
}

/// The numbers of every queue the caller can see (tenant-bound callers see theirs).
pub async fn stats(state: &AppState, caller: Caller<'_>) -> Result<Vec<QueueStats>> {
    caller.require(Action::Read)?;
    let scope = caller.scope()?;
    let mut stats = state
        .store
        .queue_stats(QueueStatsQuery {
            tenant: scope,
            now: state.clock.now(),
        })
        .await?;
    stats.retain(|s| caller.sees_queue(&s.tenant, &s.queue));
    Ok(stats)
}

fn view(queue: Queue, stats: Option<QueueStats>) -> QueueView {
    let stats = stats.unwrap_or_else(|| QueueStats {
        tenant: queue.tenant.clone(),
        queue: queue.name.clone(),
        counts: Default::default(),
        oldest_available_age_seconds: None,
        paused: queue.settings.paused,
    });
    QueueView {
        name: queue.name,
        tenant: queue.tenant,
        settings: queue.settings,
        stats,
    }
}

/// One queue of the caller's tenant with its numbers.
pub async fn get(state: &AppState, caller: Caller<'_>, name: &str) -> Result<QueueView> {
    caller.require(Action::Read)?;
    validate_name("queue", name)?;
    let tenant = caller.tenant()?;
    caller.check_visible(&tenant, name, || {
        format!("queue {name:?} not found for this token")
    })?;
    let queue = state.store.queue_get(&tenant, name).await?;
    let stats = state
        .store
        .queue_stats(QueueStatsQuery {
            tenant: Some(tenant.clone()),
            now: state.clock.now(),
        })
        .await?
        .into_iter()
        .find(|s| s.queue == name);
    Ok(view(queue, stats))
}

/// Change some of a queue's settings: `patch` is a JSON object of the fields to change;
/// fields left out keep their current value.
pub async fn update(
    state: &AppState,
    caller: Caller<'_>,
    name: &str,
    patch: serde_json::Value,
) -> Result<Queue> {
    caller.require(Action::ManageQueues)?;
    validate_name("queue", name)?;
    let serde_json::Value::Object(patch) = patch else {
        return Err(Error::invalid(
            "request body must be a JSON object of settings, e.g. {\"paused\": true}",
        ));
    };
    let tenant = caller.tenant()?;
    let current = state.store.queue_get(&tenant, name).await?;
    let mut merged = serde_json::to_value(&current.settings)
        .map_err(|e| Error::internal("could not encode queue settings").with_source(e))?;
    if let serde_json::Value::Object(fields) = &mut merged {
        fields.extend(patch);
    }
    let bytes = serde_json::to_vec(&merged)
        .map_err(|e| Error::internal("could not encode queue settings").with_source(e))?;
    let settings: QueueSettings = parse_json(&bytes)?;
    settings.validate()?;
    let queue = state.store.queue_update(&tenant, name, settings).await?;
    tracing::info!(tenant = %queue.tenant, queue = %queue.name, "queue settings changed");
    Ok(queue)
}
