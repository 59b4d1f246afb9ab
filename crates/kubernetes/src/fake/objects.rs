//! The fake's object store: typed resources kept as JSON, one cluster-wide resourceVersion,
//! a history of watch events, label and field selectors, and JSON merge patches.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

/// One kind of object the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version inside the group.
    pub version: &'static str,
    /// Plural name in paths.
    pub plural: &'static str,
    /// Kind in bodies.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

impl ResourceType {
    /// `apiVersion` of its objects: `v1`, `apps/v1`, `batch/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Every resource the fake serves: what the provider and the job executor use.
pub const RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
    },
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "deployments",
        kind: "Deployment",
        namespaced: true,
    },
    ResourceType {
        group: "batch",
        version: "v1",
        plural: "jobs",
        kind: "Job",
        namespaced: true,
    },
];

/// Find a resource type by group, version and plural.
pub fn resource(group: &str, version: &str, plural: &str) -> Option<ResourceType> {
    RESOURCES
        .iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Find a resource type by its plural alone (plurals are unique among [`RESOURCES`]).
pub fn resource_by_plural(plural: &str) -> Option<ResourceType> {
    RESOURCES.iter().copied().find(|r| r.plural == plural)
}

/// Where an object lives: plural, namespace ("" when cluster-scoped), name.
pub type Key = (&'static str, String, String);

/// What happened to an object, as a watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The word watch streams use.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, kept for watches that resume from a resourceVersion.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resourceVersion the change made.
    pub rv: u64,
    /// What happened.
    pub event: EventType,
    /// Resource plural.
    pub plural: &'static str,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// The object after the change (before it, for a deletion, with the new resourceVersion).
    pub object: Value,
    /// The object before the change, to tell watchers with selectors it left their view.
    pub old: Option<Value>,
}

/// The objects and the history, behind the server's lock.
pub struct Objects {
    rv: u64,
    uid: u64,
    name_seed: u64,
    items: BTreeMap<Key, Value>,
    history: Vec<Change>,
    /// Changes at or below this version are forgotten (etcd compaction).
    compacted: u64,
    events: broadcast::Sender<Change>,
    /// Logs of pods by (namespace, name).
    pub logs: HashMap<(String, String), String>,
}

impl Objects {
    /// An empty store publishing changes on `events`.
    pub fn new(events: broadcast::Sender<Change>) -> Self {
        Self {
            rv: 1000,
            uid: 0,
            name_seed: 0x9e37_79b9_7f4a_7c15,
            items: BTreeMap::new(),
            history: Vec::new(),
            compacted: 0,
            events,
            logs: HashMap::new(),
        }
    }

    /// The current cluster-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// A new uid.
    pub fn next_uid(&mut self) -> String {
        self.uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uid)
    }

    /// Five characters from the alphabet Kubernetes uses for generated names (deterministic,
    /// so test runs repeat).
    pub fn random_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        // xorshift64: deterministic names that still look like Kubernetes ones.
        let mut x = self.name_seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.name_seed = x;
        (0..5)
            .map(|i| ALPHABET[((x >> (i * 8)) % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }

    /// One object.
    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.items.get(key)
    }

    /// All objects of one plural (in one namespace, or all with `None`), in key order.
    pub fn list(&self, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        self.items
            .iter()
            .filter(|((p, ns, _), _)| *p == plural && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Keys of all objects of one plural.
    pub fn keys(&self, plural: &str) -> Vec<Key> {
        self.items
            .keys()
            .filter(|(p, _, _)| *p == plural)
            .cloned()
            .collect()
    }

    /// Store an object (new or changed), stamping a new resourceVersion; returns it as stored.
    pub fn put(&mut self, key: Key, mut object: Value) -> Value {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let old = self.items.insert(key.clone(), object.clone());
        let event = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(event, key, object.clone(), old);
        object
    }

    /// Remove an object; returns its last state with the resourceVersion of the deletion.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.items.remove(key)?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(EventType::Deleted, key.clone(), object.clone(), None);
        if key.0 == "pods" {
            self.logs.remove(&(key.1.clone(), key.2.clone()));
        }
        Some(object)
    }

    fn record(&mut self, event: EventType, key: Key, object: Value, old: Option<Value>) {
        let change = Change {
            rv: self.rv,
            event,
            plural: key.0,
            namespace: key.1,
            object,
            old,
        };
        self.history.push(change.clone());
        // Nobody watching is fine.
        let _ = self.events.send(change);
    }

    /// Changes after `rv`, oldest first; `None` when `rv` is older than the kept history.
    pub fn changes_since(&self, rv: u64) -> Option<Vec<Change>> {
        if rv < self.compacted {
            return None;
        }
        Some(self.history.iter().filter(|c| c.rv > rv).cloned().collect())
    }

    /// Forget the history up to now, as etcd compaction does: watches from an older
    /// resourceVersion get `410 Expired`.
    pub fn compact(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
    }

    /// Subscribe to changes from now on (call while holding the lock so nothing is missed).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.events.subscribe()
    }
}

/// A parsed label selector: equality, inequality, set and existence requirements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl LabelSelector {
    /// Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h` the way the API server reads it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let requirement = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(check_key(key.trim())?)
            } else if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(check_key(key.trim())?, value.trim().to_string())
            } else if let Some((key, value)) = part.split_once("==") {
                Requirement::Equals(check_key(key.trim())?, value.trim().to_string())
            } else if let Some((key, value)) = part.split_once('=') {
                Requirement::Equals(check_key(key.trim())?, value.trim().to_string())
            } else if let Some((key, values)) = part.split_once(" notin ") {
                Requirement::NotIn(check_key(key.trim())?, parse_set(values)?)
            } else if let Some((key, values)) = part.split_once(" in ") {
                Requirement::In(check_key(key.trim())?, parse_set(values)?)
            } else {
                Requirement::Exists(check_key(part)?)
            };
            out.push(requirement);
        }
        Ok(Self(out))
    }

    /// Whether an object's labels match.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let label = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
        })
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn check_key(key: &str) -> Result<String, String> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(key.to_string())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn parse_set(values: &str) -> Result<Vec<String>, String> {
    let inner = values
        .trim()
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| format!("invalid value set {values:?}: write (a,b)"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

/// A parsed field selector: `metadata.name`, `metadata.namespace`, `status.phase`,
/// `spec.nodeName` with `=`, `==` or `!=`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parse; unknown fields are refused as the API server does.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid field selector {part:?}"));
            };
            if !matches!(
                field,
                "metadata.name" | "metadata.namespace" | "status.phase" | "spec.nodeName"
            ) {
                return Err(format!("field label not supported: {field}"));
            }
            out.push((field.to_string(), equal, value.to_string()));
        }
        Ok(Self(out))
    }

    /// Whether an object matches.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = object
                .pointer(&pointer)
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == value) == *equal
        })
    }
}

/// Apply a JSON merge patch (RFC 7386): objects merge, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(map) = target {
                for (key, value) in fields {
                    if value.is_null() {
                        map.remove(key);
                    } else {
                        merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The labels of an object (empty when it has none).
pub fn labels(object: &Value) -> Map<String, Value> {
    object["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// Now, formatted as the API server writes times.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_match_like_the_api_server() {
        let labels = json!({"app": "w", "tier": "a", "x": "1"});
        let labels = labels.as_object().cloned().unwrap_or_default();
        let yes = [
            "app=w",
            "app==w,tier=a",
            "tier in (a,b)",
            "zone notin (z)",
            "x",
            "!missing",
            "app!=v",
        ];
        for s in yes {
            assert!(
                LabelSelector::parse(s).expect("selector").matches(&labels),
                "{s}"
            );
        }
        let no = ["app=v", "tier in (b,c)", "x notin (1)", "missing", "!x"];
        for s in no {
            assert!(
                !LabelSelector::parse(s).expect("selector").matches(&labels),
                "{s}"
            );
        }
        assert!(LabelSelector::parse("a b = c").is_err());
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "d": [1, 2]});
        merge_patch(&mut doc, &json!({"a": {"b": null, "e": 3}, "d": [3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "e": 3}, "d": [3]}));
    }

    #[test]
    fn field_selectors_refuse_unknown_fields() {
        let pod = json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}});
        assert!(
            FieldSelector::parse("metadata.name=p,status.phase!=Failed")
                .expect("selector")
                .matches(&pod)
        );
        assert!(FieldSelector::parse("spec.foo=1").is_err());
    }
}
