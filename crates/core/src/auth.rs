//! Roles, the principal behind a request, and what each role may do.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Error;

/// What a token may do. Every token also names the tenant it acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything in its tenant: queues, tokens, jobs, dead letters. An admin token with no
    /// tenant administers every tenant.
    Admin,
    /// Submit, watch and cancel jobs; read results.
    Submitter,
    /// Lease, heartbeat, complete, fail and release tasks; read inputs and write results.
    Worker,
    /// Read everything in its tenant, change nothing.
    Viewer,
    /// Read monitoring data only: `/metrics` (when the server asks for a token there) and pool
    /// sizes (`GET /v1/pools`, what KEDA's metrics-api scaler follows). No jobs, tasks,
    /// results, queues, workers, tenants or tokens. A metrics token with no tenant sees every
    /// tenant's series; one with a tenant sees only that tenant's.
    Metrics,
}

impl Role {
    /// The stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Submitter => "submitter",
            Role::Worker => "worker",
            Role::Viewer => "viewer",
            Role::Metrics => "metrics",
        }
    }

    /// Parse the stable name.
    pub fn parse(value: &str) -> Result<Self, Error> {
        match value {
            "admin" => Ok(Role::Admin),
            "submitter" => Ok(Role::Submitter),
            "worker" => Ok(Role::Worker),
            "viewer" => Ok(Role::Viewer),
            "metrics" => Ok(Role::Metrics),
            other => Err(Error::invalid(format!(
                "unknown role {other:?}: use one of admin, submitter, worker, viewer, metrics"
            ))),
        }
    }

    /// Whether this role may perform `action`.
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Admin => true,
            Role::Submitter => matches!(action, Read | ReadPools | Submit | Cancel | Requeue),
            Role::Worker => matches!(action, Read | ReadPools | Work),
            Role::Viewer => matches!(action, Read | ReadPools),
            Role::Metrics => matches!(action, ReadPools | ReadMetrics),
        }
    }
}

/// A kind of request, for permission checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read jobs, tasks, queues, workers, tenants, results and stats.
    Read,
    /// Read the autoscaled pools' sizes and status (`GET /v1/pools`).
    ReadPools,
    /// Read `/metrics` when the server asks for a token there (`metrics_auth`).
    ReadMetrics,
    /// Submit jobs and upload inputs.
    Submit,
    /// Cancel jobs.
    Cancel,
    /// Requeue dead letters and retry jobs.
    Requeue,
    /// Lease and report on tasks, register workers, upload results.
    Work,
    /// Create and change queues.
    ManageQueues,
    /// Create, list and revoke tokens; create tenants.
    ManageTokens,
}

impl Action {
    fn describe(self) -> &'static str {
        match self {
            Action::Read => "read jobs, tasks, queues, workers or tenants",
            Action::ReadPools => "read pools",
            Action::ReadMetrics => "read metrics",
            Action::Submit => "submit jobs",
            Action::Cancel => "cancel jobs",
            Action::Requeue => "requeue tasks",
            Action::Work => "lease and report tasks",
            Action::ManageQueues => "manage queues",
            Action::ManageTokens => "manage tokens and tenants",
        }
    }
}

/// Who is making a request: resolved from a bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Principal {
    /// The token's id (not its secret).
    pub token_id: String,
    /// The tenant the token acts for; `None` only for an admin or a metrics token of every
    /// tenant.
    pub tenant: Option<String>,
    /// The token's role.
    pub role: Role,
    /// The queues of its tenant the token may use; `None`: every queue. Read only through
    /// [`Principal::sees_queue`] and [`Principal::queue_scope`], so that the scope can grow
    /// into a list of tenant/queue pairs without touching the places that enforce it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<String>>,
}

impl Principal {
    /// Fail unless the role allows `action`.
    pub fn require(&self, action: Action) -> Result<(), Error> {
        if self.role.allows(action) {
            Ok(())
        } else {
            Err(Error::permission_denied(format!(
                "a {} token may not {}: use a token with a role that allows it",
                self.role.as_str(),
                action.describe()
            )))
        }
    }

    /// Whether this principal may see `tenant`'s objects.
    pub fn sees_tenant(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|own| own == tenant)
    }

    /// Whether this principal may see and use `queue` of `tenant`: the tenant is one it sees,
    /// and the queue is in its scope (if it has one).
    pub fn sees_queue(&self, tenant: &str, queue: &str) -> bool {
        self.sees_tenant(tenant)
            && self
                .queues
                .as_ref()
                .is_none_or(|queues| queues.iter().any(|q| q == queue))
    }

    /// The queues this principal is limited to, if it is.
    pub fn queue_scope(&self) -> Option<&[String]> {
        self.queues.as_deref()
    }

    /// Fail with a permission error naming the allowed queues unless `queue` of `tenant` is
    /// in scope: for writes that name a queue (a submit, a lease), where the caller already
    /// knows the queue's name and deserves to hear why it is refused.
    pub fn require_queue(&self, tenant: &str, queue: &str) -> Result<(), Error> {
        if self.sees_queue(tenant, queue) {
            return Ok(());
        }
        let allowed = self.queues.as_deref().unwrap_or_default().join(", ");
        Err(Error::permission_denied(format!(
            "token {} may use only the queues {allowed} of its tenant, not {queue:?}: use one of those or a token for {queue:?}",
            self.token_id
        )))
    }

    /// The tenant a request acts in: the token's own, or for an all-tenant admin the one asked
    /// for (default `"default"`). Fails when a tenant-bound token asks for another tenant.
    pub fn tenant_for(&self, requested: Option<&str>) -> Result<String, Error> {
        match (&self.tenant, requested) {
            (Some(own), None) => Ok(own.clone()),
            (Some(own), Some(asked)) if own == asked => Ok(own.clone()),
            (Some(_), Some(asked)) => Err(Error::not_found(format!(
                "tenant {asked:?} not found for this token"
            ))),
            (None, Some(asked)) => Ok(asked.to_string()),
            (None, None) => Ok(crate::model::DEFAULT_TENANT.to_string()),
        }
    }
}

/// Most queues one token may be limited to.
pub const MAX_SCOPED_QUEUES: usize = 100;

/// Check a token's queue scope as given at creation: one to [`MAX_SCOPED_QUEUES`] valid,
/// distinct queue names, and a role it means something for. Admin tokens cannot be scoped:
/// an admin mints tokens and changes queues, so a scope would not hold it. Metrics tokens
/// neither: they read a whole tenant's series.
pub fn validate_queue_scope(role: Role, queues: &[String]) -> Result<(), Error> {
    let unscopable = match role {
        Role::Admin => Some("an admin"),
        Role::Metrics => Some("a metrics"),
        Role::Submitter | Role::Worker | Role::Viewer => None,
    };
    if let Some(which) = unscopable {
        return Err(Error::invalid(format!(
            "{which} token cannot be limited to queues (an admin can mint tokens of any scope, a metrics token reads a whole tenant): leave out the queues, or limit a submitter, worker or viewer token"
        )));
    }
    if queues.is_empty() || queues.len() > MAX_SCOPED_QUEUES {
        return Err(Error::invalid(format!(
            "a token's queue list holds 1 to {MAX_SCOPED_QUEUES} queues, not {}: leave it out for every queue",
            queues.len()
        )));
    }
    for (i, queue) in queues.iter().enumerate() {
        crate::names::validate_name("queue", queue)?;
        if queues[..i].contains(queue) {
            return Err(Error::invalid(format!(
                "queue {queue:?} is listed twice: name each queue once"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_cannot_submit_and_worker_cannot_manage() {
        assert!(!Role::Viewer.allows(Action::Submit));
        assert!(Role::Viewer.allows(Action::Read));
        assert!(!Role::Worker.allows(Action::ManageQueues));
        assert!(Role::Submitter.allows(Action::Submit));
        assert!(!Role::Submitter.allows(Action::Work));
    }

    #[test]
    fn metrics_reads_metrics_and_pools_and_nothing_else() {
        use Action::*;
        for action in [ReadPools, ReadMetrics] {
            assert!(Role::Metrics.allows(action), "{action:?}");
        }
        for action in [
            Read,
            Submit,
            Cancel,
            Requeue,
            Work,
            ManageQueues,
            ManageTokens,
        ] {
            assert!(!Role::Metrics.allows(action), "{action:?}");
        }
        // Only admins and metrics tokens scrape; every role may read pool sizes.
        assert!(Role::Admin.allows(ReadMetrics));
        for role in [Role::Viewer, Role::Submitter, Role::Worker] {
            assert!(!role.allows(ReadMetrics), "{role:?}");
            assert!(role.allows(ReadPools), "{role:?}");
        }
        assert_eq!(Role::parse("metrics").ok(), Some(Role::Metrics));
        assert_eq!(Role::Metrics.as_str(), "metrics");
    }

    #[test]
    fn tenant_bound_tokens_stay_in_their_tenant() {
        let p = Principal {
            token_id: "t".into(),
            tenant: Some("a".into()),
            role: Role::Admin,
            queues: None,
        };
        assert!(p.sees_tenant("a"));
        assert!(!p.sees_tenant("b"));
        assert!(p.tenant_for(Some("b")).is_err());
        assert_eq!(p.tenant_for(None).ok().as_deref(), Some("a"));
    }

    #[test]
    fn queue_scoped_tokens_see_only_their_queues() {
        let p = Principal {
            token_id: "tok_s".into(),
            tenant: Some("a".into()),
            role: Role::Submitter,
            queues: Some(vec!["orders".into(), "images".into()]),
        };
        assert!(p.sees_queue("a", "orders"));
        assert!(!p.sees_queue("a", "default"));
        assert!(!p.sees_queue("b", "orders"));
        let refused = p.require_queue("a", "default").expect_err("out of scope");
        assert!(refused.message().contains("orders, images"), "{refused}");
        let unscoped = Principal { queues: None, ..p };
        assert!(unscoped.sees_queue("a", "default"));
    }

    #[test]
    fn queue_scopes_are_checked() {
        let q = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert!(validate_queue_scope(Role::Worker, &q(&["a", "b"])).is_ok());
        assert!(validate_queue_scope(Role::Admin, &q(&["a"])).is_err());
        assert!(validate_queue_scope(Role::Metrics, &q(&["a"])).is_err());
        assert!(validate_queue_scope(Role::Viewer, &q(&[])).is_err());
        assert!(validate_queue_scope(Role::Viewer, &q(&["a", "a"])).is_err());
        assert!(validate_queue_scope(Role::Viewer, &q(&["bad name"])).is_err());
    }
}
