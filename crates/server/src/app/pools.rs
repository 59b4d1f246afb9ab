//! Autoscaled pools: their status and recent decisions, and changing their bounds.

use spillway_core::api::{PoolStatus, PoolUpdate};
use spillway_core::auth::Action;
use spillway_core::{Error, Result};

use super::Caller;
use crate::autoscale::POOL_TENANT;
use crate::state::AppState;

/// Every configured pool with what the autoscaler last saw and its latest decisions. Every
/// role may read them, a metrics token too (KEDA's metrics-api scaler follows `desired`).
pub fn list(state: &AppState, caller: Caller<'_>) -> Result<Vec<PoolStatus>> {
    caller.require(Action::ReadPools)?;
    Ok(state.pools().statuses())
}

/// Change a pool's `min` and `max` until the server restarts; the next pass uses them.
pub fn update(
    state: &AppState,
    caller: Caller<'_>,
    name: &str,
    update: &PoolUpdate,
) -> Result<PoolStatus> {
    may_resize(caller)?;
    let status = state.pools().update(name, update)?;
    tracing::info!(pool = %name, min = status.min, max = status.max, "pool bounds changed");
    Ok(status)
}

/// Fail unless the caller may change pool bounds (checked by [`update`]; the API asks first,
/// before it reads the request body).
pub fn may_resize(caller: Caller<'_>) -> Result<()> {
    caller.require(Action::ManageQueues)?;
    // Pools serve the default tenant's queues, so only its admins (or admins of every
    // tenant) may resize them.
    if caller
        .principal
        .tenant
        .as_deref()
        .is_some_and(|t| t != POOL_TENANT)
    {
        return Err(Error::permission_denied(format!(
            "pools serve tenant {POOL_TENANT:?}: use an admin token of that tenant or of every tenant"
        )));
    }
    Ok(())
}
