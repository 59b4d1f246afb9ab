//! Queues with their settings and numbers, and pools and workers by state.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Response;
use spillway_core::model::WorkerState;

use super::{all_tenants, render, scope};
use crate::dashboard::html::{self, Nav, badge, esc, secs, url};
use crate::dashboard::{PageResult, Signed};
use crate::state::AppState;

/// The queues page.
pub async fn list(State(state): State<AppState>, signed: Signed) -> PageResult<Response> {
    let principal = signed.principal();
    let now = state.clock.now();
    let queues = state.store.queue_list(scope(principal)).await?;
    let stats = state.store.queue_stats(scope(principal), now).await?;
    let many = all_tenants(principal);
    let mut body = String::new();
    if queues.is_empty() {
        body.push_str("<p>No queues yet.</p>");
    } else {
        body.push_str("<div class=\"table-wrap\"><table><thead><tr>");
        if many {
            body.push_str("<th scope=\"col\">Tenant</th>");
        }
        body.push_str(
            "<th scope=\"col\">Queue</th><th scope=\"col\">Status</th><th scope=\"col\">Waiting</th>\
             <th scope=\"col\">Running</th><th scope=\"col\">Dead</th><th scope=\"col\">Oldest waiting</th>\
             <th scope=\"col\">Max attempts</th><th scope=\"col\">Lease</th><th scope=\"col\">Backoff</th>\
             <th scope=\"col\">Retention</th></tr></thead><tbody>",
        );
        for q in &queues {
            let s = stats
                .iter()
                .find(|s| s.tenant == q.tenant && s.queue == q.name);
            let c = s.map(|s| s.counts).unwrap_or_default();
            body.push_str("<tr>");
            if many {
                let _ = write!(body, "<td>{}</td>", esc(&q.tenant));
            }
            let st = &q.settings;
            let _ = write!(
                body,
                "<th scope=\"row\"><a href=\"/jobs?queue={}\">{}</a></th><td>{}</td><td>{}</td><td>{}</td>\
                 <td><a href=\"/dead?queue={}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{} – {}</td><td>{}</td></tr>",
                url(&q.name),
                esc(&q.name),
                badge(if st.paused { "paused" } else { "active" }),
                c.scheduled + c.available + c.retrying,
                c.leased,
                url(&q.name),
                c.dead,
                s.and_then(|s| s.oldest_available_age_seconds)
                    .map_or("–".to_string(), secs),
                st.max_attempts,
                humantime::format_duration(st.lease_duration),
                humantime::format_duration(st.backoff_base),
                humantime::format_duration(st.backoff_max),
                humantime::format_duration(st.retention),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    Ok(render(&signed, "Queues", Nav::Queues, &body))
}

/// The workers page: the autoscaled pools with their recent decisions, then active, draining
/// and down workers (and recently exited ones).
pub async fn workers(State(state): State<AppState>, signed: Signed) -> PageResult<Response> {
    let principal = signed.principal();
    let now = state.clock.now();
    let workers = state.store.worker_list(scope(principal), now).await?;
    let mut body = super::pools::section(&super::pools::statuses(&state));
    for group in [
        WorkerState::Active,
        WorkerState::Draining,
        WorkerState::Down,
        WorkerState::Exited,
    ] {
        let these: Vec<_> = workers.iter().filter(|w| w.state == group).collect();
        let _ = write!(
            body,
            "<section><h2>{} ({})</h2>",
            group.as_str(),
            these.len()
        );
        if these.is_empty() {
            body.push_str("<p>None.</p></section>");
            continue;
        }
        body.push_str(
            "<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Worker</th><th scope=\"col\">Tenant</th>\
             <th scope=\"col\">Pool</th><th scope=\"col\">Host</th><th scope=\"col\">Queues</th>\
             <th scope=\"col\">Running</th><th scope=\"col\">Last seen</th><th scope=\"col\">Started</th></tr></thead><tbody>",
        );
        for w in these {
            let ago = (now - w.last_seen).num_milliseconds() as f64 / 1000.0;
            let _ = write!(
                body,
                "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{} of {}</td><td>{} ago ({})</td><td>{}</td></tr>",
                esc(&w.id),
                esc(&w.tenant),
                esc(&w.pool),
                esc(&w.hostname),
                esc(&w.queues.join(", ")),
                w.running,
                w.concurrency,
                secs(ago),
                html::time(w.last_seen),
                html::time(w.started_at),
            );
        }
        body.push_str("</tbody></table></div></section>");
    }
    Ok(render(&signed, "Pools & workers", Nav::Workers, &body))
}
