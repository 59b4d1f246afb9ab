//! One pool per region, all serving the same queue: each resizes its own group only.

use spillway_autoscale::provider::{InstanceState, PoolProblemKind};

use crate::support::{env, pool};

#[tokio::test]
async fn two_regional_pools_serving_one_queue_are_resized_independently() {
    let env = env().await;
    let eu = env
        .fake
        .add_regional_group("proj", "europe-west4", "spot-eu");
    let us = env
        .fake
        .add_regional_group("proj", "us-central1", "spot-us");
    let pool_eu = pool("spot-eu", &env.fake, &eu);
    let pool_us = pool("spot-us", &env.fake, &us);
    assert_eq!(pool_eu.queues, pool_us.queues);

    env.resize(&pool_eu, 2, &[]).await.expect("eu");
    env.resize(&pool_us, 3, &[]).await.expect("us");
    assert_eq!(env.fake.target_size(&eu), Some(2));
    assert_eq!(env.fake.target_size(&us), Some(3));
    let seen_eu = env
        .wait_until(&pool_eu, "eu running", |s| {
            s.count(InstanceState::Running) == 2
        })
        .await;
    let seen_us = env
        .wait_until(&pool_us, "us running", |s| {
            s.count(InstanceState::Running) == 3
        })
        .await;
    assert!(
        seen_eu
            .instances
            .iter()
            .all(|i| i.id.starts_with("spot-eu-")),
        "{seen_eu:?}"
    );
    assert!(
        seen_us
            .instances
            .iter()
            .all(|i| i.id.starts_with("spot-us-")),
        "{seen_us:?}"
    );

    // Stock-out in one region is that pool's problem only.
    env.fake.set_stock_out(&eu, true);
    env.resize(&pool_eu, 4, &[]).await.expect("eu grows");
    env.fake.step();
    let seen_eu = env.observe(&pool_eu).await.expect("eu");
    let seen_us = env.observe(&pool_us).await.expect("us");
    assert_eq!(
        seen_eu.problems.iter().map(|p| p.kind).collect::<Vec<_>>(),
        vec![PoolProblemKind::StockOut]
    );
    assert!(seen_us.problems.is_empty(), "{seen_us:?}");

    // Draining in one region leaves the other alone.
    let victim = seen_us.instances[0].id.clone();
    env.resize(&pool_us, 2, &[victim.as_str()])
        .await
        .expect("us drains");
    assert_eq!(env.fake.target_size(&us), Some(2));
    assert_eq!(env.fake.target_size(&eu), Some(4));
    let resizes: Vec<String> = env
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/resize"))
        .map(|r| format!("{}?size={}", r.path, r.param("size").unwrap_or("")))
        .collect();
    assert_eq!(
        resizes,
        vec![
            "/compute/v1/projects/proj/regions/europe-west4/instanceGroupManagers/spot-eu/resize?size=2",
            "/compute/v1/projects/proj/regions/us-central1/instanceGroupManagers/spot-us/resize?size=3",
            "/compute/v1/projects/proj/regions/europe-west4/instanceGroupManagers/spot-eu/resize?size=4",
        ]
    );
}
