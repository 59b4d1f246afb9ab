//! A small Pub/Sub REST (v1, JSON) client: the calls the bridge makes, plus topic and
//! subscription creation for tests and set-up scripts.
//!
//! It talks to `https://pubsub.googleapis.com/v1` with bearer tokens from the one Google token
//! source, [`spillway_gcp_auth`] (metadata server, `GOOGLE_APPLICATION_CREDENTIALS`, or
//! gcloud), or to
//! `http://$PUBSUB_EMULATOR_HOST/v1` without credentials when that variable is set, as Google's
//! own client libraries do.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spillway_core::{Error, ErrorKind, Result};
use spillway_gcp_auth::{DynTokenSource, GoogleTokens};

/// The production endpoint.
pub const PUBSUB_URL: &str = "https://pubsub.googleapis.com/v1";
/// The variable Google's clients read to reach the emulator instead (`host:port`).
pub const EMULATOR_HOST_ENV: &str = "PUBSUB_EMULATOR_HOST";
/// The OAuth scope the bridge asks tokens for.
const PUBSUB_SCOPE: &str = "https://www.googleapis.com/auth/pubsub";
/// Longest wait for one Pub/Sub call; a pull holds at most this long when nothing is there.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest part of a non-JSON error body quoted in a message.
const MAX_QUOTED_BODY: usize = 300;

/// One received message, as `subscriptions.pull` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    /// The handle to acknowledge or extend this delivery with.
    pub ack_id: String,
    /// The server-assigned id, the same on every redelivery.
    pub message_id: String,
    /// The decoded bytes of `data`.
    pub data: Vec<u8>,
    /// The attributes the publisher set.
    pub attributes: BTreeMap<String, String>,
    /// When it was published (RFC 3339), as Pub/Sub reports it.
    pub publish_time: Option<String>,
    /// How many times it was delivered, when the subscription has a dead-letter policy.
    pub delivery_attempt: Option<u32>,
}

/// A message to publish.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutgoingMessage {
    /// The bytes (sent base64-encoded).
    pub data: Vec<u8>,
    /// Attributes.
    pub attributes: BTreeMap<String, String>,
}

enum Auth {
    /// The emulator wants no credentials.
    None,
    /// Production: tokens cached and refreshed by the Google token source.
    Google(DynTokenSource),
}

/// A Pub/Sub client; cheap to clone.
#[derive(Clone)]
pub struct PubSub {
    http: reqwest::Client,
    base: String,
    auth: Arc<Auth>,
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub").field("base", &self.base).finish()
    }
}

impl PubSub {
    /// The emulator when `PUBSUB_EMULATOR_HOST` is set, else production with credentials found
    /// the way Google's clients find them.
    pub async fn from_env() -> Result<PubSub> {
        match std::env::var(EMULATOR_HOST_ENV) {
            Ok(host) if !host.trim().is_empty() => PubSub::emulator(host.trim()),
            _ => PubSub::google().await,
        }
    }

    /// The emulator at `host:port`, without credentials.
    pub fn emulator(host: &str) -> Result<PubSub> {
        Ok(PubSub {
            http: http_client()?,
            base: format!("http://{host}/v1"),
            auth: Arc::new(Auth::None),
        })
    }

    /// Production Pub/Sub with application default credentials.
    pub async fn google() -> Result<PubSub> {
        let tokens = GoogleTokens::application_default(PUBSUB_SCOPE);
        tokens.check().await.map_err(|e| {
            Error::unauthenticated(format!(
                "pubsub needs Google credentials (or set {EMULATOR_HOST_ENV} for the emulator)"
            ))
            .with_source(e)
        })?;
        Ok(PubSub {
            http: http_client()?,
            base: PUBSUB_URL.to_string(),
            auth: Arc::new(Auth::Google(Arc::new(tokens))),
        })
    }

    /// The base URL calls go to (ends in `/v1`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `subscriptions.pull`: up to `max` messages; an empty list when none arrived in time.
    pub async fn pull(&self, subscription: &str, max: u32) -> Result<Vec<ReceivedMessage>> {
        let body = json!({ "maxMessages": max });
        let answer: PullResponse = self
            .call("pull", Method::POST, subscription, ":pull", Some(body))
            .await?;
        answer
            .received_messages
            .into_iter()
            .map(ReceivedMessage::try_from)
            .collect()
    }

    /// `subscriptions.acknowledge`: these deliveries are done and must not come back.
    pub async fn acknowledge(&self, subscription: &str, ack_ids: &[String]) -> Result<()> {
        if ack_ids.is_empty() {
            return Ok(());
        }
        let body = json!({ "ackIds": ack_ids });
        let _: serde_json::Value = self
            .call(
                "acknowledge",
                Method::POST,
                subscription,
                ":acknowledge",
                Some(body),
            )
            .await?;
        Ok(())
    }

    /// `subscriptions.modifyAckDeadline`: give these deliveries `seconds` more; 0 hands them
    /// back for redelivery now (a nack).
    pub async fn modify_ack_deadline(
        &self,
        subscription: &str,
        ack_ids: &[String],
        seconds: u32,
    ) -> Result<()> {
        if ack_ids.is_empty() {
            return Ok(());
        }
        let body = json!({ "ackIds": ack_ids, "ackDeadlineSeconds": seconds });
        let _: serde_json::Value = self
            .call(
                "modifyAckDeadline",
                Method::POST,
                subscription,
                ":modifyAckDeadline",
                Some(body),
            )
            .await?;
        Ok(())
    }

    /// `topics.publish`: returns the message ids, in order.
    pub async fn publish(&self, topic: &str, messages: &[OutgoingMessage]) -> Result<Vec<String>> {
        let messages: Vec<_> = messages
            .iter()
            .map(|m| json!({ "data": BASE64.encode(&m.data), "attributes": m.attributes }))
            .collect();
        let answer: PublishResponse = self
            .call(
                "publish",
                Method::POST,
                topic,
                ":publish",
                Some(json!({ "messages": messages })),
            )
            .await?;
        Ok(answer.message_ids)
    }

    /// `topics.create` (PUT); an existing topic is fine.
    pub async fn topic_create(&self, topic: &str) -> Result<()> {
        ignore_exists(
            self.call::<serde_json::Value>(
                "topics.create",
                Method::PUT,
                topic,
                "",
                Some(json!({})),
            )
            .await,
        )
    }

    /// `subscriptions.create` (PUT) on `topic` with this ack deadline; an existing one is fine.
    pub async fn subscription_create(
        &self,
        subscription: &str,
        topic: &str,
        ack_deadline_seconds: u32,
    ) -> Result<()> {
        let body = json!({ "topic": topic, "ackDeadlineSeconds": ack_deadline_seconds });
        ignore_exists(
            self.call::<serde_json::Value>(
                "subscriptions.create",
                Method::PUT,
                subscription,
                "",
                Some(body),
            )
            .await,
        )
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        method: Method,
        resource: &str,
        verb: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T> {
        let url = format!("{}/{resource}{verb}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Auth::Google(tokens) = &*self.auth {
            let token = tokens.token().await.map_err(|e| {
                Error::unauthenticated(format!(
                    "pubsub {what} on {resource}: cannot get an access token"
                ))
                .with_source(e)
            })?;
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            Error::unavailable(format!(
                "pubsub {what} on {resource}: {method} {url} failed"
            ))
            .with_source(e)
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            Error::unavailable(format!(
                "pubsub {what} on {resource}: reading the answer broke off"
            ))
            .with_source(e)
        })?;
        if !status.is_success() {
            return Err(google_error(what, resource, status, &bytes));
        }
        // Some calls answer with an empty body; read it as `{}`.
        let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        serde_json::from_slice(bytes).map_err(|e| {
            Error::internal(format!(
                "pubsub {what} on {resource}: unexpected answer shape"
            ))
            .with_source(e)
        })
    }
}

fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| Error::internal("could not build the pubsub http client").with_source(e))
}

fn ignore_exists(result: Result<serde_json::Value>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::Conflict => Ok(()),
        Err(e) => Err(e),
    }
}

/// The error Google's answer stands for: `error.message` from the JSON error body when there is
/// one, with the call, the resource and the status.
fn google_error(what: &str, resource: &str, status: StatusCode, body: &[u8]) -> Error {
    #[derive(Deserialize)]
    struct Envelope {
        error: GoogleError,
    }
    #[derive(Deserialize)]
    struct GoogleError {
        #[serde(default)]
        message: String,
        #[serde(default)]
        status: String,
    }
    let detail = match serde_json::from_slice::<Envelope>(body) {
        Ok(env) => format!("{} {}", env.error.status, env.error.message)
            .trim()
            .to_string(),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            text.chars().take(MAX_QUOTED_BODY).collect()
        }
    };
    let hint = match status.as_u16() {
        401 | 403 => {
            ": check the credentials and that the account has roles/pubsub.subscriber on the subscription (and roles/pubsub.publisher on outcome topics)"
        }
        404 => ": check the project and name (projects/P/subscriptions/S or projects/P/topics/T)",
        _ => "",
    };
    let kind = match status.as_u16() {
        400 => ErrorKind::InvalidArgument,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        408 | 429 | 499 | 500 | 502 | 503 | 504 => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    Error::new(
        kind,
        format!(
            "pubsub {what} on {resource} answered {}: {detail}{hint}",
            status.as_u16()
        ),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullResponse {
    #[serde(default)]
    received_messages: Vec<WireReceived>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReceived {
    ack_id: String,
    message: WireMessage,
    #[serde(default)]
    delivery_attempt: Option<u32>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireMessage {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    message_id: String,
    #[serde(default)]
    publish_time: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublishResponse {
    #[serde(default)]
    message_ids: Vec<String>,
}

impl TryFrom<WireReceived> for ReceivedMessage {
    type Error = Error;

    fn try_from(w: WireReceived) -> Result<ReceivedMessage> {
        let data = match w.message.data.as_deref() {
            None | Some("") => Vec::new(),
            Some(text) => BASE64.decode(text).map_err(|e| {
                Error::internal(format!(
                    "pubsub pull: message {} has data that is not base64",
                    w.message.message_id
                ))
                .with_source(e)
            })?,
        };
        Ok(ReceivedMessage {
            ack_id: w.ack_id,
            message_id: w.message.message_id,
            data,
            attributes: w.message.attributes,
            publish_time: w.message.publish_time,
            delivery_attempt: w.delivery_attempt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_errors_keep_the_call_status_and_message() {
        let body = br#"{"error":{"code":404,"message":"Subscription does not exist (resource=s)","status":"NOT_FOUND"}}"#;
        let err = google_error(
            "pull",
            "projects/p/subscriptions/s",
            StatusCode::NOT_FOUND,
            body,
        );
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let text = err.message();
        assert!(
            text.contains("pubsub pull on projects/p/subscriptions/s answered 404"),
            "{text}"
        );
        assert!(
            text.contains("NOT_FOUND Subscription does not exist"),
            "{text}"
        );
    }

    #[test]
    fn non_json_error_bodies_are_quoted_and_overload_is_retryable() {
        let err = google_error(
            "publish",
            "projects/p/topics/t",
            StatusCode::SERVICE_UNAVAILABLE,
            b"busy",
        );
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.message().ends_with("busy"), "{}", err.message());
    }

    #[test]
    fn received_messages_decode_base64_data() {
        let wire: PullResponse = serde_json::from_value(json!({
            "receivedMessages": [{
                "ackId": "a1",
                "message": {"data": "aGVsbG8=", "messageId": "42", "attributes": {"k": "v"}}
            }]
        }))
        .expect("parse");
        let msg =
            ReceivedMessage::try_from(wire.received_messages.into_iter().next().expect("one"))
                .expect("convert");
        assert_eq!(msg.data, b"hello");
        assert_eq!(msg.message_id, "42");
        assert_eq!(msg.attributes.get("k").map(String::as_str), Some("v"));
    }
}
