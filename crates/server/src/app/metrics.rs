//! The Prometheus text of `/metrics`: who may read it, and which series they see.

use spillway_core::auth::Action;
use spillway_core::{Error, Result};

use super::Caller;
use crate::state::AppState;

/// The metrics `caller` may see. With `metrics_auth` off the server asks for no token
/// (`caller` is `None`) and shows every series, as it always did. With it on, the caller must
/// hold a token of role `metrics` or `admin`: one of every tenant sees every series, one bound
/// to a tenant only that tenant's queue series (the server-wide ones mix tenants).
pub async fn scrape(state: &AppState, caller: Option<Caller<'_>>) -> Result<String> {
    let now = state.clock.now();
    let store = state.store.as_ref();
    let admission = state.admission();
    state
        .metrics
        .set_admission(admission.in_flight(), admission.api_limit());
    let Some(caller) = caller else {
        if state.config.metrics_auth {
            return Err(Error::unauthenticated(
                "this server asks for a token on /metrics (metrics_auth): send 'Authorization: Bearer <token>' with a token of role metrics or admin",
            ));
        }
        return state.metrics.render(store, now).await;
    };
    caller.require(Action::ReadMetrics)?;
    match &caller.principal.tenant {
        None => state.metrics.render(store, now).await,
        Some(tenant) => state.metrics.render_tenant(store, tenant, now).await,
    }
}
