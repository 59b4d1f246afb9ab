//! `compute_engine = { … }` of a pool whose provider is `compute_engine`.
//!
//! One pool names one managed instance group; a queue served in several regions gets one
//! pool per region (each its own group), all listing the same queue.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use spillway_autoscale::config::PoolConfig;
use spillway_core::{Error, Result};

/// The provider name of Compute Engine pools, and the name of their section.
pub const PROVIDER: &str = "compute_engine";

/// Check a `compute_engine` pool's own section (required), for the provider registry's
/// start-up check.
pub fn validate_pool(pool: &PoolConfig) -> Result<()> {
    section(pool)?.validate(&pool.name)
}

/// A pool's `compute_engine` section; invalid when it has none.
pub fn section(pool: &PoolConfig) -> Result<ComputeEnginePool> {
    pool.section::<ComputeEnginePool>()?.ok_or_else(|| {
        Error::invalid(format!(
            "pool {:?} has provider \"compute_engine\" but no compute_engine section: add compute_engine = {{ project = \"…\", zone = \"…\", instance_group = \"…\" }}",
            pool.name
        ))
    })
}

/// The Compute API used when a pool names no `api_endpoint`.
pub const DEFAULT_API_ENDPOINT: &str = "https://compute.googleapis.com/compute/v1";

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
    /// Base URL of the Compute API; default [`DEFAULT_API_ENDPOINT`]. Set it for a private
    /// endpoint or a test double.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_endpoint: Option<String>,
    /// A service-account key file to authenticate with; default `GOOGLE_APPLICATION_CREDENTIALS`,
    /// else the metadata server of the machine the server runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
}

impl ComputeEnginePool {
    /// Check the section on its own; `pool` names the pool in errors.
    pub fn validate(&self, pool: &str) -> Result<()> {
        if self.zone.is_some() == self.region.is_some() {
            return Err(Error::invalid(format!(
                "pool {pool:?}: compute_engine needs exactly one of zone (zonal group) or region (regional group)"
            )));
        }
        if self.project.is_empty()
            || self
                .project
                .chars()
                .any(|c| c.is_whitespace() || c == '/' || c.is_ascii_uppercase())
        {
            return Err(Error::invalid(format!(
                "pool {pool:?}: compute_engine.project {:?} is not a project id: use the lowercase id shown by `gcloud projects list`",
                self.project
            )));
        }
        let names = [
            ("instance_group", Some(&self.instance_group)),
            ("zone", self.zone.as_ref()),
            ("region", self.region.as_ref()),
        ];
        for (field, value) in names {
            if let Some(value) = value
                && !is_resource_name(value)
            {
                return Err(Error::invalid(format!(
                    "pool {pool:?}: compute_engine.{field} {value:?} is not a Compute Engine name: use lowercase letters, digits and hyphens, starting with a letter (at most 63)"
                )));
            }
        }
        if let Some(endpoint) = &self.api_endpoint
            && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
        {
            return Err(Error::invalid(format!(
                "pool {pool:?}: compute_engine.api_endpoint {endpoint:?} is not an http(s) URL: leave it out to use {DEFAULT_API_ENDPOINT}"
            )));
        }
        if let Some(file) = &self.credentials_file
            && file.as_os_str().is_empty()
        {
            return Err(Error::invalid(format!(
                "pool {pool:?}: compute_engine.credentials_file is empty: leave it out to use the metadata server or GOOGLE_APPLICATION_CREDENTIALS"
            )));
        }
        Ok(())
    }

    /// The API base URL, without a trailing slash.
    pub fn endpoint(&self) -> &str {
        self.api_endpoint
            .as_deref()
            .unwrap_or(DEFAULT_API_ENDPOINT)
            .trim_end_matches('/')
    }
}

/// RFC 1035 labels, as Compute Engine names its resources.
fn is_resource_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zonal() -> ComputeEnginePool {
        ComputeEnginePool {
            project: "my-project".into(),
            zone: Some("europe-west4-a".into()),
            instance_group: "workers".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_zonal_and_a_regional_group_are_valid() {
        zonal().validate("p").expect("zonal");
        let regional = ComputeEnginePool {
            zone: None,
            region: Some("us-central1".into()),
            ..zonal()
        };
        regional.validate("p").expect("regional");
    }

    #[test]
    fn bad_sections_name_the_field_and_the_fix() {
        type Change = Box<dyn Fn(&mut ComputeEnginePool)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "exactly one of zone",
                Box::new(|s| s.region = Some("europe-west4".into())),
            ),
            ("exactly one of zone", Box::new(|s| s.zone = None)),
            ("not a project id", Box::new(|s| s.project = String::new())),
            (
                "compute_engine.instance_group \"Workers\"",
                Box::new(|s| s.instance_group = "Workers".into()),
            ),
            (
                "compute_engine.zone",
                Box::new(|s| s.zone = Some("europe west".into())),
            ),
            (
                "not an http(s) URL",
                Box::new(|s| s.api_endpoint = Some("compute.example".into())),
            ),
            (
                "credentials_file is empty",
                Box::new(|s| s.credentials_file = Some(PathBuf::new())),
            ),
        ];
        for (want, change) in cases {
            let mut section = zonal();
            change(&mut section);
            let err = section.validate("spot").expect_err(want);
            assert!(err.message().contains(want), "{want}: {err}");
            assert!(err.message().contains("\"spot\""), "{err}");
        }
    }

    #[test]
    fn endpoint_defaults_and_loses_its_trailing_slash() {
        assert_eq!(zonal().endpoint(), DEFAULT_API_ENDPOINT);
        let section = ComputeEnginePool {
            api_endpoint: Some("http://127.0.0.1:9/compute/v1/".into()),
            ..zonal()
        };
        assert_eq!(section.endpoint(), "http://127.0.0.1:9/compute/v1");
    }
}
