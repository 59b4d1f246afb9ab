//! The application layer: every operation a user performs, once, as a plain async function
//! over the [`AppState`](crate::state::AppState) and the caller's identity ([`Caller`]).
//!
//! The server has three layers and its arrows point one way:
//!
//! - **Protocol** (`routes/` for the `/v1` API, `dashboard/` for the web pages) decodes a
//!   request (path, query string, JSON body, form), calls one operation here and encodes its
//!   answer (JSON, problem+json, HTML, a redirect). It holds no rule of its own: no role check
//!   an operation does not also make, no store call, no second copy of a computation.
//! - **Application** (this module) checks what the caller may do (role and tenant), validates
//!   the request, and carries it out over the store, the blob store, the clock and the
//!   in-memory boards. It knows nothing of HTTP: it takes typed requests and returns domain
//!   values or a [`spillway_core::Error`], whose kind the protocol maps to a status.
//! - **Storage** (`spillway_store::Store`, `spillway_blob::BlobStore`) keeps the state durable.
//!
//! So the dashboard never calls an HTTP handler and the API never renders a page: both call
//! the same operation, and `spillway why` and the job page see one queue position
//! ([`why::Line`]) computed one way.
//!
//! One module per area: [`jobs`] (submit, list, cancel, retry, a job's tasks and files),
//! [`tasks`], [`why`] (queue position and what holds a task), [`queues`], [`dead`]
//! (dead letters), [`pools`], [`metrics`] (the `/metrics` text), [`admin`] (tenants and
//! tokens), [`uploads`], [`workers`], and
//! [`work`], the worker's side of a task: lease, heartbeat, complete, fail, release.

pub mod admin;
pub mod dead;
pub mod jobs;
pub mod logs;
pub mod metrics;
pub mod pools;
pub mod queues;
pub mod tasks;
pub mod uploads;
pub mod why;
pub mod work;
pub mod workers;

use spillway_core::Error;
use spillway_core::api::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use spillway_core::auth::{Action, Principal};

/// Who asks: the authenticated principal, and the tenant the request names, if any (only an
/// admin of every tenant may name one other than its own).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The authenticated token's identity.
    pub principal: &'a Principal,
    /// The tenant named by the request (`?tenant=` or a body field).
    pub requested: Option<&'a str>,
}

impl<'a> Caller<'a> {
    /// `principal` acting in the tenant `requested` (or its own when `None`).
    pub fn new(principal: &'a Principal, requested: Option<&'a str>) -> Self {
        Self {
            principal,
            requested,
        }
    }

    /// `principal` acting in its own tenant, or in every tenant for an admin of all.
    pub fn own(principal: &'a Principal) -> Self {
        Self::new(principal, None)
    }

    /// Fail with a permission error unless the caller's role allows `action`.
    pub fn require(&self, action: Action) -> Result<(), Error> {
        self.principal.require(action)
    }

    /// The tenant a write acts in: the token's own or, for an admin of every tenant, the one
    /// asked for (default `"default"`).
    pub fn tenant(&self) -> Result<String, Error> {
        if let Some(name) = self.requested {
            spillway_core::names::validate_name("tenant", name)?;
        }
        self.principal.tenant_for(self.requested)
    }

    /// What a read may see: one tenant, or every tenant (`None`) for an admin of every
    /// tenant who named none.
    pub fn scope(&self) -> Result<Option<String>, Error> {
        match (&self.principal.tenant, self.requested) {
            (None, None) => Ok(None),
            _ => self.tenant().map(Some),
        }
    }

    /// Whether the caller's token is of every tenant (sees several tenants at once): an admin
    /// of every tenant, or a metrics token of every tenant, whose role allows only reading
    /// metrics and pools, so every operation that asks this has refused it by its role first.
    pub fn all_tenants(&self) -> bool {
        self.principal.tenant.is_none()
    }

    /// The one queue a queue-scoped caller is limited to, to hand a list's store query as
    /// its queue filter; `None` when it has several (lists filter those with
    /// [`Caller::sees_queue`]) or no scope.
    pub fn only_queue(&self) -> Option<String> {
        match self.principal.queue_scope() {
            Some([only]) => Some(only.clone()),
            _ => None,
        }
    }

    /// Whether the caller may see `queue` of `tenant` (its tenant and its queue scope).
    pub fn sees_queue(&self, tenant: &str, queue: &str) -> bool {
        self.principal.sees_queue(tenant, queue)
    }

    /// Fail as the store does for another tenant's object (not found, `missing` saying
    /// what), unless the caller's queue scope covers `queue` of `tenant`: a queue-scoped
    /// token learns nothing of other queues' jobs and tasks, not even that they exist.
    pub fn check_visible(
        &self,
        tenant: &str,
        queue: &str,
        missing: impl FnOnce() -> String,
    ) -> Result<(), Error> {
        if self.sees_queue(tenant, queue) {
            Ok(())
        } else {
            Err(Error::not_found(missing()))
        }
    }

    /// Check a queue filter given to a list: a queue-scoped caller may name only its
    /// queues (another is not found, as another tenant would be); when it names none and
    /// has one queue, that one is the filter.
    pub fn queue_filter(
        &self,
        tenant: Option<&str>,
        queue: Option<String>,
    ) -> Result<Option<String>, Error> {
        match (queue, self.principal.queue_scope()) {
            (Some(queue), Some(_)) => {
                let tenant = tenant.unwrap_or_default();
                self.check_visible(tenant, &queue, || {
                    format!("queue {queue:?} not found for this token")
                })?;
                Ok(Some(queue))
            }
            (None, Some(_)) => Ok(self.only_queue()),
            (queue, None) => Ok(queue),
        }
    }
}

/// Check a page size, defaulting to [`DEFAULT_PAGE_SIZE`].
pub fn page_limit(limit: Option<u32>) -> Result<u32, Error> {
    match limit {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        Some(n) => Err(Error::invalid(format!(
            "limit {n} is out of range: use 1 to {MAX_PAGE_SIZE}"
        ))),
    }
}
