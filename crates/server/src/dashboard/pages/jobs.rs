//! The job list: filtered by queue, state and label, searchable by id, paged on the server.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use spillway_core::Error;
use spillway_core::model::Job;

use super::{Params, all_tenants, options, render};
use crate::app::jobs::{self, JobFilter};
use crate::app::{Caller, queues};
use crate::dashboard::html::{self, Nav, badge, esc, progress, url};
use crate::dashboard::{PageResult, Signed};
use crate::state::AppState;

/// Jobs per page.
pub const JOBS_PER_PAGE: u32 = 50;

/// The job list page.
pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    params: Params,
) -> PageResult<Response> {
    let principal = signed.principal();
    let caller = Caller::own(principal);
    if let Some(id) = params.get("id") {
        // Searching by id: go straight to the job when it exists and is visible.
        return match jobs::get(&state, caller, id).await {
            Ok(job) => Ok(Redirect::to(&format!("/jobs/{}", url(&job.id))).into_response()),
            Err(e) if e.kind() == spillway_core::ErrorKind::NotFound => Err(Error::not_found(
                format!("job {id:?} not found: check the id (it is shown on the job's page)"),
            )
            .into()),
            Err(e) => Err(e.into()),
        };
    }
    let queue = params.get("queue").map(str::to_string);
    let job_state = params.get("state").map(str::to_string);
    // A label filter is `key=value`; spaces around either side do not count.
    let label_text = params.get("label").map(|l| match l.split_once('=') {
        Some((k, v)) => format!("{}={}", k.trim(), v.trim()),
        // Refused by the list, which names the filter.
        None => l.to_string(),
    });
    let cursor = params.get("cursor").map(str::to_string);
    let filter = JobFilter {
        queue: queue.clone(),
        state: job_state.clone(),
        labels: label_text.iter().cloned().collect(),
        limit: Some(JOBS_PER_PAGE),
        cursor: cursor.clone(),
    };
    let page = jobs::list(&state, caller, filter).await?;
    let mut queues: Vec<String> = queues::list(&state, caller)
        .await?
        .into_iter()
        .map(|q| q.name)
        .collect();
    queues.sort();
    queues.dedup();
    let states: Vec<String> = ["queued", "running", "succeeded", "failed", "cancelled"]
        .iter()
        .map(|s| s.to_string())
        .collect();

    let mut body = String::new();
    let _ = write!(
        body,
        "<form class=\"filters\" method=\"get\" action=\"/jobs\" role=\"search\">\
         <div><label for=\"f-queue\">Queue</label><select id=\"f-queue\" name=\"queue\">{}</select></div>\
         <div><label for=\"f-state\">State</label><select id=\"f-state\" name=\"state\">{}</select></div>\
         <div><label for=\"f-label\">Label</label><input id=\"f-label\" name=\"label\" placeholder=\"key=value\" value=\"{}\"></div>\
         <div><button type=\"submit\">Filter</button></div></form>\
         <form class=\"filters\" method=\"get\" action=\"/jobs\" role=\"search\">\
         <div><label for=\"f-id\">Job id</label><input id=\"f-id\" name=\"id\" placeholder=\"0190…\"></div>\
         <div><button type=\"submit\">Go to job</button></div></form>",
        options(&queues, queue.as_deref(), "any queue"),
        options(&states, job_state.as_deref(), "any state"),
        esc(label_text.as_deref().unwrap_or("")),
    );
    if page.items.is_empty() {
        body.push_str("<p>No jobs match.</p>");
    } else {
        jobs_table(&mut body, &page.items, all_tenants(principal));
    }
    // Keep the filters on the paging links.
    let filters: Vec<(&str, &str)> = [
        ("queue", queue.as_deref()),
        ("state", job_state.as_deref()),
        ("label", label_text.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    body.push_str(&html::pager(
        "/jobs",
        "Pages",
        &filters,
        cursor.is_some(),
        page.next_cursor.as_deref(),
    ));
    Ok(render(&signed, "Jobs", Nav::Jobs, &body))
}

/// A table of jobs whose rows update live (each row names its job in `data-job`).
pub fn jobs_table(body: &mut String, jobs: &[Job], with_tenant: bool) {
    body.push_str("<div class=\"table-wrap\"><table data-live=\"jobs\"><thead><tr>");
    if with_tenant {
        body.push_str("<th scope=\"col\">Tenant</th>");
    }
    body.push_str(
        "<th scope=\"col\">Job</th><th scope=\"col\">Queue</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Progress</th><th scope=\"col\">Tasks</th><th scope=\"col\">Submitted</th></tr></thead><tbody>",
    );
    for job in jobs {
        let _ = write!(body, "<tr data-job=\"{}\">", esc(&job.id));
        if with_tenant {
            let _ = write!(body, "<td>{}</td>", esc(&job.tenant));
        }
        let labels: Vec<String> = job
            .labels
            .iter()
            .map(|(k, v)| format!("<span class=\"label\">{}={}</span>", esc(k), esc(v)))
            .collect();
        let _ = write!(
            body,
            "<th scope=\"row\"><a href=\"/jobs/{}\">{}</a><br><code class=\"id\">{}</code> {}</th>\
             <td>{}</td><td>{}</td><td>{}</td>\
             <td><span data-field=\"finished\">{}</span>/{} done, <span data-field=\"dead\">{}</span> dead</td><td>{}</td></tr>",
            url(&job.id),
            esc(job.name.as_deref().unwrap_or("(unnamed)")),
            esc(&job.id),
            labels.join(" "),
            esc(&job.queue),
            badge(job.state.as_str()),
            progress(&job.counts, job.task_count),
            job.counts.finished(),
            job.task_count,
            job.counts.dead,
            html::time(job.created_at),
        );
    }
    body.push_str("</tbody></table></div>");
}
