//! The Compute API's JSON shapes this crate reads and writes, as the v1 reference documents
//! them (only the fields used; unknown fields are ignored when reading, as Google adds fields).

use serde::{Deserialize, Serialize};

/// Prefix of the resource links the Compute API puts in its answers (`selfLink`, `instance`,
/// `targetLink`), whatever endpoint was called.
pub const RESOURCE_LINK_PREFIX: &str = "https://www.googleapis.com/compute/v1/";

/// An `instanceGroupManagers` / `regionInstanceGroupManagers` resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceGroupManager {
    /// `compute#instanceGroupManager`.
    #[serde(default)]
    pub kind: String,
    /// The group's name.
    pub name: String,
    /// Instances the group is asked to keep (excluding those being deleted or abandoned).
    pub target_size: u32,
    /// Zone URL of a zonal group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Region URL of a regional group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The group's own URL.
    #[serde(default)]
    pub self_link: String,
}

/// One entry of `listManagedInstances`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedInstance {
    /// The instance's URL (`…/zones/Z/instances/NAME`).
    #[serde(default)]
    pub instance: String,
    /// `PROVISIONING`, `STAGING`, `RUNNING`, `STOPPING`, `STOPPED`, `TERMINATED`, …; absent
    /// while the instance does not exist yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_status: Option<String>,
    /// What the group is doing to it: `NONE`, `CREATING`, `DELETING`, `RECREATING`, …
    #[serde(default)]
    pub current_action: String,
    /// The outcome of the group's last attempt to create or recreate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<LastAttempt>,
}

/// `managedInstances[].lastAttempt`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LastAttempt {
    /// Errors of that attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorList>,
}

/// An `{"errors": [...]}` object, as in `lastAttempt.errors` and `Operation.error`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorList {
    /// The errors, most relevant first.
    #[serde(default)]
    pub errors: Vec<ErrorItem>,
}

/// One error of an [`ErrorList`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorItem {
    /// `QUOTA_EXCEEDED`, `ZONE_RESOURCE_POOL_EXHAUSTED`, …
    #[serde(default)]
    pub code: String,
    /// Google's words.
    #[serde(default)]
    pub message: String,
}

/// The answer of `listManagedInstances`: one page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedInstancesPage {
    /// This page's instances (absent when there are none).
    #[serde(default)]
    pub managed_instances: Vec<ManagedInstance>,
    /// The token of the next page, absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// The body of `deleteInstances`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteInstancesRequest {
    /// Instance URLs, full or partial (`zones/Z/instances/NAME`).
    pub instances: Vec<String>,
    /// Skip instances that are not in the group or already going, instead of failing.
    #[serde(default)]
    pub skip_instances_on_validation_error: bool,
}

/// A zonal or regional `Operation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// `compute#operation`.
    #[serde(default)]
    pub kind: String,
    /// Its name, used to poll it.
    pub name: String,
    /// `PENDING`, `RUNNING` or `DONE`.
    pub status: String,
    /// E.g. `compute.instanceGroupManagers.resize`.
    #[serde(default)]
    pub operation_type: String,
    /// The resource it acts on.
    #[serde(default)]
    pub target_link: String,
    /// Its own URL.
    #[serde(default)]
    pub self_link: String,
    /// Zone URL of a zonal operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Region URL of a regional operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Set once it is `DONE` and failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorList>,
    /// The HTTP status it failed with, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_error_status_code: Option<u16>,
    /// The HTTP message it failed with, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_error_message: Option<String>,
}

impl Operation {
    /// Whether it has finished (well or not).
    pub fn is_done(&self) -> bool {
        self.status == "DONE"
    }

    /// Its errors, empty when it went well (or is not done).
    pub fn errors(&self) -> &[ErrorItem] {
        self.error.as_ref().map_or(&[], |e| &e.errors)
    }
}

/// Google's error answer: `{"error": {"code", "message", "errors": [{"reason", "message"}]}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GoogleErrorBody {
    /// The error.
    pub error: GoogleError,
}

/// The `error` of a [`GoogleErrorBody`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GoogleError {
    /// The HTTP status.
    #[serde(default)]
    pub code: u16,
    /// Google's words.
    #[serde(default)]
    pub message: String,
    /// Details with a machine-readable reason (`notFound`, `forbidden`, `rateLimitExceeded`).
    #[serde(default)]
    pub errors: Vec<GoogleErrorDetail>,
}

/// One entry of [`GoogleError::errors`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GoogleErrorDetail {
    /// Machine-readable reason.
    #[serde(default)]
    pub reason: String,
    /// Google's words.
    #[serde(default)]
    pub message: String,
}

/// The last path segment of a resource URL: an instance's name from its `instance` link.
pub fn resource_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}
