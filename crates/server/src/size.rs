//! Sizes in human units: `"10MiB"`, `"512KiB"`, `"1GB"` or a plain number of bytes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes, written and read in human units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

const UNITS: [(&str, u64); 9] = [
    ("b", 1),
    ("kb", 1000),
    ("mb", 1000 * 1000),
    ("gb", 1000 * 1000 * 1000),
    ("tb", 1000 * 1000 * 1000 * 1000),
    ("kib", 1024),
    ("mib", 1024 * 1024),
    ("gib", 1024 * 1024 * 1024),
    ("tib", 1024 * 1024 * 1024 * 1024),
];

impl ByteSize {
    /// Parse `"10MiB"`, `"1.5GB"`, `"4096"`; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        let multiplier = if unit.is_empty() {
            Some(1)
        } else {
            UNITS.iter().find(|(u, _)| *u == unit).map(|(_, m)| *m)
        };
        let value: Option<f64> = number.parse().ok();
        match (value, multiplier) {
            (Some(v), Some(m)) if v.is_finite() && v >= 0.0 => {
                let bytes = v * m as f64;
                if bytes > u64::MAX as f64 {
                    Err(format!("size {text:?} is too large"))
                } else {
                    Ok(ByteSize(bytes as u64))
                }
            }
            _ => Err(format!(
                "invalid size {text:?}: use a number of bytes or a number with a unit such as \"512KiB\", \"10MiB\" or \"1GB\""
            )),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(text) => ByteSize::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_round_trips() {
        assert_eq!(ByteSize::parse("10MiB"), Ok(ByteSize(10 << 20)));
        assert_eq!(ByteSize::parse("1 GB"), Ok(ByteSize(1_000_000_000)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        assert_eq!(ByteSize(10 << 20).to_string(), "10MiB");
        assert_eq!(
            ByteSize::parse(&ByteSize(1500).to_string()),
            Ok(ByteSize(1500))
        );
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["", "ten", "10 parsecs", "-5MiB"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad}");
        }
    }
}
