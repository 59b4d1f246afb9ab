//! Quota, stock-out and permission show up as problems of the observation; 429/503 are
//! retried; an unknown group is an invalid-config error.

use std::sync::Arc;
use std::time::Duration;

use spillway_autoscale::conformance::t0;
use spillway_autoscale::provider::{
    InstanceState, PoolObservation, PoolObserve, PoolProblemKind, PoolProvider,
};
use spillway_compute_engine::ComputeEngineProvider;
use spillway_compute_engine::fake::FAKE_TOKEN;
use spillway_compute_engine::token::StaticToken;
use spillway_core::ErrorKind;

use crate::support::{env, fast_settings, pool};

fn kinds(seen: &PoolObservation) -> Vec<PoolProblemKind> {
    seen.problems.iter().map(|p| p.kind).collect()
}

#[tokio::test]
async fn quota_on_the_resize_operation_is_a_problem_not_an_error() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let pool = pool("spot", &env.fake, &group);
    env.fake.set_quota_exceeded(&group, true);
    env.resize(&pool, 3, &[])
        .await
        .expect("accepted despite quota");
    let seen = env.observe(&pool).await.expect("observe");
    assert_eq!(kinds(&seen), vec![PoolProblemKind::Quota], "{seen:?}");
    assert!(
        seen.problems[0].message.contains("QUOTA_EXCEEDED"),
        "{seen:?}"
    );
    assert!(seen.problems[0].message.contains("\"workers\""), "{seen:?}");
    assert_eq!(seen.desired, Some(0), "the group did not grow");

    env.fake.set_quota_exceeded(&group, false);
    env.resize(&pool, 3, &[]).await.expect("resize");
    let seen = env.observe(&pool).await.expect("observe");
    assert!(seen.problems.is_empty(), "{seen:?}");
    assert_eq!(seen.live(), 3);
}

#[tokio::test]
async fn stock_out_of_new_instances_is_a_problem_while_they_keep_trying() {
    let env = env().await;
    let group = env.fake.add_regional_group("proj", "europe-west4", "spot");
    let pool = pool("spot", &env.fake, &group);
    env.fake.set_stock_out(&group, true);
    env.resize(&pool, 2, &[])
        .await
        .expect("accepted despite stock-out");
    env.fake.step();
    let seen = env.observe(&pool).await.expect("observe");
    assert_eq!(kinds(&seen), vec![PoolProblemKind::StockOut], "{seen:?}");
    assert!(
        seen.problems[0]
            .message
            .contains("ZONE_RESOURCE_POOL_EXHAUSTED"),
        "{seen:?}"
    );
    assert_eq!(seen.count(InstanceState::Starting), 2, "{seen:?}");

    env.fake.set_stock_out(&group, false);
    let seen = env
        .wait_until(&pool, "capacity back", |s| {
            s.count(InstanceState::Running) == 2
        })
        .await;
    assert!(seen.problems.is_empty(), "{seen:?}");
}

#[tokio::test]
async fn forbidden_group_is_a_permission_problem_naming_the_permission() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let pool = pool("spot", &env.fake, &group);
    env.resize(&pool, 1, &[]).await.expect("resize");
    let before = env
        .wait_until(&pool, "one running", |s| s.live() == 1)
        .await;

    env.fake.set_forbidden(&group, true);
    env.resize(&pool, 2, &[])
        .await
        .expect("403 is kept as a problem");
    let seen = env.observe(&pool).await.expect("403 is kept as a problem");
    assert_eq!(kinds(&seen), vec![PoolProblemKind::Permission], "{seen:?}");
    assert!(
        seen.problems[0]
            .message
            .contains("compute.instanceGroupManagers.get"),
        "{seen:?}"
    );
    assert_eq!(
        seen.instances, before.instances,
        "last known instances are kept"
    );

    env.fake.set_forbidden(&group, false);
    env.resize(&pool, 2, &[]).await.expect("resize");
    let seen = env.observe(&pool).await.expect("observe");
    assert!(seen.problems.is_empty(), "{seen:?}");
    assert_eq!(seen.desired, Some(2));
}

#[tokio::test]
async fn a_refused_token_is_a_permission_problem() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let pool = pool("spot", &env.fake, &group);
    let provider = ComputeEngineProvider::with_tokens(
        env.store.clone(),
        Arc::new(StaticToken("expired".into())),
        fast_settings(),
    )
    .expect("provider");
    let seen = provider
        .pool_observe(PoolObserve {
            pool: &pool,
            now: t0(),
        })
        .await
        .expect("a refused token is kept as a problem");
    assert_eq!(kinds(&seen), vec![PoolProblemKind::Permission], "{seen:?}");
    assert!(seen.problems[0].message.contains("http 401"), "{seen:?}");
}

#[tokio::test]
async fn rate_limit_and_unavailable_answers_are_retried() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let pool = pool("spot", &env.fake, &group);
    env.fake.fail_next(429);
    env.fake.fail_next(503);
    env.resize(&pool, 2, &[]).await.expect("retried through");
    assert_eq!(env.fake.target_size(&group), Some(2));
    let requests = env.fake.requests();
    let lists = requests
        .iter()
        .filter(|r| r.path.ends_with("/listManagedInstances"))
        .count();
    assert_eq!(
        lists, 3,
        "the first call was sent three times: {requests:?}"
    );
}

#[tokio::test]
async fn an_api_that_stays_unavailable_is_an_unavailable_error() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let pool = pool("spot", &env.fake, &group);
    let provider = ComputeEngineProvider::with_tokens(
        env.store.clone(),
        Arc::new(StaticToken(FAKE_TOKEN.into())),
        spillway_compute_engine::client::ClientSettings {
            retry_deadline: Duration::from_millis(100),
            ..fast_settings()
        },
    )
    .expect("provider");
    for _ in 0..1000 {
        env.fake.fail_next(503);
    }
    let err = provider
        .pool_observe(PoolObserve {
            pool: &pool,
            now: t0(),
        })
        .await
        .expect_err("still unavailable");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("http 503"), "{err}");
}

#[tokio::test]
async fn an_unknown_group_is_an_invalid_config_error_naming_it() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let mut pool = pool("spot", &env.fake, &group);
    let mut section = spillway_compute_engine::config::section(&pool).expect("section");
    section.instance_group = "wrokers".into();
    pool.set_section(&section).expect("section");
    let err = env.observe(&pool).await.expect_err("no such group");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("\"wrokers\""), "{err}");
    assert!(err.message().contains("not found"), "{err}");
    let err = env.resize(&pool, 1, &[]).await.expect_err("no such group");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

#[tokio::test]
async fn a_pool_without_a_section_is_invalid() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let mut pool = pool("spot", &env.fake, &group);
    pool.sections.clear();
    let err = env.observe(&pool).await.expect_err("no section");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("compute_engine section"), "{err}");
}
