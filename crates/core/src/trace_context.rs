//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` and
//! `tracestate` values that tie a job's spans into one trace across the server, the worker and
//! the task's own code. Parsing and formatting only; exporting spans is the binary's business.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Error, Result};

/// Longest `tracestate` kept: the specification's limit a vendor must propagate.
pub const MAX_TRACESTATE_LEN: usize = 512;

/// The trace a job belongs to, as W3C Trace Context headers: kept with the job at submit and
/// handed to the worker with each lease, which passes it on to the task as `TRACEPARENT` and
/// `TRACESTATE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceContext {
    /// The `traceparent` value: `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`.
    #[schema(example = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    pub traceparent: String,
    /// The `tracestate` value (vendor entries), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// A context from header values: `None` unless `traceparent` parses; a `tracestate` that
    /// is not valid is dropped, as the specification asks.
    pub fn from_headers(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let parent = TraceParent::parse(traceparent)?;
        Some(Self {
            traceparent: parent.to_string(),
            tracestate: tracestate
                .map(str::trim)
                .filter(|s| valid_tracestate(s))
                .map(str::to_string),
        })
    }

    /// Refuse a context whose `traceparent` does not parse or whose `tracestate` is not valid.
    pub fn validate(&self) -> Result<()> {
        if TraceParent::parse(&self.traceparent).is_none() {
            return Err(Error::invalid(format!(
                "trace.traceparent {:?} is not a W3C traceparent: use 00-<32 hex>-<16 hex>-<2 hex>",
                self.traceparent
            )));
        }
        if let Some(state) = &self.tracestate
            && !valid_tracestate(state)
        {
            return Err(Error::invalid(format!(
                "trace.tracestate is not a W3C tracestate: at most 32 comma-separated key=value entries of printable ASCII, {MAX_TRACESTATE_LEN} bytes in all"
            )));
        }
        Ok(())
    }

    /// The parsed `traceparent` (`None` only for a context that was never validated).
    pub fn parent(&self) -> Option<TraceParent> {
        TraceParent::parse(&self.traceparent)
    }
}

#[cfg(feature = "opentelemetry")]
impl TraceContext {
    /// A span context as W3C header values.
    pub fn from_span_context(span: &opentelemetry::trace::SpanContext) -> Self {
        let parent = TraceParent {
            trace_id: span.trace_id().to_bytes(),
            span_id: span.span_id().to_bytes(),
            flags: span.trace_flags().to_u8(),
        };
        let state = span.trace_state().header();
        Self {
            traceparent: parent.to_string(),
            tracestate: (!state.is_empty()).then_some(state),
        }
    }

    /// The OpenTelemetry form of this context, as a remote parent (`None` when the
    /// `traceparent` does not parse).
    pub fn to_span_context(&self) -> Option<opentelemetry::trace::SpanContext> {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        let parent = self.parent()?;
        let state = self
            .tracestate
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        Some(SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.span_id),
            TraceFlags::new(parent.flags),
            true,
            state,
        ))
    }
}

/// A parsed `traceparent`: which trace, which span is the parent, and whether it is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id (never all zeros).
    pub trace_id: [u8; 16],
    /// The parent span's id (never all zeros).
    pub span_id: [u8; 8],
    /// The trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// Parse a `traceparent` value. Version `00` must be exactly 55 characters; a later
    /// version may carry more fields after a `-`, which are ignored (as the specification
    /// asks); version `ff`, upper-case hex and all-zero ids are refused.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = hex_byte(&value[0..2])?;
        if version == 0xff || (version == 0 && bytes.len() != 55) {
            return None;
        }
        if bytes.len() > 55 && bytes[55] != b'-' {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, b) in span_id.iter_mut().enumerate() {
            *b = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&value[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// Whether the caller sampled (records) this trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            self.flags
        )
    }
}

/// Whether `value` is a `tracestate` worth passing on: at most [`MAX_TRACESTATE_LEN`] bytes
/// and 32 entries, each `key=value` of printable ASCII without `,` or `=` in the key.
pub fn valid_tracestate(value: &str) -> bool {
    if value.is_empty() || value.len() > MAX_TRACESTATE_LEN {
        return false;
    }
    let entries: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    !entries.is_empty()
        && entries.len() <= 32
        && entries.iter().all(|entry| {
            entry.split_once('=').is_some_and(|(key, val)| {
                !key.is_empty()
                    && !val.is_empty()
                    && key.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')
                    })
                    && val
                        .bytes()
                        .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
            })
        })
}

fn hex_byte(two: &str) -> Option<u8> {
    let b = two.as_bytes();
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(*b.first()?)? << 4 | digit(*b.get(1)?)?)
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn the_specification_example_round_trips() {
        let parent = TraceParent::parse(EXAMPLE).expect("parses");
        assert_eq!(parent.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(
            parent.span_id,
            [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]
        );
        assert!(parent.sampled());
        assert_eq!(parent.to_string(), EXAMPLE);
        let unsampled = TraceParent::parse(&EXAMPLE.replace("-01", "-00")).expect("parses");
        assert!(!unsampled.sampled());
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
            "0x-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?} was accepted");
        }
    }

    #[test]
    fn later_versions_keep_the_fields_they_share() {
        let future = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-comes-next";
        let parent = TraceParent::parse(future).expect("parses");
        assert_eq!(parent.to_string(), EXAMPLE);
        let glued = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x";
        assert_eq!(TraceParent::parse(glued), None);
    }

    #[test]
    fn header_values_become_a_context_and_bad_state_is_dropped() {
        let cx = TraceContext::from_headers(&format!(" {EXAMPLE} "), Some("congo=t61rcWkgMzE"))
            .expect("a context");
        assert_eq!(cx.traceparent, EXAMPLE);
        assert_eq!(cx.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        cx.validate().expect("valid");
        let cx = TraceContext::from_headers(EXAMPLE, Some("no equals sign")).expect("a context");
        assert_eq!(cx.tracestate, None);
        assert_eq!(TraceContext::from_headers("garbage", None), None);
    }

    #[test]
    fn validation_names_the_bad_field() {
        let bad = TraceContext {
            traceparent: "00-xyz".into(),
            tracestate: None,
        };
        let err = bad.validate().expect_err("accepted");
        assert!(err.message().contains("trace.traceparent"), "{err}");
        let bad = TraceContext {
            traceparent: EXAMPLE.into(),
            tracestate: Some("k=".repeat(300)),
        };
        let err = bad.validate().expect_err("accepted");
        assert!(err.message().contains("trace.tracestate"), "{err}");
    }

    #[test]
    fn tracestate_rules() {
        assert!(valid_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
        assert!(valid_tracestate("tenant@vendor=x"));
        assert!(!valid_tracestate(""));
        assert!(!valid_tracestate("Upper=x"));
        assert!(!valid_tracestate("k=a=b"));
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(!valid_tracestate(&many.join(",")));
    }
}
