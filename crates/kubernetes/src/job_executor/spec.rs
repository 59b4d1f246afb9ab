//! The `batch/v1` Job that runs one task attempt, built from the request alone (no IO).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use serde_json::json;
use spillway_core::{Error, Result, TaskId};
use spillway_executor::ExecRequest;

/// Label naming the Spillway task a Job (and its pod) runs.
pub const LABEL_TASK: &str = "spillway.dev/task";
/// Label naming the Spillway job the task belongs to.
pub const LABEL_JOB: &str = "spillway.dev/job";
/// Label naming the attempt of the task.
pub const LABEL_ATTEMPT: &str = "spillway.dev/attempt";
/// Pod annotation holding the payload; the downward API projects it into [`PAYLOAD_PATH`].
pub const PAYLOAD_ANNOTATION: &str = "spillway.dev/payload";
/// Where the payload file appears inside the task's container; `SPILLWAY_PAYLOAD` names it, as
/// it names the payload file of a local worker.
pub const PAYLOAD_PATH: &str = "/var/run/spillway/payload.json";
/// The folder [`PAYLOAD_PATH`] is mounted in.
const PAYLOAD_DIR: &str = "/var/run/spillway";
/// Largest payload carried in the pod annotation: Kubernetes allows 256 KiB of annotations
/// in all, and a little is kept for the key and for annotations added by admission webhooks.
pub const MAX_PAYLOAD_BYTES: usize = 250 * 1024;
/// The name of the task's container in the pod.
pub const CONTAINER_NAME: &str = "task";
/// Variables naming folders on the worker's own disk: they mean nothing inside the pod, so
/// they are left out (staged inputs and result files do not travel to the pod; the
/// container reads and writes object storage itself).
pub const WORKER_LOCAL_ENV: [&str; 2] = ["SPILLWAY_INPUT_DIR", "SPILLWAY_OUTPUT_DIR"];
/// Longest Job name prefix, so that `<prefix>-<task>-<attempt>` stays within the 63
/// characters a Job name may have (its pods carry it in a label).
pub const MAX_NAME_PREFIX_LEN: usize = 30;

/// Which task attempt a request belongs to, read from the variables the worker sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIdentity {
    /// `SPILLWAY_TASK_ID`.
    pub task_id: TaskId,
    /// `SPILLWAY_JOB_ID`.
    pub job_id: String,
    /// `SPILLWAY_ATTEMPT`.
    pub attempt: u32,
}

impl TaskIdentity {
    /// Read the task id, job id and attempt from a request's environment.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Self> {
        let get = |key: &str| {
            env.get(key).ok_or_else(|| {
                Error::invalid(format!(
                    "the request has no {key}: the Kubernetes executor runs tasks leased by a \
                     Spillway worker, which sets it"
                ))
            })
        };
        let number = |key: &str| -> Result<u64> {
            let value = get(key)?;
            value
                .parse()
                .map_err(|_| Error::invalid(format!("{key} {value:?} is not a number")))
        };
        let job_id = get("SPILLWAY_JOB_ID")?.clone();
        if !is_label_value(&job_id) {
            return Err(Error::invalid(format!(
                "SPILLWAY_JOB_ID {job_id:?} cannot be a Kubernetes label value"
            )));
        }
        Ok(Self {
            task_id: TaskId::try_from(number("SPILLWAY_TASK_ID")?)
                .map_err(|_| Error::invalid("SPILLWAY_TASK_ID is out of range"))?,
            job_id,
            attempt: u32::try_from(number("SPILLWAY_ATTEMPT")?)
                .map_err(|_| Error::invalid("SPILLWAY_ATTEMPT is out of range"))?,
        })
    }

    /// The Kubernetes Job name of this attempt: the same on every try, so a worker that
    /// retries a create finds the Job it made before instead of making a second.
    pub fn job_name(&self, prefix: &str) -> String {
        format!("{prefix}-{}-{}", self.task_id, self.attempt)
    }

    /// Label selector matching the pods (and Jobs) of this attempt.
    pub fn attempt_selector(&self) -> String {
        format!("{},{LABEL_ATTEMPT}={}", self.task_selector(), self.attempt)
    }

    /// Label selector matching the Jobs of every attempt of this task.
    pub fn task_selector(&self) -> String {
        format!("{LABEL_TASK}={},{LABEL_JOB}={}", self.task_id, self.job_id)
    }

    /// The labels put on the Job and its pod.
    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_TASK.to_string(), self.task_id.to_string()),
            (LABEL_JOB.to_string(), self.job_id.clone()),
            (LABEL_ATTEMPT.to_string(), self.attempt.to_string()),
        ])
    }

    /// Whether `job` carries this attempt's labels, i.e. is the Job this attempt created.
    pub fn owns(&self, job: &Job) -> bool {
        job.metadata
            .labels
            .as_ref()
            .is_some_and(|labels| self.labels().iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

/// The settings of a Job that do not come from the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTemplate<'a> {
    /// Job names start with this.
    pub name_prefix: &'a str,
    /// The image of tasks that name none.
    pub default_image: Option<&'a str>,
    /// The pod's service account; without one no API token is mounted in the pod.
    pub service_account: Option<&'a str>,
    /// How long Kubernetes keeps a finished Job before deleting it itself.
    pub ttl_after_finished: Duration,
}

/// Check a Job name prefix: a lowercase DNS label of at most [`MAX_NAME_PREFIX_LEN`]
/// characters.
pub fn validate_name_prefix(prefix: &str) -> Result<()> {
    let valid = !prefix.is_empty()
        && prefix.len() <= MAX_NAME_PREFIX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && !prefix.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Job name prefix {prefix:?} is not valid: use up to {MAX_NAME_PREFIX_LEN} lowercase \
             letters, digits and '-', starting with a letter, e.g. \"spillway\""
        )))
    }
}

/// Whether `value` may be a label value (63 characters of alphanumerics, `-`, `_`, `.`,
/// starting and ending with an alphanumeric).
fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Build the Job that runs `request` as attempt `identity`.
pub fn build_job(
    request: &ExecRequest,
    identity: &TaskIdentity,
    template: &JobTemplate<'_>,
) -> Result<Job> {
    let image = request
        .image
        .as_deref()
        .or(template.default_image)
        .ok_or_else(|| {
            Error::invalid(
                "the task names no container image and the worker has no default: submit with \
                 --image IMAGE, or start the worker with --kubernetes-image IMAGE",
            )
        })?;
    let payload = String::from_utf8(request.stdin.clone())
        .map_err(|_| Error::invalid("the task's payload is not UTF-8 text"))?;
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Error::invalid(format!(
            "the task's payload is {} bytes, more than the {MAX_PAYLOAD_BYTES} a Kubernetes pod \
             can carry: stage large data as input files (--input) or in object storage and pass \
             its location in the payload",
            payload.len()
        )));
    }
    let command: Vec<String> = if request.shell {
        vec!["sh".into(), "-c".into(), request.argv.join(" ")]
    } else {
        request.argv.clone()
    };
    let env: Vec<serde_json::Value> = pod_env(&request.env)
        .into_iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    let labels = identity.labels();

    let mut container = json!({
        "name": CONTAINER_NAME,
        "image": image,
        "env": env,
        "volumeMounts": [{ "name": "spillway-payload", "mountPath": PAYLOAD_DIR, "readOnly": true }],
        "resources": container_resources(&request.resources),
    });
    // An empty command keeps the image's own entrypoint.
    if !command.is_empty() {
        container["command"] = json!(command);
    }
    let mut pod_spec = json!({
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{
            "name": "spillway-payload",
            "downwardAPI": { "items": [{
                "path": "payload.json",
                "fieldRef": { "fieldPath": format!("metadata.annotations['{PAYLOAD_ANNOTATION}']") },
            }]},
        }],
    });
    match template.service_account {
        Some(account) => pod_spec["serviceAccountName"] = json!(account),
        // A task has no business with the Kubernetes API unless it is given an account.
        None => pod_spec["automountServiceAccountToken"] = json!(false),
    }
    let mut job_spec = json!({
        // Spillway owns retries: a failed pod fails the attempt, and the queue's policy decides.
        "backoffLimit": 0,
        // A safety net: Kubernetes removes the Job even if no worker is left to delete it.
        "ttlSecondsAfterFinished": template.ttl_after_finished.as_secs(),
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": { PAYLOAD_ANNOTATION: payload },
            },
            "spec": pod_spec,
        },
    });
    if let Some(timeout) = request.timeout {
        job_spec["activeDeadlineSeconds"] = json!(deadline_seconds(timeout));
    }
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": identity.job_name(template.name_prefix), "labels": labels },
        "spec": job_spec,
    });
    serde_json::from_value(job)
        .map_err(|e| Error::internal("could not build the Job object").with_source(e))
}

/// The container's `resources` for what the task asked for: CPU and memory requested (so the
/// scheduler places the pod where they are free), memory also as the limit (a task over it is
/// OOMKilled rather than starving its node), GPUs as `nvidia.com/gpu` limits, the only place
/// Kubernetes accepts extended resources.
pub fn container_resources(resources: &spillway_core::model::Resources) -> serde_json::Value {
    let millicores = (resources.cpu * 1000.0).ceil().max(1.0) as u64;
    let memory = format!("{}Mi", resources.memory_mb.max(1));
    let mut value = json!({
        "requests": { "cpu": format!("{millicores}m"), "memory": memory },
        "limits": { "memory": memory },
    });
    if resources.gpu > 0 {
        value["limits"]["nvidia.com/gpu"] = json!(resources.gpu.to_string());
    }
    value
}

/// `activeDeadlineSeconds` for a timeout: whole seconds, rounded up, at least one.
pub fn deadline_seconds(timeout: Duration) -> u64 {
    let whole = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    whole.max(1)
}

/// The container's environment: the request's, without the worker's own folders, with
/// `SPILLWAY_PAYLOAD` pointing at the payload file inside the pod.
pub fn pod_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = env
        .iter()
        .filter(|(key, _)| !WORKER_LOCAL_ENV.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.insert("SPILLWAY_PAYLOAD".into(), PAYLOAD_PATH.into());
    env
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use super::*;

    fn request() -> ExecRequest {
        ExecRequest {
            resources: spillway_core::model::Resources {
                cpu: 1.5,
                memory_mb: 2048,
                gpu: 1,
            },
            argv: vec!["python".into(), "run.py".into(), "3".into()],
            shell: false,
            env: BTreeMap::from([
                ("SPILLWAY_TASK_ID".into(), "42".into()),
                (
                    "SPILLWAY_JOB_ID".into(),
                    "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
                ),
                ("SPILLWAY_ATTEMPT".into(), "2".into()),
                ("SPILLWAY_INPUT_DIR".into(), "/tmp/w/42-2/input".into()),
                ("SPILLWAY_OUTPUT_DIR".into(), "/tmp/w/42-2/output".into()),
                ("SPILLWAY_PAYLOAD".into(), "/tmp/w/42-2/payload.json".into()),
                ("MODE".into(), "fast".into()),
            ]),
            cwd: "/tmp/w/42-2".into(),
            stdin: br#"{"n":7}"#.to_vec(),
            timeout: Some(Duration::from_millis(90_500)),
            image: Some("python:3.12-slim".into()),
        }
    }

    fn template() -> JobTemplate<'static> {
        JobTemplate {
            name_prefix: "spillway",
            default_image: Some("busybox:1.36"),
            service_account: None,
            ttl_after_finished: Duration::from_secs(3600),
        }
    }

    #[test]
    fn identity_comes_from_the_worker_variables() {
        let identity = TaskIdentity::from_env(&request().env).unwrap();
        assert_eq!(identity.task_id, 42);
        assert_eq!(identity.attempt, 2);
        assert_eq!(identity.job_name("spillway"), "spillway-42-2");
        assert_eq!(
            identity.attempt_selector(),
            "spillway.dev/task=42,spillway.dev/job=0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b,spillway.dev/attempt=2"
        );
        let mut env = request().env;
        env.remove("SPILLWAY_ATTEMPT");
        let err = TaskIdentity::from_env(&env).unwrap_err();
        assert!(err.message().contains("SPILLWAY_ATTEMPT"), "{err}");
    }

    #[test]
    fn the_job_runs_the_command_in_the_image_once_with_the_deadline() {
        let identity = TaskIdentity::from_env(&request().env).unwrap();
        let job =
            serde_json::to_value(build_job(&request(), &identity, &template()).unwrap()).unwrap();
        assert_eq!(job["metadata"]["name"], "spillway-42-2");
        assert_eq!(job["metadata"]["labels"]["spillway.dev/attempt"], "2");
        assert_eq!(job["spec"]["backoffLimit"], 0);
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 91);
        assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 3600);
        let pod = &job["spec"]["template"];
        assert_eq!(pod["metadata"]["labels"], job["metadata"]["labels"]);
        assert_eq!(
            pod["metadata"]["annotations"][PAYLOAD_ANNOTATION],
            r#"{"n":7}"#
        );
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
        let container = &pod["spec"]["containers"][0];
        assert_eq!(container["image"], "python:3.12-slim");
        assert_eq!(
            container["resources"],
            json!({
                "requests": {"cpu": "1500m", "memory": "2048Mi"},
                "limits": {"memory": "2048Mi", "nvidia.com/gpu": "1"},
            }),
            "the task's resources are requested"
        );
        assert_eq!(container["command"], json!(["python", "run.py", "3"]));
        let env: BTreeMap<String, String> = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_string(),
                    v["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(env["SPILLWAY_PAYLOAD"], PAYLOAD_PATH);
        assert_eq!(env["MODE"], "fast");
        assert!(!env.contains_key("SPILLWAY_INPUT_DIR"));
        assert!(!env.contains_key("SPILLWAY_OUTPUT_DIR"));
    }

    #[test]
    fn a_shell_line_runs_through_sh_and_the_default_image_fills_in() {
        let mut request = request();
        request.shell = true;
        request.argv = vec!["echo".into(), "$MODE".into()];
        request.image = None;
        request.timeout = None;
        let identity = TaskIdentity::from_env(&request.env).unwrap();
        let mut template = template();
        template.service_account = Some("runner");
        let job = serde_json::to_value(build_job(&request, &identity, &template).unwrap()).unwrap();
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(
            pod["containers"][0]["command"],
            json!(["sh", "-c", "echo $MODE"])
        );
        assert_eq!(pod["containers"][0]["image"], "busybox:1.36");
        assert_eq!(pod["serviceAccountName"], "runner");
        assert!(pod.get("automountServiceAccountToken").is_none());
        assert!(job["spec"].get("activeDeadlineSeconds").is_none());
    }

    #[test]
    fn no_image_and_big_payloads_are_refused_with_the_fix() {
        let mut request = request();
        request.image = None;
        let identity = TaskIdentity::from_env(&request.env).unwrap();
        let mut template = template();
        template.default_image = None;
        let err = build_job(&request, &identity, &template).unwrap_err();
        assert!(err.message().contains("--image"), "{err}");
        assert!(err.message().contains("--kubernetes-image"), "{err}");

        let mut request = self::request();
        request.stdin = vec![b'x'; MAX_PAYLOAD_BYTES + 1];
        let err = build_job(&request, &identity, &self::template()).unwrap_err();
        assert!(err.message().contains("stage large data"), "{err}");
    }

    #[test]
    fn deadlines_round_up_to_whole_seconds() {
        assert_eq!(deadline_seconds(Duration::from_secs(10)), 10);
        assert_eq!(deadline_seconds(Duration::from_millis(10_001)), 11);
        assert_eq!(deadline_seconds(Duration::from_millis(1)), 1);
    }

    #[test]
    fn name_prefixes_are_checked() {
        validate_name_prefix("spillway").unwrap();
        validate_name_prefix("team-a").unwrap();
        for bad in ["", "Spillway", "-a", "a-", "a_b", &"a".repeat(31)] {
            assert!(validate_name_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
