//! Spillway on Kubernetes: a pool provider (Deployment scale or work-queue Jobs) and an executor that runs each task as a batch/v1 Job, with a fake API server for tests.

pub mod client;
pub mod config;
#[cfg(any(test, feature = "testkit"))]
pub mod fake;
pub mod job_executor;
pub mod provider;

pub use config::{PROVIDER, validate_pool};
pub use provider::KubernetesProvider;
