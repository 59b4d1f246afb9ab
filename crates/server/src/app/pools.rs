//! Autoscaled pools: their status and recent decisions, and changing their bounds.

use spillway_core::api::{PoolStatus, PoolUpdate};
use spillway_core::auth::Action;
use spillway_core::{Error, Result};
use spillway_store::{PoolBounds, PoolBoundsClear, PoolBoundsSave};

use super::Caller;
use crate::autoscale::POOL_TENANT;
use crate::state::AppState;

/// Every configured pool with what the autoscaler last saw and its latest decisions. Every
/// role may read them, a metrics token too (KEDA's metrics-api scaler follows `desired`).
pub fn list(state: &AppState, caller: Caller<'_>) -> Result<Vec<PoolStatus>> {
    caller.require(Action::ReadPools)?;
    Ok(state.pools().statuses())
}

/// Change a pool's `min` and `max`, or with `reset` go back to its configured bounds. The
/// change is kept in the store, so it outlives a restart and every replica applies it at its
/// next autoscaler pass; this replica at once.
pub async fn update(
    state: &AppState,
    caller: Caller<'_>,
    name: &str,
    update: &PoolUpdate,
) -> Result<PoolStatus> {
    may_resize(caller)?;
    let (min, max) = if update.reset {
        if update.min.is_some() || update.max.is_some() {
            return Err(Error::invalid(
                "reset goes back to the configured bounds: give reset or min/max, not both",
            ));
        }
        let bounds = state.pools().configured_bounds(name)?;
        state
            .store
            .pool_bounds_clear(PoolBoundsClear {
                pool: name.to_string(),
            })
            .await?;
        bounds
    } else {
        let (min, max) = state.pools().bounds_after(name, update)?;
        state
            .store
            .pool_bounds_save(PoolBoundsSave {
                bounds: PoolBounds {
                    pool: name.to_string(),
                    min,
                    max,
                },
                now: state.clock.now(),
            })
            .await?;
        (min, max)
    };
    let status = state.pools().update(
        name,
        &PoolUpdate {
            min: Some(min),
            max: Some(max),
            reset: false,
        },
    )?;
    tracing::info!(pool = %name, min = status.min, max = status.max, reset = update.reset, "pool bounds changed");
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
