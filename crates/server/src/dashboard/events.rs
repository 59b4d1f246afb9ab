//! Live updates: one server-sent event stream per page. Every second it looks at the jobs on
//! the page (and, on the overview, the queues; on the workers page, the pools) and sends a small JSON notice when they
//! changed. A stream whose session is gone (signed out, or the server restarted) gets one
//! `signed_out` event and ends, so the page can say so instead of reconnecting forever.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::{Value, json};

use super::pages::Params;
use crate::app::{self, Caller};
use crate::state::AppState;

/// How often a stream looks for changes.
pub const TICK: Duration = Duration::from_secs(1);
/// Most jobs one stream watches (a page shows at most this many).
const MAX_JOBS: usize = 100;
/// How long a browser waits before reconnecting a dropped stream.
const RETRY: Duration = Duration::from_secs(2);

struct Watch {
    state: AppState,
    headers: HeaderMap,
    jobs: Vec<String>,
    queues: bool,
    pools: bool,
    last: Option<Value>,
    first: bool,
    done: bool,
}

/// The event stream for one page: `?jobs=id,id&queues=1&pools=1`.
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let jobs: Vec<String> = params
        .get("jobs")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= 64)
        .take(MAX_JOBS)
        .map(str::to_string)
        .collect();
    let watch = Watch {
        state,
        headers,
        jobs,
        queues: params.get("queues").is_some(),
        pools: params.get("pools").is_some(),
        last: None,
        first: true,
        done: false,
    };
    let events = futures::stream::unfold(watch, |mut w| async move {
        if w.done {
            return None;
        }
        let shutdown = w.state.shared.shutdown.clone();
        loop {
            if !w.first {
                // End with the server: an open stream must not hold up a graceful shutdown.
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(TICK) => {}
                }
            }
            let first = std::mem::replace(&mut w.first, false);
            let Some(session) = w.state.shared.sessions.resolve(&w.state, &w.headers).await else {
                w.done = true;
                let event = Event::default().event("signed_out").data("{}").retry(RETRY);
                return Some((Ok(event), w));
            };
            let notice = match snapshot(&w, Caller::own(&session.principal)).await {
                Ok(notice) => notice,
                Err(error) => {
                    tracing::warn!(%error, "dashboard event stream could not read the store");
                    continue;
                }
            };
            if w.last.as_ref() == Some(&notice) && !first {
                continue;
            }
            let mut event = Event::default().event("update").data(notice.to_string());
            if first {
                event = event.retry(RETRY);
            }
            w.last = Some(notice);
            return Some((Ok(event), w));
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// The watched jobs' counts and, when asked, every visible queue's numbers and every pool's
/// desired and actual workers.
async fn snapshot(w: &Watch, caller: Caller<'_>) -> spillway_core::Result<Value> {
    let mut jobs = Vec::with_capacity(w.jobs.len());
    for id in &w.jobs {
        match app::jobs::get(&w.state, caller, id).await {
            Ok(job) => jobs.push(json!({
                "id": job.id,
                "state": job.state.as_str(),
                "task_count": job.task_count,
                "finished": job.counts.finished(),
                "counts": job.counts,
                "finished_at": job.finished_at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            })),
            // A job deleted by retention, or never visible: nothing to say about it.
            Err(e) if e.kind() == spillway_core::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let mut queues = Vec::new();
    if w.queues {
        for s in app::queues::stats(&w.state, caller).await? {
            let c = s.counts;
            queues.push(json!({
                "key": format!("{}/{}", s.tenant, s.queue),
                "waiting": c.scheduled + c.available + c.retrying,
                "running": c.leased,
                "succeeded": c.succeeded,
                "dead": c.dead,
                "oldest": s.oldest_available_age_seconds.map(super::html::secs),
            }));
        }
    }
    let mut pools = Vec::new();
    if w.pools {
        for p in app::pools::list(&w.state, caller)? {
            pools.push(json!({ "name": p.name, "desired": p.desired, "actual": p.actual }));
        }
    }
    Ok(json!({ "jobs": jobs, "queues": queues, "pools": pools }))
}
