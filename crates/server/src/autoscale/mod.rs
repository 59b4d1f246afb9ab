//! The autoscaler wired into the server: pool providers that start and stop workers, the
//! service that runs the policy of `spillway-autoscale` every interval (and soon after a
//! submit) while this replica is the leader, and the board that `GET /v1/pools` and
//! `/metrics` read.
//!
//! Pools serve the queues of the default tenant: their workers register there.

pub mod board;
pub mod providers;
pub mod registry;
pub mod service;

pub use board::PoolBoard;
pub use registry::{ProviderContext, ProviderRegistry};
pub use service::Autoscaler;

/// The tenant whose queues pools serve.
pub use spillway_autoscale::config::POOL_TENANT;
