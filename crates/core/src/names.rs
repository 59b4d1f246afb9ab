//! Validation of the names people choose: tenants, queues, pools, labels.

use crate::Error;

/// Longest name accepted for a tenant, queue or pool.
pub const MAX_NAME_LEN: usize = 63;

/// Check a tenant, queue or pool name: 1 to 63 characters of `a-z`, `0-9`, `-`, `_` and `.`,
/// starting with a letter or digit. `kind` names what is checked in the error ("queue").
pub fn validate_name(kind: &str, value: &str) -> Result<(), Error> {
    let first_ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if value.len() > MAX_NAME_LEN || !first_ok || !rest_ok {
        return Err(Error::invalid(format!(
            "invalid {kind} name {value:?}: use 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '-', '_' or '.', starting with a letter or digit"
        )));
    }
    Ok(())
}

/// Longest token name accepted.
pub const MAX_TOKEN_NAME_LEN: usize = 200;

/// Check a token's name (for people): 1 to 200 bytes, not only whitespace.
pub fn validate_token_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() || name.len() > MAX_TOKEN_NAME_LEN {
        return Err(Error::invalid(format!(
            "token name must be 1 to {MAX_TOKEN_NAME_LEN} characters, e.g. \"ci-submitter\""
        )));
    }
    Ok(())
}

/// Check a label key: like a name but up to 128 characters and may contain '/'.
pub fn validate_label_key(key: &str) -> Result<(), Error> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if !ok {
        return Err(Error::invalid(format!(
            "invalid label key {key:?}: use 1 to 128 characters of a-z, A-Z, 0-9, '-', '_', '.' or '/'"
        )));
    }
    Ok(())
}

/// Check a label value: at most 256 characters, no control characters.
pub fn validate_label_value(key: &str, value: &str) -> Result<(), Error> {
    if value.len() > 256 || value.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "invalid value for label {key:?}: use at most 256 characters without control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["default", "gpu-queue", "a", "team_7.batch"] {
            assert!(validate_name("queue", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_names_with_a_useful_message() {
        for bad in ["", "-x", "Upper", "a b", "../etc", &"x".repeat(64)] {
            let err = validate_name("queue", bad).expect_err(bad);
            assert!(err.message().contains("invalid queue name"), "{err}");
        }
    }
}
