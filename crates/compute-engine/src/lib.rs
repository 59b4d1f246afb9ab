//! Spillway on Google Compute Engine: a pool provider that resizes zonal and regional managed
//! instance groups, with a fake Compute API for tests.
//!
//! - [`provider::ComputeEngineProvider`]: the [`PoolProvider`](spillway_autoscale::provider::PoolProvider)
//!   of pools with `provider = "compute_engine"`; one pool per group, so a queue served in
//!   several regions has one pool per region.
//! - [`client::ComputeClient`]: the few Compute REST calls it makes, with retries and
//!   operation polling; [`token`]: where its access tokens come from.
//! - [`config`]: the pool's `compute_engine = { … }` section, owned and checked here.
//! - [`mapping`]: its decisions as pure functions (instance states, problem kinds, sizes).
//! - [`fake::FakeCompute`]: a fake of those REST calls that checks their documented shapes.

pub mod api;
pub mod client;
pub mod config;
#[cfg(any(test, feature = "testkit"))]
pub mod fake;
pub mod mapping;
pub mod provider;
pub mod token;

pub use config::{PROVIDER, validate_pool};
pub use provider::ComputeEngineProvider;
