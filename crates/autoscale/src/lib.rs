//! Spillway's autoscaling core, without IO.
//!
//! - [`config`]: `[[pools]]` and `[autoscale]` in `spillway.toml`.
//! - [`provider`]: the [`PoolProvider`](provider::PoolProvider) seam that starts and stops
//!   workers, with an in-memory fake in [`memory`] and its conformance suite in [`conformance`].
//! - [`policy`]: pure functions from backlog, leases and measured task times to the size of each
//!   pool, burst tiers and which idle workers to drain, each decision with its reason in words.
//! - [`sim`]: a discrete-event simulator that runs the real policy, and a KEDA-style one for
//!   comparison, against a synthetic or traced workload.
//!
//! Nothing here does IO: the server's autoscaler service (`spillway_server::autoscale`)
//! observes pools, calls [`policy::plan`] and applies its decisions through a provider.

pub mod config;
#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
pub mod memory;
pub mod policy;
pub mod provider;
pub mod sim;
