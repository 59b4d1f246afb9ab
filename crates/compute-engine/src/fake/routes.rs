//! The fake's HTTP side: routing, request checks and the answer of each call.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{
    API_PREFIX, FAKE_TOKEN, FakeGroup, FakeInstance, FakeOperation, FakeState, MAX_RESULTS,
    RecordedRequest, STANDARD_PARAMS, Shared, group_link, lock, managed_instance_json, scope_link,
    stock_out_error,
};
use crate::api::{
    DeleteInstancesRequest, ErrorItem, ErrorList, GoogleError, GoogleErrorBody, GoogleErrorDetail,
    Operation, RESOURCE_LINK_PREFIX,
};
use crate::client::{GroupRef, Location};

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

/// Answer one request: record it, apply an injected failure, check the token, then route.
pub(super) async fn handle(
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
    let state = &mut *state;
    match call {
        Call::Get(group) => get_group(state, group, &query, &body),
        Call::Resize(group) => resize(state, group, &query, &body),
        Call::List(group) => list_managed_instances(state, group, &query, &body),
        Call::Delete(group) => {
            delete_instances(state, group, &query, &body, content_type.as_deref())
        }
        Call::Operation(scope, name) => operation(state, scope, name, false, &query, &body),
        Call::OperationWait(scope, name) => operation(state, scope, name, true, &query, &body),
    }
}

/// `GET instanceGroupManagers/{m}`.
fn get_group(
    state: &mut FakeState,
    group: GroupRef,
    query: &[(String, String)],
    body: &Bytes,
) -> Response {
    if let Some(r) = check_params(query, &[]).or_else(|| empty_body(body)) {
        return r;
    }
    with_group(state, &group, |_, g| {
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

/// `POST instanceGroupManagers/{m}/resize?size=N`.
fn resize(
    state: &mut FakeState,
    group: GroupRef,
    query: &[(String, String)],
    body: &Bytes,
) -> Response {
    if let Some(r) = check_params(query, &["size", "requestId"]).or_else(|| empty_body(body)) {
        return r;
    }
    let size = match param(query, "size").map(str::parse::<u32>) {
        Some(Ok(size)) => size,
        Some(Err(_)) => {
            return bad_request(
                "Invalid value for field 'size': must be an integer of at least 0.",
            );
        }
        None => return bad_request("Required parameter 'size' is missing."),
    };
    with_group(state, &group, |state_ops, g| {
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

/// `POST instanceGroupManagers/{m}/listManagedInstances`.
fn list_managed_instances(
    state: &mut FakeState,
    group: GroupRef,
    query: &[(String, String)],
    body: &Bytes,
) -> Response {
    if let Some(r) = check_params(
        query,
        &[
            "maxResults",
            "pageToken",
            "filter",
            "orderBy",
            "returnPartialSuccess",
        ],
    )
    .or_else(|| empty_body(body))
    {
        return r;
    }
    let max = match param(query, "maxResults").map(str::parse::<usize>) {
        None => MAX_RESULTS,
        Some(Ok(n)) if n <= MAX_RESULTS => n.max(1),
        Some(_) => {
            return bad_request(format!(
                "Invalid value for field 'maxResults': must be an integer from 0 to {MAX_RESULTS}."
            ));
        }
    };
    let start = match param(query, "pageToken") {
        None => 0,
        Some(token) => match token.strip_prefix("page-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => {
                return bad_request(format!("Invalid value for field 'pageToken': {token}"));
            }
        },
    };
    let page_size = state.page_size.min(max);
    with_group(state, &group, |_, g| {
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

/// `POST instanceGroupManagers/{m}/deleteInstances`.
fn delete_instances(
    state: &mut FakeState,
    group: GroupRef,
    query: &[(String, String)],
    body: &Bytes,
    content_type: Option<&str>,
) -> Response {
    if let Some(r) = check_params(query, &["requestId"]) {
        return r;
    }
    if !content_type.is_some_and(|t| t.starts_with("application/json")) {
        return bad_request("deleteInstances needs a JSON body (Content-Type: application/json).");
    }
    let request: DeleteInstancesRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("Invalid JSON payload received. {e}")),
    };
    if request.instances.is_empty() || request.instances.len() > 1000 {
        return bad_request("Invalid value for field 'instances': give 1 to 1000 instance URLs.");
    }
    with_group(state, &group, |state_ops, g| {
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

/// `GET operations/{op}` (one step on) or `POST operations/{op}/wait` (done).
fn operation(
    state: &mut FakeState,
    scope: GroupRef,
    name: String,
    wait: bool,
    query: &[(String, String)],
    body: &Bytes,
) -> Response {
    if let Some(r) = check_params(query, &[]).or_else(|| empty_body(body)) {
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
    if let Some(refused) = forbidden_target(&target, state) {
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
