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
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::{
    DeleteInstancesRequest, ErrorItem, ErrorList, GoogleError, GoogleErrorBody, GoogleErrorDetail,
    ManagedInstance, Operation, RESOURCE_LINK_PREFIX,
};
use crate::client::{GroupRef, Location};

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
        let app = Router::new().fallback(handle).with_state(state.clone());
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

/// A Google-style error answer.
fn google_error(status: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    let body = GoogleErrorBody {
        error: GoogleError {
            code: status.as_u16(),
            message: message.clone(),
            errors: vec![GoogleErrorDetail {
                reason: reason.into(),
                message,
            }],
        },
    };
    (status, json_response(&body)).into_response()
}

fn json_response(value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        body,
    )
        .into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    google_error(StatusCode::BAD_REQUEST, "invalid", message)
}

/// What a path asks for.
enum Call {
    Get(GroupRef),
    Resize(GroupRef),
    List(GroupRef),
    Delete(GroupRef),
    Operation(GroupRef, String),
    OperationWait(GroupRef, String),
}

fn route(method: &Method, path: &str) -> Option<Call> {
    let rest = path.strip_prefix(API_PREFIX)?.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    let ["projects", project, scope, location, tail @ ..] = parts.as_slice() else {
        return None;
    };
    if project.is_empty() || location.is_empty() {
        return None;
    }
    let location = match *scope {
        "zones" => Location::Zone(location.to_string()),
        "regions" => Location::Region(location.to_string()),
        _ => return None,
    };
    let group = |name: &str| GroupRef {
        project: project.to_string(),
        location: location.clone(),
        name: name.to_string(),
    };
    let get = method == Method::GET;
    let post = method == Method::POST;
    match tail {
        ["instanceGroupManagers", m] if get => Some(Call::Get(group(m))),
        ["instanceGroupManagers", m, "resize"] if post => Some(Call::Resize(group(m))),
        ["instanceGroupManagers", m, "listManagedInstances"] if post => Some(Call::List(group(m))),
        ["instanceGroupManagers", m, "deleteInstances"] if post => Some(Call::Delete(group(m))),
        ["operations", op] if get => Some(Call::Operation(group(""), op.to_string())),
        ["operations", op, "wait"] if post => Some(Call::OperationWait(group(""), op.to_string())),
        _ => None,
    }
}

/// A refusal of query parameters other than `allowed` (and the standard ones).
fn check_params(query: &[(String, String)], allowed: &[&str]) -> Option<Response> {
    for (name, _) in query {
        if !allowed.contains(&name.as_str()) && !STANDARD_PARAMS.contains(&name.as_str()) {
            return Some(bad_request(format!(
                "Invalid JSON payload received. Unknown name \"{name}\": Cannot bind query parameter."
            )));
        }
    }
    None
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: Vec<(String, String)> = match Query::<Vec<(String, String)>>::try_from_uri(&uri) {
        Ok(Query(q)) => q,
        Err(e) => return bad_request(format!("Invalid query string: {e}")),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut state = lock(&state);
    state.requests.push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: query.clone(),
        content_type: content_type.clone(),
        body: serde_json::from_slice(&body).ok(),
    });
    if let Some(status) = state.fail_next.pop_front() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let reason = match status {
            StatusCode::TOO_MANY_REQUESTS => "rateLimitExceeded",
            StatusCode::SERVICE_UNAVAILABLE => "backendError",
            _ => "injected",
        };
        return google_error(status, reason, "injected failure");
    }
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token == FAKE_TOKEN);
    if !authorized {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "authError",
            "Request is missing required authentication credential. Expected OAuth 2 access token.",
        );
    }
    let Some(call) = route(&method, uri.path()) else {
        return google_error(
            StatusCode::NOT_FOUND,
            "notFound",
            format!(
                "The requested URL {} was not found on this server.",
                uri.path()
            ),
        );
    };
    match call {
        Call::Get(group) => {
            if let Some(r) = check_params(&query, &[]).or_else(|| empty_body(&body)) {
                return r;
            }
            with_group(&mut state, &group, |_, g| {
                let mut manager = json!({
                    "kind": "compute#instanceGroupManager",
                    "name": group.name,
                    "baseInstanceName": group.name,
                    "targetSize": g.target_size,
                    "selfLink": group_link(&group),
                    "status": { "isStable": g.instances.iter().all(|i| i.action == "NONE") },
                });
                match &group.location {
                    Location::Zone(_) => manager["zone"] = json!(scope_link(&group)),
                    Location::Region(_) => manager["region"] = json!(scope_link(&group)),
                }
                json_response(&manager)
            })
        }
        Call::Resize(group) => {
            if let Some(r) =
                check_params(&query, &["size", "requestId"]).or_else(|| empty_body(&body))
            {
                return r;
            }
            let size = match param(&query, "size").map(str::parse::<u32>) {
                Some(Ok(size)) => size,
                Some(Err(_)) => {
                    return bad_request(
                        "Invalid value for field 'size': must be an integer of at least 0.",
                    );
                }
                None => return bad_request("Required parameter 'size' is missing."),
            };
            with_group(&mut state, &group, |state_ops, g| {
                let error = if g.quota_exceeded {
                    Some(ErrorList {
                        errors: vec![ErrorItem {
                            code: "QUOTA_EXCEEDED".into(),
                            message: format!(
                                "Quota 'CPUS' exceeded. Limit: 8.0 in region {}.",
                                g.zones.first().map_or("", |z| z.as_str())
                            ),
                        }],
                    })
                } else {
                    g.target_size = size;
                    reconcile(&group, g, &mut *state_ops.next_id);
                    None
                };
                let op = new_operation(state_ops, &group, "resize", error);
                json_response(&op)
            })
        }
        Call::List(group) => {
            if let Some(r) = check_params(
                &query,
                &[
                    "maxResults",
                    "pageToken",
                    "filter",
                    "orderBy",
                    "returnPartialSuccess",
                ],
            )
            .or_else(|| empty_body(&body))
            {
                return r;
            }
            let max = match param(&query, "maxResults").map(str::parse::<usize>) {
                None => MAX_RESULTS,
                Some(Ok(n)) if n <= MAX_RESULTS => n.max(1),
                Some(_) => {
                    return bad_request(format!(
                        "Invalid value for field 'maxResults': must be an integer from 0 to {MAX_RESULTS}."
                    ));
                }
            };
            let start = match param(&query, "pageToken") {
                None => 0,
                Some(token) => match token.strip_prefix("page-").and_then(|n| n.parse().ok()) {
                    Some(n) => n,
                    None => {
                        return bad_request(format!(
                            "Invalid value for field 'pageToken': {token}"
                        ));
                    }
                },
            };
            let page_size = state.page_size.min(max);
            with_group(&mut state, &group, |_, g| {
                let end = (start + page_size).min(g.instances.len());
                let items: Vec<Value> = g
                    .instances
                    .get(start..end)
                    .unwrap_or_default()
                    .iter()
                    .map(|i| managed_instance_json(&group, i))
                    .collect();
                let mut page = json!({});
                if !items.is_empty() {
                    page["managedInstances"] = json!(items);
                }
                if end < g.instances.len() {
                    page["nextPageToken"] = json!(format!("page-{end}"));
                }
                json_response(&page)
            })
        }
        Call::Delete(group) => {
            if let Some(r) = check_params(&query, &["requestId"]) {
                return r;
            }
            if !content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("application/json"))
            {
                return bad_request(
                    "deleteInstances needs a JSON body (Content-Type: application/json).",
                );
            }
            let request: DeleteInstancesRequest = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => return bad_request(format!("Invalid JSON payload received. {e}")),
            };
            if request.instances.is_empty() || request.instances.len() > 1000 {
                return bad_request(
                    "Invalid value for field 'instances': give 1 to 1000 instance URLs.",
                );
            }
            with_group(&mut state, &group, |state_ops, g| {
                let mut names = Vec::new();
                for url in &request.instances {
                    match instance_of(&group, g, url) {
                        Some(name) => names.push(name),
                        None => {
                            return bad_request(format!(
                                "Invalid value for field 'instances': '{url}'. The instance is not a member of {}.",
                                group.path()
                            ));
                        }
                    }
                }
                for name in names {
                    match g.instances.iter_mut().find(|i| i.name == name) {
                        Some(i) if i.action != "DELETING" => {
                            i.action = "DELETING".into();
                            g.target_size = g.target_size.saturating_sub(1);
                        }
                        // Gone or going already: skipped when asked to, else refused.
                        _ if request.skip_instances_on_validation_error => {}
                        _ => {
                            return bad_request(format!(
                                "Invalid value for field 'instances': instance '{name}' is already being deleted or is gone."
                            ));
                        }
                    }
                }
                let op = new_operation(state_ops, &group, "deleteInstances", None);
                json_response(&op)
            })
        }
        Call::Operation(scope, name) | Call::OperationWait(scope, name) => {
            let wait = method == Method::POST;
            if let Some(r) = check_params(&query, &[]).or_else(|| empty_body(&body)) {
                return r;
            }
            let scope_path = scope.scope_path();
            let Some(target) = state
                .operations
                .get(&name)
                .filter(|op| op.scope == scope_path)
                .map(|op| op.operation.target_link.clone())
            else {
                return google_error(
                    StatusCode::NOT_FOUND,
                    "notFound",
                    format!("The resource '{scope_path}/operations/{name}' was not found"),
                );
            };
            if let Some(refused) = forbidden_target(&target, &state) {
                return refused;
            }
            let Some(op) = state.operations.get_mut(&name) else {
                return google_error(StatusCode::NOT_FOUND, "notFound", "operation vanished");
            };
            // One step per look; `wait` returns once it is done.
            op.operation.status = match (op.operation.status.as_str(), wait) {
                (_, true) | ("RUNNING" | "DONE", _) => "DONE".into(),
                _ => "RUNNING".into(),
            };
            if op.operation.is_done() && op.error.is_some() {
                op.operation.error = op.error.clone();
                // As Compute reports a quota failure of an operation.
                op.operation.http_error_status_code = Some(403);
                op.operation.http_error_message = Some("FORBIDDEN".into());
            }
            json_response(&op.operation)
        }
    }
}

/// 403 when the group an operation targets is forbidden.
fn forbidden_target(target_link: &str, state: &FakeState) -> Option<Response> {
    state
        .groups
        .iter()
        .find(|(group, g)| g.forbidden && group_link(group) == target_link)
        .map(|(group, _)| {
            let permission = match group.location {
                Location::Zone(_) => "compute.zoneOperations.get",
                Location::Region(_) => "compute.regionOperations.get",
            };
            forbidden(group, permission)
        })
}

fn forbidden(group: &GroupRef, permission: &str) -> Response {
    google_error(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("Required '{permission}' permission for '{}'", group.path()),
    )
}

/// A refusal of a body where the method takes none.
fn empty_body(body: &Bytes) -> Option<Response> {
    (!body.is_empty()).then(|| bad_request("This method takes no request body."))
}

/// Answer about a known, accessible group, or 404 / 403.
fn with_group(
    state: &mut FakeState,
    group: &GroupRef,
    answer: impl FnOnce(&mut OpIds<'_>, &mut FakeGroup) -> Response,
) -> Response {
    let FakeState {
        groups,
        operations,
        next_id,
        ..
    } = state;
    let Some(g) = groups.get_mut(group) else {
        return google_error(
            StatusCode::NOT_FOUND,
            "notFound",
            format!("The resource '{}' was not found", group.path()),
        );
    };
    if g.forbidden {
        return forbidden(group, "compute.instanceGroupManagers.get");
    }
    answer(
        &mut OpIds {
            operations,
            next_id,
        },
        g,
    )
}

/// What answering needs besides the group: the operation table and the id counter.
struct OpIds<'a> {
    operations: &'a mut HashMap<String, FakeOperation>,
    next_id: &'a mut u64,
}

fn new_operation(
    ops: &mut OpIds<'_>,
    group: &GroupRef,
    verb: &str,
    error: Option<ErrorList>,
) -> Operation {
    *ops.next_id += 1;
    let id = *ops.next_id;
    let name = format!("operation-{id}-{verb}");
    let scope = group.scope_path();
    let (zone, region, kind) = match &group.location {
        Location::Zone(_) => (Some(scope_link(group)), None, "instanceGroupManagers"),
        Location::Region(_) => (None, Some(scope_link(group)), "regionInstanceGroupManagers"),
    };
    let operation = Operation {
        kind: "compute#operation".into(),
        name: name.clone(),
        status: "PENDING".into(),
        operation_type: format!("compute.{kind}.{verb}"),
        target_link: group_link(group),
        self_link: format!("{RESOURCE_LINK_PREFIX}{scope}/operations/{name}"),
        zone,
        region,
        error: None,
        http_error_status_code: None,
        http_error_message: None,
    };
    ops.operations.insert(
        name,
        FakeOperation {
            scope,
            operation: operation.clone(),
            error,
        },
    );
    operation
}

/// Bring the group's instances to its target size, as the group manager does: create the
/// missing ones; delete (its own choice of victims) the extra ones.
fn reconcile(group: &GroupRef, g: &mut FakeGroup, next_id: &mut u64) {
    let live = g
        .instances
        .iter()
        .filter(|i| i.action != "DELETING")
        .count() as u32;
    for _ in live..g.target_size {
        *next_id += 1;
        let zone = g.zones[g.next_zone % g.zones.len()].clone();
        g.next_zone += 1;
        let name = format!("{}-{:04x}", group.name, *next_id);
        g.ever.insert(name.clone());
        g.instances.push(FakeInstance {
            name,
            zone: zone.clone(),
            action: "CREATING".into(),
            status: None,
            errors: if g.stock_out {
                vec![stock_out_error(&zone)]
            } else {
                Vec::new()
            },
        });
    }
    let mut extra = live.saturating_sub(g.target_size);
    for i in g.instances.iter_mut().rev() {
        if extra == 0 {
            break;
        }
        if i.action != "DELETING" {
            i.action = "DELETING".into();
            extra -= 1;
        }
    }
}

/// The name of the group's instance a deleteInstances URL names, if it is one: full URL or
/// partial (`projects/P/zones/Z/instances/N`, `zones/Z/instances/N`), in the group's project
/// and zone(s), of an instance that is or was in the group.
fn instance_of(group: &GroupRef, g: &FakeGroup, url: &str) -> Option<String> {
    let path = url
        .strip_prefix(RESOURCE_LINK_PREFIX)
        .or_else(|| url.strip_prefix("https://compute.googleapis.com/compute/v1/"))
        .unwrap_or(url);
    let parts: Vec<&str> = path.split('/').collect();
    let (project, zone, name) = match parts.as_slice() {
        ["projects", p, "zones", z, "instances", n] => (Some(*p), *z, *n),
        ["zones", z, "instances", n] => (None, *z, *n),
        _ => return None,
    };
    let ok = project.is_none_or(|p| p == group.project)
        && g.zones.iter().any(|z| z == zone)
        && g.ever.contains(name)
        && g.instances
            .iter()
            .find(|i| i.name == name)
            .is_none_or(|i| i.zone == zone);
    ok.then(|| name.to_string())
}
