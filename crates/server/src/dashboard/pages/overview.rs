//! The overview: per queue, tasks by state, throughput and the oldest waiting task, each with
//! a chart of the last hour; then recent failures.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use spillway_core::state::JobState;

use super::{all_tenants, render};
use crate::app::jobs::{self, JobFilter};
use crate::app::{Caller, pools, queues};
use crate::dashboard::html::{self, Nav, badge, esc, secs, sparkline, url};
use crate::dashboard::{Dashboard, PageResult, Signed};
use crate::state::AppState;

/// How many recent failed jobs the overview lists.
const RECENT_FAILURES: u32 = 10;

/// The overview page.
pub async fn page(
    State(state): State<AppState>,
    Extension(dashboard): Extension<Arc<Dashboard>>,
    signed: Signed,
) -> PageResult<Response> {
    let principal = signed.principal();
    let caller = Caller::own(principal);
    let stats = queues::stats(&state, caller).await?;
    let many = all_tenants(principal);
    let mut body = String::new();
    body.push_str("<section aria-labelledby=\"q-h\"><h2 id=\"q-h\">Queues</h2>");
    if stats.is_empty() {
        body.push_str("<p>No queues yet.</p>");
    } else {
        body.push_str("<div class=\"table-wrap\"><table data-live=\"queues\"><thead><tr>");
        if many {
            body.push_str("<th scope=\"col\">Tenant</th>");
        }
        body.push_str(
            "<th scope=\"col\">Queue</th><th scope=\"col\">Waiting</th><th scope=\"col\">Running</th>\
             <th scope=\"col\">Succeeded</th><th scope=\"col\">Dead</th>\
             <th scope=\"col\">Throughput / min</th><th scope=\"col\">Oldest waiting</th></tr></thead><tbody>",
        );
        for s in &stats {
            let samples = dashboard.samples.of(&s.tenant, &s.queue);
            let waiting: Vec<f64> = samples.iter().map(|x| x.waiting as f64).collect();
            let rate: Vec<f64> = samples.iter().map(|x| x.throughput as f64).collect();
            let age: Vec<f64> = samples.iter().map(|x| x.oldest_age).collect();
            let last_rate = samples.last().map_or(0, |x| x.throughput);
            let c = &s.counts;
            let _ = write!(
                body,
                "<tr data-queue=\"{}/{}\">",
                esc(&s.tenant),
                esc(&s.queue)
            );
            if many {
                let _ = write!(body, "<td>{}</td>", esc(&s.tenant));
            }
            let paused = if s.paused {
                " <span class=\"badge s-paused\">paused</span>"
            } else {
                ""
            };
            let _ = write!(
                body,
                "<th scope=\"row\"><a href=\"/jobs?queue={}\">{}</a>{paused}</th>\
                 <td><span data-field=\"waiting\">{}</span> {}</td>\
                 <td data-field=\"running\">{}</td><td data-field=\"succeeded\">{}</td>\
                 <td><a href=\"/dead?queue={}\" data-field=\"dead\">{}</a></td>\
                 <td>{last_rate} {}</td><td><span data-field=\"oldest\">{}</span> {}</td></tr>",
                url(&s.queue),
                esc(&s.queue),
                c.scheduled + c.available + c.retrying,
                sparkline(&waiting, "waiting tasks, last hour"),
                c.leased,
                c.succeeded,
                url(&s.queue),
                c.dead,
                sparkline(&rate, "tasks finished per minute, last hour"),
                s.oldest_available_age_seconds.map_or("–".to_string(), secs),
                sparkline(&age, "age of the oldest waiting task, last hour"),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("</section>");
    body.push_str(&super::pools::charts(
        &pools::list(&state, caller)?,
        &dashboard.samples,
    ));

    let failed = jobs::list(
        &state,
        caller,
        JobFilter {
            state: Some(JobState::Failed.as_str().to_string()),
            limit: Some(RECENT_FAILURES),
            ..Default::default()
        },
    )
    .await?;
    body.push_str("<section aria-labelledby=\"f-h\"><h2 id=\"f-h\">Recent failures</h2>");
    if failed.items.is_empty() {
        body.push_str("<p>No failed jobs.</p>");
    } else {
        body.push_str("<ul class=\"plain\">");
        for job in &failed.items {
            let _ = write!(
                body,
                "<li>{} <a href=\"/jobs/{}\">{}</a> in {} — {} dead of {}, submitted {}</li>",
                badge(job.state.as_str()),
                url(&job.id),
                esc(job.name.as_deref().unwrap_or(&job.id)),
                esc(&job.queue),
                job.counts.dead,
                job.task_count,
                html::time(job.created_at),
            );
        }
        body.push_str("</ul>");
    }
    body.push_str("</section>");
    Ok(render(&signed, "Overview", Nav::Overview, &body))
}
