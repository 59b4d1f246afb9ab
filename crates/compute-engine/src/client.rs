//! A small client of the Compute Engine REST API (v1): the managed-instance-group calls the
//! provider makes, for zonal and regional groups, with operation polling and retries.
//!
//! Every call goes through [`ComputeClient::call`]: 429 and 5xx answers and transport failures
//! are retried with exponential backoff until [`ClientSettings::retry_deadline`]; 401/403
//! become [`ErrorKind::PermissionDenied`](spillway_core::ErrorKind), 404 an invalid-config
//! error naming the group, other 4xx an invalid-argument error with Google's words.

use std::time::{Duration, Instant};

use crate::config::ComputeEnginePool;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use spillway_core::backoff::Backoff;
use spillway_core::{Error, ErrorKind, Result};

use crate::api::{
    DeleteInstancesRequest, GoogleErrorBody, InstanceGroupManager, ManagedInstance,
    ManagedInstancesPage, Operation,
};
use crate::token::DynTokenSource;

/// Default time one HTTP request may take.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a call keeps retrying 429/5xx answers before it reports the API unavailable.
pub const DEFAULT_RETRY_DEADLINE: Duration = Duration::from_secs(30);
/// Default first wait before a retry; it doubles on each one.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Default longest wait between two retries.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Default time between two looks at a pending operation.
pub const DEFAULT_OPERATION_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default time a resize waits for its operation to finish; after it, the operation is
/// looked at again on the next observation instead.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(20);
/// `maxResults` of `listManagedInstances` (the API's largest page).
pub const LIST_PAGE_SIZE: u32 = 500;
/// Most instances one `deleteInstances` call may name (the API's limit).
pub const DELETE_BATCH: usize = 1000;

/// Timeouts and retry pacing; tests shorten them.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Time one HTTP request may take.
    pub request_timeout: Duration,
    /// Time a call keeps retrying before it gives up as unavailable.
    pub retry_deadline: Duration,
    /// First wait before a retry.
    pub backoff_base: Duration,
    /// Longest wait between retries.
    pub backoff_max: Duration,
    /// Time between two looks at a pending operation.
    pub operation_poll_interval: Duration,
    /// Time a call waits for its operation to be `DONE`.
    pub operation_timeout: Duration,
}

impl ClientSettings {
    /// The waits between retries: doubling from `backoff_base`, at most `backoff_max`.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.backoff_base, self.backoff_max)
    }
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry_deadline: DEFAULT_RETRY_DEADLINE,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            operation_poll_interval: DEFAULT_OPERATION_POLL_INTERVAL,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
        }
    }
}

/// Where a managed instance group lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// A zonal group (`instanceGroupManagers`, `zoneOperations`).
    Zone(String),
    /// A regional group (`regionInstanceGroupManagers`, `regionOperations`).
    Region(String),
}

/// One managed instance group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupRef {
    /// The project.
    pub project: String,
    /// Its zone or region.
    pub location: Location,
    /// Its name.
    pub name: String,
}

impl GroupRef {
    /// The group a pool's section names; invalid when it names neither or both of zone and
    /// region.
    pub fn from_section(section: &ComputeEnginePool) -> Result<Self> {
        let location = match (&section.zone, &section.region) {
            (Some(zone), None) => Location::Zone(zone.clone()),
            (None, Some(region)) => Location::Region(region.clone()),
            _ => {
                return Err(Error::invalid(format!(
                    "compute_engine group {:?} needs exactly one of zone or region",
                    section.instance_group
                )));
            }
        };
        Ok(Self {
            project: section.project.clone(),
            location,
            name: section.instance_group.clone(),
        })
    }

    /// `projects/P/zones/Z` or `projects/P/regions/R`.
    pub fn scope_path(&self) -> String {
        match &self.location {
            Location::Zone(zone) => format!("projects/{}/zones/{zone}", self.project),
            Location::Region(region) => format!("projects/{}/regions/{region}", self.project),
        }
    }

    /// The group's path below the API base.
    pub fn path(&self) -> String {
        format!("{}/instanceGroupManagers/{}", self.scope_path(), self.name)
    }

    /// An operation's path below the API base (`zoneOperations` or `regionOperations`).
    pub fn operation_path(&self, operation: &str) -> String {
        format!("{}/operations/{operation}", self.scope_path())
    }
}

impl std::fmt::Display for GroupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location {
            Location::Zone(zone) => write!(
                f,
                "managed instance group {:?} (project {}, zone {zone})",
                self.name, self.project
            ),
            Location::Region(region) => write!(
                f,
                "managed instance group {:?} (project {}, region {region})",
                self.name, self.project
            ),
        }
    }
}

/// Talks to one Compute API endpoint with one token source.
#[derive(Clone)]
pub struct ComputeClient {
    http: reqwest::Client,
    base: String,
    tokens: DynTokenSource,
    settings: ClientSettings,
}

impl std::fmt::Debug for ComputeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComputeClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ComputeClient {
    /// A client of the API at `base` (such as `https://compute.googleapis.com/compute/v1`).
    pub fn new(
        http: reqwest::Client,
        base: &str,
        tokens: DynTokenSource,
        settings: ClientSettings,
    ) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            tokens,
            settings,
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// `GET …/instanceGroupManagers/{m}`.
    pub async fn group_get(&self, group: &GroupRef) -> Result<InstanceGroupManager> {
        self.call(group, "get", Method::GET, &group.path(), &[], None)
            .await
    }

    /// `POST …/instanceGroupManagers/{m}/resize?size=N`: set the group's target size.
    pub async fn group_resize(&self, group: &GroupRef, size: u32) -> Result<Operation> {
        let path = format!("{}/resize", group.path());
        self.call(
            group,
            "resize",
            Method::POST,
            &path,
            &[("size", size.to_string())],
            None,
        )
        .await
    }

    /// `POST …/instanceGroupManagers/{m}/listManagedInstances`, every page.
    pub async fn managed_instances(&self, group: &GroupRef) -> Result<Vec<ManagedInstance>> {
        let path = format!("{}/listManagedInstances", group.path());
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("maxResults", LIST_PAGE_SIZE.to_string())];
            if let Some(token) = &token {
                query.push(("pageToken", token.clone()));
            }
            let page: ManagedInstancesPage = self
                .call(
                    group,
                    "listManagedInstances",
                    Method::POST,
                    &path,
                    &query,
                    None,
                )
                .await?;
            all.extend(page.managed_instances);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// `POST …/instanceGroupManagers/{m}/deleteInstances`: delete these instances (URLs) and
    /// lower the target size by as many; instances already gone are skipped.
    pub async fn delete_instances(
        &self,
        group: &GroupRef,
        instances: Vec<String>,
    ) -> Result<Operation> {
        let path = format!("{}/deleteInstances", group.path());
        let body = serde_json::to_value(DeleteInstancesRequest {
            instances,
            skip_instances_on_validation_error: true,
        })
        .map_err(|e| Error::internal("could not encode a deleteInstances body").with_source(e))?;
        self.call(
            group,
            "deleteInstances",
            Method::POST,
            &path,
            &[],
            Some(body),
        )
        .await
    }

    /// `GET …/operations/{op}` (zone or region operation of the group's location).
    pub async fn operation_get(&self, group: &GroupRef, operation: &str) -> Result<Operation> {
        self.call(
            group,
            "get operation",
            Method::GET,
            &group.operation_path(operation),
            &[],
            None,
        )
        .await
    }

    /// Look at `operation` until it is `DONE` or the operation timeout passes; returns the
    /// last state seen (check [`Operation::is_done`] and [`Operation::errors`]).
    pub async fn operation_wait(
        &self,
        group: &GroupRef,
        operation: Operation,
    ) -> Result<Operation> {
        let started = Instant::now();
        let mut operation = operation;
        while !operation.is_done() && started.elapsed() < self.settings.operation_timeout {
            tokio::time::sleep(self.settings.operation_poll_interval).await;
            operation = self.operation_get(group, &operation.name).await?;
        }
        Ok(operation)
    }

    /// One API call with retries; `what` names it in errors.
    async fn call<T: DeserializeOwned>(
        &self,
        group: &GroupRef,
        what: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        let url = format!("{}/{path}", self.base);
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let token = self.tokens.token().await?;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token)
                .timeout(self.settings.request_timeout)
                .query(query);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    let bytes = response.bytes().await.map_err(|e| {
                        Error::unavailable(format!(
                            "compute api: could not read the answer to {what} of {group}"
                        ))
                        .with_source(e)
                    })?;
                    return serde_json::from_slice(&bytes).map_err(|e| {
                        Error::internal(format!(
                            "compute api: unexpected answer to {what} of {group}"
                        ))
                        .with_source(e)
                    });
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    let error = http_error(status, &text, what, group);
                    if !is_retryable_status(status) {
                        return Err(error);
                    }
                    error
                }
                Err(e) => Error::unavailable(format!(
                    "compute api at {} unreachable for {what} of {group}",
                    self.base
                ))
                .with_source(e),
            };
            let wait = self.settings.backoff().ceiling(attempt);
            if started.elapsed() + wait > self.settings.retry_deadline {
                return Err(failure);
            }
            tracing::debug!(%group, what, attempt, wait = ?wait, error = %failure, "compute api call failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The permission a call needs, to name in a 403's message.
pub fn permission_for(what: &str, group: &GroupRef) -> &'static str {
    match (what, &group.location) {
        ("resize" | "deleteInstances", _) => "compute.instanceGroupManagers.update",
        ("get operation", Location::Zone(_)) => "compute.zoneOperations.get",
        ("get operation", Location::Region(_)) => "compute.regionOperations.get",
        _ => "compute.instanceGroupManagers.get",
    }
}

/// The error an HTTP failure of `what` on `group` means.
pub fn http_error(status: StatusCode, body: &str, what: &str, group: &GroupRef) -> Error {
    let google = serde_json::from_str::<GoogleErrorBody>(body)
        .map(|b| b.error)
        .ok();
    let said = google
        .as_ref()
        .map(|g| {
            let reason = g.errors.first().map(|e| e.reason.as_str()).unwrap_or("");
            if reason.is_empty() {
                g.message.clone()
            } else {
                format!("{} ({reason})", g.message)
            }
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    let code = status.as_u16();
    let (kind, advice) = match status {
        StatusCode::NOT_FOUND => (
            ErrorKind::InvalidArgument,
            format!(
                "{group} not found: check compute_engine.project, zone or region and instance_group of the pool"
            ),
        ),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
            ErrorKind::PermissionDenied,
            format!(
                "{what} of {group} refused: grant the server's service account {} (see docs/compute-engine.md)",
                permission_for(what, group)
            ),
        ),
        s if is_retryable_status(s) => (
            ErrorKind::Unavailable,
            format!("compute api could not {what} {group} for now"),
        ),
        StatusCode::CONFLICT => (
            ErrorKind::Unavailable,
            format!("{group} is busy with another change; {what} is tried again on the next pass"),
        ),
        _ => (
            ErrorKind::InvalidArgument,
            format!("compute api refused {what} of {group}"),
        ),
    };
    Error::new(kind, format!("{advice} (http {code}: {said})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zonal() -> GroupRef {
        GroupRef {
            project: "p".into(),
            location: Location::Zone("europe-west4-a".into()),
            name: "workers".into(),
        }
    }

    #[test]
    fn paths_follow_the_api_reference() {
        let regional = GroupRef {
            location: Location::Region("us-central1".into()),
            ..zonal()
        };
        assert_eq!(
            zonal().path(),
            "projects/p/zones/europe-west4-a/instanceGroupManagers/workers"
        );
        assert_eq!(
            regional.operation_path("op-1"),
            "projects/p/regions/us-central1/operations/op-1"
        );
    }

    #[test]
    fn http_errors_map_to_kinds_with_advice() {
        let body = r#"{"error":{"code":403,"message":"Required 'compute.instanceGroupManagers.update' permission","errors":[{"reason":"forbidden","message":"x"}]}}"#;
        let err = http_error(StatusCode::FORBIDDEN, body, "resize", &zonal());
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(
            err.message()
                .contains("compute.instanceGroupManagers.update"),
            "{err}"
        );
        assert!(err.message().contains("(forbidden)"), "{err}");
        let err = http_error(StatusCode::NOT_FOUND, "not json", "get", &zonal());
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("\"workers\""), "{err}");
        assert!(err.message().contains("not json"), "{err}");
        let err = http_error(StatusCode::TOO_MANY_REQUESTS, "", "get", &zonal());
        assert!(err.is_retryable(), "{err}");
        let err = http_error(StatusCode::BAD_REQUEST, "", "resize", &zonal());
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let settings = ClientSettings {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
            ..ClientSettings::default()
        };
        let waits: Vec<u128> = (1..=4)
            .map(|n| settings.backoff().ceiling(n).as_millis())
            .collect();
        assert_eq!(waits, vec![100, 200, 350, 350]);
    }
}
