//! Ids the server makes: jobs (UUIDv7 from the injected clock), uploads and workers.

use spillway_core::{Error, Timestamp};
use uuid::Uuid;

/// A new job id: a UUIDv7 stamped with `now`, so ids sort by submit time and the submit
/// time can be read back from the id.
pub fn new_job_id(now: Timestamp) -> String {
    let secs = u64::try_from(now.timestamp()).unwrap_or(0);
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs, now.timestamp_subsec_nanos());
    Uuid::new_v7(ts).hyphenated().to_string()
}

/// When a job was submitted, read from its UUIDv7 id.
pub fn job_submitted_at(job_id: &str) -> Option<Timestamp> {
    let (secs, nanos) = Uuid::parse_str(job_id).ok()?.get_timestamp()?.to_unix();
    chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
}

/// A new upload id: a random UUID in simple (32 hex digit) form.
pub fn new_upload_id() -> String {
    Uuid::new_v4().simple().to_string()
}

/// Check an upload id has the form the server makes, so it is safe inside an object key.
pub fn validate_upload_id(id: &str) -> Result<(), Error> {
    let ok = id.len() == 32
        && id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid upload id {id:?}: use the upload_id returned by POST /v1/uploads"
        )))
    }
}

/// A new worker id: `wrk_` + 16 random hex digits.
pub fn new_worker_id() -> String {
    let bytes: [u8; 8] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("wrk_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_carry_their_submit_time_and_sort_by_it() {
        let t1 = chrono::DateTime::from_timestamp(1_700_000_000, 123_000_000).expect("valid");
        let t2 = t1 + chrono::TimeDelta::seconds(1);
        let a = new_job_id(t1);
        let b = new_job_id(t2);
        assert!(a < b);
        assert_eq!(job_submitted_at(&a), Some(t1));
    }

    #[test]
    fn upload_ids_round_trip_and_reject_paths() {
        assert!(validate_upload_id(&new_upload_id()).is_ok());
        for bad in ["", "../x", "ABCDEF00000000000000000000000000", "a/b"] {
            assert!(validate_upload_id(bad).is_err(), "{bad}");
        }
    }
}
