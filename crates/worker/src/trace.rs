//! A task's spans on the worker and the trace context its process gets.
//!
//! Each attempt runs in an `attempt` span whose parent is its job's trace context (the
//! server's `submit` span, handed over with the lease in [`TaskSpec::trace`]); inside it come
//! `stage` (downloading inputs), `run` (the command), `upload` (its results) and `report`.
//! The command sees `TRACEPARENT` naming its `run` span (or, when this worker exports no
//! spans, its job's context as it came) and `TRACESTATE` when there is one, so its own code
//! can continue the trace. Where the spans go is the binary's business: nowhere unless it
//! installed an exporter.
//!
//! [`TaskSpec::trace`]: spillway_core::model::TaskSpec::trace

use opentelemetry::Context;
use opentelemetry::trace::TraceContextExt as _;
use spillway_core::api::LeasedTask;
use spillway_core::trace_context::TraceContext;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The span of one attempt, a child of its job's trace when the lease carried one.
pub(crate) fn attempt_span(task: &LeasedTask, worker_id: &str) -> Span {
    let span = tracing::info_span!(
        "attempt",
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        queue = %task.queue,
        job_id = %task.job_id,
        task_id = task.task_id,
        task_index = i64::from(task.index),
        attempt = i64::from(task.attempt),
        worker_id = %worker_id,
        outcome = tracing::field::Empty,
    );
    if let Some(parent) = task
        .spec
        .trace
        .as_ref()
        .and_then(TraceContext::to_span_context)
    {
        // Refused only when the span is already started, which it is not.
        let _ = span.set_parent(Context::new().with_remote_span_context(parent));
    }
    span
}

/// The trace context the task's process continues: the `run` span's when it is exported,
/// else the job's as the lease carried it.
pub(crate) fn process_context(run: &Span, task: &LeasedTask) -> Option<TraceContext> {
    let cx = run.context();
    let own = cx.span().span_context().clone();
    if !own.is_valid() {
        return task.spec.trace.clone();
    }
    Some(TraceContext::from_span_context(&own))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn task(trace: Option<TraceContext>) -> LeasedTask {
        let mut task: LeasedTask = serde_json::from_value(serde_json::json!({
            "task_id": 7,
            "job_id": "job",
            "index": 1,
            "queue": "default",
            "attempt": 1,
            "lease_token": "t",
            "lease_expires_at": "2026-01-01T00:00:00Z",
            "spec": {"command": ["true"]},
            "payload": null,
            "has_inputs": false,
        }))
        .expect("a leased task");
        task.spec.trace = trace;
        task
    }

    #[test]
    fn without_an_exporter_the_process_gets_the_jobs_context_as_it_came() {
        let trace = TraceContext {
            traceparent: EXAMPLE.into(),
            tracestate: Some("congo=t61rcWkgMzE".into()),
        };
        let task = task(Some(trace.clone()));
        let span = attempt_span(&task, "w-1");
        assert_eq!(process_context(&span, &task), Some(trace));
        assert_eq!(process_context(&span, &self::task(None)), None);
    }

    #[test]
    fn a_stored_context_becomes_a_sampled_remote_parent() {
        let trace = TraceContext {
            traceparent: EXAMPLE.into(),
            tracestate: Some("congo=t61rcWkgMzE".into()),
        };
        let span = trace.to_span_context().expect("valid");
        assert!(span.is_remote() && span.is_sampled());
        assert_eq!(
            span.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(span.span_id().to_string(), "b7ad6b7169203331");
        assert_eq!(span.trace_state().header(), "congo=t61rcWkgMzE");
    }
}
