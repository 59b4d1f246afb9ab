//! Validation of the names people choose: tenants, queues, pools, labels.

use crate::Error;

/// Longest name accepted for a tenant, queue or pool.
pub const MAX_NAME_LEN: usize = 63;
/// Longest label key, in bytes.
pub const MAX_LABEL_KEY_LEN: usize = 128;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_LEN: usize = 256;
/// Longest quoted value an error message repeats whole; longer ones are shortened.
const PREVIEW_CHARS: usize = 40;

/// `value` quoted for an error message: whole when short, else its first characters, an
/// ellipsis and its length, so a message never repeats a megabyte the caller sent.
pub fn preview(value: &str) -> String {
    if value.chars().count() <= PREVIEW_CHARS {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(PREVIEW_CHARS).collect();
    format!("{:?}… ({} bytes)", head, value.len())
}

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

/// Check a label key: like a name but up to [`MAX_LABEL_KEY_LEN`] characters and may
/// contain '/'.
pub fn validate_label_key(key: &str) -> Result<(), Error> {
    let ok = !key.is_empty()
        && key.len() <= MAX_LABEL_KEY_LEN
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if !ok {
        return Err(Error::invalid(format!(
            "invalid label key {}: use 1 to {MAX_LABEL_KEY_LEN} characters of a-z, A-Z, 0-9, '-', '_', '.' or '/'",
            preview(key)
        )));
    }
    Ok(())
}

/// Check a label value: at most [`MAX_LABEL_VALUE_LEN`] bytes, no control characters.
pub fn validate_label_value(key: &str, value: &str) -> Result<(), Error> {
    if value.len() > MAX_LABEL_VALUE_LEN || value.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "invalid value for label {} ({} bytes): use at most {MAX_LABEL_VALUE_LEN} bytes without control characters; put longer data in the payload",
            preview(key),
            value.len()
        )));
    }
    Ok(())
}

/// One label condition of a filter: `key=value` (the label has that value) or a bare `key`
/// (the job has the label, whatever its value). Several are ANDed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSelector {
    /// The label's key (valid as [`validate_label_key`] checks).
    pub key: String,
    /// The value it must have; `None` for any value.
    pub value: Option<String>,
}

impl LabelSelector {
    /// Parse `key=value` or `key`, checking key and value as labels are checked on submit.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (key, value) = match text.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (text, None),
        };
        validate_label_key(key).map_err(|e| {
            Error::invalid(format!(
                "invalid label filter {}: {}; write key=value, or key alone for any value",
                preview(text),
                e.message()
            ))
        })?;
        if let Some(value) = value {
            validate_label_value(key, value)?;
        }
        Ok(Self {
            key: key.to_string(),
            value: value.map(str::to_string),
        })
    }

    /// Whether `labels` satisfy this condition.
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        match (&self.value, labels.get(&self.key)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(want), Some(have)) => want == have,
        }
    }
}

impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={value}", self.key),
            None => f.write_str(&self.key),
        }
    }
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
    fn long_values_are_shortened_in_messages() {
        assert_eq!(preview("short"), "\"short\"");
        let long = "k".repeat(100_000);
        let err = validate_label_key(&long).expect_err("over the limit");
        assert!(err.message().len() < 300, "{err}");
        assert!(err.message().contains("(100000 bytes)"), "{err}");
        assert!(err.message().contains("128"), "{err}");
        let err = validate_label_value("k", &"v".repeat(257)).expect_err("over the limit");
        assert!(
            err.message().contains("257 bytes") && err.message().contains("256"),
            "{err}"
        );
    }

    #[test]
    fn rejects_bad_names_with_a_useful_message() {
        for bad in ["", "-x", "Upper", "a b", "../etc", &"x".repeat(64)] {
            let err = validate_name("queue", bad).expect_err(bad);
            assert!(err.message().contains("invalid queue name"), "{err}");
        }
    }

    #[test]
    fn label_selectors_parse_pairs_and_bare_keys_and_match() {
        let pair = LabelSelector::parse("team=a").expect("pair");
        assert_eq!(pair.value.as_deref(), Some("a"));
        let bare = LabelSelector::parse("team").expect("bare key");
        assert_eq!(bare.value, None);
        let labels = std::collections::BTreeMap::from([("team".to_string(), "b".to_string())]);
        assert!(!pair.matches(&labels));
        assert!(bare.matches(&labels));
        assert_eq!(pair.to_string(), "team=a");
        let err = LabelSelector::parse("bad key=1").expect_err("space in key");
        assert!(err.message().contains("bad key=1"), "{err}");
        assert!(LabelSelector::parse("=v").is_err());
    }
}
