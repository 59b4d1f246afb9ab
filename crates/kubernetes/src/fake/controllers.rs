//! What the fake does besides storing: defaults and validation on create, deletion with
//! propagation, and simulated controllers (Deployment, Job, garbage collector, kubelet) that
//! run only when a test calls them, so that tests are deterministic.

use serde_json::{Value, json};

use super::State;
use super::objects::{
    Key, LabelSelector, Objects, ResourceType, labels, now_rfc3339, resource_by_plural,
};

/// The annotation the ReplicaSet controller reads to choose which pods go first on scale-down.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Fill in defaults the API server sets on create and refuse what it refuses.
pub(crate) fn default_and_validate(
    rt: &ResourceType,
    name: &str,
    uid: &str,
    body: &mut Value,
) -> Result<(), String> {
    match rt.plural {
        "pods" => {
            check_containers(&body["spec"], "spec")?;
            if body["spec"]["restartPolicy"].is_null() {
                body["spec"]["restartPolicy"] = json!("Always");
            }
            body["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        "deployments" => {
            let selector =
                selector_of(&body["spec"]["selector"]).ok_or("spec.selector: Required value")?;
            if !selector.matches(
                &body["spec"]["template"]["metadata"]["labels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ) {
                return Err("spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`".into());
            }
            check_containers(&body["spec"]["template"]["spec"], "spec.template.spec")?;
            if body["spec"]["replicas"].is_null() {
                body["spec"]["replicas"] = json!(1);
            }
            body["metadata"]["generation"] = json!(1);
            body["status"] = json!({});
        }
        "jobs" => {
            let spec = &mut body["spec"];
            check_containers(&spec["template"]["spec"], "spec.template.spec")?;
            match spec["template"]["spec"]["restartPolicy"].as_str() {
                Some("Never" | "OnFailure") => {}
                _ => {
                    return Err(
                        "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"".into(),
                    );
                }
            }
            if !spec["selector"].is_null() && spec["manualSelector"] != json!(true) {
                return Err(
                    "spec.selector: Invalid value: `selector` will be auto-generated".into(),
                );
            }
            for (field, default) in [
                ("parallelism", json!(1)),
                ("backoffLimit", json!(6)),
                ("completionMode", json!("NonIndexed")),
                ("suspend", json!(false)),
            ] {
                if spec[field].is_null() {
                    spec[field] = default;
                }
            }
            spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
            let template_labels = &mut spec["template"]["metadata"]["labels"];
            for (key, value) in [
                ("controller-uid", uid),
                ("batch.kubernetes.io/controller-uid", uid),
                ("job-name", name),
                ("batch.kubernetes.io/job-name", name),
            ] {
                template_labels[key] = json!(value);
            }
            body["metadata"]["generation"] = json!(1);
            body["status"] = json!({});
        }
        "namespaces" => body["status"] = json!({"phase": "Active"}),
        _ => {}
    }
    Ok(())
}

fn check_containers(pod_spec: &Value, at: &str) -> Result<(), String> {
    let containers = pod_spec["containers"]
        .as_array()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| format!("{at}.containers: Required value"))?;
    for (i, c) in containers.iter().enumerate() {
        if c["name"].as_str().is_none_or(str::is_empty) {
            return Err(format!("{at}.containers[{i}].name: Required value"));
        }
        if c["image"].as_str().is_none_or(str::is_empty) {
            return Err(format!("{at}.containers[{i}].image: Required value"));
        }
    }
    Ok(())
}

/// Refuse changes to fields the API server keeps immutable.
pub(crate) fn validate_update(
    rt: &ResourceType,
    current: &Value,
    new: &Value,
) -> Result<(), String> {
    let same = |pointer: &str| current.pointer(pointer) == new.pointer(pointer);
    match rt.plural {
        "jobs" => {
            for (pointer, field) in [
                ("/spec/selector", "spec.selector"),
                ("/spec/template", "spec.template"),
                ("/spec/completions", "spec.completions"),
            ] {
                if !same(pointer) {
                    return Err(format!("{field}: Invalid value: field is immutable"));
                }
            }
        }
        "deployments" if !same("/spec/selector") => {
            return Err("spec.selector: Invalid value: field is immutable".into());
        }
        "pods" if !same("/spec") => {
            return Err("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations`".into());
        }
        _ => {}
    }
    Ok(())
}

/// What DELETE does without a propagationPolicy: batch/v1 Jobs orphan their pods (kept for
/// compatibility by the API server), everything else is deleted in the background.
pub(crate) fn default_propagation(rt: &ResourceType) -> String {
    if rt.plural == "jobs" {
        "Orphan".into()
    } else {
        "Background".into()
    }
}

/// Delete one object. Returns the object when the API server answers with it (pods, and
/// objects kept while their dependents go), `None` when it answers with a success `Status`.
pub(crate) fn delete(
    objects: &mut Objects,
    rt: &ResourceType,
    key: &Key,
    propagation: &str,
    grace: Option<i64>,
) -> Option<Value> {
    let current = objects.get(key)?.clone();
    if rt.plural == "pods" {
        let terminal = matches!(
            current["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        let unscheduled = current["spec"]["nodeName"]
            .as_str()
            .is_none_or(str::is_empty);
        // The API server deletes at once what no kubelet has to stop.
        if terminal || unscheduled || grace == Some(0) {
            return objects.remove(key);
        }
        if current["metadata"].get("deletionTimestamp").is_some() {
            return Some(current);
        }
        let mut pod = current;
        let grace = grace
            .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        pod["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        return Some(objects.put(key.clone(), pod));
    }
    match propagation {
        "Foreground" => {
            if current["metadata"].get("deletionTimestamp").is_some() {
                return Some(current);
            }
            let mut object = current;
            object["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            let finalizers = object["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut finalizers: Vec<Value> = finalizers;
            finalizers.push(json!("foregroundDeletion"));
            object["metadata"]["finalizers"] = json!(finalizers);
            Some(objects.put(key.clone(), object))
        }
        "Orphan" => {
            let uid = current["metadata"]["uid"].clone();
            for dep_key in dependents(objects, &uid) {
                if let Some(mut dep) = objects.get(&dep_key).cloned() {
                    if let Some(refs) = dep["metadata"]["ownerReferences"].as_array_mut() {
                        refs.retain(|r| r["uid"] != uid);
                    }
                    objects.put(dep_key, dep);
                }
            }
            objects.remove(key);
            None
        }
        _ => {
            objects.remove(key);
            None
        }
    }
}

/// Keys of objects with an owner reference to `uid`.
fn dependents(objects: &Objects, uid: &Value) -> Vec<Key> {
    ["pods", "jobs"]
        .iter()
        .flat_map(|p| objects.keys(p))
        .filter(|k| {
            objects.get(k).is_some_and(|o| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == *uid))
            })
        })
        .collect()
}

/// A selector from a `LabelSelector` object (matchLabels and matchExpressions).
pub fn selector_of(selector: &Value) -> Option<LabelSelector> {
    let mut parts = Vec::new();
    for (k, v) in selector["matchLabels"].as_object().into_iter().flatten() {
        parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
    }
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        parts.push(match e["operator"].as_str() {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_string(),
            Some("DoesNotExist") => format!("!{key}"),
            _ => return None,
        });
    }
    if parts.is_empty() {
        return None;
    }
    LabelSelector::parse(&parts.join(",")).ok()
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

fn is_terminal(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn is_deleting(object: &Value) -> bool {
    object["metadata"].get("deletionTimestamp").is_some()
}

fn is_active(pod: &Value) -> bool {
    !is_terminal(pod) && !is_deleting(pod)
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Whether a Job has been active longer than its `activeDeadlineSeconds`, counted from its
/// `status.startTime` like the Job controller does.
fn past_active_deadline(job: &Value) -> bool {
    let Some(seconds) = job["spec"]["activeDeadlineSeconds"].as_i64() else {
        return false;
    };
    let Some(started) = job["status"]["startTime"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    else {
        return false;
    };
    chrono::Utc::now() >= started + chrono::Duration::seconds(seconds)
}

fn owned_pods(objects: &Objects, namespace: &str, owner_uid: &Value) -> Vec<(Key, Value)> {
    objects
        .keys("pods")
        .into_iter()
        .filter(|k| k.1 == namespace)
        .filter_map(|k| objects.get(&k).cloned().map(|o| (k, o)))
        .filter(|(_, o)| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == *owner_uid))
        })
        .collect()
}

impl State {
    /// Run every controller once: garbage collector, Deployments, Jobs.
    pub(crate) fn step(&mut self) {
        self.collect_garbage();
        self.run_deployments();
        self.run_jobs();
    }

    /// Whether creating one more `plural` in `namespace` would exceed a quota; `Some(limit)`.
    pub(crate) fn quota_exceeded(&self, plural: &str, namespace: &str) -> Option<usize> {
        let limit = *self
            .quotas
            .get(&(namespace.to_string(), plural.to_string()))?;
        let used = self
            .objects
            .list(plural, Some(namespace))
            .iter()
            .filter(|o| plural != "pods" || !is_terminal(o))
            .count();
        (used >= limit).then_some(limit)
    }

    fn collect_garbage(&mut self) {
        let owners: Vec<Value> = ["deployments", "jobs", "pods"]
            .iter()
            .flat_map(|p| self.objects.list(p, None))
            .map(|o| o["metadata"]["uid"].clone())
            .collect();
        for plural in ["jobs", "pods"] {
            let Some(rt) = resource_by_plural(plural) else {
                continue;
            };
            for key in self.objects.keys(plural) {
                let Some(object) = self.objects.get(&key) else {
                    continue;
                };
                let orphaned = object["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| !owners.contains(&r["uid"])));
                if orphaned {
                    delete(&mut self.objects, &rt, &key, "Background", None);
                }
            }
        }
        // Owners deleted in the foreground go once their dependents are gone.
        for plural in ["deployments", "jobs"] {
            let Some(rt) = resource_by_plural(plural) else {
                continue;
            };
            for key in self.objects.keys(plural) {
                let Some(object) = self.objects.get(&key).cloned() else {
                    continue;
                };
                let foreground = object["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f == "foregroundDeletion"));
                if !(is_deleting(&object) && foreground) {
                    continue;
                }
                let uid = object["metadata"]["uid"].clone();
                let deps = dependents(&self.objects, &uid);
                if deps.is_empty() {
                    self.objects.remove(&key);
                } else {
                    for dep in deps {
                        let dep_rt = resource_by_plural(dep.0).unwrap_or(rt);
                        delete(&mut self.objects, &dep_rt, &dep, "Background", None);
                    }
                }
            }
        }
    }

    fn new_pod(
        &mut self,
        namespace: &str,
        name: String,
        owner: &Value,
        owner_kind: &str,
        template: &Value,
    ) -> Key {
        let uid = self.objects.next_uid();
        let mut pod = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid,
                "creationTimestamp": now_rfc3339(),
                "labels": template["metadata"]["labels"].clone(),
                "ownerReferences": [{
                    "apiVersion": owner["apiVersion"].clone(),
                    "kind": owner_kind,
                    "name": owner["metadata"]["name"].clone(),
                    "uid": owner["metadata"]["uid"].clone(),
                    "controller": true,
                    "blockOwnerDeletion": true,
                }],
            },
            "spec": template["spec"].clone(),
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        });
        if let Some(annotations) = template["metadata"].get("annotations") {
            pod["metadata"]["annotations"] = annotations.clone();
        }
        if pod["spec"]["restartPolicy"].is_null() {
            pod["spec"]["restartPolicy"] = json!("Always");
        }
        let key: Key = ("pods", namespace.to_string(), name);
        self.objects.put(key.clone(), pod);
        key
    }

    fn run_deployments(&mut self) {
        let Some(pods_rt) = resource_by_plural("pods") else {
            return;
        };
        for key in self.objects.keys("deployments") {
            let Some(deployment) = self.objects.get(&key).cloned() else {
                continue;
            };
            if is_deleting(&deployment) {
                continue;
            }
            let namespace = key.1.clone();
            let uid = deployment["metadata"]["uid"].clone();
            let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
            let pods = owned_pods(&self.objects, &namespace, &uid);
            let mut active: Vec<(Key, Value)> =
                pods.into_iter().filter(|(_, p)| is_active(p)).collect();
            let mut failure = None;
            if active.len() < replicas {
                // Pods are named after the ReplicaSet the real controller would make.
                let hash: String = uid.as_str().unwrap_or("").chars().rev().take(10).collect();
                for _ in active.len()..replicas {
                    let name = format!("{}-{hash}-{}", key.2, self.objects.random_suffix());
                    if let Some(limit) = self.quota_exceeded("pods", &namespace) {
                        failure = Some(format!(
                            "pods {name:?} is forbidden: exceeded quota: spillway-quota, requested: pods=1, used: pods={limit}, limited: pods={limit}"
                        ));
                        break;
                    }
                    let template = deployment["spec"]["template"].clone();
                    self.new_pod(&namespace, name, &deployment, "ReplicaSet", &template);
                }
            } else if active.len() > replicas {
                // The ReplicaSet controller's order: lower deletion cost, unscheduled, pending,
                // not ready, then the newest go first.
                active.sort_by(|(_, a), (_, b)| {
                    let cost = |p: &Value| {
                        p["metadata"]["annotations"][POD_DELETION_COST]
                            .as_str()
                            .and_then(|c| c.parse::<i64>().ok())
                            .unwrap_or(0)
                    };
                    let scheduled =
                        |p: &Value| !p["spec"]["nodeName"].as_str().unwrap_or("").is_empty();
                    let running = |p: &Value| phase(p) == "Running";
                    cost(a)
                        .cmp(&cost(b))
                        .then(scheduled(a).cmp(&scheduled(b)))
                        .then(running(a).cmp(&running(b)))
                        .then(is_ready(a).cmp(&is_ready(b)))
                        .then(
                            b["metadata"]["uid"]
                                .as_str()
                                .cmp(&a["metadata"]["uid"].as_str()),
                        )
                });
                for (pod_key, _) in active.iter().take(active.len() - replicas) {
                    delete(&mut self.objects, &pods_rt, pod_key, "Background", None);
                }
            }
            let pods = owned_pods(&self.objects, &namespace, &uid);
            let live: Vec<&Value> = pods
                .iter()
                .map(|(_, p)| p)
                .filter(|p| is_active(p))
                .collect();
            let ready = live.iter().filter(|p| is_ready(p)).count();
            let mut status = json!({
                "observedGeneration": deployment["metadata"]["generation"].clone(),
                "replicas": live.len(),
                "updatedReplicas": live.len(),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": replicas.saturating_sub(ready),
            });
            if let Some(message) = failure {
                status["conditions"] = json!([{
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": message,
                    "lastTransitionTime": now_rfc3339(),
                    "lastUpdateTime": now_rfc3339(),
                }]);
            }
            if deployment["status"] != status {
                let mut updated = deployment;
                updated["status"] = status;
                self.objects.put(key, updated);
            }
        }
    }

    fn run_jobs(&mut self) {
        let Some(pods_rt) = resource_by_plural("pods") else {
            return;
        };
        for key in self.objects.keys("jobs") {
            let Some(job) = self.objects.get(&key).cloned() else {
                continue;
            };
            let conditions = job["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let has = |t: &str| {
                conditions
                    .iter()
                    .any(|c| c["type"] == t && c["status"] == "True")
            };
            if has("Complete") || has("Failed") || is_deleting(&job) {
                continue;
            }
            let namespace = key.1.clone();
            let uid = job["metadata"]["uid"].clone();
            let pods = owned_pods(&self.objects, &namespace, &uid);
            let active = pods.iter().filter(|(_, p)| is_active(p)).count();
            let unfinished = pods.iter().filter(|(_, p)| !is_terminal(p)).count();
            let succeeded = pods.iter().filter(|(_, p)| phase(p) == "Succeeded").count();
            let failed = pods.iter().filter(|(_, p)| phase(p) == "Failed").count();
            let backoff = job["spec"]["backoffLimit"].as_u64().unwrap_or(6) as usize;
            let parallelism = job["spec"]["parallelism"].as_u64().unwrap_or(1) as usize;
            let completions = job["spec"]["completions"].as_u64().map(|c| c as usize);
            let suspended = job["spec"]["suspend"] == json!(true);
            let mut new_conditions = conditions.clone();
            let condition = |t: &str, reason: &str, message: &str| {
                json!({
                    "type": t,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastProbeTime": now_rfc3339(),
                    "lastTransitionTime": now_rfc3339(),
                })
            };
            let mut complete = false;
            let past_deadline = past_active_deadline(&job);
            if failed > backoff || past_deadline || has("FailureTarget") {
                // The first reason found sticks, as on the Job controller.
                let (reason, message) = match conditions
                    .iter()
                    .find(|c| c["type"] == "FailureTarget" && c["status"] == "True")
                {
                    Some(c) => (
                        c["reason"].as_str().unwrap_or("").to_string(),
                        c["message"].as_str().unwrap_or("").to_string(),
                    ),
                    None if failed > backoff => (
                        "BackoffLimitExceeded".to_string(),
                        "Job has reached the specified backoff limit".to_string(),
                    ),
                    None => (
                        "DeadlineExceeded".to_string(),
                        "Job was active longer than specified deadline".to_string(),
                    ),
                };
                if !has("FailureTarget") {
                    new_conditions.push(condition("FailureTarget", &reason, &message));
                }
                for (pod_key, pod) in &pods {
                    if !is_terminal(pod) {
                        delete(&mut self.objects, &pods_rt, pod_key, "Background", None);
                    }
                }
                let still = owned_pods(&self.objects, &namespace, &uid)
                    .iter()
                    .filter(|(_, p)| !is_terminal(p))
                    .count();
                if still == 0 {
                    new_conditions.push(condition("Failed", &reason, &message));
                }
            } else {
                let done = match completions {
                    Some(c) => succeeded >= c,
                    // Work-queue Jobs are done once one pod succeeded and the rest ended.
                    None => succeeded > 0 && unfinished == 0,
                };
                if done {
                    if !has("SuccessCriteriaMet") {
                        new_conditions.push(condition(
                            "SuccessCriteriaMet",
                            "CompletionsReached",
                            "Reached expected number of succeeded pods",
                        ));
                    }
                    new_conditions.push(condition(
                        "Complete",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                    ));
                    complete = true;
                } else if !suspended {
                    let wanted = match completions {
                        Some(c) => parallelism.min(c.saturating_sub(succeeded)),
                        None if succeeded > 0 => 0,
                        None => parallelism,
                    };
                    for _ in active..wanted {
                        if self.quota_exceeded("pods", &namespace).is_some() {
                            break;
                        }
                        let name = format!("{}-{}", key.2, self.objects.random_suffix());
                        let template = job["spec"]["template"].clone();
                        self.new_pod(&namespace, name, &job, "Job", &template);
                    }
                }
            }
            let pods = owned_pods(&self.objects, &namespace, &uid);
            let mut status = job["status"].clone();
            status["active"] = json!(pods.iter().filter(|(_, p)| is_active(p)).count());
            status["ready"] = json!(
                pods.iter()
                    .filter(|(_, p)| is_active(p) && is_ready(p))
                    .count()
            );
            status["terminating"] = json!(
                pods.iter()
                    .filter(|(_, p)| !is_terminal(p) && is_deleting(p))
                    .count()
            );
            status["succeeded"] =
                json!(pods.iter().filter(|(_, p)| phase(p) == "Succeeded").count());
            status["failed"] = json!(pods.iter().filter(|(_, p)| phase(p) == "Failed").count());
            status["uncountedTerminatedPods"] = json!({});
            if status["startTime"].is_null() && !suspended {
                status["startTime"] = json!(now_rfc3339());
            }
            if complete {
                status["completionTime"] = json!(now_rfc3339());
            }
            if new_conditions != conditions {
                status["conditions"] = json!(new_conditions);
            }
            if status != job["status"] {
                let mut updated = job;
                updated["status"] = status;
                self.objects.put(key, updated);
            }
        }
    }

    /// The kubelet: bind and start every pending pod (or leave it unschedulable, or failing
    /// to pull its image, as the test asked).
    pub(crate) fn start_pending_pods(&mut self) {
        for key in self.objects.keys("pods") {
            let Some(pod) = self.objects.get(&key).cloned() else {
                continue;
            };
            if phase(&pod) != "Pending" || is_deleting(&pod) {
                continue;
            }
            let mut pod = pod;
            let now = now_rfc3339();
            if self.unschedulable {
                let condition = json!([{
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
                    "lastProbeTime": null,
                    "lastTransitionTime": now,
                }]);
                if pod["status"]["conditions"] != condition {
                    pod["status"]["conditions"] = condition;
                    self.objects.put(key, pod);
                }
                continue;
            }
            let containers = pod["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let bad_image = containers.iter().any(|c| {
                c["image"]
                    .as_str()
                    .is_some_and(|i| self.bad_images.contains(i))
            });
            pod["spec"]["nodeName"] = json!("fake-node-1");
            pod["status"]["hostIP"] = json!("10.0.0.1");
            pod["status"]["podIP"] = json!("10.1.0.1");
            pod["status"]["startTime"] = json!(now);
            let condition = |t: &str, ok: bool| json!({"type": t, "status": if ok {"True"} else {"False"}, "lastProbeTime": null, "lastTransitionTime": now});
            if bad_image {
                pod["status"]["conditions"] = json!([
                    condition("PodScheduled", true),
                    condition("Initialized", true),
                    condition("Ready", false),
                    condition("ContainersReady", false),
                ]);
                pod["status"]["containerStatuses"] = json!(containers.iter().map(|c| json!({
                    "name": c["name"],
                    "image": c["image"],
                    "imageID": "",
                    "ready": false,
                    "started": false,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image {}", c["image"])}},
                })).collect::<Vec<_>>());
            } else {
                pod["status"]["phase"] = json!("Running");
                pod["status"]["conditions"] = json!([
                    condition("PodReadyToStartContainers", true),
                    condition("Initialized", true),
                    condition("Ready", true),
                    condition("ContainersReady", true),
                    condition("PodScheduled", true),
                ]);
                pod["status"]["containerStatuses"] =
                    json!(containers.iter().map(|c| json!({
                    "name": c["name"],
                    "image": c["image"],
                    "imageID": format!("{}@sha256:0000", c["image"].as_str().unwrap_or("")),
                    "containerID": "containerd://0000",
                    "ready": true,
                    "started": true,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                })).collect::<Vec<_>>());
            }
            self.objects.put(key, pod);
        }
    }

    /// The kubelet: a pod's containers exit with `exit_code` after writing `log`.
    pub(crate) fn finish_pod(&mut self, key: &Key, exit_code: i32, log: &str) -> bool {
        let Some(mut pod) = self.objects.get(key).cloned() else {
            return false;
        };
        let now = now_rfc3339();
        let phase = if exit_code == 0 {
            "Succeeded"
        } else {
            "Failed"
        };
        let containers = pod["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if pod["spec"]["nodeName"].is_null() {
            pod["spec"]["nodeName"] = json!("fake-node-1");
        }
        pod["status"]["phase"] = json!(phase);
        let condition = |t: &str, ok: bool| json!({"type": t, "status": if ok {"True"} else {"False"}, "lastProbeTime": null, "lastTransitionTime": now});
        pod["status"]["conditions"] = json!([
            condition("PodReadyToStartContainers", false),
            condition("Initialized", true),
            condition("Ready", false),
            condition("ContainersReady", false),
            condition("PodScheduled", true),
        ]);
        pod["status"]["containerStatuses"] = json!(
            containers
                .iter()
                .map(|c| json!({
                    "name": c["name"],
                    "image": c["image"],
                    "imageID": format!("{}@sha256:0000", c["image"].as_str().unwrap_or("")),
                    "containerID": "containerd://0000",
                    "ready": false,
                    "started": false,
                    "restartCount": 0,
                    "state": {"terminated": {
                        "exitCode": exit_code,
                        "reason": if exit_code == 0 { "Completed" } else { "Error" },
                        "startedAt": pod["status"]["startTime"].clone(),
                        "finishedAt": now,
                    }},
                }))
                .collect::<Vec<_>>()
        );
        self.objects
            .logs
            .entry((key.1.clone(), key.2.clone()))
            .or_default()
            .push_str(log);
        self.objects.put(key.clone(), pod);
        true
    }

    /// The kubelet: pods being deleted stop (as after SIGTERM) and go away.
    pub(crate) fn finish_terminating_pods(&mut self) {
        for key in self.objects.keys("pods") {
            if self.objects.get(&key).is_some_and(is_deleting) {
                self.objects.remove(&key);
            }
        }
    }
}

/// Whether a pod carries all the labels of a map (used by tests reading the fake).
pub fn has_labels(pod: &Value, wanted: &[(&str, &str)]) -> bool {
    let labels = labels(pod);
    wanted
        .iter()
        .all(|(k, v)| labels.get(*k).and_then(Value::as_str) == Some(*v))
}
