//! Logs and traces. Every command logs to stderr as text or JSON lines (`--log-format`); the
//! long-running ones (`up`, `server`, `worker`) also export spans over OTLP/HTTP (protobuf)
//! when an endpoint is configured with the standard OpenTelemetry variables:
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL) or `OTEL_EXPORTER_OTLP_ENDPOINT` (a base
//! URL that `/v1/traces` is added to), `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER` and the `OTEL_BSP_*` batch settings.
//! Without an endpoint no exporter exists and the spans are only what the logs show.

use anyhow::{Context, Result};
use clap::ValueEnum;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter};

/// The variables that name where spans go; either one turns the exporter on.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];
/// The instrumentation scope of Spillway's spans.
const SCOPE: &str = "spillway";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, message and fields, with the fields of the
    /// spans the event happened in.
    Json,
}

impl LogFormat {
    /// The flag's value for this format.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// What the process must do before it exits: flush the spans not yet exported.
#[must_use = "call shutdown before exiting, or spans still queued are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Export the spans still queued and stop the exporter (bounded by the exporter's
    /// timeout, `OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by default). Failures are printed, not
    /// returned: the process is ending anyway.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown()
        {
            eprintln!("warning: could not flush the last spans to the OTLP endpoint: {err}");
        }
    }
}

/// Whether an OTLP endpoint is configured in the environment.
pub fn otlp_configured() -> bool {
    ENDPOINT_VARS
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()))
}

/// Log to stderr with `filter` (`RUST_LOG` wins when set) in `format`; when `service` is given
/// and an OTLP endpoint is configured, also export spans as `service` (unless
/// `OTEL_SERVICE_NAME` names it). Call before the async runtime starts: the exporter's HTTP
/// client runs its own.
pub fn init(filter: &str, format: LogFormat, service: Option<&str>) -> Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = match service {
        Some(service) if otlp_configured() => Some(tracer_provider(service)?),
        _ => None,
    };
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SCOPE))
            .with_filter(exported())
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _ = match format {
        LogFormat::Text => registry.with(text_layer(std::io::stderr)).try_init(),
        LogFormat::Json => registry.with(json_layer(std::io::stderr)).try_init(),
    };
    if let Some(provider) = &provider {
        // For the spans made with explicit times (a task's wait, its lease).
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(Telemetry { provider })
}

/// What the OTLP layer sees: Spillway's own spans (not those of the libraries), and the
/// warnings and errors logged inside them, which become span events.
fn exported() -> filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter::filter_fn(|meta| {
        if meta.is_span() {
            meta.target().starts_with("spillway")
        } else {
            *meta.level() <= tracing::Level::WARN
        }
    })
}

fn tracer_provider(service: &str) -> Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .context("cannot set up the OTLP trace exporter (see OTEL_EXPORTER_OTLP_ENDPOINT)")?;
    let mut resource = Resource::builder();
    if !std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty()) {
        resource = resource.with_service_name(service.to_string());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

fn text_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(false)
}

fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_writer(writer)
        .with_target(true)
        .with_current_span(true)
        .with_span_list(true)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;

    /// A writer that keeps what is written, for reading back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn json_logs_are_one_object_per_line_with_span_fields() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(json_layer(out.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("submit", tenant = "acme", job_id = "j-1");
            let _entered = span.enter();
            tracing::info!(tasks = 2, "job submitted");
            tracing::warn!("second \"line\"\nwith a newline");
        });
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON object");
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["fields"]["message"], "job submitted");
        assert_eq!(first["fields"]["tasks"], 2);
        assert_eq!(first["span"]["name"], "submit");
        assert_eq!(first["span"]["tenant"], "acme");
        assert_eq!(first["spans"][0]["job_id"], "j-1");
        let second: serde_json::Value = serde_json::from_str(lines[1]).expect("a JSON object");
        assert_eq!(
            second["fields"]["message"],
            "second \"line\"\nwith a newline"
        );
    }

    #[test]
    fn text_logs_are_not_json() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(text_layer(out.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(tasks = 2, "job submitted")
        });
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        assert!(
            text.contains("INFO") && text.contains("job submitted"),
            "{text}"
        );
        assert!(text.contains("tasks"), "{text}");
        assert!(serde_json::from_str::<serde_json::Value>(text.trim()).is_err());
    }
}
