//! The web dashboard over real HTTP: sign-in, cookie flags, CSRF, roles and tenants, submit
//! with an input file, requeue, escaping, the live event stream, and the job page agreeing
//! with the API on where a task stands.

use std::ops::Deref;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use spillway_autoscale::config::PoolConfig;
use spillway_core::api::Failure;
use spillway_server::ServerConfig;
use spillway_server::autoscale::Autoscaler;
use spillway_server::size::ByteSize;
use spillway_server::testkit::TestServer;
use spillway_store::{DynStore, TaskFail, TaskLease, WorkerRegister};

/// The shared [`TestServer`] (system clock) and an API client for it.
struct Server {
    server: TestServer,
    api: reqwest::Client,
}

impl Deref for Server {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl Server {
    async fn start() -> Server {
        Server::start_with(ServerConfig::default()).await
    }

    async fn start_with(config: ServerConfig) -> Server {
        Server {
            server: TestServer::builder().config(config).start().await,
            api: reqwest::Client::new(),
        }
    }

    /// Stop the server; this also proves open event streams do not hold up the shutdown.
    async fn stop(self) {
        tokio::time::timeout(Duration::from_secs(20), self.server.stop())
            .await
            .expect("server stops within 20s");
    }

    async fn api_post(&self, path: &str, token: &str, body: Value) -> Value {
        let resp = self
            .api
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("send");
        assert!(resp.status().is_success(), "POST {path}: {}", resp.status());
        resp.json().await.expect("json")
    }

    async fn token(&self, role: &str, tenant: &str) -> String {
        let body = json!({"name": format!("{role}-{tenant}"), "role": role, "tenant": tenant});
        self.api_post("/v1/tokens", &self.admin, body).await["token"]
            .as_str()
            .expect("secret")
            .to_string()
    }

    async fn submit(&self, token: &str, body: Value) -> String {
        self.api_post("/v1/jobs", token, body).await["job"]["id"]
            .as_str()
            .expect("job id")
            .to_string()
    }

    /// A browser-like client (cookie jar, no redirects followed) signed in with `token`.
    async fn browser(&self, token: &str) -> Browser {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let b = Browser {
            base: self.base.clone(),
            http,
        };
        let form = b.get("/login").await;
        assert_eq!(form.status(), StatusCode::OK);
        let csrf = csrf_of(&form.text().await.expect("body"));
        let resp = b
            .post_form("/login", &[("token", token), ("_csrf", &csrf)])
            .await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "sign-in redirects");
        b
    }
}

struct Browser {
    base: String,
    http: reqwest::Client,
}

impl Browser {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("send")
    }

    async fn page(&self, path: &str) -> String {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        resp.text().await.expect("body")
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .expect("send")
    }

    async fn csrf(&self) -> String {
        csrf_of(&self.page("/").await)
    }
}

fn csrf_of(html: &str) -> String {
    let marker = "name=\"_csrf\" value=\"";
    let start = html.find(marker).expect("a CSRF field") + marker.len();
    let end = html[start..].find('"').expect("end of value") + start;
    html[start..end].to_string()
}

async fn job(store: &DynStore, id: &str) -> spillway_core::model::Job {
    store.job_get(None, id).await.expect("job")
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_session_cookie() {
    let server = Server::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let home = http
        .get(format!("{}/", server.base))
        .send()
        .await
        .expect("send");
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(home.headers()[LOCATION], "/login");

    let form = http
        .get(format!("{}/login", server.base))
        .send()
        .await
        .expect("send");
    let login_cookie = form.headers()[SET_COOKIE]
        .to_str()
        .expect("text")
        .to_string();
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"));
    let csrf = csrf_of(&form.text().await.expect("body"));
    let cookie = login_cookie.split(';').next().expect("pair").to_string();

    // Without the sign-in cookie (a form posted from another site) nobody is signed in.
    let forged = http
        .post(format!("{}/login", server.base))
        .form(&[("token", server.admin.as_str()), ("_csrf", &csrf)])
        .send()
        .await
        .expect("send");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.headers().get(SET_COOKIE).is_none());

    let wrong = http
        .post(format!("{}/login", server.base))
        .header("cookie", &cookie)
        .form(&[("token", "sw_wrong"), ("_csrf", &csrf)])
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong
            .text()
            .await
            .expect("body")
            .contains("unknown or revoked token")
    );

    let ok = http
        .post(format!("{}/login", server.base))
        .header("cookie", &cookie)
        .form(&[("token", server.admin.as_str()), ("_csrf", &csrf)])
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let session = ok
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("spillway_session="))
        .expect("session cookie")
        .to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(flag), "{flag} missing from {session}");
    }
    assert!(
        !session.contains(&server.admin),
        "the cookie must not carry the token"
    );
    let pair = session.split(';').next().expect("pair");
    let page = http
        .get(format!("{}/", server.base))
        .header("cookie", pair)
        .send()
        .await
        .expect("send");
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert!(
        page.text()
            .await
            .expect("body")
            .contains("<h1>Overview</h1>")
    );
    server.stop().await;
}

/// The Set-Cookie values of an answer.
fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

/// Sign in with `token` by hand; the sign-in form's and the sign-in's Set-Cookie values.
async fn sign_in_cookies(base: &str, token: &str) -> Vec<String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let form = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("send");
    let mut cookies = set_cookies(&form);
    let pair = cookies[0].split(';').next().expect("pair").to_string();
    let csrf = csrf_of(&form.text().await.expect("body"));
    let ok = http
        .post(format!("{base}/login"))
        .header("cookie", pair)
        .form(&[("token", token), ("_csrf", &csrf)])
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    cookies.extend(set_cookies(&ok));
    cookies
}

#[tokio::test]
async fn secure_cookies_marks_every_dashboard_cookie_secure_and_only_then() {
    let plain = Server::start().await;
    let cookies = sign_in_cookies(&plain.base, &plain.admin).await;
    assert!(
        cookies.iter().any(|c| c.starts_with("spillway_session=")),
        "{cookies:?}"
    );
    assert!(cookies.iter().all(|c| !c.contains("Secure")), "{cookies:?}");
    plain.stop().await;

    let secure = Server::start_with(ServerConfig {
        secure_cookies: true,
        ..Default::default()
    })
    .await;
    let cookies = sign_in_cookies(&secure.base, &secure.admin).await;
    assert_eq!(cookies.len(), 3, "{cookies:?}");
    for cookie in &cookies {
        assert!(cookie.ends_with("; Secure"), "{cookie}");
        assert!(cookie.contains("HttpOnly; SameSite=Strict"), "{cookie}");
    }
    secure.stop().await;
}

#[tokio::test]
async fn dashboard_pages_carry_a_strict_csp_and_use_nothing_inline_it_would_block() {
    let server = Server::start().await;
    let id = server
        .submit(&server.admin, json!({"command": ["true"], "count": 4}))
        .await;
    let b = server.browser(&server.admin).await;
    let login = b.get("/login").await;
    let error = b.get("/jobs/no-such-job").await;
    assert_eq!(error.status(), StatusCode::NOT_FOUND);
    let mut pages = vec![login, error];
    for path in [
        "/".to_string(),
        "/jobs".to_string(),
        format!("/jobs/{id}"),
        format!("/jobs/{id}/tasks"),
        "/queues".to_string(),
        "/workers".to_string(),
        "/dead".to_string(),
        "/submit".to_string(),
    ] {
        let resp = b.get(&path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        pages.push(resp);
    }
    for resp in pages {
        let path = resp.url().path().to_string();
        let h = resp.headers().clone();
        assert_eq!(
            h["content-security-policy"],
            spillway_server::headers::DASHBOARD_CSP,
            "{path}"
        );
        assert!(
            spillway_server::headers::DASHBOARD_CSP.contains("frame-ancestors 'none'")
                && !spillway_server::headers::DASHBOARD_CSP.contains("unsafe-inline")
        );
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        // What `default-src 'self'` would block: inline scripts, styles and event handlers.
        let html = resp.text().await.expect("body");
        for blocked in [" style=", "<style", "javascript:", " onclick=", " onload="] {
            assert!(!html.contains(blocked), "{path} has {blocked}: {html}");
        }
        for (at, _) in html.match_indices("<script") {
            assert!(
                html[at..].starts_with("<script src=\"/assets/"),
                "{path} has an inline script"
            );
        }
    }
    let page = b.page(&format!("/jobs/{id}")).await;
    assert!(page.contains("<svg class=\"progress\""), "{page}");
    server.stop().await;
}

#[tokio::test]
async fn posts_without_the_session_csrf_token_or_from_another_origin_are_refused() {
    let server = Server::start().await;
    let id = server
        .submit(&server.admin, json!({"command": ["true"], "count": 2}))
        .await;
    let b = server.browser(&server.admin).await;
    let path = format!("/jobs/{id}/cancel");
    for form in [vec![], vec![("_csrf", "forged")]] {
        let resp = b.post_form(&path, &form).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    let csrf = b.csrf().await;
    let cross = b
        .http
        .post(format!("{}{path}", b.base))
        .header("origin", "http://evil.example")
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .expect("send");
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert!(!job(&server.store, &id).await.cancel_requested);
    assert_eq!(job(&server.store, &id).await.counts.cancelled, 0);

    let resp = b.post_form(&path, &[("_csrf", &csrf)]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(job(&server.store, &id).await.counts.cancelled, 2);
    server.stop().await;
}

#[tokio::test]
async fn a_viewer_sees_only_its_tenant_and_can_change_nothing() {
    let server = Server::start().await;
    server
        .api_post("/v1/tenants", &server.admin, json!({"name": "blue"}))
        .await;
    let own = server
        .submit(&server.admin, json!({"command": ["true"], "name": "mine"}))
        .await;
    let other = server
        .submit(
            &server.admin,
            json!({"command": ["true"], "tenant": "blue", "name": "theirs"}),
        )
        .await;
    let viewer = server.token("viewer", "default").await;
    let b = server.browser(&viewer).await;

    let jobs = b.page("/jobs").await;
    assert!(jobs.contains(&own));
    assert!(!jobs.contains(&other), "another tenant's job is listed");
    assert!(
        !jobs.contains("href=\"/submit\""),
        "a viewer is offered submit"
    );
    assert_eq!(
        b.get(&format!("/jobs/{other}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        b.get(&format!("/jobs?id={other}")).await.status(),
        StatusCode::NOT_FOUND
    );
    let own_page = b.page(&format!("/jobs/{own}")).await;
    assert!(
        !own_page.contains("Cancel job"),
        "a viewer is offered cancel"
    );

    let csrf = b.csrf().await;
    assert_eq!(b.get("/submit").await.status(), StatusCode::FORBIDDEN);
    let form = reqwest::multipart::Form::new()
        .text("_csrf", csrf.clone())
        .text("queue", "default")
        .text("command", "true");
    let resp = b
        .http
        .post(format!("{}/submit", b.base))
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = b
        .post_form(&format!("/jobs/{own}/cancel"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(!job(&server.store, &own).await.cancel_requested);
    let all = server
        .store
        .job_list(spillway_store::JobList {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("jobs");
    assert_eq!(all.items.len(), 2, "the viewer's submit created a job");

    // The event stream says nothing about another tenant's job.
    let mut events = b.get(&format!("/events?jobs={own},{other}")).await;
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let first = events.chunk().await.expect("read").expect("an event");
    let text = String::from_utf8_lossy(&first);
    assert!(text.contains(&own) && !text.contains(&other), "{text}");
    drop(events);
    server.stop().await;
}

#[tokio::test]
async fn submit_with_an_input_file_then_download_it() {
    let server = Server::start().await;
    let b = server.browser(&server.admin).await;
    let form_page = b.page("/submit").await;
    let csrf = csrf_of(&form_page);
    let form = reqwest::multipart::Form::new()
        .text("_csrf", csrf)
        .text("queue", "default")
        .text("name", "<b>bold</b> & co")
        .text("command", "cat $SPILLWAY_INPUT_DIR/data.txt")
        .text("shell", "on")
        .text("count", "3")
        .text("priority", "5")
        .text("labels", "team=data, run=7")
        .part(
            "inputs",
            reqwest::multipart::Part::bytes(b"hello input".to_vec()).file_name("data.txt"),
        );
    let resp = b
        .http
        .post(format!("{}/submit", b.base))
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let location = resp.headers()[LOCATION].to_str().expect("text").to_string();
    let id = location
        .trim_start_matches("/jobs/")
        .split('?')
        .next()
        .expect("id")
        .to_string();
    let submitted = job(&server.store, &id).await;
    assert_eq!(submitted.task_count, 3);
    assert_eq!(submitted.priority, 5);
    assert!(submitted.has_inputs);
    assert!(submitted.spec.shell);
    assert_eq!(
        submitted.labels.get("team").map(String::as_str),
        Some("data")
    );

    let page = b.page(&location).await;
    assert!(
        page.contains("&lt;b&gt;bold&lt;/b&gt; &amp; co"),
        "name is escaped"
    );
    assert!(!page.contains("<b>bold</b>"));
    assert!(
        page.contains(
            "waiting for a worker serving queue &quot;default&quot; \
             <span class=\"position\" data-position=\"0\">(position 0: next to be leased)</span>"
        ),
        "why the first task waits, counted from 0 as GET /v1/tasks/{{id}}/why counts: {page}"
    );
    let download = b.get(&format!("/jobs/{id}/inputs/data.txt")).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert!(
        download.headers()["content-disposition"]
            .to_str()
            .expect("text")
            .contains("data.txt")
    );
    assert_eq!(
        download.bytes().await.expect("bytes").as_ref(),
        b"hello input"
    );
    // A payload file replaces the count: one task per JSON line.
    let csrf = b.csrf().await;
    let form = reqwest::multipart::Form::new()
        .text("_csrf", csrf)
        .text("queue", "default")
        .text("command", "true")
        .part(
            "payloads",
            reqwest::multipart::Part::bytes(b"{\"n\":1}\n{\"n\":2}\n".to_vec())
                .file_name("p.jsonl"),
        );
    let resp = b
        .http
        .post(format!("{}/submit", b.base))
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let location = resp.headers()[LOCATION].to_str().expect("text").to_string();
    let id = location
        .trim_start_matches("/jobs/")
        .split('?')
        .next()
        .expect("id");
    assert_eq!(job(&server.store, id).await.task_count, 2);
    server.stop().await;
}

#[tokio::test]
async fn the_submit_form_keeps_the_api_body_limit_for_its_payload_file() {
    let server = Server::start_with(ServerConfig {
        max_body_bytes: ByteSize(64 * 1024),
        ..Default::default()
    })
    .await;
    let b = server.browser(&server.admin).await;
    // 200 KiB of small JSON lines: each payload is far under max_payload_bytes and the task
    // count under its limit, but the whole is over the 64 KiB the JSON submit API takes.
    let payloads = "{\"n\":1}\n".repeat(200 * 1024 / 8);
    let form = reqwest::multipart::Form::new()
        .text("_csrf", b.csrf().await)
        .text("queue", "default")
        .text("command", "true")
        .part(
            "payloads",
            reqwest::multipart::Part::bytes(payloads.into_bytes()).file_name("p.jsonl"),
        );
    let resp = b
        .http
        .post(format!("{}/submit", b.base))
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let page = resp.text().await.expect("body");
    assert!(
        page.contains("over the limit of 65536 bytes (max_body_bytes"),
        "{page}"
    );
    let jobs = server
        .store
        .job_list(spillway_store::JobList {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("jobs");
    assert!(
        jobs.items.is_empty(),
        "a job was made from the refused form"
    );

    // Input files are not part of that limit: they stream to storage within max_upload_bytes,
    // as PUT /v1/uploads/{id}/files/{path} does.
    let form = reqwest::multipart::Form::new()
        .text("_csrf", b.csrf().await)
        .text("queue", "default")
        .text("command", "true")
        .part(
            "inputs",
            reqwest::multipart::Part::bytes(vec![b'x'; 200 * 1024]).file_name("big.bin"),
        );
    let resp = b
        .http
        .post(format!("{}/submit", b.base))
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    server.stop().await;
}

#[tokio::test]
async fn dead_tasks_are_listed_and_requeued_and_the_job_stream_follows() {
    let server = Server::start().await;
    let id = server
        .submit(
            &server.admin,
            json!({"command": ["false"], "name": "doomed"}),
        )
        .await;
    let now = chrono::Utc::now();
    server
        .store
        .worker_register(WorkerRegister {
            id: "w1".into(),
            tenant: "default".into(),
            pool: "default".into(),
            hostname: "h".into(),
            queues: vec!["default".into()],
            concurrency: 1,
            now,
        })
        .await
        .expect("register");
    let b = server.browser(&server.admin).await;
    let mut events = b.get(&format!("/events?jobs={id}")).await;
    let first = events.chunk().await.expect("read").expect("an event");
    assert!(String::from_utf8_lossy(&first).contains("\"state\":\"queued\""));

    let leased = server
        .store
        .task_lease(TaskLease {
            tenant: "default".into(),
            queues: vec!["default".into()],
            worker_id: "w1".into(),
            worker_pool: "default".into(),
            burstable_only: false,
            max: 1,
            now,
        })
        .await
        .expect("lease");
    let task = &leased[0];
    server
        .store
        .task_fail(TaskFail {
            tenant: None,
            items: vec![Failure {
                task_id: task.task_id,
                lease_token: task.lease_token.clone(),
                error: "exit status 1 <oops>".into(),
                exit_code: Some(1),
                retryable: false,
                log_tail: "some output".into(),
            }],
            now,
        })
        .await
        .expect("fail");
    // The stream pushes the change without anyone asking again.
    let mut seen = String::new();
    while !seen.contains("\"state\":\"failed\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), events.chunk())
            .await
            .expect("an update within 10s")
            .expect("read")
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }

    let dead = b.page("/dead").await;
    assert!(dead.contains("exit status 1 &lt;oops&gt;"));
    let task_page = b.page(&format!("/tasks/{}", task.task_id)).await;
    assert!(task_page.contains("some output"));
    let csrf = csrf_of(&dead);
    let resp = b
        .post_form(
            "/dead/requeue",
            &[("_csrf", &csrf), ("task_id", &task.task_id.to_string())],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(
        resp.headers()[LOCATION]
            .to_str()
            .expect("text")
            .contains("Requeued+1")
    );
    let after = job(&server.store, &id).await;
    assert_eq!((after.counts.dead, after.counts.available), (0, 1));
    // The server stops even with the stream still open.
    server.stop().await;
    drop(events);
}

#[tokio::test]
async fn a_stream_without_a_session_says_signed_out_and_ends() {
    let server = Server::start().await;
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{}/events?jobs=x", server.base))
        .header("cookie", "spillway_session=stale")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .expect("the stream ends")
        .expect("body");
    assert!(body.contains("event: signed_out"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn the_workers_page_lists_pools_with_their_decisions_escaped() {
    let mut pool = PoolConfig::new("ext<b>&co", "external", vec!["default".into()]);
    pool.max = 3;
    let server = Server::start_with(ServerConfig {
        pools: vec![pool],
        ..Default::default()
    })
    .await;
    let autoscaler = Autoscaler::with_registered_providers(server.state.clone());
    server
        .submit(&server.admin, json!({"command": ["x"], "tasks": [{}, {}]}))
        .await;
    autoscaler.pass().await.expect("autoscaler pass");
    let status = server.state.pools().statuses();
    let decision = status[0].decisions.last().expect("a scale-up decision");
    assert!(
        decision.to > 0,
        "work waiting scales the pool up: {decision:?}"
    );

    let viewer = server.token("viewer", "default").await;
    let b = server.browser(&viewer).await;
    let html = b.page("/workers").await;
    assert!(
        html.contains("Pools &amp; workers"),
        "renamed nav and title"
    );
    assert!(
        html.contains("ext&lt;b&gt;&amp;co"),
        "pool name escaped: {html}"
    );
    assert!(
        !html.contains("ext<b>"),
        "raw pool name leaked into the page"
    );
    assert!(html.contains("<td>external</td>"), "provider shown");
    assert!(
        html.contains(&format!(
            "<span data-field=\"desired\">{}</span>",
            status[0].desired
        )),
        "desired shown: {html}"
    );
    assert!(
        html.contains(&format!("{} → {}", decision.from, decision.to)),
        "decision shown: {html}"
    );
    let reason = decision
        .reason
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    assert!(html.contains(&reason), "reason {reason:?} shown: {html}");
    assert!(
        !html.contains("/pools/"),
        "a viewer gets no pool edit controls"
    );

    let overview = b.page("/").await;
    assert!(
        overview.contains("desired and actual workers of pool ext&lt;b&gt;&amp;co"),
        "the overview charts the pool"
    );

    let mut events = b.get("/events?pools=1").await;
    let first = events.chunk().await.expect("read").expect("an event");
    let text = String::from_utf8_lossy(&first);
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .expect("an update with data");
    let notice: Value = serde_json::from_str(data.trim()).expect("json notice");
    assert_eq!(
        notice["pools"],
        json!([{"name": "ext<b>&co", "desired": status[0].desired, "actual": status[0].actual}]),
        "the stream carries the pool's sizes: {text}"
    );
    drop(events);
    server.stop().await;
}

/// The `data-position` shown in the job page's row of task `id`, if any.
fn shown_position(page: &str, id: i64) -> Option<u64> {
    let row_start = page.find(&format!("<a href=\"/tasks/{id}\">"))?;
    let row = &page[row_start..];
    let row = &row[..row.find("</tr>")?];
    let marker = "data-position=\"";
    let at = row.find(marker)? + marker.len();
    let digits = &row[at..];
    digits[..digits.find('"')?].parse().ok()
}

#[tokio::test]
async fn the_job_page_shows_each_task_at_the_position_the_why_api_reports() {
    let server = Server::start().await;
    let low = server
        .submit(&server.admin, json!({"command": ["true"], "count": 3}))
        .await;
    // Submitted later but with a higher priority: its tasks are leased first.
    let high = server
        .submit(
            &server.admin,
            json!({"command": ["true"], "count": 2, "priority": 5}),
        )
        .await;
    let delayed = server
        .submit(&server.admin, json!({"command": ["true"], "delay": "1h"}))
        .await;
    let b = server.browser(&server.admin).await;
    let mut seen = Vec::new();
    for job in [&low, &high, &delayed] {
        let tasks = server
            .store
            .task_list(spillway_store::TaskList {
                tenant: Some("default".into()),
                job_id: Some(job.to_string()),
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("tasks");
        let page = b.page(&format!("/jobs/{job}")).await;
        for task in &tasks.items {
            let resp = server
                .api
                .get(format!("{}/v1/tasks/{}/why", server.base, task.id))
                .bearer_auth(&server.admin)
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status(), StatusCode::OK);
            let why: Value = resp.json().await.expect("json");
            let api = why["position"].as_u64();
            assert_eq!(
                shown_position(&page, task.id),
                api,
                "task {} of job {job}: the page and GET /v1/tasks/{{id}}/why disagree",
                task.id
            );
            seen.push(api);
        }
    }
    // Higher priority first, then the order of submission; a delayed task is not in line.
    assert_eq!(
        seen,
        [Some(2), Some(3), Some(4), Some(0), Some(1), None],
        "positions counted from 0 in lease order"
    );
    server.stop().await;
}

/// The `name=value` pair of the session cookie among Set-Cookie values.
fn session_pair(cookies: &[String]) -> String {
    cookies
        .iter()
        .find(|c| c.starts_with("spillway_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string()
}

/// GET `path` of `base` with only the cookie `pair`, not following redirects.
async fn get_with_cookie(base: &str, path: &str, pair: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{base}{path}"))
        .header("cookie", pair)
        .send()
        .await
        .expect("send")
}

/// Whether the cookie `pair` reaches the signed-in overview (rather than the sign-in form).
async fn signed_in(base: &str, pair: &str) -> bool {
    let resp = get_with_cookie(base, "/", pair).await;
    match resp.status() {
        StatusCode::OK => {
            let body = resp.text().await.expect("body");
            assert!(body.contains("<h1>Overview</h1>"), "{body}");
            true
        }
        StatusCode::SEE_OTHER => {
            assert_eq!(resp.headers()[LOCATION], "/login");
            false
        }
        other => panic!("GET / answered {other}"),
    }
}

#[tokio::test]
async fn a_session_outlives_a_restart_and_is_stored_only_as_a_hash() {
    let mut server = Server::start().await;
    let pair = session_pair(&sign_in_cookies(&server.base, &server.admin).await);
    assert!(signed_in(&server.base, &pair).await);

    server.server.restart().await;
    assert!(
        signed_in(&server.base, &pair).await,
        "a restarted server knows the session"
    );
    // The store holds the hash of the cookie's value, not the value.
    let value = pair.split_once('=').expect("pair").1;
    let now = chrono::Utc::now();
    let by_hash = server
        .store
        .session_get(&spillway_server::auth::hash_secret(value), now)
        .await
        .expect("session_get");
    assert!(by_hash.is_some(), "kept by its hash");
    let by_value = server
        .store
        .session_get(value, now)
        .await
        .expect("session_get");
    assert!(by_value.is_none(), "the raw cookie value is stored nowhere");
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_tokens_session_is_refused_before_and_after_a_restart() {
    let mut server = Server::start().await;
    let created = server
        .api_post(
            "/v1/tokens",
            &server.admin,
            json!({"name": "person", "role": "viewer", "tenant": "default"}),
        )
        .await;
    let secret = created["token"].as_str().expect("secret");
    let id = created["info"]["id"].as_str().expect("id");
    let pair = session_pair(&sign_in_cookies(&server.base, secret).await);
    let other = session_pair(&sign_in_cookies(&server.base, &server.admin).await);
    assert!(signed_in(&server.base, &pair).await);

    let revoked = server
        .api
        .delete(format!("{}/v1/tokens/{id}", server.base))
        .bearer_auth(&server.admin)
        .send()
        .await
        .expect("send");
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert!(
        !signed_in(&server.base, &pair).await,
        "revoking the token ends its session at once"
    );
    assert!(signed_in(&server.base, &other).await, "other sessions stay");
    server.server.restart().await;
    assert!(!signed_in(&server.base, &pair).await, "and it stays ended");
    assert!(signed_in(&server.base, &other).await);
    server.stop().await;
}

#[tokio::test]
async fn a_session_ends_after_its_idle_time_and_with_its_tokens_expiry() {
    let server = TestServer::builder().manual_clock().start().await;
    let pair = session_pair(&sign_in_cookies(&server.base, &server.admin).await);
    assert!(signed_in(&server.base, &pair).await);
    server.clock.advance(Duration::from_secs(8 * 3600));
    assert!(
        !signed_in(&server.base, &pair).await,
        "8 hours without use end a session"
    );

    let expires_at = chrono::Utc::now() + chrono::TimeDelta::hours(9);
    let created: Value = reqwest::Client::new()
        .post(format!("{}/v1/tokens", server.base))
        .bearer_auth(&server.admin)
        .json(
            &json!({"name": "short", "role": "viewer", "tenant": "default",
                      "expires_at": expires_at.to_rfc3339()}),
        )
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let secret = created["token"].as_str().expect("secret");
    let pair = session_pair(&sign_in_cookies(&server.base, secret).await);
    assert!(signed_in(&server.base, &pair).await);
    server.clock.advance(Duration::from_secs(3600));
    assert!(
        !signed_in(&server.base, &pair).await,
        "a session ends when its token expires"
    );
    server.stop().await;
}

/// A server over `store` on 127.0.0.1, as one replica: its address and a way to stop it.
struct Replica {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Replica {
    async fn start(store: DynStore) -> Replica {
        let blobs: std::sync::Arc<dyn spillway_blob::BlobStore> = std::sync::Arc::new(
            spillway_blob::ObjectBlobs::from_url("memory://", &Default::default()).expect("blobs"),
        );
        let state = spillway_server::AppState::new(
            store,
            blobs,
            std::sync::Arc::new(spillway_server::SteadyClock::system()),
            ServerConfig::default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            spillway_server::serve(listener, state, async move {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        Replica { base, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("server task");
    }
}

#[tokio::test]
async fn on_postgresql_a_session_made_by_one_server_works_on_the_next() {
    let Ok(url) = std::env::var("SPILLWAY_TEST_POSTGRES_URL") else {
        eprintln!("SPILLWAY_TEST_POSTGRES_URL is not set: skipped");
        return;
    };
    let schema = format!(
        "spillway_test_{}",
        spillway_server::auth::new_token_id().trim_start_matches("tok_")
    );
    let connect = || async {
        let store = spillway_store::postgres::PostgresStore::connect(&url, Some(&schema))
            .await
            .expect("connect to postgresql");
        std::sync::Arc::new(store)
    };
    let first_store = connect().await;
    let admin = spillway_server::bootstrap(&(first_store.clone() as DynStore), chrono::Utc::now())
        .await
        .expect("bootstrap")
        .expect("an admin token");
    let first = Replica::start(first_store.clone()).await;
    let pair = session_pair(&sign_in_cookies(&first.base, &admin).await);
    assert!(signed_in(&first.base, &pair).await);

    // Another replica, and then the first one stopped: the session lives in the database.
    let second = Replica::start(connect().await).await;
    assert!(
        signed_in(&second.base, &pair).await,
        "a session made on one replica works on another"
    );
    first.stop().await;
    let third = Replica::start(connect().await).await;
    assert!(signed_in(&third.base, &pair).await, "and after a restart");
    second.stop().await;
    third.stop().await;
    first_store
        .drop_schema()
        .await
        .expect("drop the test schema");
}

#[tokio::test]
async fn the_sweeper_deletes_ended_sessions_and_keeps_live_ones() {
    let server = TestServer::builder().manual_clock().start().await;
    let idle = session_pair(&sign_in_cookies(&server.base, &server.admin).await);
    server.clock.advance(Duration::from_secs(7 * 3600));
    let live = session_pair(&sign_in_cookies(&server.base, &server.admin).await);
    server.clock.advance(Duration::from_secs(3600));
    let swept = spillway_server::services::session_sweeper::pass(&server.state, 500)
        .await
        .expect("sweep");
    assert_eq!(swept, 1, "only the session idle for 8 hours goes");
    assert!(!signed_in(&server.base, &idle).await);
    assert!(signed_in(&server.base, &live).await);
    server.stop().await;
}
