//! Dead letters: inspect them, requeue one or every one of a queue.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use spillway_core::api::RequeueRequest;
use spillway_core::auth::Action;

use super::{Params, all_tenants, options, render};
use crate::app::{Caller, dead, queues};
use crate::dashboard::html::{self, Nav, esc, post_button, url};
use crate::dashboard::{PageForm, PageResult, Signed};
use crate::state::AppState;

/// Dead letters per page.
pub const DEAD_PER_PAGE: u32 = 50;

/// The dead letter page.
pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    params: Params,
) -> PageResult<Response> {
    let principal = signed.principal();
    let caller = Caller::own(principal);
    let queue = params.get("queue").map(str::to_string);
    let cursor = params.get("cursor").map(str::to_string);
    let page = dead::list(
        &state,
        caller,
        queue.clone(),
        Some(DEAD_PER_PAGE),
        cursor.clone(),
    )
    .await?;
    let stats = queues::stats(&state, caller).await?;
    let mut names: Vec<String> = stats.iter().map(|s| s.queue.clone()).collect();
    names.sort();
    names.dedup();
    let csrf = &signed.0.csrf;
    let can_requeue = principal.role.allows(Action::Requeue);
    let mut body = String::new();
    if let Some(notice) = params.get("notice") {
        body.push_str(&html::flash(notice));
    }
    let _ = write!(
        body,
        "<form class=\"filters\" method=\"get\" action=\"/dead\"><div><label for=\"d-queue\">Queue</label>\
         <select id=\"d-queue\" name=\"queue\">{}</select></div><div><button type=\"submit\">Filter</button></div></form>",
        options(&names, queue.as_deref(), "any queue")
    );
    if can_requeue {
        body.push_str("<div class=\"actions\">");
        for s in stats.iter().filter(|s| s.counts.dead > 0) {
            if queue.as_ref().is_some_and(|q| q != &s.queue) {
                continue;
            }
            body.push_str(&post_button(
                "/dead/requeue",
                &format!("Requeue all {} dead in {}", s.counts.dead, s.queue),
                csrf,
                &[("queue", &s.queue), ("tenant", &s.tenant)],
            ));
        }
        body.push_str("</div>");
    }
    if page.items.is_empty() {
        body.push_str("<p>No dead letters.</p>");
    } else {
        let many = all_tenants(principal);
        body.push_str("<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Task</th>");
        if many {
            body.push_str("<th scope=\"col\">Tenant</th>");
        }
        body.push_str(
            "<th scope=\"col\">Job</th><th scope=\"col\">Queue</th><th scope=\"col\">Failures</th>\
             <th scope=\"col\">Exit</th><th scope=\"col\">Last error</th><th scope=\"col\">Finished</th>\
             <th scope=\"col\"><span class=\"sr-only\">Actions</span></th></tr></thead><tbody>",
        );
        for t in &page.items {
            let _ = write!(
                body,
                "<tr data-task=\"{}\"><th scope=\"row\"><a href=\"/tasks/{}\">{} #{}</a></th>",
                t.id, t.id, t.id, t.index
            );
            if many {
                let _ = write!(body, "<td>{}</td>", esc(&t.tenant));
            }
            let action = if can_requeue {
                post_button(
                    "/dead/requeue",
                    "Requeue",
                    csrf,
                    &[("task_id", &t.id.to_string())],
                )
            } else {
                String::new()
            };
            let _ = write!(
                body,
                "<td><a href=\"/jobs/{}\"><code class=\"id\">{}</code></a></td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"error-text\">{}</td><td>{}</td><td>{action}</td></tr>",
                url(&t.job_id),
                esc(&t.job_id),
                esc(&t.queue),
                t.failures,
                t.exit_code.map_or("–".to_string(), |c| c.to_string()),
                esc(t.last_error.as_deref().unwrap_or("")),
                t.finished_at.map_or("–".to_string(), html::time),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    let filters: Vec<(&str, &str)> = queue.as_deref().map(|q| ("queue", q)).into_iter().collect();
    body.push_str(&html::pager(
        "/dead",
        "Pages",
        &filters,
        cursor.is_some(),
        page.next_cursor.as_deref(),
    ));
    Ok(render(&signed, "Dead letters", Nav::Dead, &body))
}

/// The requeue form: one task, or every dead task of a queue.
#[derive(Debug, Deserialize)]
pub struct RequeueForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    task_id: Option<i64>,
    queue: Option<String>,
    tenant: Option<String>,
}

/// Requeue, then show the list again.
pub async fn requeue(
    State(state): State<AppState>,
    signed: Signed,
    PageForm(form): PageForm<RequeueForm>,
) -> PageResult {
    signed.check_csrf(&form.csrf)?;
    let principal = signed.principal();
    // Only an admin of every tenant names a tenant; others act in their own.
    let tenant = form.tenant.filter(|_| principal.tenant.is_none());
    let request = RequeueRequest {
        task_ids: form.task_id.into_iter().collect(),
        queue: form.queue.filter(|q| !q.is_empty()),
        tenant: tenant.clone(),
    };
    let caller = Caller::new(principal, tenant.as_deref());
    let changed = dead::requeue(&state, caller, request).await?;
    Ok(Redirect::to(&format!("/dead?notice=Requeued+{changed}+tasks")).into_response())
}
