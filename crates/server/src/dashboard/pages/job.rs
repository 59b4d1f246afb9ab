//! One job: progress, tasks (with why waiting ones wait), inputs and results to download,
//! cancel and retry; and one task with its attempts and log tails.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use spillway_core::auth::Action;
use spillway_core::keys::{inputs_prefix, results_prefix};
use spillway_core::model::{Job, Task};
use spillway_core::state::TaskState;
use spillway_core::{Error, TaskId, Timestamp};
use spillway_store::TaskList;

use super::login::CsrfForm;
use super::{Params, render, scope};
use crate::auth::Auth;
use crate::dashboard::html::{self, Nav, badge, esc, post_button, progress, secs, url, url_path};
use crate::dashboard::{PageForm, PageResult, Signed};
use crate::extract::{Path, Query};
use crate::routes::queues::TenantQuery;
use crate::state::AppState;

/// Tasks per page of a job.
pub const TASKS_PER_PAGE: u32 = 50;
/// Most leasable tasks looked at to tell a waiting task's place in line.
pub const POSITION_SCAN: u32 = 5000;
/// Input files listed on a job's page.
const INPUTS_SHOWN: usize = 100;

/// The job page.
pub async fn page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    params: Params,
) -> PageResult<Response> {
    let principal = signed.principal();
    let job = state.store.job_get(scope(principal), &id).await?;
    let mut body = String::new();
    if let Some(notice) = params.get("notice") {
        body.push_str(&html::flash(notice));
    }
    let _ = write!(
        body,
        "<section class=\"card\" data-job=\"{}\" data-live=\"job\" data-counts=\"{}\">\
         <p class=\"job-head\">{} <code class=\"id\">{}</code></p>{}\
         <p><span data-field=\"finished\">{}</span> of {} tasks finished · {}</p><dl class=\"facts\">",
        esc(&job.id),
        esc(&serde_json::to_string(&job.counts).unwrap_or_default()),
        badge(job.state.as_str()),
        esc(&job.id),
        progress(&job.counts, job.task_count),
        job.counts.finished(),
        job.task_count,
        counts_line(&job),
    );
    let command = job.spec.command.join(" ");
    let labels: Vec<String> = job
        .labels
        .iter()
        .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
        .collect();
    let facts = [
        ("Name", esc(job.name.as_deref().unwrap_or("(unnamed)"))),
        ("Tenant", esc(&job.tenant)),
        (
            "Queue",
            format!(
                "<a href=\"/jobs?queue={}\">{}</a>",
                url(&job.queue),
                esc(&job.queue)
            ),
        ),
        ("Command", format!("<code>{}</code>", esc(&command))),
        ("Priority", job.priority.to_string()),
        ("Burstable", if job.burstable { "yes" } else { "no" }.into()),
        ("Labels", labels.join(", ")),
        ("Submitted", html::time(job.created_at)),
        (
            "Finished",
            format!(
                "<span data-field=\"finished_at\">{}</span>",
                job.finished_at.map_or("–".to_string(), html::time)
            ),
        ),
    ];
    for (k, v) in facts {
        let _ = write!(body, "<dt>{k}</dt><dd>{v}</dd>");
    }
    body.push_str("</dl><div class=\"actions\">");
    let csrf = &signed.0.csrf;
    let path = format!("/jobs/{}", url(&job.id));
    if principal.role.allows(Action::Cancel) && !job.state.is_final() && !job.cancel_requested {
        // The page's script hides it once the job finishes.
        body.push_str("<span data-hide-when-final>");
        body.push_str(&post_button(
            &format!("{path}/cancel"),
            "Cancel job",
            csrf,
            &[],
        ));
        body.push_str("</span>");
    }
    if principal.role.allows(Action::Requeue) && job.counts.dead + job.counts.cancelled > 0 {
        body.push_str(&post_button(
            &format!("{path}/retry"),
            "Retry dead and cancelled tasks",
            csrf,
            &[],
        ));
    }
    body.push_str("</div></section>");

    if job.has_inputs {
        let files = state
            .blobs
            .list(&inputs_prefix(&job.tenant, &job.id))
            .await?;
        body.push_str("<section aria-labelledby=\"in-h\"><h2 id=\"in-h\">Inputs</h2><ul class=\"plain files\">");
        for f in files.iter().take(INPUTS_SHOWN) {
            let _ = write!(
                body,
                "<li><a href=\"{path}/inputs/{}\" download>{}</a> ({} bytes)</li>",
                url_path(&f.path),
                esc(&f.path),
                f.size
            );
        }
        if files.len() > INPUTS_SHOWN {
            let _ = write!(body, "<li>… and {} more</li>", files.len() - INPUTS_SHOWN);
        }
        body.push_str("</ul></section>");
    }

    let filter = params.get("state").map(TaskState::parse).transpose()?;
    let cursor = params.get("cursor").map(str::to_string);
    let states: Vec<String> = TaskState::ALL
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    let _ = write!(
        body,
        "<section aria-labelledby=\"t-h\"><h2 id=\"t-h\">Tasks</h2>\
         <form class=\"filters\" method=\"get\" action=\"{path}\">\
         <div><label for=\"t-state\">State</label><select id=\"t-state\" name=\"state\">{}</select></div>\
         <div><button type=\"submit\">Filter</button></div></form>",
        super::options(&states, filter.map(TaskState::as_str), "any state"),
    );
    let mut fragment_url = format!("{path}/tasks?");
    if let Some(s) = filter {
        let _ = write!(fragment_url, "state={}&", s.as_str());
    }
    if let Some(c) = &cursor {
        let _ = write!(fragment_url, "cursor={}", url(c));
    }
    let (rows, next) = task_rows(&state, &job, filter, cursor.clone()).await?;
    let _ = write!(
        body,
        "<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">#</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Attempts</th><th scope=\"col\">Duration</th><th scope=\"col\">Exit</th>\
         <th scope=\"col\">Worker</th><th scope=\"col\">Results</th><th scope=\"col\">Why waiting / error</th></tr></thead>\
         <tbody data-fragment=\"{}\">{rows}</tbody></table></div><nav class=\"pager\" aria-label=\"Task pages\">",
        esc(&fragment_url)
    );
    let keep = filter.map_or(String::new(), |s| format!("&state={}", s.as_str()));
    if cursor.is_some() {
        let _ = write!(
            body,
            "<a href=\"{path}?{}\">First page</a>",
            keep.trim_start_matches('&')
        );
    }
    if let Some(next) = next {
        let _ = write!(
            body,
            "<a href=\"{path}?cursor={}{keep}\" rel=\"next\">Next page</a>",
            url(&next)
        );
    }
    body.push_str("</nav></section>");
    let title = format!("Job {}", job.name.as_deref().unwrap_or(&job.id));
    Ok(render(&signed, &title, Nav::Jobs, &body))
}

fn counts_line(job: &Job) -> String {
    TaskState::ALL
        .iter()
        .map(|s| {
            format!(
                "<span class=\"count\">{} <span data-count=\"{}\">{}</span></span>",
                s.as_str(),
                s.as_str(),
                job.counts.get(*s)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The task rows alone, for the page's script to swap in when counts change.
pub async fn tasks_fragment(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    params: Params,
) -> PageResult<Response> {
    let job = state.store.job_get(scope(signed.principal()), &id).await?;
    let filter = params.get("state").map(TaskState::parse).transpose()?;
    let cursor = params.get("cursor").map(str::to_string);
    let (rows, _) = task_rows(&state, &job, filter, cursor).await?;
    let mut response = Html(rows).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// One page of a job's tasks as table rows, and the cursor of the next page.
async fn task_rows(
    state: &AppState,
    job: &Job,
    filter: Option<TaskState>,
    cursor: Option<String>,
) -> Result<(String, Option<String>), Error> {
    let page = state
        .store
        .task_list(TaskList {
            tenant: Some(job.tenant.clone()),
            job_id: Some(job.id.clone()),
            queue: None,
            state: filter,
            limit: TASKS_PER_PAGE,
            cursor,
        })
        .await?;
    let now = state.clock.now();
    let reasons = wait_reasons(state, job, &page.items, now).await?;
    let mut out = String::new();
    let path = format!("/jobs/{}", url(&job.id));
    for (task, reason) in page.items.iter().zip(reasons) {
        let attempts = if task.attempt > 0 {
            state
                .store
                .task_attempts(Some(&job.tenant), task.id)
                .await?
        } else {
            Vec::new()
        };
        let last = attempts.last();
        let duration = last.map_or("–".to_string(), |a| {
            let end = a.ended_at.unwrap_or(now);
            secs((end - a.started_at).num_milliseconds() as f64 / 1000.0)
        });
        let worker = task
            .lease
            .as_ref()
            .map(|l| l.worker_id.as_str())
            .or(last.map(|a| a.worker_id.as_str()))
            .unwrap_or("–");
        let mut results = String::new();
        if task.attempt > 0 {
            let prefix = results_prefix(&job.tenant, &job.id, task.index);
            for f in state.blobs.list(&prefix).await? {
                let _ = write!(
                    results,
                    "<a href=\"{path}/results/{}/{}\" download>{}</a> ",
                    task.index,
                    url_path(&f.path),
                    esc(&f.path)
                );
            }
        }
        let note = match (&reason, &task.last_error) {
            (Some(r), _) => esc(r),
            (None, Some(e)) => format!("<span class=\"error-text\">{}</span>", esc(e)),
            (None, None) => String::new(),
        };
        let _ = write!(
            out,
            "<tr><td><a href=\"/tasks/{}\">{}</a></td><td>{}</td><td>{} of {}</td><td>{duration}</td>\
             <td>{}</td><td>{}</td><td>{results}</td><td>{note}</td></tr>",
            task.id,
            task.index,
            badge(task.state.as_str()),
            task.attempt,
            task.max_attempts,
            task.exit_code.map_or("–".to_string(), |c| c.to_string()),
            esc(worker),
        );
    }
    if page.items.is_empty() {
        out.push_str("<tr><td colspan=\"8\">No tasks match.</td></tr>");
    }
    Ok((out, page.next_cursor))
}

/// Why each waiting task waits (None for tasks that do not wait).
async fn wait_reasons(
    state: &AppState,
    job: &Job,
    tasks: &[Task],
    now: Timestamp,
) -> Result<Vec<Option<String>>, Error> {
    if !tasks.iter().any(|t| t.state.is_waiting()) {
        return Ok(vec![None; tasks.len()]);
    }
    let queue = state.store.queue_get(&job.tenant, &job.queue).await?;
    let in_line = |t: &Task| t.state.is_waiting() && t.run_at <= now;
    let line = if !queue.settings.paused && tasks.iter().any(in_line) {
        Some(leasable(state, job, now).await?)
    } else {
        None
    };
    Ok(tasks
        .iter()
        .map(|t| {
            if !t.state.is_waiting() {
                return None;
            }
            if queue.settings.paused {
                return Some("queue paused".to_string());
            }
            if t.run_at > now {
                let when = t.run_at.format("%Y-%m-%d %H:%M:%S UTC");
                return Some(match t.state {
                    TaskState::Retrying => format!("in backoff until {when}"),
                    _ => format!("scheduled for {when}"),
                });
            }
            let (ahead, complete) = match &line {
                Some((l, c)) => (l.as_slice(), *c),
                None => (&[][..], true),
            };
            let before = ahead.iter().filter(|o| runs_before(o, t)).count() + 1;
            Some(if complete {
                format!("waiting for a worker (position {before})")
            } else {
                format!("waiting for a worker (position {before} or later)")
            })
        })
        .collect())
}

/// (priority, run_at, id) of tasks leasable now in the job's queue, up to [`POSITION_SCAN`];
/// the flag says whether that was all of them.
async fn leasable(
    state: &AppState,
    job: &Job,
    now: Timestamp,
) -> Result<(Vec<(i32, Timestamp, TaskId)>, bool), Error> {
    let mut out = Vec::new();
    for s in [
        TaskState::Available,
        TaskState::Retrying,
        TaskState::Scheduled,
    ] {
        let mut cursor = None;
        loop {
            let room = POSITION_SCAN.saturating_sub(out.len() as u32);
            if room == 0 {
                return Ok((out, false));
            }
            let page = state
                .store
                .task_list(TaskList {
                    tenant: Some(job.tenant.clone()),
                    job_id: None,
                    queue: Some(job.queue.clone()),
                    state: Some(s),
                    limit: room.min(spillway_core::api::MAX_PAGE_SIZE),
                    cursor,
                })
                .await?;
            out.extend(
                page.items
                    .iter()
                    .filter(|t| t.run_at <= now)
                    .map(|t| (t.priority, t.run_at, t.id)),
            );
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok((out, true))
}

/// Whether `other` is leased before `task`: higher priority, then earlier run_at, then id.
fn runs_before(other: &(i32, Timestamp, TaskId), task: &Task) -> bool {
    let (p, at, id) = *other;
    (std::cmp::Reverse(p), at, id) < (std::cmp::Reverse(task.priority), task.run_at, task.id)
}

/// Cancel a job through the API's handler, then show it again.
pub async fn cancel(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    signed.check_csrf(&form.csrf)?;
    let auth = Auth(signed.principal().clone());
    let _ = crate::routes::jobs::cancel(
        State(state),
        auth,
        Path(id.clone()),
        Query(TenantQuery { tenant: None }),
    )
    .await?;
    Ok(Redirect::to(&format!("/jobs/{}?notice=Cancel+requested", url(&id))).into_response())
}

/// Retry a job's dead and cancelled tasks through the API's handler.
pub async fn retry(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    signed.check_csrf(&form.csrf)?;
    let auth = Auth(signed.principal().clone());
    let changed = crate::routes::jobs::retry(
        State(state),
        auth,
        Path(id.clone()),
        Query(TenantQuery { tenant: None }),
    )
    .await?
    .0
    .changed;
    Ok(Redirect::to(&format!(
        "/jobs/{}?notice=Requeued+{changed}+tasks",
        url(&id)
    ))
    .into_response())
}

fn attachment(mut response: Response, path: &str) -> Response {
    let name = path.rsplit('/').next().unwrap_or(path);
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// Download one input file (through the API's handler, so the same checks apply).
pub async fn input(
    State(state): State<AppState>,
    signed: Signed,
    Path((id, path)): Path<(String, String)>,
) -> PageResult {
    let auth = Auth(signed.principal().clone());
    let response = crate::routes::objects::input_get(
        State(state),
        auth,
        Path((id, path.clone())),
        Query(TenantQuery { tenant: None }),
    )
    .await?;
    Ok(attachment(response, &path))
}

/// Download one result file.
pub async fn result(
    State(state): State<AppState>,
    signed: Signed,
    Path((id, index, path)): Path<(String, u32, String)>,
) -> PageResult {
    let auth = Auth(signed.principal().clone());
    let response = crate::routes::objects::result_get(
        State(state),
        auth,
        Path((id, index, path.clone())),
        Query(TenantQuery { tenant: None }),
    )
    .await?;
    Ok(attachment(response, &path))
}

/// One task: its fields, payload, result and every attempt with its log tail.
pub async fn task(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<TaskId>,
) -> PageResult<Response> {
    let principal = signed.principal();
    let task = state.store.task_get(scope(principal), id).await?;
    let attempts = state.store.task_attempts(scope(principal), id).await?;
    let mut body = format!(
        "<p>{} task {} of job <a href=\"/jobs/{}\"><code>{}</code></a> in queue {}</p><dl class=\"facts card\">",
        badge(task.state.as_str()),
        task.index,
        url(&task.job_id),
        esc(&task.job_id),
        esc(&task.queue),
    );
    let json = |v: &Option<serde_json::Value>| {
        v.as_ref().map_or("–".to_string(), |v| {
            format!(
                "<pre>{}</pre>",
                esc(&serde_json::to_string_pretty(v).unwrap_or_default())
            )
        })
    };
    let facts = [
        (
            "Attempts",
            format!(
                "{} (failures {}, preemptions {}, max {})",
                task.attempt, task.failures, task.preemptions, task.max_attempts
            ),
        ),
        ("Run at", html::time(task.run_at)),
        (
            "Exit code",
            task.exit_code.map_or("–".into(), |c| c.to_string()),
        ),
        ("Last error", esc(task.last_error.as_deref().unwrap_or("–"))),
        ("Payload", json(&task.payload)),
        ("Result", json(&task.result)),
    ];
    for (k, v) in facts {
        let _ = write!(body, "<dt>{k}</dt><dd>{v}</dd>");
    }
    body.push_str("</dl><h2>Attempts</h2>");
    if attempts.is_empty() {
        body.push_str("<p>Not run yet.</p>");
    }
    for a in attempts.iter().rev() {
        let _ = write!(
            body,
            "<section class=\"card\"><h3>Attempt {} {}</h3><p>worker <code>{}</code>, started {}, ended {}, exit {}</p>{}\
             <details open><summary>Log tail</summary><pre class=\"log\">{}</pre></details></section>",
            a.attempt,
            badge(a.outcome.as_str()),
            esc(&a.worker_id),
            html::time(a.started_at),
            a.ended_at.map_or("–".to_string(), html::time),
            a.exit_code.map_or("–".to_string(), |c| c.to_string()),
            a.error.as_deref().map_or(String::new(), |e| format!(
                "<p class=\"error-text\">{}</p>",
                esc(e)
            )),
            esc(&a.log_tail),
        );
    }
    Ok(render(
        &signed,
        &format!("Task {}", task.id),
        Nav::Jobs,
        &body,
    ))
}
