//! The fake's HTTP side: routing by path the way the API server does, strict checks of
//! verbs, content types and bodies, and answers shaped as the Kubernetes API reference shows
//! them (objects, lists, `Status` failures, newline-delimited watch events).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::objects::{
    Change, EventType, FieldSelector, Key, LabelSelector, ResourceType, labels, merge_patch,
    now_rfc3339, resource,
};
use super::{Inner, RecordedRequest, controllers};

/// A failed answer: an HTTP status with a `Status` object.
pub(crate) struct Failure {
    code: u16,
    reason: &'static str,
    message: String,
    details: Option<Value>,
}

impl Failure {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, rt: &ResourceType, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": rt.group, "kind": rt.plural}));
        self
    }

    fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(404, "NotFound", not_found_message(rt, name)).with_details(rt, name)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    fn invalid(rt: &ResourceType, name: &str, message: impl Into<String>) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{} {name:?} is invalid: {}", qualified(rt), message.into()),
        )
        .with_details(rt, name)
    }

    fn conflict(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                qualified(rt)
            ),
        )
        .with_details(rt, name)
    }
}

fn not_found_message(rt: &ResourceType, name: &str) -> String {
    format!("{} {name:?} not found", qualified(rt))
}

/// `pods`, `deployments.apps`, `jobs.batch`: how the API server names a resource in messages.
fn qualified(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.plural.to_string()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    }
}

/// The `Status` object of a failure, as its JSON.
pub(crate) fn status_json(
    code: u16,
    reason: &str,
    message: &str,
    details: Option<&Value>,
) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(details) = details {
        status["details"] = details.clone();
    }
    status
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = status_json(self.code, self.reason, &self.message, self.details.as_ref());
        json_response(
            StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &body,
        )
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

type Answer = Result<Response, Failure>;

/// What a path names.
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, plural, name, sub) = match rest {
        ["namespaces", ns, plural] => (Some(*ns), *plural, None, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
        [plural] => (None, *plural, None, None),
        [plural, name] => (None, *plural, Some(*name), None),
        _ => return None,
    };
    let rt = resource(group, version, plural)?;
    // A namespaced resource is reached through a namespace for anything but a list.
    if rt.namespaced == namespace.is_none() && (name.is_some() || !rt.namespaced) {
        return None;
    }
    Some(Target {
        rt,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
    })
}

/// Every request lands here.
pub(crate) async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let query: HashMap<String, String> = Query::try_from_uri(&uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let parsed_body = serde_json::from_slice::<Value>(&body).ok();
    let fault = {
        let mut state = inner.lock();
        state.requests.push(RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: parsed_body,
        });
        state.take_fault(method.as_str(), uri.path())
    };
    let bearer = format!("Bearer {}", inner.token);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(bearer.as_str())
    {
        return Failure::new(401, "Unauthorized", "Unauthorized").into_response();
    }
    if let Some(fault) = fault {
        return Failure {
            code: fault.code,
            reason: fault.reason,
            message: fault.message,
            details: None,
        }
        .into_response();
    }
    let Some(target) = parse_path(uri.path()) else {
        return Failure::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .into_response();
    };
    let request = Request {
        inner: &inner,
        method: &method,
        query: &query,
        content_type: content_type.as_deref(),
        body: &body,
    };
    match request.dispatch(target).await {
        Ok(response) | Err(response) => response,
    }
}

struct Request<'a> {
    inner: &'a Arc<Inner>,
    method: &'a Method,
    query: &'a HashMap<String, String>,
    content_type: Option<&'a str>,
    body: &'a Bytes,
}

impl Request<'_> {
    async fn dispatch(&self, target: Target) -> Result<Response, Response> {
        let method = self.method.clone();
        let rt = target.rt;
        let answer = match (&target.name, target.sub.as_deref(), method) {
            (None, None, Method::GET) => {
                if matches!(self.param("watch"), Some("true" | "1")) {
                    return Ok(self.watch(&target));
                }
                self.list(&target)
            }
            (None, None, Method::POST) => match &target.namespace {
                Some(ns) if rt.namespaced => self.create(&rt, ns),
                None if !rt.namespaced => self.create(&rt, ""),
                _ => Err(method_not_allowed()),
            },
            (Some(name), None, m) => {
                let key: Key = (
                    rt.plural,
                    target.namespace.clone().unwrap_or_default(),
                    name.clone(),
                );
                match m {
                    Method::GET => self.get(&rt, &key),
                    Method::PUT => self.replace(&rt, &key, false),
                    Method::PATCH => self.patch(&rt, &key, false),
                    Method::DELETE => self.delete(&rt, &key),
                    _ => Err(method_not_allowed()),
                }
            }
            (Some(name), Some(sub), m) => {
                let key: Key = (
                    rt.plural,
                    target.namespace.clone().unwrap_or_default(),
                    name.clone(),
                );
                match (rt.plural, sub, m) {
                    ("deployments", "scale", Method::GET) => self.get_scale(&rt, &key),
                    ("deployments", "scale", Method::PUT) => self.write_scale(&rt, &key, false),
                    ("deployments", "scale", Method::PATCH) => self.write_scale(&rt, &key, true),
                    ("pods", "log", Method::GET) => self.log(&rt, &key),
                    (_, "status", Method::GET) => self.get(&rt, &key),
                    (_, "status", Method::PUT) => self.replace(&rt, &key, true),
                    (_, "status", Method::PATCH) => self.patch(&rt, &key, true),
                    (_, "scale" | "log" | "status", _) => Err(method_not_allowed()),
                    _ => Err(Failure::new(
                        404,
                        "NotFound",
                        "the server could not find the requested resource",
                    )),
                }
            }
            _ => Err(method_not_allowed()),
        };
        answer.map_err(IntoResponse::into_response)
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    fn selectors(&self) -> Result<(LabelSelector, FieldSelector), Failure> {
        let labels = LabelSelector::parse(self.param("labelSelector").unwrap_or(""))
            .map_err(|e| Failure::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(self.param("fieldSelector").unwrap_or(""))
            .map_err(|e| Failure::bad_request(format!("unable to parse field selector: {e}")))?;
        Ok((labels, fields))
    }

    /// The body as a JSON object of `application/json`, or the API server's refusal.
    fn json_body(&self) -> Result<Value, Failure> {
        let media = self.media_type();
        if media != Some("application/json") {
            return Err(unsupported_media(self.content_type));
        }
        let value: Value = serde_json::from_slice(self.body).map_err(|e| {
            Failure::bad_request(format!(
                "the body of the request was in an unknown format: {e}"
            ))
        })?;
        if !value.is_object() {
            return Err(Failure::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        Ok(value)
    }

    fn media_type(&self) -> Option<&str> {
        self.content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
    }

    fn list(&self, target: &Target) -> Answer {
        let (labels_sel, fields_sel) = self.selectors()?;
        let state = self.inner.lock();
        let items: Vec<Value> = state
            .objects
            .list(target.rt.plural, target.namespace.as_deref())
            .into_iter()
            .filter(|o| labels_sel.matches(&labels(o)) && fields_sel.matches(o))
            .map(|mut o| {
                // The API server leaves kind and apiVersion out of list items.
                if let Some(map) = o.as_object_mut() {
                    map.remove("kind");
                    map.remove("apiVersion");
                }
                o
            })
            .collect();
        let body = json!({
            "kind": format!("{}List", target.rt.kind),
            "apiVersion": target.rt.api_version(),
            "metadata": {"resourceVersion": state.objects.resource_version().to_string()},
            "items": items,
        });
        Ok(json_response(StatusCode::OK, &body))
    }

    fn get(&self, rt: &ResourceType, key: &Key) -> Answer {
        let state = self.inner.lock();
        let object = state
            .objects
            .get(key)
            .ok_or_else(|| Failure::not_found(rt, &key.2))?;
        Ok(json_response(StatusCode::OK, object))
    }

    fn check_type(
        &self,
        rt: &ResourceType,
        body: &Value,
        kind: &str,
        api_version: &str,
    ) -> Result<(), Failure> {
        let _ = rt;
        let got_version = body["apiVersion"].as_str().unwrap_or("");
        if got_version != api_version {
            return Err(Failure::bad_request(format!(
                "the API version in the data ({got_version}) does not match the expected API version ({api_version})"
            )));
        }
        let got_kind = body["kind"].as_str().unwrap_or("");
        if got_kind != kind {
            return Err(Failure::bad_request(format!(
                "the kind in the data ({got_kind}) does not match the expected kind ({kind})"
            )));
        }
        Ok(())
    }

    fn check_namespace(&self, body: &Value, namespace: &str) -> Result<(), Failure> {
        match body["metadata"]["namespace"].as_str() {
            Some(ns) if !ns.is_empty() && ns != namespace => Err(Failure::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            _ => Ok(()),
        }
    }

    fn create(&self, rt: &ResourceType, namespace: &str) -> Answer {
        let mut body = self.json_body()?;
        self.check_type(rt, &body, rt.kind, &rt.api_version())?;
        self.check_namespace(&body, namespace)?;
        let dry_run = self.param("dryRun").is_some();
        let mut state = self.inner.lock();
        let name = match (
            body["metadata"]["name"].as_str(),
            body["metadata"]["generateName"].as_str(),
        ) {
            (Some(name), _) if !name.is_empty() => name.to_string(),
            (_, Some(prefix)) if !prefix.is_empty() => {
                format!("{prefix}{}", state.objects.random_suffix())
            }
            _ => {
                return Err(Failure::invalid(
                    rt,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        check_name(rt, &name)?;
        let key: Key = (rt.plural, namespace.to_string(), name.clone());
        if state.objects.get(&key).is_some() {
            return Err(Failure::new(
                409,
                "AlreadyExists",
                format!("{} {name:?} already exists", qualified(rt)),
            )
            .with_details(rt, &name));
        }
        if let Some(limit) = state.quota_exceeded(rt.plural, namespace) {
            return Err(Failure::new(
                403,
                "Forbidden",
                format!(
                    "{} {name:?} is forbidden: exceeded quota: spillway-quota, requested: count/{}=1, used: count/{}={limit}, limited: count/{}={limit}",
                    qualified(rt),
                    qualified(rt),
                    qualified(rt),
                    qualified(rt)
                ),
            )
            .with_details(rt, &name));
        }
        let uid = state.objects.next_uid();
        {
            let meta = &mut body["metadata"];
            meta["name"] = json!(name);
            if rt.namespaced {
                meta["namespace"] = json!(namespace);
            }
            meta["uid"] = json!(uid);
            meta["creationTimestamp"] = json!(now_rfc3339());
            if let Some(map) = meta.as_object_mut() {
                map.remove("deletionTimestamp");
                map.remove("resourceVersion");
            }
        }
        controllers::default_and_validate(rt, &name, &uid, &mut body)
            .map_err(|msg| Failure::invalid(rt, &name, msg))?;
        if dry_run {
            return Ok(json_response(StatusCode::CREATED, &body));
        }
        let stored = state.objects.put(key, body);
        Ok(json_response(StatusCode::CREATED, &stored))
    }

    /// PUT of an object (or its status): resourceVersion precondition, status kept apart.
    fn replace(&self, rt: &ResourceType, key: &Key, status_only: bool) -> Answer {
        let body = self.json_body()?;
        self.check_type(rt, &body, rt.kind, &rt.api_version())?;
        self.check_namespace(&body, &key.1)?;
        if body["metadata"]["name"].as_str() != Some(key.2.as_str()) {
            return Err(Failure::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                body["metadata"]["name"].as_str().unwrap_or(""),
                key.2
            )));
        }
        let mut state = self.inner.lock();
        let current = state
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| Failure::not_found(rt, &key.2))?;
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
            && Some(rv) != current["metadata"]["resourceVersion"].as_str()
        {
            return Err(Failure::conflict(rt, &key.2));
        }
        let updated = combine(rt, &current, body, status_only)
            .map_err(|msg| Failure::invalid(rt, &key.2, msg))?;
        let stored = state.objects.put(key.clone(), updated);
        Ok(json_response(StatusCode::OK, &stored))
    }

    /// PATCH of an object (or its status) with merge semantics.
    fn patch(&self, rt: &ResourceType, key: &Key, status_only: bool) -> Answer {
        let patch = self.patch_body()?;
        let mut state = self.inner.lock();
        let current = state
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| Failure::not_found(rt, &key.2))?;
        if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
            && Some(rv) != current["metadata"]["resourceVersion"].as_str()
        {
            return Err(Failure::conflict(rt, &key.2));
        }
        let mut patched = current.clone();
        merge_patch(&mut patched, &patch);
        if patched["kind"] != current["kind"]
            || patched["apiVersion"] != current["apiVersion"]
            || patched["metadata"]["name"] != current["metadata"]["name"]
        {
            return Err(Failure::bad_request(
                "a patch may not change kind, apiVersion or metadata.name",
            ));
        }
        let updated = combine(rt, &current, patched, status_only)
            .map_err(|msg| Failure::invalid(rt, &key.2, msg))?;
        if updated == current {
            // A patch that changes nothing writes nothing, as on the API server.
            return Ok(json_response(StatusCode::OK, &current));
        }
        let stored = state.objects.put(key.clone(), updated);
        Ok(json_response(StatusCode::OK, &stored))
    }

    fn patch_body(&self) -> Result<Value, Failure> {
        match self.media_type() {
            Some("application/merge-patch+json" | "application/strategic-merge-patch+json") => {}
            _ => return Err(unsupported_media(self.content_type)),
        }
        let value: Value = serde_json::from_slice(self.body).map_err(|e| {
            Failure::bad_request(format!(
                "the body of the request was in an unknown format: {e}"
            ))
        })?;
        if !value.is_object() {
            return Err(Failure::bad_request("a merge patch must be a JSON object"));
        }
        Ok(value)
    }

    fn delete(&self, rt: &ResourceType, key: &Key) -> Answer {
        let options = if self.body.is_empty() {
            json!({})
        } else {
            self.json_body()?
        };
        let propagation = self
            .param("propagationPolicy")
            .map(str::to_string)
            .or_else(|| options["propagationPolicy"].as_str().map(str::to_string));
        let propagation = match propagation.as_deref() {
            None => controllers::default_propagation(rt),
            Some(p @ ("Orphan" | "Background" | "Foreground")) => p.to_string(),
            Some(other) => {
                return Err(Failure::bad_request(format!(
                    "propagationPolicy {other:?} is not one of Orphan, Background, Foreground"
                )));
            }
        };
        let grace = self
            .param("gracePeriodSeconds")
            .and_then(|g| g.parse::<i64>().ok())
            .or_else(|| options["gracePeriodSeconds"].as_i64());
        let mut state = self.inner.lock();
        let current = state
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| Failure::not_found(rt, &key.2))?;
        let preconditions = &options["preconditions"];
        if let Some(rv) = preconditions["resourceVersion"].as_str()
            && Some(rv) != current["metadata"]["resourceVersion"].as_str()
        {
            return Err(Failure::conflict(rt, &key.2));
        }
        if let Some(uid) = preconditions["uid"].as_str()
            && Some(uid) != current["metadata"]["uid"].as_str()
        {
            return Err(Failure::conflict(rt, &key.2));
        }
        match controllers::delete(&mut state.objects, rt, key, &propagation, grace) {
            Some(object) => Ok(json_response(StatusCode::OK, &object)),
            None => {
                let status = json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {"name": key.2, "group": rt.group, "kind": rt.plural, "uid": current["metadata"]["uid"]},
                });
                Ok(json_response(StatusCode::OK, &status))
            }
        }
    }

    fn get_scale(&self, rt: &ResourceType, key: &Key) -> Answer {
        let state = self.inner.lock();
        let deployment = state
            .objects
            .get(key)
            .ok_or_else(|| Failure::not_found(rt, &key.2))?;
        Ok(json_response(StatusCode::OK, &scale_of(deployment)))
    }

    /// PUT or PATCH of `deployments/{name}/scale` (`autoscaling/v1` Scale).
    fn write_scale(&self, rt: &ResourceType, key: &Key, patch: bool) -> Answer {
        let body = if patch {
            self.patch_body()?
        } else {
            let body = self.json_body()?;
            self.check_type(rt, &body, "Scale", "autoscaling/v1")?;
            if body["metadata"]["name"].as_str() != Some(key.2.as_str()) {
                return Err(Failure::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({})",
                    body["metadata"]["name"].as_str().unwrap_or(""),
                    key.2
                )));
            }
            body
        };
        let mut state = self.inner.lock();
        let deployment = state
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| Failure::not_found(rt, &key.2))?;
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
            && Some(rv) != deployment["metadata"]["resourceVersion"].as_str()
        {
            return Err(Failure::conflict(rt, &key.2));
        }
        let mut scale = scale_of(&deployment);
        if patch {
            merge_patch(&mut scale, &body);
        } else {
            scale = body;
        }
        let Some(replicas) = scale["spec"]["replicas"].as_i64().filter(|r| *r >= 0) else {
            return Err(Failure::new(
                422,
                "Invalid",
                format!(
                    "Scale.autoscaling {:?} is invalid: spec.replicas: Invalid value: {}: must be greater than or equal to 0",
                    key.2, scale["spec"]["replicas"]
                ),
            ));
        };
        if deployment["spec"]["replicas"].as_i64() == Some(replicas) {
            return Ok(json_response(StatusCode::OK, &scale_of(&deployment)));
        }
        let mut updated = deployment;
        updated["spec"]["replicas"] = json!(replicas);
        bump_generation(&mut updated);
        let stored = state.objects.put(key.clone(), updated);
        Ok(json_response(StatusCode::OK, &scale_of(&stored)))
    }

    fn log(&self, rt: &ResourceType, key: &Key) -> Answer {
        let state = self.inner.lock();
        let pod = state
            .objects
            .get(key)
            .ok_or_else(|| Failure::not_found(rt, &key.2))?;
        let containers: Vec<&str> = pod["spec"]["containers"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        let container = match self.param("container") {
            Some(c) if containers.contains(&c) => c.to_string(),
            Some(c) => {
                return Err(Failure::bad_request(format!(
                    "container {c} is not valid for pod {}",
                    key.2
                )));
            }
            None if containers.len() == 1 => containers[0].to_string(),
            None => {
                return Err(Failure::bad_request(format!(
                    "a container name must be specified for pod {}, choose one of: {containers:?}",
                    key.2
                )));
            }
        };
        let started = pod["status"]["containerStatuses"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == container.as_str()))
            .is_some_and(|s| s["state"].get("waiting").is_none());
        if !started {
            return Err(Failure::bad_request(format!(
                "container {container:?} in pod {:?} is waiting to start: ContainerCreating",
                key.2
            )));
        }
        let text = state
            .objects
            .logs
            .get(&(key.1.clone(), key.2.clone()))
            .cloned()
            .unwrap_or_default();
        let text = match self
            .param("tailLines")
            .and_then(|t| t.parse::<usize>().ok())
        {
            Some(n) => {
                let lines: Vec<&str> = text.lines().collect();
                let start = lines.len().saturating_sub(n);
                lines[start..].iter().map(|l| format!("{l}\n")).collect()
            }
            None => text,
        };
        Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response())
    }

    fn watch(&self, target: &Target) -> Response {
        let (labels_sel, fields_sel) = match self.selectors() {
            Ok(s) => s,
            Err(f) => return f.into_response(),
        };
        let since = self.param("resourceVersion").unwrap_or("");
        let timeout = self
            .param("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(1800);
        let plural = target.rt.plural;
        let namespace = target.namespace.clone();
        let (initial, rx, from) = {
            let state = self.inner.lock();
            let now = state.objects.resource_version();
            let initial: Vec<(EventType, Value)> = match since {
                "" | "0" => state
                    .objects
                    .list(plural, namespace.as_deref())
                    .into_iter()
                    .map(|o| (EventType::Added, o))
                    .collect(),
                rv => match rv.parse::<u64>() {
                    Ok(old) if state.objects.changes_since(old).is_none() => {
                        // As the API server: a 200 stream with one ERROR event, then the end.
                        let status = status_json(
                            410,
                            "Expired",
                            &format!("too old resource version: {old} ({now})"),
                            None,
                        );
                        let line = event_line_raw("ERROR", &status);
                        return Response::builder()
                            .status(StatusCode::OK)
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Body::from(line))
                            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
                    }
                    Ok(rv) => state
                        .objects
                        .changes_since(rv)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|c| {
                            c.plural == plural
                                && namespace.as_ref().is_none_or(|n| *n == c.namespace)
                        })
                        .filter_map(|c| view(&c, &labels_sel, &fields_sel))
                        .collect(),
                    Err(_) => {
                        return Failure::bad_request(format!("invalid resourceVersion {rv:?}"))
                            .into_response();
                    }
                },
            };
            let initial = initial
                .into_iter()
                .filter(|(e, o)| {
                    *e != EventType::Added
                        || (labels_sel.matches(&labels(o)) && fields_sel.matches(o))
                })
                .collect::<Vec<_>>();
            (initial, state.objects.subscribe(), now)
        };
        let first = futures::stream::iter(initial.into_iter().map(|(e, o)| event_line(e, &o)));
        let live = futures::stream::unfold(rx, move |mut rx| {
            let labels_sel = labels_sel.clone();
            let fields_sel = fields_sel.clone();
            let namespace = namespace.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(change) => {
                            if change.rv <= from
                                || change.plural != plural
                                || namespace.as_ref().is_some_and(|n| *n != change.namespace)
                            {
                                continue;
                            }
                            if let Some((event, object)) = view(&change, &labels_sel, &fields_sel) {
                                return Some((event_line(event, &object), rx));
                            }
                        }
                        // A lagging or closed watch ends; clients watch again from their last version.
                        Err(_) => return None,
                    }
                }
            }
        });
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        let stream =
            futures::StreamExt::take_until(futures::StreamExt::chain(first, live), deadline);
        let stream = futures::StreamExt::map(stream, Ok::<Bytes, Infallible>);
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

/// How a change looks to a watcher with selectors: objects that enter its view are ADDED,
/// those that leave it DELETED.
fn view(
    change: &Change,
    labels_sel: &LabelSelector,
    fields_sel: &FieldSelector,
) -> Option<(EventType, Value)> {
    let matches = |o: &Value| labels_sel.matches(&labels(o)) && fields_sel.matches(o);
    let now = matches(&change.object);
    match change.event {
        EventType::Modified => {
            let before = change.old.as_ref().is_some_and(matches);
            match (before, now) {
                (true, true) => Some((EventType::Modified, change.object.clone())),
                (false, true) => Some((EventType::Added, change.object.clone())),
                (true, false) => Some((EventType::Deleted, change.object.clone())),
                (false, false) => None,
            }
        }
        event => now.then(|| (event, change.object.clone())),
    }
}

fn event_line(event: EventType, object: &Value) -> Bytes {
    event_line_raw(event.as_str(), object)
}

fn event_line_raw(event: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": event, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// The `autoscaling/v1` Scale of a Deployment.
pub(crate) fn scale_of(deployment: &Value) -> Value {
    let meta = &deployment["metadata"];
    let selector = deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": deployment["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {
            "replicas": deployment["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector,
        },
    })
}

/// The object after a write: the main resource keeps the stored status, the status
/// subresource keeps the stored spec; identity fields never change.
fn combine(
    rt: &ResourceType,
    current: &Value,
    mut new: Value,
    status_only: bool,
) -> Result<Value, String> {
    if status_only {
        let mut out = current.clone();
        out["status"] = new["status"].take();
        return Ok(out);
    }
    for field in [
        "uid",
        "creationTimestamp",
        "namespace",
        "deletionTimestamp",
        "generation",
    ] {
        match current["metadata"].get(field) {
            Some(v) => new["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    new["status"] = current["status"].clone();
    if new["spec"] != current["spec"] {
        bump_generation(&mut new);
    }
    controllers::validate_update(rt, current, &new)?;
    Ok(new)
}

fn bump_generation(object: &mut Value) {
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
    object["metadata"]["generation"] = json!(generation + 1);
}

fn check_name(rt: &ResourceType, name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Failure::invalid(
            rt,
            name,
            format!(
                "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        ))
    }
}

fn unsupported_media(content_type: Option<&str>) -> Failure {
    Failure::new(
        415,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/strategic-merge-patch+json (got {:?})",
            content_type.unwrap_or("")
        ),
    )
}

fn method_not_allowed() -> Failure {
    Failure::new(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    )
}
