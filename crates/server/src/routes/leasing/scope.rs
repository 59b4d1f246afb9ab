//! Which reported leases belong to the caller's tenant. A lease token alone must not let a
//! worker of one tenant touch another tenant's task, so every report is checked: from the
//! lease ledger when this server handed the lease out (no round trip), else from the store
//! (one lookup per task this server does not know, e.g. after a restart).

use spillway_core::api::{HeartbeatResult, LeaseStatus, ReportResult};
use spillway_core::{Error, ErrorKind, TaskId};

use crate::state::AppState;

/// For each of `ids`, whether a caller limited to `scope` (None: every tenant) may report
/// on it.
pub(super) async fn owned(
    state: &AppState,
    scope: Option<&str>,
    ids: &[TaskId],
) -> Result<Vec<bool>, Error> {
    let Some(tenant) = scope else {
        return Ok(vec![true; ids.len()]);
    };
    let mut owned = Vec::with_capacity(ids.len());
    for &id in ids {
        let mine = match state.shared.leases.tenant_of(id) {
            Some(owner) => owner == tenant,
            None => match state.store.task_get(Some(tenant), id).await {
                Ok(_) => true,
                Err(e) if e.kind() == ErrorKind::NotFound => false,
                Err(e) => return Err(e),
            },
        };
        owned.push(mine);
    }
    Ok(owned)
}

/// Not found unless a caller limited to `scope` may report on task `id`.
pub(super) async fn ensure_owned(
    state: &AppState,
    scope: Option<&str>,
    id: TaskId,
) -> Result<(), Error> {
    let known = state.shared.leases.tenant_of(id);
    match (scope, known) {
        (Some(tenant), Some(owner)) if owner != tenant => Err(not_found(id)),
        (_, Some(_)) => Ok(()),
        // The store's own not-found message names the task.
        (_, None) => state.store.task_get(scope, id).await.map(|_| ()),
    }
}

/// The items whose flag in `owned` is set, in order.
pub(super) fn keep<T>(items: Vec<T>, owned: &[bool]) -> Vec<T> {
    items
        .into_iter()
        .zip(owned)
        .filter_map(|(item, &mine)| mine.then_some(item))
        .collect()
}

/// One answer per asked id, in order: the store's answers for owned ids, `refused` for the
/// rest.
pub(super) fn merge<R>(
    ids: &[TaskId],
    owned: &[bool],
    applied: Vec<R>,
    refused: impl Fn(TaskId) -> R,
) -> Vec<R> {
    let mut applied = applied.into_iter();
    ids.iter()
        .zip(owned)
        .filter_map(|(&id, &mine)| {
            if mine {
                applied.next()
            } else {
                Some(refused(id))
            }
        })
        .collect()
}

fn not_found(id: TaskId) -> Error {
    Error::not_found(format!(
        "task {id} not found: report only tasks leased by your tenant"
    ))
}

/// The answer to a report on a task outside the caller's tenant.
pub(super) fn refused_report(id: TaskId) -> ReportResult {
    ReportResult {
        task_id: id,
        ok: false,
        error: Some(not_found(id).message().to_string()),
    }
}

/// The answer to a heartbeat on a task outside the caller's tenant.
pub(super) fn refused_beat(id: TaskId) -> HeartbeatResult {
    HeartbeatResult {
        task_id: id,
        status: LeaseStatus::Lost,
        lease_expires_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_items_keep_their_place_between_applied_ones() {
        let ids = [1, 2, 3, 4];
        let owned = [true, false, true, false];
        assert_eq!(keep(vec!["a", "b", "c", "d"], &owned), vec!["a", "c"]);
        let merged = merge(&ids, &owned, vec![10, 30], |id| -id);
        assert_eq!(merged, vec![10, -2, 30, -4]);
        let refused = refused_report(2);
        assert!(!refused.ok);
        assert!(
            refused
                .error
                .unwrap_or_default()
                .contains("task 2 not found")
        );
    }
}
