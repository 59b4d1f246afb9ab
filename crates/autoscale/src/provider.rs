//! The pool provider seam: one trait for "make this pool have N workers and tell me what you
//! have", shaped for providers that start workers asynchronously (processes, Kubernetes pods,
//! cloud instances).
//!
//! Contract (pinned down by [`crate::conformance`]):
//! - [`PoolProvider::pool_resize`] asks for `desired` live instances (starting or running)
//!   once the instances named in `drain` have left. It returns when the request is accepted,
//!   not when workers are up: new instances show up as [`InstanceState::Starting`].
//! - A provider only ever stops the instances named in `drain`. When there are more live
//!   instances than `desired` and none named, it stops nothing: the policy chooses victims
//!   because only it knows which workers are idle.
//! - A drained instance is [`InstanceState::Draining`] until its worker has finished its
//!   tasks and exited, then [`InstanceState::Down`] (or gone from the list).
//! - Running short of quota or stock is not an error of `pool_resize`: the request is kept,
//!   fewer instances appear, and [`PoolObservation::problems`] says why. Errors are for
//!   failures to talk to the provider at all (unavailable) or a bad request (invalid).
//! - Both calls are idempotent: resizing to the same size twice starts nothing new.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use spillway_core::{Result, Timestamp};

use crate::config::PoolConfig;

/// A provider's id for one instance (process id, pod name, instance name).
pub type InstanceId = String;

/// A shared handle to any provider.
pub type DynPoolProvider = std::sync::Arc<dyn PoolProvider>;

/// Starts and stops the workers of pools.
#[async_trait]
pub trait PoolProvider: Send + Sync + 'static {
    /// Which provider this is, for logs and metrics labels (`"local"`, `"kubernetes"`).
    fn provider_name(&self) -> &'static str;

    /// What the provider has for one pool right now.
    async fn pool_observe(&self, params: PoolObserve<'_>) -> Result<PoolObservation>;

    /// Make the pool have `desired` live instances once those in `drain` have left.
    async fn pool_resize(&self, params: PoolResize<'_>) -> Result<()>;
}

/// Parameters of [`PoolProvider::pool_observe`].
#[derive(Debug, Clone, Copy)]
pub struct PoolObserve<'a> {
    /// The pool, as configured.
    pub pool: &'a PoolConfig,
    /// The caller's clock.
    pub now: Timestamp,
}

/// Parameters of [`PoolProvider::pool_resize`].
#[derive(Debug, Clone)]
pub struct PoolResize<'a> {
    /// The pool, as configured.
    pub pool: &'a PoolConfig,
    /// Live instances wanted after the drained ones have left, within `[min, max]`.
    pub desired: u32,
    /// Instances to drain: their workers finish their tasks, lease no more, then exit.
    pub drain: Vec<InstanceId>,
    /// The caller's clock.
    pub now: Timestamp,
}

/// One instance's life as the provider sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Asked for; its worker has not started leasing yet.
    Starting,
    /// Its worker is up.
    Running,
    /// Told to finish its tasks and exit.
    Draining,
    /// Gone: exited, preempted or failed to start.
    Down,
}

impl InstanceState {
    /// Whether it counts towards the pool's size (starting or running).
    pub fn is_live(self) -> bool {
        matches!(self, InstanceState::Starting | InstanceState::Running)
    }
}

/// One instance of a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The provider's id for it.
    pub id: InstanceId,
    /// Where it is in its life.
    pub state: InstanceState,
    /// When it was asked for.
    pub created_at: Timestamp,
    /// The Spillway worker id it registered as, once known, to join with worker heartbeats.
    pub worker_id: Option<String>,
}

/// Why a pool has fewer instances than asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolProblemKind {
    /// A quota or limit of the account or cluster is reached.
    Quota,
    /// The provider has no capacity of this shape now (stock-out, no schedulable node).
    StockOut,
    /// The provider refused for lack of permission.
    Permission,
    /// Instances fail to start (bad image, crash on start).
    StartFailed,
    /// Instances run, but their worker has not registered with the server within the pool's
    /// `startup` time (a wrong server URL or token, a worker that is not started). Found by the
    /// autoscaler, which joins instances with registered workers, not by providers.
    NeverRegistered,
}

impl PoolProblemKind {
    /// The stable name in metrics labels and the API (`quota`, `stock_out`, `permission`,
    /// `start_failed`, `never_registered`).
    pub fn as_str(self) -> &'static str {
        match self {
            PoolProblemKind::Quota => "quota",
            PoolProblemKind::StockOut => "stock_out",
            PoolProblemKind::Permission => "permission",
            PoolProblemKind::StartFailed => "start_failed",
            PoolProblemKind::NeverRegistered => "never_registered",
        }
    }
}

/// A condition that keeps a pool below the size asked for, reported as status, not as error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolProblem {
    /// What kind of problem.
    pub kind: PoolProblemKind,
    /// The provider's words, for people.
    pub message: String,
    /// Since when it holds.
    pub since: Timestamp,
}

/// What a provider has for one pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolObservation {
    /// The pool's name.
    pub pool: String,
    /// The size last asked for, if the provider keeps one.
    pub desired: Option<u32>,
    /// Its instances, live or draining (down ones may be left out).
    pub instances: Vec<Instance>,
    /// Conditions that keep it below the size asked for; empty when all is well.
    pub problems: Vec<PoolProblem>,
}

impl PoolObservation {
    /// Instances starting or running.
    pub fn live(&self) -> usize {
        self.instances.iter().filter(|i| i.state.is_live()).count()
    }

    /// Instances in one state.
    pub fn count(&self, state: InstanceState) -> usize {
        self.instances.iter().filter(|i| i.state == state).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metrics label of each kind is its name in the API, so the two never drift apart.
    #[test]
    fn problem_kind_labels_are_their_serde_names() {
        for kind in [
            PoolProblemKind::Quota,
            PoolProblemKind::StockOut,
            PoolProblemKind::Permission,
            PoolProblemKind::StartFailed,
            PoolProblemKind::NeverRegistered,
        ] {
            let serde = serde_json::to_value(kind).expect("a kind encodes");
            assert_eq!(serde.as_str(), Some(kind.as_str()), "{kind:?}");
        }
    }
}
