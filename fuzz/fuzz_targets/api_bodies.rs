//! Every JSON request body the server accepts: the first byte picks the body type, the rest is
//! the body. Parsing goes through the server's own `parse_json`, then the checks the server
//! runs before it touches the store. Asserts that nothing panics, that an accepted body
//! survives re-encoding unchanged (and is accepted again), and that what the checks accept
//! really keeps their documented rules.

#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use spillway_core::api::{
    CompleteRequest, CreateQueue, CreateTenant, CreateToken, FailRequest, HeartbeatRequest,
    LeaseRequest, MAX_CONCURRENCY, MAX_HOSTNAME_LEN, MAX_TASKS_PER_SUBMIT, PoolUpdate,
    RegisterWorker, ReleaseRequest, RequeueRequest, SubmitJob, WorkerHeartbeat,
};
use spillway_core::model::QueueSettings;
use spillway_core::names::validate_name;
use spillway_server::extract::parse_json;

/// The payload limit the checks run with: small, so the fuzzer can cross it.
const MAX_PAYLOAD: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 15 {
        0 => check::<SubmitJob>(body, |r| r.validate(MAX_PAYLOAD), submit_rules),
        1 => check::<LeaseRequest>(body, LeaseRequest::validate, lease_rules),
        2 => check::<RegisterWorker>(body, RegisterWorker::validate, register_rules),
        3 => check::<CreateQueue>(body, create_queue, |_| {}),
        4 => queue_patch(body),
        5 => check::<CreateToken>(body, CreateToken::validate, |r| {
            assert!(!r.name.trim().is_empty() && r.name.len() <= 200, "{r:?}");
        }),
        6 => check::<CreateTenant>(
            body,
            |r| validate_name("tenant", &r.name),
            |r| {
                name_rules(&r.name);
            },
        ),
        7 => check::<RequeueRequest>(body, requeue, |_| {}),
        8 => check::<HeartbeatRequest>(body, |_| Ok(()), |_| {}),
        9 => check::<CompleteRequest>(body, |_| Ok(()), |_| {}),
        10 => check::<FailRequest>(body, |_| Ok(()), |_| {}),
        11 => check::<ReleaseRequest>(body, |_| Ok(()), |_| {}),
        12 => check::<WorkerHeartbeat>(body, |_| Ok(()), |_| {}),
        13 => check::<PoolUpdate>(body, |_| Ok(()), |_| {}),
        _ => check::<QueueSettings>(body, QueueSettings::validate, settings_rules),
    }
});

/// Parse `body` as the server does; when `validate` accepts it, `rules` must hold and the value
/// must come back equal (and accepted) from its own JSON.
fn check<T>(body: &[u8], validate: impl Fn(&T) -> spillway_core::Result<()>, rules: impl Fn(&T))
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(value) = parse_json::<T>(body) else {
        return;
    };
    if validate(&value).is_err() {
        return;
    }
    rules(&value);
    let json = serde_json::to_vec(&value).expect("an accepted body encodes");
    let again: T = parse_json(&json).unwrap_or_else(|e| {
        panic!(
            "re-encoded body does not parse: {e}\n{}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(value, again, "{}", String::from_utf8_lossy(&json));
    assert!(
        validate(&again).is_ok(),
        "re-encoded body refused: {again:?}"
    );
}

fn name_rules(name: &str) {
    assert!((1..=63).contains(&name.len()), "{name:?}");
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)),
        "{name:?}"
    );
    assert!(!name.starts_with(['-', '_', '.']), "{name:?}");
}

fn submit_rules(r: &SubmitJob) {
    name_rules(&r.queue);
    assert!(!r.spec.command.is_empty() && !r.spec.command[0].is_empty());
    assert!(r.spec.command.iter().all(|a| !a.contains('\0')));
    assert!((1..=MAX_TASKS_PER_SUBMIT).contains(&r.task_count()));
    assert!(!(r.tasks.is_some() && r.count.is_some()));
    assert!((-1000..=1000).contains(&r.priority));
    assert!(r.spec.resources.cpu > 0.0 && r.spec.resources.cpu <= 1024.0);
    assert!(r.spec.timeout.is_none_or(|t| !t.is_zero()));
    for key in r.spec.env.keys() {
        assert!(!key.is_empty() && !key.contains(['=', '\0']), "{key:?}");
    }
    for (k, v) in &r.labels {
        assert!(!k.is_empty() && k.len() <= 128 && v.len() <= 256, "{k:?}");
        assert!(!v.chars().any(char::is_control), "{v:?}");
    }
    for task in r.tasks.iter().flatten() {
        if let Some(p) = &task.payload {
            assert!(serde_json::to_vec(p).map_or(0, |v| v.len()) <= MAX_PAYLOAD);
        }
    }
}

fn lease_rules(r: &LeaseRequest) {
    assert!(r.max_tasks >= 1);
    assert!(!r.queues.is_empty());
    r.queues.iter().for_each(|q| name_rules(q));
}

fn register_rules(r: &RegisterWorker) {
    name_rules(&r.pool);
    assert!(!r.queues.is_empty());
    r.queues.iter().for_each(|q| name_rules(q));
    assert!((1..=MAX_HOSTNAME_LEN).contains(&r.hostname.len()));
    assert!((1..=MAX_CONCURRENCY).contains(&r.concurrency));
}

fn settings_rules(s: &QueueSettings) {
    assert!((1..=1000).contains(&s.max_attempts), "{s:?}");
    assert!(
        !s.backoff_base.is_zero() && s.backoff_max >= s.backoff_base,
        "{s:?}"
    );
    assert!(s.lease_duration.as_secs() >= 1 && s.lease_duration.as_secs() <= 24 * 3600);
}

/// `POST /v1/queues`: the name and the settings (the tenant is checked against the store).
fn create_queue(r: &CreateQueue) -> spillway_core::Result<()> {
    validate_name("queue", &r.name)?;
    r.settings.validate()
}

/// `POST /v1/dead/requeue`: a named queue is checked.
fn requeue(r: &RequeueRequest) -> spillway_core::Result<()> {
    match &r.queue {
        Some(queue) => validate_name("queue", queue),
        None => Ok(()),
    }
}

/// `PATCH /v1/queues/{name}`: the fields given replace the current settings (here the
/// defaults), then the whole is parsed and checked, as the server does.
fn queue_patch(body: &[u8]) {
    let Ok(serde_json::Value::Object(patch)) = parse_json::<serde_json::Value>(body) else {
        return;
    };
    let mut merged = serde_json::to_value(QueueSettings::default()).expect("settings encode");
    if let serde_json::Value::Object(fields) = &mut merged {
        fields.extend(patch);
    }
    let bytes = serde_json::to_vec(&merged).expect("a JSON value encodes");
    check::<QueueSettings>(&bytes, QueueSettings::validate, settings_rules);
}
