//! [`TaskUser`]: the unprivileged user a worker running as root runs its tasks as.

use std::fmt;

use nix::unistd::{Uid, User};
use spillway_core::{Error, Result};

/// The uid and gid a task runs as; supplementary groups are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskUser {
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
}

impl TaskUser {
    /// Resolve `spec`: a user name (its primary group), a numeric `uid` (the primary group of
    /// that uid's passwd entry, else a gid equal to the uid) or `uid:gid`. Root (uid 0) is
    /// refused: it is what this setting is there to avoid.
    pub fn resolve(spec: &str) -> Result<TaskUser> {
        let spec = spec.trim();
        let number = |part: &str, what: &str| {
            part.parse::<u32>().map_err(|_| {
                Error::invalid(format!(
                    "task_user {spec:?}: {part:?} is not a numeric {what}: give a user name, a uid or uid:gid"
                ))
            })
        };
        let user = if let Some((uid, gid)) = spec.split_once(':') {
            TaskUser {
                uid: number(uid, "uid")?,
                gid: number(gid, "gid")?,
            }
        } else if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
            let uid = number(spec, "uid")?;
            let gid = User::from_uid(Uid::from_raw(uid))
                .ok()
                .flatten()
                .map_or(uid, |u| u.gid.as_raw());
            TaskUser { uid, gid }
        } else {
            let found = User::from_name(spec).map_err(|e| {
                Error::internal(format!("could not look up task_user {spec:?}")).with_source(e)
            })?;
            let Some(found) = found else {
                return Err(Error::invalid(format!(
                    "task_user {spec:?} is no user on this machine: give an existing user name (e.g. nobody) or a numeric uid[:gid]"
                )));
            };
            TaskUser {
                uid: found.uid.as_raw(),
                gid: found.gid.as_raw(),
            }
        };
        if user.uid == 0 {
            return Err(Error::invalid(format!(
                "task_user {spec:?} is root: give an unprivileged user, e.g. nobody"
            )));
        }
        Ok(user)
    }
}

impl fmt::Display for TaskUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_uids_and_uid_gid_pairs_resolve() {
        assert_eq!(
            TaskUser::resolve("1234:5678").unwrap(),
            TaskUser {
                uid: 1234,
                gid: 5678
            }
        );
        // No passwd entry: the gid is the uid.
        assert_eq!(
            TaskUser::resolve("4000123").unwrap(),
            TaskUser {
                uid: 4_000_123,
                gid: 4_000_123
            }
        );
        let nobody = User::from_name("nobody").unwrap().unwrap();
        let expected = TaskUser {
            uid: nobody.uid.as_raw(),
            gid: nobody.gid.as_raw(),
        };
        assert_eq!(TaskUser::resolve("nobody").unwrap(), expected);
        assert_eq!(
            TaskUser::resolve(&nobody.uid.to_string()).unwrap(),
            expected
        );
    }

    #[test]
    fn root_unknown_names_and_bad_numbers_are_refused() {
        for (spec, says) in [
            ("root", "is root"),
            ("0", "is root"),
            ("0:0", "is root"),
            ("spillway-no-such-user", "no user on this machine"),
            ("12:x", "not a numeric gid"),
            ("-1:3", "not a numeric uid"),
        ] {
            let err = TaskUser::resolve(spec).unwrap_err();
            assert!(err.message().contains(says), "{spec}: {err}");
        }
    }
}
