//! What both backends share about their numbered migrations.
//!
//! Each backend lists its migrations in `migrations/<backend>/NNNN_name.sql`, applies the ones
//! a database has not seen in order, and records each one in `schema_migrations` with its
//! name and the SHA-256 of its file. At start-up every recorded checksum is compared with the
//! file this build carries: a shipped migration is never edited (an edit would leave databases
//! migrated before and after it with different schemas under the same version), so a
//! difference stops the store from opening with an error that names the file.
//!
//! `migrations/SHA256SUMS` lists every shipped file with its checksum (`sha256sum -c` reads
//! it); a test compares it with the files, so editing a shipped migration fails the build's
//! tests before it can reach a database.

use sha2::{Digest, Sha256};
use spillway_core::{Error, Result};

/// The first migration of each backend that records checksums (it adds the column): the
/// ones before it are recorded after the fact, on the first start that knows about checksums.
pub(crate) const CHECKSUMS_FROM: i64 = 2;

/// One numbered migration file compiled into this build.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// Its number, the `NNNN` of the file name.
    pub(crate) version: i64,
    /// The file name, e.g. `0001_init.sql`.
    pub(crate) file: &'static str,
    /// The file's text.
    pub(crate) sql: &'static str,
}

impl Migration {
    /// The name recorded with the version: the file name without number and extension.
    pub(crate) fn name(&self) -> &'static str {
        let stem = self.file.strip_suffix(".sql").unwrap_or(self.file);
        stem.split_once('_').map_or(stem, |(_, name)| name)
    }

    /// The SHA-256 of the file, lowercase hex.
    pub(crate) fn checksum(&self) -> String {
        sha256_hex(self.sql.as_bytes())
    }
}

/// SHA-256 of `bytes` as lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compare the checksums a database recorded, as (version, checksum), with this build's
/// migrations of `backend`. A recorded version this build does not know is left to the
/// caller's "newer schema" check.
pub(crate) fn verify(backend: &str, known: &[Migration], recorded: &[(i64, String)]) -> Result<()> {
    for (version, checksum) in recorded {
        let Some(m) = known.iter().find(|m| m.version == *version) else {
            continue;
        };
        let expected = m.checksum();
        if *checksum != expected {
            return Err(Error::internal(format!(
                "{backend} migration {file} (version {version}) differs from the one applied to this database (recorded sha256 {checksum}, this build's file {expected}): shipped migrations are never edited: add a new numbered one, and run the build whose {file} matches the database",
                file = m.file,
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    /// (backend folder, file name) → checksum, as listed in `migrations/SHA256SUMS`.
    fn shipped() -> BTreeMap<String, String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/SHA256SUMS");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (sum, file) = l
                    .split_once("  ")
                    .unwrap_or_else(|| panic!("SHA256SUMS line {l:?} is not `SUM  FILE`"));
                (file.to_string(), sum.to_string())
            })
            .collect()
    }

    /// Every `.sql` file under `migrations/`, as `backend/file` → checksum of its bytes.
    fn on_disk() -> BTreeMap<String, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files = BTreeMap::new();
        for backend in ["postgres", "sqlite"] {
            let dir = root.join(backend);
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
            for entry in entries {
                let path = entry
                    .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
                    .path();
                if path.extension().is_some_and(|x| x == "sql") {
                    let bytes = std::fs::read(&path)
                        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                    files.insert(
                        format!("{backend}/{}", name.unwrap_or_default()),
                        sha256_hex(&bytes),
                    );
                }
            }
        }
        files
    }

    #[test]
    fn shipped_migrations_are_unchanged() {
        let shipped = shipped();
        let on_disk = on_disk();
        for (file, sum) in &shipped {
            match on_disk.get(file) {
                None => panic!(
                    "migrations/{file} is listed in migrations/SHA256SUMS but missing: shipped migrations are never deleted"
                ),
                Some(actual) => assert_eq!(
                    actual, sum,
                    "migrations/{file} changed after it shipped (SHA256SUMS says {sum}): shipped migrations are never edited: add a new numbered one"
                ),
            }
        }
        for (file, sum) in &on_disk {
            assert!(
                shipped.contains_key(file),
                "migrations/{file} is not in migrations/SHA256SUMS: add the line `{sum}  {file}` when it ships"
            );
        }
    }

    #[test]
    fn every_file_is_compiled_into_its_backend_in_order() {
        let on_disk = on_disk();
        for (backend, known) in [
            ("sqlite", crate::sqlite::MIGRATIONS),
            ("postgres", crate::postgres::MIGRATIONS),
        ] {
            let files: Vec<String> = on_disk
                .keys()
                .filter_map(|f| f.strip_prefix(&format!("{backend}/")).map(str::to_string))
                .collect();
            let compiled: Vec<String> = known.iter().map(|m| m.file.to_string()).collect();
            assert_eq!(
                compiled, files,
                "the {backend} MIGRATIONS list and migrations/{backend}/ differ"
            );
            for (i, m) in known.iter().enumerate() {
                assert_eq!(
                    m.version,
                    i64::try_from(i + 1).unwrap_or(0),
                    "{} is out of order",
                    m.file
                );
                assert!(
                    m.file.starts_with(&format!("{:04}_", m.version)),
                    "{} does not start with its version",
                    m.file
                );
                assert_eq!(
                    on_disk[&format!("{backend}/{}", m.file)],
                    m.checksum(),
                    "{} compiled text differs from the file",
                    m.file
                );
            }
        }
    }

    #[test]
    fn a_changed_checksum_is_refused_naming_the_file() {
        let known = crate::sqlite::MIGRATIONS;
        let recorded = vec![(1, "0".repeat(64))];
        let err = verify("sqlite", known, &recorded)
            .err()
            .map(|e| e.to_string());
        let err = err.unwrap_or_else(|| panic!("a wrong checksum was accepted"));
        assert!(err.contains("0001_init.sql"), "{err}");
        assert!(
            err.contains("shipped migrations are never edited: add a new numbered one"),
            "{err}"
        );
        let good: Vec<(i64, String)> = known.iter().map(|m| (m.version, m.checksum())).collect();
        assert!(verify("sqlite", known, &good).is_ok());
    }

    #[test]
    fn names_drop_number_and_extension() {
        let m = Migration {
            version: 2,
            file: "0002_migration_checksums.sql",
            sql: "",
        };
        assert_eq!(m.name(), "migration_checksums");
    }
}
