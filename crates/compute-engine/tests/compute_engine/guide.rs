//! The pools of docs/compute-engine.md parse and validate, so the guide cannot rot.

use serde::Deserialize;
use spillway_autoscale::config::{PoolConfig, validate_pools};

const GUIDE: &str = include_str!("../../../../docs/compute-engine.md");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    pools: Vec<PoolConfig>,
}

#[test]
fn the_guides_pools_are_valid_and_serve_one_queue_from_two_regions() {
    let block = GUIDE
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains("[[pools]]"))
        .expect("the guide has a toml block of pools");
    let file: File = toml::from_str(block).expect("the guide's pools parse");
    validate_pools(&file.pools).expect("the guide's pools are valid");
    for pool in &file.pools {
        spillway_compute_engine::validate_pool(pool).expect("the guide's sections are valid");
    }
    let regions: Vec<Option<String>> = file
        .pools
        .iter()
        .map(|p| {
            spillway_compute_engine::config::section(p)
                .expect("section")
                .region
        })
        .collect();
    assert_eq!(
        regions,
        vec![Some("europe-west4".into()), Some("us-central1".into())]
    );
    assert!(
        file.pools
            .iter()
            .all(|p| p.provider == "compute_engine" && p.queues == ["default"])
    );
}
