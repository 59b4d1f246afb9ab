//! One job: progress, tasks (with why waiting ones wait), inputs and results to download,
//! cancel and retry; and one task with its attempts and log tails.

use std::fmt::Write as _;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use spillway_blob::ByteStream;
use spillway_core::api::TaskDetail;
use spillway_core::auth::Action;
use spillway_core::model::{Job, Task};
use spillway_core::state::TaskState;
use spillway_core::{Error, TaskId, Timestamp};

use super::login::CsrfForm;
use super::{Params, render};
use crate::app::jobs::{self, TaskFilter};
use crate::app::why::{self, MAX_POSITION_SCAN, Standing};
use crate::app::{Caller, tasks};
use crate::dashboard::html::{self, Nav, badge, esc, post_button, progress, secs, url, url_path};
use crate::dashboard::{PageForm, PageResult, Signed};
use crate::extract::Path;
use crate::state::AppState;

/// Tasks per page of a job.
pub const TASKS_PER_PAGE: u32 = 50;
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
    let caller = Caller::own(principal);
    let job = jobs::get(&state, caller, &id).await?;
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
        let files = jobs::inputs(&state, caller, &job.id).await?;
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
    let (rows, next) = task_rows(&state, caller, &job, filter, cursor.clone()).await?;
    let _ = write!(
        body,
        "<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">#</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Attempts</th><th scope=\"col\">Duration</th><th scope=\"col\">Exit</th>\
         <th scope=\"col\">Worker</th><th scope=\"col\">Results</th><th scope=\"col\">Why waiting / error</th></tr></thead>\
         <tbody data-fragment=\"{}\">{rows}</tbody></table></div>",
        esc(&fragment_url)
    );
    let filters: Vec<(&str, &str)> = filter.map(|s| ("state", s.as_str())).into_iter().collect();
    body.push_str(&html::pager(
        &path,
        "Task pages",
        &filters,
        cursor.is_some(),
        next.as_deref(),
    ));
    body.push_str("</section>");
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
    let caller = Caller::own(signed.principal());
    let job = jobs::get(&state, caller, &id).await?;
    let filter = params.get("state").map(TaskState::parse).transpose()?;
    let cursor = params.get("cursor").map(str::to_string);
    let (rows, _) = task_rows(&state, caller, &job, filter, cursor).await?;
    let mut response = Html(rows).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// One page of a job's tasks as table rows, and the cursor of the next page.
async fn task_rows(
    state: &AppState,
    caller: Caller<'_>,
    job: &Job,
    filter: Option<TaskState>,
    cursor: Option<String>,
) -> Result<(String, Option<String>), Error> {
    let page = jobs::tasks(
        state,
        caller,
        &job.id,
        TaskFilter {
            state: filter.map(|s| s.as_str().to_string()),
            limit: Some(TASKS_PER_PAGE),
            cursor,
        },
    )
    .await?;
    let now = state.clock.now();
    let standings = why::standings(state, &page.items).await?;
    let mut out = String::new();
    let path = format!("/jobs/{}", url(&job.id));
    for (task, standing) in page.items.iter().zip(standings) {
        let attempts = if task.attempt > 0 {
            tasks::attempts(state, caller, task.id).await?
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
            for f in jobs::task_results(state, job, task.index).await? {
                let _ = write!(
                    results,
                    "<a href=\"{path}/results/{}/{}\" download>{}</a> ",
                    task.index,
                    url_path(&f.path),
                    esc(&f.path)
                );
            }
        }
        let note = if standing.reasons.is_empty() {
            task.last_error.as_ref().map_or(String::new(), |e| {
                format!("<span class=\"error-text\">{}</span>", esc(e))
            })
        } else {
            why_note(task, &standing, now)
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

/// Why a waiting task waits, in the words of `GET /v1/tasks/{id}/why`, with its position
/// in the lease order as that answer counts it (from 0).
fn why_note(task: &Task, standing: &Standing, now: Timestamp) -> String {
    let reasons: Vec<String> = standing.reasons.iter().map(|r| esc(&r.message)).collect();
    let mut note = reasons.join("; ");
    match standing.position {
        Some(n) => {
            let ahead = match n {
                0 => "next to be leased".to_string(),
                1 => "1 task ahead".to_string(),
                n => format!("{n} tasks ahead"),
            };
            let _ = write!(
                note,
                " <span class=\"position\" data-position=\"{n}\">(position {n}: {ahead})</span>"
            );
        }
        None if why::leasable(task, now) => {
            let _ = write!(
                note,
                " (position not counted: the queue holds over {MAX_POSITION_SCAN} waiting tasks)"
            );
        }
        None => {}
    }
    note
}

/// Cancel a job, then show it again.
pub async fn cancel(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    signed.check_csrf(&form.csrf)?;
    jobs::cancel(&state, Caller::own(signed.principal()), &id).await?;
    Ok(Redirect::to(&format!("/jobs/{}?notice=Cancel+requested", url(&id))).into_response())
}

/// Retry a job's dead and cancelled tasks, then show it again.
pub async fn retry(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> PageResult {
    signed.check_csrf(&form.csrf)?;
    let changed = jobs::retry(&state, Caller::own(signed.principal()), &id).await?;
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

/// Download one input file.
pub async fn input(
    State(state): State<AppState>,
    signed: Signed,
    Path((id, path)): Path<(String, String)>,
) -> PageResult {
    let stream = jobs::input(&state, Caller::own(signed.principal()), &id, &path).await?;
    Ok(attachment(download(stream), &path))
}

/// Download one result file.
pub async fn result(
    State(state): State<AppState>,
    signed: Signed,
    Path((id, index, path)): Path<(String, u32, String)>,
) -> PageResult {
    let caller = Caller::own(signed.principal());
    let stream = jobs::result(&state, caller, &id, index, &path).await?;
    Ok(attachment(download(stream), &path))
}

/// A file's bytes as `application/octet-stream`.
fn download(stream: ByteStream) -> Response {
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One task: its fields, payload, result and every attempt with its log tail.
pub async fn task(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<TaskId>,
) -> PageResult<Response> {
    let TaskDetail { task, attempts } =
        tasks::get(&state, Caller::own(signed.principal()), id).await?;
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
        // A running attempt's log is followed live (assets/log.js); every attempt's whole log
        // can be saved.
        let (summary, live) = if a.ended_at.is_none() {
            (
                format!(
                    "Live log <span id=\"log-status-{n}\" class=\"muted\"></span>",
                    n = a.attempt
                ),
                format!(
                    " data-live-log=\"/tasks/{}/log/events?attempt={n}\" data-status=\"log-status-{n}\"",
                    task.id,
                    n = a.attempt
                ),
            )
        } else {
            ("Log tail".to_string(), String::new())
        };
        let _ = write!(
            body,
            "<section class=\"card\"><h3>Attempt {} {}</h3><p>worker <code>{}</code>, started {}, ended {}, exit {}</p>{}\
             <p><a href=\"/tasks/{}/log?attempt={}\" download>Whole log</a></p>\
             <details open><summary>{summary}</summary><pre class=\"log\"{live}>{}</pre></details></section>",
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
            task.id,
            a.attempt,
            esc(&a.log_tail),
        );
    }
    if attempts.iter().any(|a| a.ended_at.is_none()) {
        body.push_str("<script src=\"/assets/log.js\" defer></script>");
    }
    Ok(render(
        &signed,
        &format!("Task {}", task.id),
        Nav::Jobs,
        &body,
    ))
}
