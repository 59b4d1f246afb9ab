//! Draining through a real SQLite store: the worker on the instance (hostname = instance
//! name) is told to drain, and the instance is deleted only once that worker has exited.

use spillway_autoscale::conformance::t0;
use spillway_autoscale::provider::InstanceState;
use spillway_core::model::WorkerState;
use spillway_store::WorkerRegister;

use crate::support::{Env, env, pool};
use spillway_store::{WorkerExit, WorkerList};

async fn register(env: &Env, id: &str, hostname: &str, pool: &str) {
    register_in(env, "default", id, hostname, pool).await;
}

async fn register_in(env: &Env, tenant: &str, id: &str, hostname: &str, pool: &str) {
    env.store
        .worker_register(WorkerRegister {
            id: id.into(),
            tenant: tenant.into(),
            pool: pool.into(),
            hostname: hostname.into(),
            queues: vec!["default".into()],
            concurrency: 1,
            now: t0(),
        })
        .await
        .expect("register worker");
}

async fn worker_state(env: &Env, id: &str) -> Option<WorkerState> {
    env.store
        .worker_list(WorkerList {
            tenant: None,
            now: t0(),
        })
        .await
        .expect("list workers")
        .into_iter()
        .find(|w| w.id == id)
        .map(|w| w.state)
}

fn deletes(env: &Env) -> usize {
    env.fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/deleteInstances"))
        .count()
}

#[tokio::test]
async fn a_busy_instance_drains_its_worker_then_is_deleted_after_it_exits() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let pool = pool("spot", &env.fake, &group);
    env.resize(&pool, 2, &[]).await.expect("resize");
    let seen = env
        .wait_until(&pool, "two running", |s| s.live() == 2)
        .await;
    let victim = seen.instances[0].id.clone();
    let kept = seen.instances[1].id.clone();
    register(&env, "w-victim", &victim, "spot").await;
    register(&env, "w-kept", &format!("{kept}.c.proj.internal"), "spot").await;
    let seen = env.observe(&pool).await.expect("observe");
    assert_eq!(
        seen.instances
            .iter()
            .map(|i| i.worker_id.clone())
            .collect::<Vec<_>>(),
        vec![Some("w-victim".to_string()), Some("w-kept".to_string())],
        "instances join their workers by hostname"
    );

    env.resize(&pool, 1, &[victim.as_str()])
        .await
        .expect("drain");
    assert_eq!(
        worker_state(&env, "w-victim").await,
        Some(WorkerState::Draining)
    );
    assert_eq!(
        worker_state(&env, "w-kept").await,
        Some(WorkerState::Active)
    );
    let seen = env.observe(&pool).await.expect("observe");
    let state = |id: &str| seen.instances.iter().find(|i| i.id == id).map(|i| i.state);
    assert_eq!(state(&victim), Some(InstanceState::Draining), "{seen:?}");
    assert_eq!(state(&kept), Some(InstanceState::Running), "{seen:?}");
    assert_eq!(seen.live(), 1);
    assert_eq!(
        seen.desired,
        Some(1),
        "the size asked for, not the held target"
    );
    assert_eq!(deletes(&env), 0, "its worker still runs tasks");
    assert_eq!(
        env.fake.target_size(&group),
        Some(2),
        "held until the worker exits"
    );

    // Asked again while draining: nothing new.
    env.resize(&pool, 1, &[victim.as_str()])
        .await
        .expect("again");
    assert_eq!(deletes(&env), 0);
    assert_eq!(env.fake.target_size(&group), Some(2));

    env.store
        .worker_exit(WorkerExit {
            id: "w-victim".into(),
            now: t0(),
        })
        .await
        .expect("exit");
    let seen = env
        .wait_until(&pool, "the victim gone", |s| {
            !s.instances.iter().any(|i| i.id == victim)
        })
        .await;
    assert_eq!(deletes(&env), 1);
    assert_eq!(env.fake.target_size(&group), Some(1));
    assert_eq!(seen.live(), 1);
    assert_eq!(seen.instances[0].id, kept);
}

#[tokio::test]
async fn a_preempted_instance_is_down() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let pool = pool("spot", &env.fake, &group);
    env.resize(&pool, 1, &[]).await.expect("resize");
    let seen = env
        .wait_until(&pool, "one running", |s| s.live() == 1)
        .await;
    env.fake.preempt(&group, &seen.instances[0].id);
    let seen = env.observe(&pool).await.expect("observe");
    assert_eq!(seen.count(InstanceState::Down), 1, "{seen:?}");
    assert_eq!(seen.live(), 0);
}

#[tokio::test]
async fn a_restarted_server_finishes_a_drain_it_started_before() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let pool = pool("spot", &env.fake, &group);
    env.resize(&pool, 2, &[]).await.expect("resize");
    let seen = env
        .wait_until(&pool, "two running", |s| s.live() == 2)
        .await;
    let victim = seen.instances[0].id.clone();
    register(&env, "w-victim", &victim, "spot").await;
    register(&env, "w-kept", &seen.instances[1].id, "spot").await;
    env.resize(&pool, 1, &[victim.as_str()])
        .await
        .expect("drain");

    // A new provider (the server restarted) knows only what the store and the group say.
    let provider = spillway_compute_engine::ComputeEngineProvider::with_tokens(
        env.store.clone(),
        std::sync::Arc::new(spillway_compute_engine::token::StaticToken(
            spillway_compute_engine::fake::FAKE_TOKEN.into(),
        )),
        crate::support::fast_settings(),
    )
    .expect("provider");
    let env = Env {
        provider: std::sync::Arc::new(provider),
        ..env
    };
    let seen = env.observe(&pool).await.expect("observe");
    assert_eq!(seen.count(InstanceState::Draining), 1, "{seen:?}");
    assert_eq!(deletes(&env), 0);
    env.store
        .worker_exit(WorkerExit {
            id: "w-victim".into(),
            now: t0(),
        })
        .await
        .expect("exit");
    env.wait_until(&pool, "the victim gone", |s| {
        !s.instances.iter().any(|i| i.id == victim)
    })
    .await;
    assert_eq!(deletes(&env), 1);
    assert_eq!(env.fake.target_size(&group), Some(1));
    assert_eq!(
        worker_state(&env, "w-kept").await,
        Some(WorkerState::Active)
    );
}

/// A worker of another tenant on an instance's hostname, with the pool's name, is none of the
/// pool's (pools serve the default tenant): the instance is not joined to it, and draining the
/// instance leaves that worker alone.
#[tokio::test]
async fn another_tenants_worker_is_neither_joined_nor_drained() {
    let env = env().await;
    let group = env
        .fake
        .add_zonal_group("proj", "europe-west4-a", "workers");
    let pool = pool("spot", &env.fake, &group);
    env.resize(&pool, 1, &[]).await.expect("resize");
    let seen = env
        .wait_until(&pool, "one running", |s| s.live() == 1)
        .await;
    let instance = seen.instances[0].id.clone();
    register_in(&env, "globex", "w-globex", &instance, "spot").await;
    let seen = env.observe(&pool).await.expect("observe");
    assert_eq!(seen.instances[0].worker_id, None, "{seen:?}");

    env.resize(&pool, 0, &[instance.as_str()])
        .await
        .expect("drain");
    assert_eq!(
        worker_state(&env, "w-globex").await,
        Some(WorkerState::Active),
        "another tenant's worker is not drained"
    );
}
