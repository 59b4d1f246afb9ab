//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` attributes.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Response};
use utoipa::{Modify, OpenApi};

use crate::problem::PROBLEM_JSON;

use crate::routes::{
    admin, dead, jobs, leasing, logs, objects, pools, queues, system, tasks, why, workers,
};

/// The API document served at `/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "Spillway", description = "A durable batch work queue with object staging."),
    paths(
        admin::tenant_create, admin::tenant_list,
        admin::token_create, admin::token_list, admin::token_revoke,
        queues::create, queues::list, queues::get, queues::update,
        objects::upload_create, objects::upload_put,
        jobs::submit, jobs::list, jobs::get, jobs::cancel, jobs::cancel_matching, jobs::retry,
        jobs::tasks,
        objects::inputs_list, objects::input_get, objects::results_list, objects::result_get,
        tasks::get, tasks::logs, why::why, objects::result_put,
        logs::full, logs::follow, logs::chunk_put,
        workers::register, workers::list, workers::heartbeat, workers::exit,
        leasing::lease, leasing::heartbeat, leasing::complete, leasing::fail, leasing::release,
        leasing::complete_one, leasing::fail_one,
        dead::list, dead::requeue,
        pools::list, pools::update,
        system::openapi, system::metrics, system::healthz, system::readyz, system::version,
    ),
    components(schemas(
        spillway_core::api::Problem,
        crate::routes::logs::LogText,
        crate::routes::logs::LogEnd,
        spillway_core::api::SubmitJob,
        spillway_core::api::Submitted,
        spillway_core::api::NewTask,
        spillway_core::api::TaskDetail,
        spillway_core::api::LeaseRequest,
        spillway_core::api::LeaseResponse,
        spillway_core::api::LeasedTask,
        spillway_core::api::LeaseRef,
        spillway_core::api::LeaseStatus,
        spillway_core::api::HeartbeatRequest,
        spillway_core::api::HeartbeatResponse,
        spillway_core::api::HeartbeatResult,
        spillway_core::api::Completion,
        spillway_core::api::Failure,
        spillway_core::api::Release,
        spillway_core::api::ReleaseReason,
        spillway_core::api::CompleteRequest,
        spillway_core::api::FailRequest,
        spillway_core::api::ReleaseRequest,
        spillway_core::api::ReportResult,
        spillway_core::api::ReportResponse,
        spillway_core::api::CreateQueue,
        spillway_core::api::QueueView,
        spillway_core::api::RequeueRequest,
        spillway_core::api::Changed,
        spillway_core::api::CancelJobs,
        spillway_core::api::JobsCancelled,
        spillway_core::api::ServerVersion,
        spillway_core::api::CreateToken,
        spillway_core::api::CreatedToken,
        spillway_core::api::CreateTenant,
        spillway_core::api::UploadCreated,
        spillway_core::api::ObjectInfo,
        spillway_core::api::RegisterWorker,
        spillway_core::api::WorkerHeartbeat,
        spillway_core::api::WorkerHeartbeatReply,
        spillway_core::api::PoolStatus,
        spillway_core::api::PoolDecisionRecord,
        spillway_core::api::PoolUpdate,
        spillway_core::api::WorkerList,
        spillway_core::api::TaskWhy,
        spillway_core::api::WaitReason,
        spillway_core::api::WaitReasonKind,
        spillway_core::model::Tenant,
        spillway_core::model::Queue,
        spillway_core::model::QueueSettings,
        spillway_core::model::QueueStats,
        spillway_core::model::Resources,
        spillway_core::model::TaskSpec,
        spillway_core::model::Job,
        spillway_core::model::Task,
        spillway_core::model::LeaseInfo,
        spillway_core::model::Attempt,
        spillway_core::model::Worker,
        spillway_core::model::WorkerState,
        spillway_core::model::TokenInfo,
        spillway_core::state::TaskState,
        spillway_core::state::JobState,
        spillway_core::state::StateCounts,
        spillway_core::state::AttemptOutcome,
        spillway_core::auth::Role,
    )),
    modifiers(&BearerAuth, &ProblemJson, &Overloaded),
    tags(
        (name = "jobs", description = "Submit and follow jobs"),
        (name = "work", description = "What workers call"),
        (name = "queues", description = "Queues and their numbers"),
        (name = "uploads", description = "Stage input files before submitting"),
        (name = "tasks", description = "One task's details and logs"),
        (name = "dead", description = "Dead letters"),
        (name = "admin", description = "Tenants and tokens"),
        (name = "system", description = "Health, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme every `/v1` route refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Documents every error answer (a [`Problem`](spillway_core::api::Problem) body) with the
/// media type the server sends, `application/problem+json`; the handlers' attributes say only
/// `body = Problem`, which utoipa documents as `application/json`.
struct ProblemJson;

impl Modify for ProblemJson {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        const PROBLEM_REF: &str = "#/components/schemas/Problem";
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                for response in operation.responses.responses.values_mut() {
                    let RefOr::T(Response { content, .. }) = response else {
                        continue;
                    };
                    let is_problem = content.get("application/json").is_some_and(|c| {
                        matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location == PROBLEM_REF)
                    });
                    if let Some(body) = is_problem
                        .then(|| content.shift_remove("application/json"))
                        .flatten()
                    {
                        content.insert(PROBLEM_JSON.to_string(), body);
                    }
                }
            }
        }
    }
}

/// Documents the 503 any request may get when the server sheds load or a dependency (the
/// store, the disk) is unavailable: a problem with `Retry-After`. The probes and `/metrics`
/// are never shed, and `/readyz` documents its own 503.
struct Overloaded;

impl Modify for Overloaded {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

        let response = ResponseBuilder::new()
            .description(
                "the server is overloaded, or the store or its disk is unavailable: nothing was \
                 done; try again after Retry-After seconds",
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(0)),
                    )
                    .description(Some("seconds to wait before trying again"))
                    .build(),
            )
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            if crate::admission::NEVER_SHED.contains(&path.as_str()) {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                operation
                    .responses
                    .responses
                    .entry("503".to_string())
                    .or_insert_with(|| RefOr::T(response.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented error answer is `application/problem+json`, as the server sends it, and
    /// no success answer is.
    #[test]
    fn error_answers_are_documented_as_problem_json() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document encodes");
        let mut errors = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                let Some(responses) = operation["responses"].as_object() else {
                    continue;
                };
                for (status, response) in responses {
                    let Some(content) = response["content"].as_object() else {
                        continue;
                    };
                    let is_error = status.starts_with('4') || status.starts_with('5');
                    assert_eq!(
                        content.contains_key(PROBLEM_JSON),
                        is_error,
                        "{method} {path} {status}: {content:?}"
                    );
                    errors += usize::from(is_error);
                }
            }
        }
        assert!(errors > 40, "only {errors} error answers documented");
    }

    /// Every operation but the never-shed ones documents the 503 of an overloaded server,
    /// with its `Retry-After` header.
    #[test]
    fn every_sheddable_operation_documents_503_with_retry_after() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document encodes");
        let mut documented = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            if crate::admission::NEVER_SHED.contains(&path.as_str()) {
                continue;
            }
            for (method, operation) in item.as_object().expect("a path item") {
                let unavailable = &operation["responses"]["503"];
                assert!(
                    unavailable["headers"]["Retry-After"].is_object(),
                    "{method} {path}: {unavailable}"
                );
                assert!(
                    unavailable["content"][PROBLEM_JSON].is_object(),
                    "{method} {path}: {unavailable}"
                );
                documented += 1;
            }
        }
        assert!(documented > 40, "only {documented} operations documented");
    }

    /// `/metrics` is documented with both media types it answers with (without parameters).
    #[test]
    fn metrics_are_documented_in_both_formats() {
        use crate::metrics::format::Format;
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document encodes");
        let content = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
            .as_object()
            .expect("a documented body");
        let mut documented: Vec<&str> = content.keys().map(String::as_str).collect();
        documented.sort_unstable();
        let mut sent: Vec<&str> = [Format::OpenMetrics, Format::Text]
            .iter()
            .map(|f| f.content_type().split(';').next().unwrap_or_default())
            .collect();
        sent.sort_unstable();
        assert_eq!(documented, sent);
    }
}
