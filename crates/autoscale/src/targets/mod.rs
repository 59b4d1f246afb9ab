//! Settings that only one provider reads: `kubernetes = { … }` and `compute_engine = { … }`
//! inside a `[[pools]]` entry. Each provider crate owns what its section means; they live here
//! so that [`PoolConfig`](crate::config::PoolConfig) parses and checks a whole file at once.

pub mod compute_engine;
pub mod kubernetes;

pub use compute_engine::ComputeEnginePool;
pub use kubernetes::KubernetesPool;
