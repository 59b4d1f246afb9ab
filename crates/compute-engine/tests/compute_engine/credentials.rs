//! The production token path: a service-account key file, through gcp_auth, whose
//! `token_uri` points at a fake OAuth token endpoint on 127.0.0.1.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::Engine;
use serde_json::json;
use spillway_compute_engine::ComputeEngineProvider;
use spillway_compute_engine::fake::FAKE_TOKEN;
use spillway_compute_engine::token::COMPUTE_SCOPE;
use spillway_core::ErrorKind;

use crate::support::{Env, env, pool};

/// What the token endpoint received: content type and form fields.
type Received = Arc<Mutex<Vec<(String, HashMap<String, String>)>>>;

async fn token_endpoint() -> (String, Received) {
    let received: Received = Arc::default();
    let log = received.clone();
    let app = Router::new().route(
        "/token",
        post(
            move |headers: HeaderMap, Form(form): Form<HashMap<String, String>>| async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                log.lock().expect("log").push((content_type, form));
                Json(
                    json!({"access_token": FAKE_TOKEN, "expires_in": 3600, "token_type": "Bearer"}),
                )
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/token"), received)
}

/// A service-account key file with a fresh RSA key (made by openssl) and `token_uri`.
fn key_file(env: &Env, token_uri: &str) -> std::path::PathBuf {
    let pem_path = env._dir.path().join("key.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem_path)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl genpkey failed");
    let pem = std::fs::read_to_string(&pem_path).expect("read key");
    let key = json!({
        "type": "service_account",
        "project_id": "proj",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "spillway-server@proj.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    });
    let path = env._dir.path().join("spillway-server.json");
    std::fs::write(&path, key.to_string()).expect("write key file");
    path
}

#[tokio::test]
async fn a_key_file_pool_gets_its_token_from_the_keys_token_uri() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let env = env().await;
    let (token_uri, received) = token_endpoint().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let mut pool = pool("spot", &env.fake, &group);
    let mut section = spillway_compute_engine::config::section(&pool).expect("section");
    section.credentials_file = Some(key_file(&env, &token_uri));
    pool.set_section(&section).expect("section");
    let provider = ComputeEngineProvider::new(env.store.clone()).expect("provider");
    let env = Env {
        provider: Arc::new(provider),
        ..env
    };
    env.resize(&pool, 2, &[])
        .await
        .expect("resize with the key's token");
    env.observe(&pool).await.expect("observe");
    assert_eq!(env.fake.target_size(&group), Some(2));

    let received = received.lock().expect("log").clone();
    assert_eq!(received.len(), 1, "the token is cached: {received:?}");
    let (content_type, form) = &received[0];
    assert_eq!(content_type, "application/x-www-form-urlencoded");
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    let assertion = form.get("assertion").expect("a signed JWT");
    let claims = assertion.split('.').nth(1).expect("JWT payload");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .expect("base64url"),
    )
    .expect("claims");
    assert_eq!(claims["scope"], COMPUTE_SCOPE);
    assert_eq!(claims["aud"], token_uri.as_str());
    assert_eq!(
        claims["iss"],
        "spillway-server@proj.iam.gserviceaccount.com"
    );
}

#[tokio::test]
async fn a_missing_key_file_is_an_invalid_config_error_naming_it() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let mut pool = pool("spot", &env.fake, &group);
    let missing = env._dir.path().join("no-such-key.json");
    let mut section = spillway_compute_engine::config::section(&pool).expect("section");
    section.credentials_file = Some(missing.clone());
    pool.set_section(&section).expect("section");
    let provider = ComputeEngineProvider::new(env.store.clone()).expect("provider");
    let env = Env {
        provider: Arc::new(provider),
        ..env
    };
    let err = env.observe(&pool).await.expect_err("no key file");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("no-such-key.json"), "{err}");
    assert!(env.fake.requests().is_empty(), "no call without a token");
}
