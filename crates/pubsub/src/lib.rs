//! Spillway's Pub/Sub bridge: pull messages from a subscription into tasks, acknowledging only
//! what is stored, and publish outcomes.
//!
//! - [`client`]: a small Pub/Sub REST client (production with `gcp_auth` tokens, or the
//!   emulator through `PUBSUB_EMULATOR_HOST`).
//! - [`mapping`]: message → job (payload, labels, idempotency key) and job → outcome message,
//!   without IO.
//! - [`bridge`]: the pull → submit → acknowledge loop and its delivery guarantees.
//! - [`outcomes`]: at-least-once publishing of finished jobs' outcomes.
//! - [`emulator`]: start the Pub/Sub emulator for tests.

pub mod bridge;
pub mod client;
#[cfg(any(test, feature = "testkit"))]
pub mod emulator;
pub mod mapping;
pub mod outcomes;

pub use bridge::{BridgeConfig, BridgeStats, run_bridge};
pub use client::{OutgoingMessage, PubSub, ReceivedMessage};
pub use mapping::{DataFormat, JobTemplate};
pub use outcomes::{OutcomeConfig, OutcomePublisher};
