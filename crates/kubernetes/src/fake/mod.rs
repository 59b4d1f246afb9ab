//! A fake Kubernetes API server for tests: real HTTP on 127.0.0.1, reached through a
//! kubeconfig like a real cluster, serving the endpoints Spillway uses the way the Kubernetes
//! API reference documents them.
//!
//! Served resources: `apps/v1` deployments (with the `scale` subresource, `autoscaling/v1`
//! Scale), `batch/v1` jobs, `v1` pods (with `log`), secrets, configmaps and namespaces.
//! Verbs: list (labelSelector, fieldSelector), watch (`watch=true`, newline-delimited
//! WatchEvents, resume from a resourceVersion, `410 Expired` after [`FakeApiServer::compact`]), get, create (409 AlreadyExists), replace
//! (409 Conflict on a stale resourceVersion), merge and strategic-merge patch, delete
//! (propagationPolicy, 404 NotFound), and the `status` subresource. Every failure is a
//! `Status` object. Every request is recorded for tests to check.
//!
//! Controllers run only when a test calls them, so that tests are deterministic:
//! [`FakeApiServer::step`] runs the Deployment, Job (including `activeDeadlineSeconds`) and
//! garbage-collector controllers once; [`FakeApiServer::start_pending_pods`],
//! [`FakeApiServer::write_log`], [`FakeApiServer::finish_pod`] and
//! [`FakeApiServer::finish_terminating_pods`] play the kubelet.

mod controllers;
mod http;
pub mod objects;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

pub use controllers::{POD_DELETION_COST, has_labels, selector_of};
use objects::{Key, Objects, resource_by_plural};

/// The namespace of the fake's kubeconfig context.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// HTTP method: `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub method: String,
    /// The path, without query.
    pub path: String,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// The Content-Type header, if any.
    pub content_type: Option<String>,
    /// The body, when it was JSON.
    pub body: Option<Value>,
}

/// A failure to answer instead of the real one, for a number of matching requests.
#[derive(Debug, Clone)]
pub struct Fault {
    /// HTTP method to match.
    pub method: String,
    /// Exact path to match.
    pub path: String,
    /// HTTP status of the answer.
    pub code: u16,
    /// `Status.reason`: `Forbidden`, `Conflict`, `InternalError`, …
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// How many matching requests fail.
    pub times: u32,
}

impl Fault {
    /// Fail the next matching request once.
    pub fn new(
        method: &str,
        path: impl Into<String>,
        code: u16,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            method: method.to_string(),
            path: path.into(),
            code,
            reason,
            message: message.into(),
            times: 1,
        }
    }

    /// Fail the next `times` matching requests.
    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }
}

/// Everything behind the server's lock.
pub(crate) struct State {
    pub(crate) objects: Objects,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) faults: Vec<Fault>,
    /// (namespace, plural) → most objects allowed, like a ResourceQuota's `count/…`.
    pub(crate) quotas: HashMap<(String, String), usize>,
    /// Pending pods stay unschedulable.
    pub(crate) unschedulable: bool,
    /// Images whose pull fails with ImagePullBackOff.
    pub(crate) bad_images: HashSet<String>,
}

impl State {
    pub(crate) fn take_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        let i = self
            .faults
            .iter()
            .position(|f| f.method == method && f.path == path && f.times > 0)?;
        let fault = self.faults[i].clone();
        self.faults[i].times -= 1;
        if self.faults[i].times == 0 {
            self.faults.remove(i);
        }
        Some(fault)
    }
}

pub(crate) struct Inner {
    state: Mutex<State>,
    token: String,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in a test thread must not hide every later answer.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake API server; it stops when dropped.
pub struct FakeApiServer {
    inner: Arc<Inner>,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl FakeApiServer {
    /// Start on 127.0.0.1 with a free port and write its kubeconfig. Call inside a Tokio
    /// runtime.
    pub async fn start() -> std::io::Result<Self> {
        let (events, _) = broadcast::channel(4096);
        let token = format!("fake-token-{}", std::process::id());
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                objects: Objects::new(events),
                requests: Vec::new(),
                faults: Vec::new(),
                quotas: HashMap::new(),
                unschedulable: false,
                bad_images: HashSet::new(),
            }),
            token,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "fake kubernetes api server stopped");
            }
        });
        let kubeconfig = std::env::temp_dir().join(format!(
            "spillway-fake-kubeconfig-{}-{}.yaml",
            std::process::id(),
            addr.port()
        ));
        let server = Self {
            inner,
            addr,
            kubeconfig,
            task,
        };
        std::fs::write(&server.kubeconfig, server.kubeconfig_yaml())?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bearer token clients must send.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// A kubeconfig file with one context `fake` (cluster at [`Self::url`], a token user,
    /// namespace `default`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The kubeconfig's text.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {DEFAULT_NAMESPACE}\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: {token}\n",
            url = self.url(),
            token = self.inner.token,
        )
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.lock().requests.clone()
    }

    /// Forget the requests recorded so far.
    pub fn clear_requests(&self) {
        self.inner.lock().requests.clear();
    }

    /// Answer the next matching request(s) with a failure instead.
    pub fn inject(&self, fault: Fault) {
        self.inner.lock().faults.push(fault);
    }

    /// All objects of a plural (`pods`, `deployments`, `jobs`, …), in every namespace, in
    /// name order.
    pub fn objects(&self, plural: &str) -> Vec<Value> {
        self.inner.lock().objects.list(plural, None)
    }

    /// One object, if it exists.
    pub fn object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let rt = resource_by_plural(plural)?;
        let key: Key = (rt.plural, namespace.to_string(), name.to_string());
        self.inner.lock().objects.get(&key).cloned()
    }

    /// Store an object as a client's create would (defaults and validation included);
    /// `object` carries its kind, apiVersion and metadata.name. For setting up tests.
    pub fn create(&self, namespace: &str, object: Value) -> Result<Value, String> {
        let kind = object["kind"].as_str().unwrap_or("");
        let rt = objects::RESOURCES
            .iter()
            .copied()
            .find(|r| r.kind == kind)
            .ok_or_else(|| format!("the fake does not serve kind {kind:?}"))?;
        let name = object["metadata"]["name"]
            .as_str()
            .ok_or("metadata.name is required")?
            .to_string();
        let namespace = if rt.namespaced { namespace } else { "" };
        let mut state = self.inner.lock();
        let key: Key = (rt.plural, namespace.to_string(), name.clone());
        if state.objects.get(&key).is_some() {
            return Err(format!("{} {name:?} already exists", rt.plural));
        }
        let uid = state.objects.next_uid();
        let mut object = object;
        object["metadata"]["uid"] = Value::String(uid.clone());
        object["metadata"]["creationTimestamp"] = Value::String(objects::now_rfc3339());
        if rt.namespaced {
            object["metadata"]["namespace"] = Value::String(namespace.to_string());
        }
        controllers::default_and_validate(&rt, &name, &uid, &mut object)?;
        Ok(state.objects.put(key, object))
    }

    /// Change an object in place (for tests that set a status the fake does not simulate).
    pub fn modify(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> bool {
        let Some(rt) = resource_by_plural(plural) else {
            return false;
        };
        let key: Key = (rt.plural, namespace.to_string(), name.to_string());
        let mut state = self.inner.lock();
        let Some(mut object) = state.objects.get(&key).cloned() else {
            return false;
        };
        change(&mut object);
        state.objects.put(key, object);
        true
    }

    /// Run the Deployment, Job and garbage-collector controllers once.
    pub fn step(&self) {
        self.inner.lock().step();
    }

    /// The kubelet starts every pending pod (unless made unschedulable or its image fails).
    pub fn start_pending_pods(&self) {
        self.inner.lock().start_pending_pods();
    }

    /// The kubelet ends the pod named `name` (any namespace): its containers exit with
    /// `exit_code` (phase Succeeded for 0, else Failed) after writing `log`. False when no
    /// such pod exists.
    pub fn finish_pod(&self, name: &str, exit_code: i32, log: &str) -> bool {
        let mut state = self.inner.lock();
        let Some(key) = state.objects.keys("pods").into_iter().find(|k| k.2 == name) else {
            return false;
        };
        state.finish_pod(&key, exit_code, log)
    }

    /// The container of the pod named `name` (any namespace) writes `log` while it runs, as a
    /// command prints before it ends. False when no such pod exists.
    pub fn write_log(&self, name: &str, log: &str) -> bool {
        let mut state = self.inner.lock();
        let Some(key) = state.objects.keys("pods").into_iter().find(|k| k.2 == name) else {
            return false;
        };
        state
            .objects
            .logs
            .entry((key.1, key.2))
            .or_default()
            .push_str(log);
        true
    }

    /// The kubelet finishes pods being deleted: they stop (as after SIGTERM) and go away.
    pub fn finish_terminating_pods(&self) {
        self.inner.lock().finish_terminating_pods();
    }

    /// Controllers, then kubelet, then controllers: deleted pods go, new pods are created
    /// and started.
    pub fn settle(&self) {
        let mut state = self.inner.lock();
        state.step();
        state.finish_terminating_pods();
        state.step();
        state.start_pending_pods();
        state.step();
    }

    /// While set, pending pods are not scheduled (PodScheduled=False, Unschedulable).
    pub fn set_unschedulable(&self, unschedulable: bool) {
        self.inner.lock().unschedulable = unschedulable;
    }

    /// Pods of this image fail to pull it (waiting, ImagePullBackOff).
    pub fn fail_image_pull(&self, image: &str) {
        self.inner.lock().bad_images.insert(image.to_string());
    }

    /// A quota: at most `limit` objects of `plural` in `namespace` (pods count while not
    /// ended). Creates beyond it get 403 "exceeded quota"; controllers stop creating pods.
    pub fn set_quota(&self, namespace: &str, plural: &str, limit: usize) {
        self.inner
            .lock()
            .quotas
            .insert((namespace.to_string(), plural.to_string()), limit);
    }

    /// Forget the change history (etcd compaction): watches that resume from an older
    /// resourceVersion get an ERROR event with a `410 Expired` Status.
    pub fn compact(&self) {
        self.inner.lock().objects.compact();
    }

    /// The current cluster-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.lock().objects.resource_version()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
        // Best effort: a leftover file in the temp dir harms nobody.
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}
