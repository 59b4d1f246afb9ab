//! Traces of jobs: a job's submit is a span whose W3C trace context is kept with the job (in
//! its spec, [`TaskSpec::trace`]); each lease of one of its tasks adds that task's `wait` (from
//! when it became due to its lease) and `lease` spans to the same trace, and the worker hands
//! the context on to its own spans and to the task's process.
//!
//! The spans go wherever the process's OpenTelemetry tracer provider sends them: nowhere until
//! the binary installs one (when an OTLP endpoint is configured). A job submitted without a
//! trace context costs the lease path nothing here.
//!
//! [`TaskSpec::trace`]: spillway_core::model::TaskSpec::trace

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::trace::{
    FutureExt as _, Span as _, SpanContext, SpanKind, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Context, KeyValue, global};
use spillway_core::api::LeasedTask;
use spillway_core::trace_context::TraceContext;

use crate::ids::job_submitted_at;

/// The instrumentation scope of the spans made here.
const SCOPE: &str = "spillway";

/// Whether the process exports spans: set once by the binary when it installs an exporter.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Say that this process exports spans, so leases of traced jobs add their `wait` and
/// `lease` spans. Without it the lease path makes none.
pub fn enable() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// Whether [`enable`] was called.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Run the request in the trace its `traceparent` header names (and `tracestate`), so the
/// spans it makes (a job's submit) are children of the caller's span. A request without a
/// valid header runs as it came.
pub async fn propagate(request: Request, next: Next) -> Response {
    let Some(cx) = header_context(&request) else {
        return next.run(request).await;
    };
    next.run(request).with_context(cx).await
}

fn header_context(request: &Request) -> Option<Context> {
    let headers = request.headers();
    let parent = headers.get("traceparent")?.to_str().ok()?;
    let state = headers.get("tracestate").and_then(|v| v.to_str().ok());
    let trace = TraceContext::from_headers(parent, state)?;
    Some(Context::new().with_remote_span_context(trace.to_span_context()?))
}

/// The trace context to keep with a job submitted inside `span`: the span's own when it is
/// exported, else the caller's (from the request's `traceparent`), else the one the request
/// body gave.
pub fn job_context(span: &SpanContext, given: Option<TraceContext>) -> Option<TraceContext> {
    if span.is_valid() {
        return Some(TraceContext::from_span_context(span));
    }
    let current = Context::current();
    let caller = current.span().span_context().clone();
    if caller.is_valid() {
        return Some(TraceContext::from_span_context(&caller));
    }
    given
}

/// Who leased: the attributes every lease span of one call shares.
pub struct Leaser<'a> {
    /// The caller's tenant.
    pub tenant: &'a str,
    /// The leasing worker.
    pub worker_id: &'a str,
    /// Its pool.
    pub pool: &'a str,
}

/// Add each traced task's `wait` (from when it became due, or its job's submit, to `now`)
/// and `lease` (the store call that leased it, `started` to `now`) spans to its job's trace.
/// Nothing happens unless [`exporting`].
pub fn leased(tasks: &[LeasedTask], who: &Leaser<'_>, started: SystemTime) {
    if !exporting() {
        return;
    }
    let mut traced = tasks
        .iter()
        .filter_map(|t| Some((t, t.spec.trace.as_ref()?.to_span_context()?)))
        .peekable();
    if traced.peek().is_none() {
        return;
    }
    let tracer = global::tracer(SCOPE);
    let now = SystemTime::now();
    for (task, parent) in traced {
        let parent = Context::new().with_remote_span_context(parent);
        let attributes = vec![
            KeyValue::new("tenant", who.tenant.to_string()),
            KeyValue::new("queue", task.queue.clone()),
            KeyValue::new("job_id", task.job_id.clone()),
            KeyValue::new("task_id", task.task_id),
            KeyValue::new("task_index", i64::from(task.index)),
            KeyValue::new("attempt", i64::from(task.attempt)),
            KeyValue::new("worker_id", who.worker_id.to_string()),
            KeyValue::new("pool", who.pool.to_string()),
        ];
        let due = task
            .due_at
            .or_else(|| job_submitted_at(&task.job_id))
            .map_or(started, SystemTime::from)
            .min(started);
        tracer
            .span_builder("wait")
            .with_kind(SpanKind::Internal)
            .with_start_time(due)
            .with_attributes(attributes.clone())
            .start_with_context(&tracer, &parent)
            .end_with_timestamp(started);
        tracer
            .span_builder("lease")
            .with_kind(SpanKind::Server)
            .with_start_time(started)
            .with_attributes(attributes)
            .start_with_context(&tracer, &parent)
            .end_with_timestamp(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_stored_context_becomes_a_remote_parent_and_back() {
        let trace = TraceContext {
            traceparent: EXAMPLE.into(),
            tracestate: Some("congo=t61rcWkgMzE".into()),
        };
        let span = trace.to_span_context().expect("valid");
        assert!(span.is_remote());
        assert!(span.is_sampled());
        assert_eq!(
            span.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(TraceContext::from_span_context(&span), trace);
    }

    #[test]
    fn a_requests_traceparent_header_is_its_remote_parent() {
        let request = |headers: &[(&str, &str)]| {
            let mut builder = Request::builder().uri("/v1/jobs");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(axum::body::Body::empty()).expect("a request")
        };
        let cx = header_context(&request(&[
            ("traceparent", EXAMPLE),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]))
        .expect("a context");
        let span = cx.span().span_context().clone();
        assert!(span.is_remote() && span.is_sampled());
        assert_eq!(span.span_id().to_string(), "b7ad6b7169203331");
        assert_eq!(span.trace_state().header(), "congo=t61rcWkgMzE");
        assert!(header_context(&request(&[])).is_none());
        assert!(header_context(&request(&[("traceparent", "00-bad")])).is_none());
    }

    #[test]
    fn a_job_keeps_the_callers_context_when_no_span_is_exported() {
        let trace = TraceContext {
            traceparent: EXAMPLE.into(),
            tracestate: None,
        };
        let caller =
            Context::new().with_remote_span_context(trace.to_span_context().expect("valid"));
        let _attached = caller.attach();
        let kept = job_context(&SpanContext::empty_context(), None).expect("a context");
        assert_eq!(kept.traceparent, EXAMPLE);
    }

    #[test]
    fn without_any_context_a_job_keeps_what_the_body_gave() {
        let given = TraceContext {
            traceparent: EXAMPLE.into(),
            tracestate: None,
        };
        assert_eq!(job_context(&SpanContext::empty_context(), None), None);
        assert_eq!(
            job_context(&SpanContext::empty_context(), Some(given.clone())),
            Some(given)
        );
    }
}
