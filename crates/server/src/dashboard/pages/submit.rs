//! Submitting a job from a form: command, count or a JSON-lines payload file, input files
//! (multipart, streamed into an upload area), priority and burstable.
//!
//! The form keeps the API's limits: its fields and payload file together are what
//! `POST /v1/jobs` takes as its JSON body, so they are read within `max_body_bytes` and
//! refused (413) as soon as they pass it; each input file is what `PUT /v1/uploads/…` takes,
//! streamed to blob storage within `max_upload_bytes` and never held in memory.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{Multipart, State};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use futures::SinkExt;
use spillway_core::Error;
use spillway_core::api::{NewTask, SubmitJob};
use spillway_core::auth::{Action, Principal};
use spillway_core::keys::validate_relative_path;

use super::{options, render};
use crate::app::{Caller, jobs, queues, uploads};
use crate::dashboard::html::{self, Nav, url};
use crate::dashboard::{PageResult, Signed};
use crate::state::AppState;

/// The submit form.
pub async fn form(State(state): State<AppState>, signed: Signed) -> PageResult<Response> {
    let principal = signed.principal();
    principal.require(Action::Submit)?;
    let mut queues: Vec<String> = queues::list(&state, Caller::own(principal))
        .await?
        .into_iter()
        .map(|q| q.name)
        .collect();
    queues.sort();
    queues.dedup();
    let default = queues
        .iter()
        .position(|q| q == "default")
        .map(|_| "default");
    let queue_options = options(&queues, default, "choose a queue");
    let tenant_field = if principal.tenant.is_none() {
        "<div class=\"field\"><label for=\"s-tenant\">Tenant</label>\
         <input id=\"s-tenant\" name=\"tenant\" value=\"default\"></div>"
    } else {
        ""
    };
    let mut body = String::new();
    let _ = write!(
        body,
        "<form class=\"card submit\" method=\"post\" action=\"/submit\" enctype=\"multipart/form-data\">{}{tenant_field}\
         <div class=\"field\"><label for=\"s-queue\">Queue</label><select id=\"s-queue\" name=\"queue\" required>{queue_options}</select></div>\
         <div class=\"field\"><label for=\"s-name\">Name</label><input id=\"s-name\" name=\"name\" maxlength=\"200\"></div>\
         <div class=\"field wide\"><label for=\"s-command\">Command</label>\
         <input id=\"s-command\" name=\"command\" required placeholder=\"python3 task.py --index {{index}}\">\
         <label class=\"check\"><input type=\"checkbox\" name=\"shell\" value=\"on\" checked> run through <code>sh -c</code></label>\
         <p class=\"hint\">Inputs are in <code>$SPILLWAY_INPUT_DIR</code>; files written to <code>$SPILLWAY_OUTPUT_DIR</code> become results.</p></div>\
         <div class=\"field\"><label for=\"s-count\">Tasks</label><input id=\"s-count\" name=\"count\" type=\"number\" min=\"1\" max=\"100000\" value=\"1\"></div>\
         <div class=\"field\"><label for=\"s-priority\">Priority</label><input id=\"s-priority\" name=\"priority\" type=\"number\" min=\"-1000\" max=\"1000\" value=\"0\"></div>\
         <div class=\"field\"><label for=\"s-labels\">Labels</label><input id=\"s-labels\" name=\"labels\" placeholder=\"team=data, run=7\"></div>\
         <div class=\"field\"><label class=\"check\"><input type=\"checkbox\" name=\"burstable\" value=\"on\"> burstable</label></div>\
         <div class=\"field wide\"><label for=\"s-payloads\">Payloads (JSON lines, one task per line; replaces the task count)</label>\
         <input id=\"s-payloads\" name=\"payloads\" type=\"file\" accept=\".jsonl,.json,.txt,application/json\"></div>\
         <div class=\"field wide\"><label for=\"s-inputs\">Input files</label><input id=\"s-inputs\" name=\"inputs\" type=\"file\" multiple></div>\
         <div class=\"field wide\"><button type=\"submit\" class=\"primary\">Submit job</button></div></form>",
        html::csrf_field(&signed.0.csrf),
    );
    Ok(render(&signed, "Submit a job", Nav::Submit, &body))
}

/// What the form sent, apart from input files.
#[derive(Debug, Default)]
struct SubmitForm {
    tenant: Option<String>,
    queue: String,
    name: Option<String>,
    command: String,
    shell: bool,
    count: Option<u32>,
    priority: i32,
    burstable: bool,
    labels: BTreeMap<String, String>,
    payloads: Option<Vec<NewTask>>,
}

fn multipart_error(e: MultipartError) -> Error {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        Error::too_large(
            "the form is over the server's limit (max_upload_bytes for the files plus max_body_bytes for the rest): send smaller files, or upload them through the API",
        )
    } else {
        Error::invalid(format!(
            "could not read the form: {}",
            e.body_text().to_lowercase()
        ))
    }
}

/// Take the job's form and files, stage the files and submit through the API's handler.
pub async fn submit(
    State(state): State<AppState>,
    signed: Signed,
    mut multipart: Multipart,
) -> PageResult {
    let principal = signed.principal().clone();
    principal.require(Action::Submit)?;
    let mut form = SubmitForm::default();
    let mut fields = FieldBudget::new(state.config.body_limit());
    let upload_limit = state.config.max_upload_bytes.0;
    let mut csrf_ok = false;
    let mut upload: Option<String> = None;
    let result: Result<(), Error> = async {
        while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
            let name = field.name().unwrap_or("").to_string();
            // The CSRF field comes first in the form: nothing is read or stored before it.
            if name == "_csrf" {
                signed.check_csrf(&fields.text(&name, &mut field).await?)?;
                csrf_ok = true;
                continue;
            }
            if !csrf_ok {
                return Err(Error::permission_denied(
                    "the form has no CSRF token: reload the page and submit again",
                ));
            }
            match name.as_str() {
                "inputs" => {
                    let Some(file) = field
                        .file_name()
                        .map(str::to_string)
                        .filter(|f| !f.is_empty())
                    else {
                        continue;
                    };
                    validate_relative_path(&file)?;
                    let caller = form.caller(&principal);
                    let id = match &upload {
                        Some(id) => id.clone(),
                        None => uploads::create(&state, caller).await?,
                    };
                    upload = Some(id.clone());
                    store_field(&state, caller, &id, &file, field, upload_limit).await?;
                }
                "payloads" => {
                    let bytes = fields.read(&mut field).await?;
                    form.payloads = parse_payloads(&bytes, state.config.payload_limit())?;
                }
                _ => {
                    let value = fields.text(&name, &mut field).await?;
                    form.set(&name, value.trim())?;
                }
            }
        }
        if !csrf_ok {
            return Err(Error::permission_denied(
                "the form has no CSRF token: reload the page and submit again",
            ));
        }
        Ok(())
    }
    .await;
    let tenant = form.requested_tenant(&principal);
    let submitted = match result {
        Ok(()) => send(&state, &principal, form, upload.clone()).await,
        Err(e) => Err(e),
    };
    match submitted {
        Ok(job_id) => Ok(
            Redirect::to(&format!("/jobs/{}?notice=Job+submitted", url(&job_id))).into_response(),
        ),
        Err(error) => {
            // The API keeps a failed submit's upload for another try; the form cannot reuse it.
            if let Some(id) = &upload {
                let caller = Caller::new(&principal, tenant.as_deref());
                let _ = uploads::discard(&state, caller, id).await;
            }
            Err(error.into())
        }
    }
}

async fn send(
    state: &AppState,
    principal: &Principal,
    form: SubmitForm,
    upload_id: Option<String>,
) -> Result<String, Error> {
    if form.command.is_empty() {
        return Err(Error::invalid("command is empty: give the program to run"));
    }
    let command = if form.shell {
        vec![form.command.clone()]
    } else {
        form.command
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let mut request = SubmitJob::command(&form.queue, command);
    request.spec.shell = form.shell;
    request.tenant = form.requested_tenant(principal);
    request.name = form.name;
    request.priority = form.priority;
    request.burstable = form.burstable;
    request.labels = form.labels;
    request.upload_id = upload_id;
    match form.payloads {
        Some(tasks) => request.tasks = Some(tasks),
        None => request.count = form.count,
    }
    let tenant = request.tenant.clone();
    let caller = Caller::new(principal, tenant.as_deref());
    let submitted = jobs::submit(state, caller, request).await?;
    Ok(submitted.job.id)
}

impl SubmitForm {
    /// The tenant the form names: only an admin of every tenant names one; others act in
    /// their own.
    fn requested_tenant(&self, principal: &Principal) -> Option<String> {
        self.tenant.clone().filter(|_| principal.tenant.is_none())
    }

    /// The caller acting in the form's tenant.
    fn caller<'a>(&'a self, principal: &'a Principal) -> Caller<'a> {
        let requested = self
            .tenant
            .as_deref()
            .filter(|_| principal.tenant.is_none());
        Caller::new(principal, requested)
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), Error> {
        let opt = || (!value.is_empty()).then(|| value.to_string());
        match name {
            "tenant" => self.tenant = opt(),
            "queue" => self.queue = value.to_string(),
            "name" => self.name = opt(),
            "command" => self.command = value.to_string(),
            "shell" => self.shell = true,
            "burstable" => self.burstable = true,
            "count" if !value.is_empty() => {
                self.count = Some(value.parse().map_err(|_| {
                    Error::invalid(format!(
                        "task count {value:?} is not a number: use 1 to 100000"
                    ))
                })?)
            }
            "priority" if !value.is_empty() => {
                self.priority = value.parse().map_err(|_| {
                    Error::invalid(format!(
                        "priority {value:?} is not a number: use -1000 to 1000"
                    ))
                })?
            }
            "labels" => {
                for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').ok_or_else(|| {
                        Error::invalid(format!(
                            "label {pair:?} is not key=value: write labels like team=data, run=7"
                        ))
                    })?;
                    self.labels
                        .insert(k.trim().to_string(), v.trim().to_string());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// What is left of `max_body_bytes` for the form's fields and payload file, which together
/// stand for the JSON body of `POST /v1/jobs`.
struct FieldBudget {
    limit: usize,
    left: usize,
}

impl FieldBudget {
    fn new(limit: usize) -> Self {
        Self { limit, left: limit }
    }

    /// Read one field whole, failing as soon as the fields read so far pass the limit.
    async fn read(&mut self, field: &mut Field<'_>) -> Result<Bytes, Error> {
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if chunk.len() > self.left {
                return Err(Error::too_large(format!(
                    "the form's fields and payload file are over the limit of {} bytes (max_body_bytes, the same as for the JSON body of POST /v1/jobs): stage large data as input files, or split the payloads into several jobs",
                    self.limit
                )));
            }
            self.left -= chunk.len();
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// Read one text field whole, within the limit.
    async fn text(&mut self, name: &str, field: &mut Field<'_>) -> Result<String, Error> {
        let bytes = self.read(field).await?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            Error::invalid(format!(
                "form field {name:?} is not UTF-8 text: send the form from the dashboard's page"
            ))
        })
    }
}

/// One task per non-empty line of JSON.
fn parse_payloads(bytes: &Bytes, limit: usize) -> Result<Option<Vec<NewTask>>, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Error::invalid("the payload file is not UTF-8 text: give JSON lines"))?;
    let mut tasks = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > limit {
            return Err(Error::too_large(format!(
                "payload on line {} is {} bytes, over the limit of {limit}: stage large data as input files",
                n + 1,
                line.len()
            )));
        }
        let payload: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            Error::invalid(format!(
                "line {} of the payload file is not JSON: {e}",
                n + 1
            ))
        })?;
        tasks.push(NewTask {
            payload: Some(payload),
        });
    }
    Ok(Some(tasks))
}

/// Stream one uploaded file into the upload area `id` without holding it in memory, failing
/// once it passes `limit` bytes (max_upload_bytes, as for `PUT /v1/uploads/…`).
async fn store_field(
    state: &AppState,
    caller: Caller<'_>,
    id: &str,
    path: &str,
    mut field: Field<'_>,
    limit: u64,
) -> Result<u64, Error> {
    let (mut tx, rx) = futures::channel::mpsc::channel::<spillway_core::Result<Bytes>>(4);
    let put = uploads::put(state, caller, id, path, move || Ok(Box::pin(rx)));
    let pump = async move {
        let mut seen: u64 = 0;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    seen += chunk.len() as u64;
                    let item = if seen > limit {
                        Err(Error::too_large(format!(
                            "input file {path:?} is over the limit of {limit} bytes (max_upload_bytes): split the file or raise the limit"
                        )))
                    } else {
                        Ok(chunk)
                    };
                    let over = item.is_err();
                    if tx.send(item).await.is_err() || over {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(multipart_error(e))).await;
                    return;
                }
            }
        }
    };
    let (stored, ()) = tokio::join!(put, pump);
    let size = stored?.size;
    tracing::debug!(upload = %id, %path, size, "dashboard upload stored");
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_lines_become_tasks_and_bad_lines_are_named() {
        let tasks = parse_payloads(&Bytes::from_static(b"{\"a\":1}\n\n2\n"), 100)
            .ok()
            .flatten()
            .unwrap_or_default();
        assert_eq!(tasks.len(), 2);
        let err = parse_payloads(&Bytes::from_static(b"1\n{oops\n"), 100).err();
        assert!(err.is_some_and(|e| e.message().contains("line 2")));
        assert!(matches!(
            parse_payloads(&Bytes::from_static(b"  \n"), 100),
            Ok(None)
        ));
    }
}
