//! [`FakeCompute`]: a fake of the Compute Engine v1 REST API on 127.0.0.1, serving exactly
//! the managed-instance-group calls the provider makes, for zonal and regional groups, and
//! checking their shapes the way the API reference documents them.
//!
//! Served (below `/compute/v1/projects/{p}/{zones/{z}|regions/{r}}/`):
//! `GET instanceGroupManagers/{m}`, `POST instanceGroupManagers/{m}/resize?size=N` (no body),
//! `POST instanceGroupManagers/{m}/listManagedInstances` (`maxResults`, `pageToken`),
//! `POST instanceGroupManagers/{m}/deleteInstances` (JSON body), `GET operations/{op}` and
//! `POST operations/{op}/wait`. Anything else, a missing bearer token, a bad query parameter or
//! body gets a Google-style error (`{"error": {"code", "message", "errors": [{"reason",
//! "message"}]}}`).
//!
//! Operations go `PENDING` → `RUNNING` → `DONE` one step per poll. Instances start `CREATING`
//! and run, or leave after `DELETING`, when the test calls [`FakeCompute::step`]. Tests can make
//! resize operations fail on quota, new instances hit a zone stock-out, a group answer 403,
//! and the next requests answer any status once (429, 503).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use serde_json::{Value, json};

use crate::api::{ErrorItem, ErrorList, ManagedInstance, Operation, RESOURCE_LINK_PREFIX};
use crate::client::{GroupRef, Location};

mod routes;

/// The bearer token the fake accepts.
pub const FAKE_TOKEN: &str = "fake-compute-token";
/// The path prefix the fake serves the API under (as Google does).
pub const API_PREFIX: &str = "/compute/v1";
/// Query parameters every Google API accepts.
const STANDARD_PARAMS: &[&str] = &["alt", "fields", "prettyPrint", "quotaUser", "userIp"];
/// Largest `maxResults` of `listManagedInstances`.
const MAX_RESULTS: usize = 500;

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The path, including [`API_PREFIX`].
    pub path: String,
    /// Query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body, if it was JSON.
    pub body: Option<Value>,
}

impl RecordedRequest {
    /// The value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
struct FakeInstance {
    name: String,
    zone: String,
    action: String,
    status: Option<String>,
    errors: Vec<ErrorItem>,
}

#[derive(Debug, Default)]
struct FakeGroup {
    target_size: u32,
    instances: Vec<FakeInstance>,
    ever: BTreeSet<String>,
    zones: Vec<String>,
    next_zone: usize,
    quota_exceeded: bool,
    stock_out: bool,
    forbidden: bool,
}

#[derive(Debug)]
struct FakeOperation {
    scope: String,
    operation: Operation,
    error: Option<ErrorList>,
}

#[derive(Debug, Default)]
struct FakeState {
    groups: HashMap<GroupRef, FakeGroup>,
    operations: HashMap<String, FakeOperation>,
    requests: Vec<RecordedRequest>,
    fail_next: VecDeque<u16>,
    next_id: u64,
    page_size: usize,
}

type Shared = Arc<Mutex<FakeState>>;

fn lock(state: &Shared) -> MutexGuard<'_, FakeState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fake Compute API; it stops when dropped.
pub struct FakeCompute {
    addr: SocketAddr,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCompute {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeCompute {
    /// Serve on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state: Shared = Arc::new(Mutex::new(FakeState {
            page_size: MAX_RESULTS,
            ..FakeState::default()
        }));
        let app = Router::new()
            .fallback(routes::handle)
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "fake compute api stopped");
            }
        });
        Ok(Self {
            addr,
            state,
            server,
        })
    }

    /// The API base URL to give a client (`http://127.0.0.1:PORT/compute/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}{API_PREFIX}", self.addr)
    }

    /// Add an empty zonal group.
    pub fn add_zonal_group(&self, project: &str, zone: &str, name: &str) -> GroupRef {
        let group = GroupRef {
            project: project.into(),
            location: Location::Zone(zone.into()),
            name: name.into(),
        };
        self.add(group.clone(), vec![zone.to_string()]);
        group
    }

    /// Add an empty regional group, spreading its instances over zones `-a`, `-b`, `-c`.
    pub fn add_regional_group(&self, project: &str, region: &str, name: &str) -> GroupRef {
        let group = GroupRef {
            project: project.into(),
            location: Location::Region(region.into()),
            name: name.into(),
        };
        let zones = ["a", "b", "c"].map(|z| format!("{region}-{z}")).to_vec();
        self.add(group.clone(), zones);
        group
    }

    fn add(&self, group: GroupRef, zones: Vec<String>) {
        lock(&self.state).groups.insert(
            group,
            FakeGroup {
                zones,
                ..FakeGroup::default()
            },
        );
    }

    /// Let instances move on: `CREATING` ones run (unless the group is stocked out),
    /// `DELETING` ones are gone.
    pub fn step(&self) {
        let mut state = lock(&self.state);
        for group in state.groups.values_mut() {
            group.instances.retain(|i| i.action != "DELETING");
            let stock_out = group.stock_out;
            for instance in group
                .instances
                .iter_mut()
                .filter(|i| i.action == "CREATING")
            {
                if stock_out {
                    instance.errors = vec![stock_out_error(&instance.zone)];
                } else {
                    instance.action = "NONE".into();
                    instance.status = Some("RUNNING".into());
                    instance.errors.clear();
                }
            }
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// Forget the requests received so far.
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }

    /// The group's target size.
    pub fn target_size(&self, group: &GroupRef) -> Option<u32> {
        lock(&self.state).groups.get(group).map(|g| g.target_size)
    }

    /// The group's instances as `listManagedInstances` lists them.
    pub fn instances(&self, group: &GroupRef) -> Vec<ManagedInstance> {
        let state = lock(&self.state);
        state.groups.get(group).map_or_else(Vec::new, |g| {
            g.instances
                .iter()
                .filter_map(|i| serde_json::from_value(managed_instance_json(group, i)).ok())
                .collect()
        })
    }

    /// Make the group's resize operations end `DONE` with `QUOTA_EXCEEDED` (target unchanged).
    pub fn set_quota_exceeded(&self, group: &GroupRef, on: bool) {
        self.with_group(group, |g| g.quota_exceeded = on);
    }

    /// Make the group's new instances stay `CREATING` with `ZONE_RESOURCE_POOL_EXHAUSTED` in
    /// their `lastAttempt`.
    pub fn set_stock_out(&self, group: &GroupRef, on: bool) {
        self.with_group(group, |g| g.stock_out = on);
    }

    /// Make every request about the group answer 403, as for a missing IAM permission.
    pub fn set_forbidden(&self, group: &GroupRef, on: bool) {
        self.with_group(group, |g| g.forbidden = on);
    }

    /// Answer the next request with `status` (and a Google error body), once.
    pub fn fail_next(&self, status: u16) {
        lock(&self.state).fail_next.push_back(status);
    }

    /// Largest page `listManagedInstances` returns, to exercise paging.
    pub fn set_page_size(&self, size: usize) {
        lock(&self.state).page_size = size.clamp(1, MAX_RESULTS);
    }

    /// Preempt a running instance: it is `TERMINATED`, as a spot VM after preemption.
    pub fn preempt(&self, group: &GroupRef, name: &str) {
        self.with_group(group, |g| {
            if let Some(i) = g.instances.iter_mut().find(|i| i.name == name) {
                i.status = Some("TERMINATED".into());
            }
        });
    }

    fn with_group(&self, group: &GroupRef, change: impl FnOnce(&mut FakeGroup)) {
        if let Some(g) = lock(&self.state).groups.get_mut(group) {
            change(g);
        }
    }
}

fn stock_out_error(zone: &str) -> ErrorItem {
    ErrorItem {
        code: "ZONE_RESOURCE_POOL_EXHAUSTED".into(),
        message: format!(
            "The zone 'projects/p/zones/{zone}' does not have enough resources available to fulfill the request. Try a different zone, or try again later."
        ),
    }
}

fn group_link(group: &GroupRef) -> String {
    format!("{RESOURCE_LINK_PREFIX}{}", group.path())
}

fn scope_link(group: &GroupRef) -> String {
    format!("{RESOURCE_LINK_PREFIX}{}", group.scope_path())
}

fn instance_link(group: &GroupRef, instance: &FakeInstance) -> String {
    format!(
        "{RESOURCE_LINK_PREFIX}projects/{}/zones/{}/instances/{}",
        group.project, instance.zone, instance.name
    )
}

fn managed_instance_json(group: &GroupRef, instance: &FakeInstance) -> Value {
    let mut value = json!({
        "instance": instance_link(group, instance),
        "name": instance.name,
        "currentAction": instance.action,
    });
    if let Some(status) = &instance.status {
        value["instanceStatus"] = json!(status);
    }
    if !instance.errors.is_empty() {
        value["lastAttempt"] = json!({ "errors": { "errors": instance.errors } });
    }
    value
}
