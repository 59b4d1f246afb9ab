//! `compute_engine = { … }` of a pool whose provider is `compute_engine`.

use serde::{Deserialize, Serialize};
use spillway_core::{Error, Result};

/// The managed instance group a Compute Engine pool resizes: zonal when `zone` is given,
/// regional when `region` is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeEnginePool {
    /// The Google Cloud project.
    pub project: String,
    /// The zone of a zonal group (`europe-west4-a`).
    #[serde(default)]
    pub zone: Option<String>,
    /// The region of a regional group (`europe-west4`).
    #[serde(default)]
    pub region: Option<String>,
    /// The managed instance group's name.
    pub instance_group: String,
}

impl ComputeEnginePool {
    /// Check the section on its own; `pool` names the pool in errors.
    pub fn validate(&self, pool: &str) -> Result<()> {
        if self.zone.is_some() == self.region.is_some() {
            return Err(Error::invalid(format!(
                "pool {pool:?}: compute_engine needs exactly one of zone (zonal group) or region (regional group)"
            )));
        }
        Ok(())
    }
}
