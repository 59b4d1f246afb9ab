//! How one Pub/Sub message becomes one Spillway job, and how a finished job becomes an
//! outcome message. Pure functions, no IO.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;
use sha2::{Digest, Sha256};
use spillway_core::api::{NewTask, SubmitJob};
use spillway_core::model::{Job, TaskSpec};

use crate::client::{OutgoingMessage, ReceivedMessage};

/// Label holding the Pub/Sub message id of the job's message.
pub const LABEL_MESSAGE_ID: &str = "pubsub.message_id";
/// Label holding the subscription the message came from.
pub const LABEL_SUBSCRIPTION: &str = "pubsub.subscription";
/// Label keys starting with this are the bridge's own; attributes cannot take them.
pub const RESERVED_LABEL_PREFIX: &str = "pubsub.";
/// Longest label key and value the server accepts.
const MAX_LABEL_KEY: usize = 128;
const MAX_LABEL_VALUE: usize = 256;

/// How message data turns into a task payload (payloads are JSON; tasks read them from
/// `$SPILLWAY_PAYLOAD` and stdin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataFormat {
    /// The data is a JSON document and becomes the payload as is; other data is rejected.
    #[default]
    Json,
    /// The data is UTF-8 text and becomes a JSON string; other data is rejected.
    Text,
    /// Any bytes: the payload is a JSON string holding the standard base64 of the data.
    Base64,
}

impl FromStr for DataFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(DataFormat::Json),
            "text" => Ok(DataFormat::Text),
            "base64" => Ok(DataFormat::Base64),
            other => Err(format!(
                "unknown data format {other:?}: use json, text or base64"
            )),
        }
    }
}

impl fmt::Display for DataFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataFormat::Json => "json",
            DataFormat::Text => "text",
            DataFormat::Base64 => "base64",
        })
    }
}

/// What every job the bridge submits shares.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTemplate {
    /// The queue (it must exist).
    pub queue: String,
    /// How the task runs: command, image, env, timeout, resources.
    pub spec: TaskSpec,
    /// Higher runs first.
    pub priority: i32,
    /// May run on burst capacity.
    pub burstable: bool,
    /// How data becomes the payload.
    pub data_format: DataFormat,
}

/// Why a message cannot become a job; the message is rejected (see the bridge docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What was wrong, for logs and the reject topic.
    pub reason: String,
}

/// The idempotency key of a message: `pubsub:<16 hex of sha256(subscription)>:<message id>`.
/// Scoped per subscription, so two subscriptions of one topic each get their job, while a
/// redelivery on the same subscription finds the job already made.
pub fn idempotency_key(subscription: &str, message_id: &str) -> String {
    format!("pubsub:{}:{message_id}", subscription_scope(subscription))
}

/// A short stable id of a subscription path (16 hex characters of its SHA-256).
pub fn subscription_scope(subscription: &str) -> String {
    let digest = Sha256::digest(subscription.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The submit for `message`, or why it cannot be one.
pub fn submit_for(
    template: &JobTemplate,
    subscription: &str,
    message: &ReceivedMessage,
) -> Result<SubmitJob, Rejection> {
    let payload = payload_for(template.data_format, &message.data)?;
    let mut labels = attribute_labels(&message.attributes);
    labels.insert(LABEL_MESSAGE_ID.to_string(), message.message_id.clone());
    labels.insert(LABEL_SUBSCRIPTION.to_string(), subscription.to_string());
    let mut submit = SubmitJob::command(&template.queue, template.spec.command.clone());
    submit.spec = template.spec.clone();
    submit.priority = template.priority;
    submit.burstable = template.burstable;
    submit.labels = labels;
    submit.name = Some(format!("pubsub message {}", message.message_id));
    submit.tasks = Some(vec![NewTask {
        payload: Some(payload),
    }]);
    submit.idempotency_key = Some(idempotency_key(subscription, &message.message_id));
    Ok(submit)
}

/// The task payload for `data` under `format`.
pub fn payload_for(format: DataFormat, data: &[u8]) -> Result<serde_json::Value, Rejection> {
    match format {
        DataFormat::Json => serde_json::from_slice(data).map_err(|e| Rejection {
            reason: format!(
                "data is not JSON ({e}); publish JSON, or run the bridge with --data-format text or base64"
            ),
        }),
        DataFormat::Text => match std::str::from_utf8(data) {
            Ok(text) => Ok(serde_json::Value::String(text.to_string())),
            Err(e) => Err(Rejection {
                reason: format!(
                    "data is not UTF-8 text ({e}); run the bridge with --data-format base64 for binary data"
                ),
            }),
        },
        DataFormat::Base64 => Ok(serde_json::Value::String(BASE64.encode(data))),
    }
}

/// Labels from attributes: every character outside `a-z A-Z 0-9 - _ . /` becomes `_`, keys
/// are cut to 128 characters and values to 256 (control characters become spaces). Keys that
/// would take the bridge's `pubsub.` prefix get `attr.` in front; when two attributes land on
/// one key, the first in key order wins.
pub fn attribute_labels(attributes: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for (key, value) in attributes {
        let mut label_key: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if label_key.is_empty() {
            label_key = "_".to_string();
        }
        if label_key.starts_with(RESERVED_LABEL_PREFIX) {
            label_key = format!("attr.{label_key}");
        }
        label_key.truncate(MAX_LABEL_KEY);
        let label_value: String = truncate_chars(
            &value
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>(),
            MAX_LABEL_VALUE,
        );
        labels.entry(label_key).or_insert(label_value);
    }
    labels
}

/// The longest prefix of `text` that fits in `max` bytes without splitting a character.
fn truncate_chars(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The outcome message of a finished job that came from a message: JSON data with the job
/// id, state, task counts and message id; the same facts as attributes for filtering.
pub fn outcome_message(job: &Job) -> OutgoingMessage {
    let message_id = job
        .labels
        .get(LABEL_MESSAGE_ID)
        .cloned()
        .unwrap_or_default();
    let subscription = job
        .labels
        .get(LABEL_SUBSCRIPTION)
        .cloned()
        .unwrap_or_default();
    let data = json!({
        "job_id": job.id.to_string(),
        "state": job.state.as_str(),
        "message_id": message_id,
        "subscription": subscription,
        "queue": job.queue,
        "counts": job.counts,
        "finished_at": job.finished_at,
    });
    let attributes = BTreeMap::from([
        ("spillway_job_id".to_string(), job.id.to_string()),
        ("spillway_state".to_string(), job.state.as_str().to_string()),
        ("pubsub_message_id".to_string(), message_id),
    ]);
    OutgoingMessage {
        data: serde_json::to_vec(&data).unwrap_or_default(),
        attributes,
    }
}

/// The message published on the reject topic for a message that cannot become a job: its
/// data unchanged, its attributes plus the reason and the original message id.
pub fn rejection_message(message: &ReceivedMessage, reason: &str) -> OutgoingMessage {
    let mut attributes = message.attributes.clone();
    attributes.insert("spillway_reject_reason".to_string(), reason.to_string());
    attributes.insert(
        "spillway_source_message_id".to_string(),
        message.message_id.clone(),
    );
    OutgoingMessage {
        data: message.data.clone(),
        attributes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_core::names::{validate_label_key, validate_label_value};

    fn template(format: DataFormat) -> JobTemplate {
        JobTemplate {
            queue: "q".into(),
            spec: SubmitJob::command("q", vec!["cat".into()]).spec,
            priority: 5,
            burstable: true,
            data_format: format,
        }
    }

    fn message(data: &[u8], attributes: &[(&str, &str)]) -> ReceivedMessage {
        ReceivedMessage {
            ack_id: "ack".into(),
            message_id: "1234".into(),
            data: data.to_vec(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            publish_time: None,
            delivery_attempt: None,
        }
    }

    #[test]
    fn a_json_message_becomes_one_task_with_labels_and_a_scoped_key() {
        let sub = "projects/p/subscriptions/s";
        let submit = submit_for(
            &template(DataFormat::Json),
            sub,
            &message(br#"{"n":1}"#, &[("team", "ml")]),
        )
        .expect("valid");
        assert_eq!(submit.tasks.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            submit.tasks.expect("tasks")[0].payload,
            Some(json!({"n": 1}))
        );
        assert_eq!(submit.labels["team"], "ml");
        assert_eq!(submit.labels[LABEL_MESSAGE_ID], "1234");
        assert_eq!(submit.labels[LABEL_SUBSCRIPTION], sub);
        assert_eq!((submit.priority, submit.burstable), (5, true));
        let key = submit.idempotency_key.expect("key");
        assert!(
            key.starts_with("pubsub:") && key.ends_with(":1234"),
            "{key}"
        );
        assert_ne!(
            key,
            idempotency_key("projects/p/subscriptions/other", "1234")
        );
        assert_eq!(
            key,
            idempotency_key(sub, "1234"),
            "stable across redeliveries"
        );
    }

    #[test]
    fn data_formats_encode_as_documented() {
        assert!(payload_for(DataFormat::Json, b"not json").is_err());
        assert_eq!(
            payload_for(DataFormat::Text, b"hi").expect("text"),
            json!("hi")
        );
        assert!(payload_for(DataFormat::Text, &[0xff, 0xfe]).is_err());
        assert_eq!(
            payload_for(DataFormat::Base64, &[0xff, 0xfe]).expect("b64"),
            json!("//4=")
        );
    }

    #[test]
    fn attribute_keys_are_normalised_into_valid_labels() {
        let long_value = "é".repeat(200);
        let attrs: BTreeMap<String, String> = [
            ("event type", "a\nb"),
            ("pubsub.message_id", "spoof"),
            ("", "empty"),
            ("ok/key", long_value.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let labels = attribute_labels(&attrs);
        assert_eq!(labels["event_type"], "a b");
        assert_eq!(labels["attr.pubsub.message_id"], "spoof");
        assert_eq!(labels["_"], "empty");
        assert!(labels["ok/key"].len() <= 256);
        for (k, v) in &labels {
            validate_label_key(k).expect("key valid");
            validate_label_value(k, v).expect("value valid");
        }
    }

    #[test]
    fn data_formats_parse_and_print() {
        for f in [DataFormat::Json, DataFormat::Text, DataFormat::Base64] {
            assert_eq!(f.to_string().parse::<DataFormat>(), Ok(f));
        }
        assert!("yaml".parse::<DataFormat>().is_err());
    }
}
