//! `spillway.toml`. Its whole-file type (`FileConfig` in the `spillway` binary) is not
//! reachable from a library, so this parses the sections that the library crates own, with
//! their own types, and runs the checks `FileConfig::parse` and the server run on them:
//! `[server]` (`ServerConfig::validate`), `[[pools]]` (`validate_pools` and the providers'
//! section checks) and `[autoscale]`. The binary's own small sections (`[client]`,
//! `[storage]`, `[worker]`) are left out. Asserts that nothing panics and that an accepted
//! config comes back equal, and accepted, from its own TOML.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use spillway_autoscale::config::{PolicyConfig, PoolConfig, validate_pools};
use spillway_server::ServerConfig;
use spillway_server::autoscale::ProviderRegistry;

/// The sections of `spillway.toml` that library crates own; other keys are ignored.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Sections {
    #[serde(default)]
    server: Option<ServerConfig>,
    #[serde(default)]
    pools: Vec<PoolConfig>,
    #[serde(default)]
    autoscale: Option<PolicyConfig>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = toml::from_str::<Sections>(text) else {
        return;
    };
    if check(&config).is_err() {
        return;
    }
    let text = toml::to_string(&config).expect("an accepted config encodes");
    let again: Sections = toml::from_str(&text)
        .unwrap_or_else(|e| panic!("re-encoded config does not parse: {e}\n{text}"));
    assert_eq!(config, again, "{text}");
    assert!(check(&again).is_ok(), "re-encoded config refused:\n{text}");
});

fn check(config: &Sections) -> spillway_core::Result<()> {
    // The cloud providers (kubernetes, compute_engine) register in the binary; their section
    // checks are not linked here, so pools naming them are refused as unknown providers.
    let providers = ProviderRegistry::builtin();
    validate_pools(&config.pools)?;
    providers.check_pools(&config.pools)?;
    if let Some(server) = &config.server {
        server.validate()?;
        providers.check_pools(&server.pools)?;
    }
    if let Some(autoscale) = &config.autoscale {
        autoscale.validate()?;
    }
    Ok(())
}
