//! Request extractors whose rejections are problem+json with a detail that says what was wrong.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use spillway_core::Error;

use crate::problem::ApiError;

/// A request body held as bytes and parsed as JSON only when the handler asks, so the role
/// check runs before the body is looked at. Its size is capped by the router's body limit.
/// The Content-Type is not checked: a body that parses as the expected JSON is accepted, so
/// `curl -d` works without extra headers.
#[derive(Debug)]
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(JsonBody)
            .map_err(|rejection| ApiError(body_error(&rejection)))
    }
}

fn body_error(rejection: &BytesRejection) -> Error {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::too_large(
            "request body is over the server's limit (max_body_bytes): send less per request or stage large data as uploads",
        )
    } else {
        Error::invalid(format!(
            "could not read the request body: {}",
            rejection.body_text().to_lowercase()
        ))
    }
}

impl JsonBody {
    /// Parse the body as `T`; the error names the field that did not fit.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Error> {
        parse_json(&self.0)
    }
}

/// Parse JSON bytes as `T`, with an error that names the path of the offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid(
            "request body is empty: send a JSON object (Content-Type: application/json)",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let what = if inner.is_syntax() || inner.is_eof() {
            "malformed JSON in request body"
        } else {
            "request body does not match the expected shape"
        };
        let at = if path == "." {
            String::new()
        } else {
            format!(" at {path}")
        };
        Error::invalid(format!("{what}{at}: {inner}"))
    })
}

/// Query parameters, rejected as problem+json naming the bad parameter.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|rejection: QueryRejection| {
                ApiError(Error::invalid(format!(
                    "invalid query string: {}",
                    rejection.body_text().to_lowercase()
                )))
            })
    }
}

/// Path parameters, rejected as problem+json naming the bad segment.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|rejection: PathRejection| {
                ApiError(Error::invalid(format!(
                    "invalid path: {}",
                    rejection.body_text().to_lowercase()
                )))
            })
    }
}

/// Query parameters read by hand, for lists where `label` may repeat (serde's query decoding
/// cannot mix repeated and single parameters): every other known parameter may be given once,
/// and an unknown one is refused with the list of those allowed.
#[derive(Debug, Default)]
pub struct QueryPairs {
    single: std::collections::HashMap<String, String>,
    labels: Vec<String>,
}

impl QueryPairs {
    /// Sort `pairs` into single parameters among `allowed` (which may include `label`, the
    /// one that repeats).
    pub fn read(pairs: Vec<(String, String)>, allowed: &[&str]) -> Result<Self, Error> {
        let mut read = QueryPairs::default();
        for (key, value) in pairs {
            if !allowed.contains(&key.as_str()) {
                return Err(Error::invalid(format!(
                    "invalid query string: unknown parameter {key:?}; use {}",
                    allowed.join(", ")
                )));
            }
            if key == "label" {
                read.labels.push(value);
            } else if read.single.insert(key.clone(), value).is_some() {
                return Err(Error::invalid(format!(
                    "invalid query string: {key} is given twice"
                )));
            }
        }
        Ok(read)
    }

    /// The value of a single parameter, if given.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.single.remove(key)
    }

    /// Every `label` given, in order.
    pub fn labels(&mut self) -> Vec<String> {
        std::mem::take(&mut self.labels)
    }

    /// A single parameter that must be a number (`limit`).
    pub fn number(&mut self, key: &str) -> Result<Option<u32>, Error> {
        self.take(key)
            .map(|value| {
                value.parse().map_err(|_| {
                    Error::invalid(format!(
                        "invalid query string: {key} {value:?} is not a number"
                    ))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_core::api::SubmitJob;

    #[test]
    fn unknown_fields_are_named() {
        let err = parse_json::<SubmitJob>(br#"{"command":["x"],"bogus":1}"#)
            .expect_err("unknown field accepted");
        assert!(err.message().contains("bogus"), "{err}");
    }

    #[test]
    fn malformed_json_says_so() {
        let err = parse_json::<SubmitJob>(b"{\"command\": [").expect_err("accepted");
        assert!(err.message().starts_with("malformed JSON"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = parse_json::<SubmitJob>(br#"{"command":["x"],"priority":"high"}"#)
            .expect_err("accepted");
        assert!(err.message().contains("priority"), "{err}");
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn query_pairs_take_repeated_labels_and_single_values() {
        let mut q = QueryPairs::read(
            pairs(&[
                ("label", "a=1"),
                ("queue", "q"),
                ("label", "b"),
                ("limit", "7"),
            ]),
            &["queue", "label", "limit"],
        )
        .expect("read");
        assert_eq!(q.labels(), vec!["a=1".to_string(), "b".to_string()]);
        assert_eq!(q.take("queue").as_deref(), Some("q"));
        assert_eq!(q.number("limit").expect("number"), Some(7));
        assert_eq!(q.take("queue"), None);
    }

    #[test]
    fn query_pairs_refuse_repeats_unknown_names_and_bad_numbers() {
        let err = QueryPairs::read(pairs(&[("queue", "a"), ("queue", "b")]), &["queue"])
            .expect_err("a repeated single parameter");
        assert!(err.message().contains("queue is given twice"), "{err}");
        let err = QueryPairs::read(pairs(&[("bogus", "1")]), &["queue", "label"])
            .expect_err("an unknown parameter");
        assert!(
            err.message().contains("\"bogus\"; use queue, label"),
            "{err}"
        );
        let mut q = QueryPairs::read(pairs(&[("limit", "ten")]), &["limit"]).expect("read");
        let err = q.number("limit").expect_err("not a number");
        assert!(
            err.message().contains("limit \"ten\" is not a number"),
            "{err}"
        );
    }
}
