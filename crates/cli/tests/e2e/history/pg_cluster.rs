//! A PostgreSQL cluster of one test's own (initdb in a temporary folder), so a run can restart
//! it without disturbing other tests' databases. Needs PostgreSQL's server binaries; without
//! them [`PgCluster::start`] says why and returns `None`, except under `CI=true`.

use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use crate::support::free_port;

/// A running cluster with a database `test`, stopped and removed on drop.
pub struct PgCluster {
    dir: TempDir,
    bindir: PathBuf,
    port: u16,
    /// Run PostgreSQL's tools as this user (initdb refuses root).
    user: Option<String>,
}

impl PgCluster {
    /// Make and start a cluster on a free port, or `None` where PostgreSQL is not installed.
    pub fn start() -> Option<PgCluster> {
        let bindir = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .flatten()
                    .map(|v| v.path().join("bin"))
                    .filter(|bin| bin.join("initdb").exists())
                    .max()
            });
        let Some(bindir) = bindir else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PostgreSQL's server binaries are required under CI=true"
            );
            eprintln!("SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
        let user = root.then(|| "postgres".to_string());
        if let Some(user) = &user {
            let status = Command::new("chown")
                .arg(user)
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown {user} {}", dir.path().display());
        }
        let cluster = PgCluster {
            dir,
            bindir,
            port: free_port(),
            user,
        };
        let data = cluster.data();
        cluster.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres"]);
        cluster.pg_ctl("start");
        cluster.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &cluster.port.to_string(),
                "-U",
                "postgres",
                "test",
            ],
        );
        Some(cluster)
    }

    /// The URL of its database `test`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }

    /// Stop it at once (`-m immediate`, as a crash) and start it again on the same data.
    pub fn restart(&self) {
        self.pg_ctl("stop");
        self.pg_ctl("start");
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.data();
        let log = self.dir.path().join("log").display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let mut args = vec!["-D", &data, "-l", &log, "-w"];
        match action {
            "start" => args.extend(["-o", &options, "start"]),
            _ => args.extend(["-m", "immediate", "stop"]),
        }
        self.run("pg_ctl", &args);
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bindir.join(tool);
        let mut command = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let out = command.args(args).output().expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        let program = self.bindir.join("pg_ctl");
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = match &self.user {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(&program)
                .args(args)
                .output(),
            None => Command::new(&program).args(args).output(),
        };
    }
}
