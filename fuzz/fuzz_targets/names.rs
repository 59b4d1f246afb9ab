//! The names people choose: tenants, queues and pools (`validate_name`), label keys and
//! values, token names. Asserts that nothing panics and that an accepted name keeps the
//! documented rules; a tenant, queue or pool name is also a safe object-key segment.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spillway_core::keys::validate_relative_path;
use spillway_core::names::{
    MAX_NAME_LEN, MAX_TOKEN_NAME_LEN, validate_label_key, validate_label_value, validate_name,
    validate_token_name,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = validate_name("queue", text) {
        assert!(err.message().contains("invalid queue name"), "{err}");
    } else {
        assert!((1..=MAX_NAME_LEN).contains(&text.len()), "{text:?}");
        let mut chars = text.chars();
        assert!(
            chars
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert!(chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)));
        // Tenant names are storage prefixes: one plain segment, never an escape.
        assert!(validate_relative_path(text).is_ok(), "{text:?}");
        assert!(!text.contains('/'));
    }
    if validate_label_key(text).is_ok() {
        assert!((1..=128).contains(&text.len()), "{text:?}");
        assert!(text.is_ascii() && !text.chars().any(|c| c.is_ascii_control() || c == ' '));
    }
    if validate_label_value("k", text).is_ok() {
        assert!(
            text.len() <= 256 && !text.chars().any(char::is_control),
            "{text:?}"
        );
    }
    if validate_token_name(text).is_ok() {
        assert!(
            text.len() <= MAX_TOKEN_NAME_LEN && !text.trim().is_empty(),
            "{text:?}"
        );
    }
});
