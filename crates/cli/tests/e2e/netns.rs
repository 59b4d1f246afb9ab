//! Test hosts: network namespaces joined to this one through veth pairs on a bridge, so a
//! worker can run "on another machine" and be cut off from the server and healed later.
//!
//! The layout, per [`TestNetwork`]:
//!
//! ```text
//!   this namespace: bridge spwb<id> 10.X.Y.1/24  (the server, or a proxy, listens here)
//!                     ├── veth spwh<id>x<n> ──── namespace spw-<id>-<n>: eth0 10.X.Y.(n+2)/24
//!                     └── …
//! ```
//!
//! A cut sets the host's bridge-side veth down: packets from the host vanish silently (no
//! reset, no "unreachable"), as on a real partition, until the link is set up again. Making
//! namespaces needs root and `ip` (iproute2); without them [`TestNetwork::create`] says why
//! and returns `None`, except under `CI=true`, where it panics.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::support::wait_until;

/// Networks made by this test process so far, so two in one process get different names.
static NETWORKS: AtomicU32 = AtomicU32::new(0);

/// A bridge in this namespace and the test hosts attached to it; all removed on drop.
pub struct TestNetwork {
    id: String,
    bridge: String,
    prefix: [u8; 3],
    hosts: u8,
    namespaces: Vec<String>,
}

/// One test host: a network namespace with one address on the test network.
pub struct TestHost {
    namespace: String,
    link: String,
    ip: Ipv4Addr,
}

/// Run `ip ARGS`, panicking with its stderr when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Why test hosts cannot be made here, if they cannot.
fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok();
    if uid.is_none_or(|out| out.stdout.trim_ascii() != b"0") {
        return Some("making network namespaces needs root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("`ip` (iproute2) is not installed".into()),
    }
}

impl TestNetwork {
    /// A new empty test network, or `None` (with the reason printed) where namespaces cannot
    /// be made; under `CI=true` that is a failure instead.
    pub fn create() -> Option<TestNetwork> {
        if let Some(why) = unavailable() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "test hosts are required under CI=true but {why}"
            );
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let pid = std::process::id();
        let n = NETWORKS.fetch_add(1, Ordering::Relaxed);
        // Unique among live test processes: the pid, plus a per-process count.
        let id = format!("{pid}{n}");
        let key = pid.wrapping_mul(31).wrapping_add(n);
        let prefix = [10, 64 + ((key >> 8) & 0x3f) as u8, (key & 0xff) as u8];
        let bridge = format!("spwb{id}");
        assert!(bridge.len() <= 15, "interface name {bridge} is too long");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let network = TestNetwork {
            id,
            bridge,
            prefix,
            hosts: 0,
            namespaces: Vec::new(),
        };
        let cidr = format!("{}/24", network.server_ip());
        ip(&["addr", "add", &cidr, "dev", &network.bridge]);
        ip(&["link", "set", &network.bridge, "up"]);
        Some(network)
    }

    /// The address of this namespace on the test network: bind the server (or a proxy in
    /// front of it) here for test hosts to reach it.
    pub fn server_ip(&self) -> Ipv4Addr {
        let [a, b, c] = self.prefix;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// A new host on the network, connected and able to reach [`Self::server_ip`].
    pub fn add_host(&mut self) -> TestHost {
        let n = self.hosts;
        self.hosts += 1;
        let namespace = format!("spw-{}-{n}", self.id);
        let link = format!("spwh{}x{n}", self.id);
        let peer = format!("spwp{}x{n}", self.id);
        assert!(link.len() <= 15, "interface name {link} is too long");
        let [a, b, c] = self.prefix;
        let host_ip = Ipv4Addr::new(a, b, c, n + 2);
        ip(&["netns", "add", &namespace]);
        self.namespaces.push(namespace.clone());
        ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &namespace]);
        ip(&["link", "set", &link, "master", &self.bridge]);
        ip(&["link", "set", &link, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", namespace.as_str()];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["link", "set", &peer, "name", "eth0"]);
        inside(&["addr", "add", &format!("{host_ip}/24"), "dev", "eth0"]);
        inside(&["link", "set", "eth0", "up"]);
        inside(&["link", "set", "lo", "up"]);
        TestHost {
            namespace,
            link,
            ip: host_ip,
        }
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it ours.
        for namespace in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

impl TestHost {
    /// This host's address on the test network.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// `program` run inside this host's namespace (`ip netns exec` execs it, so the child's
    /// pid is the program's own and signals reach it directly).
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }

    /// Cut the host off: everything it sends or is sent is dropped without an answer.
    pub fn cut(&self) {
        ip(&["link", "set", &self.link, "down"]);
    }

    /// Connect the host again after [`Self::cut`].
    pub fn heal(&self) {
        ip(&["link", "set", &self.link, "up"]);
    }
}

#[tokio::test]
async fn a_test_host_reaches_this_namespace_until_it_is_cut_and_again_once_healed() {
    let Some(mut network) = TestNetwork::create() else {
        return;
    };
    let host = network.add_host();
    let listener = tokio::net::TcpListener::bind((network.server_ip(), 0))
        .await
        .expect("bind on the test network");
    let port = listener.local_addr().expect("local addr").port();
    let accept = tokio::spawn(async move {
        loop {
            let Ok((mut socket, peer)) = listener.accept().await else {
                return;
            };
            use tokio::io::AsyncWriteExt;
            let _ = socket
                .write_all(format!("{}\n", peer.ip()).as_bytes())
                .await;
        }
    });
    // A connect with a deadline from inside the host: bash's /dev/tcp, nothing beyond coreutils.
    let server_ip = network.server_ip();
    let probe = move |host: &TestHost| {
        let host_ip = host.ip().to_string();
        let script = format!("exec 3<>/dev/tcp/{server_ip}/{port} && head -n1 <&3");
        let mut command = host.command(Path::new("timeout"));
        command.args(["2", "bash", "-c", &script]);
        async move {
            let out = tokio::process::Command::from(command)
                .output()
                .await
                .expect("run the probe");
            // The server saw the connection come from the host's own address.
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == host_ip
        }
    };
    let reaches = |what: &'static str| {
        let host = &host;
        wait_until(what, Duration::from_secs(30), move || async move {
            probe(host).await.then_some(())
        })
    };
    reaches("the host to reach the server").await;
    host.cut();
    assert!(!probe(&host).await, "a cut host must not reach the server");
    host.heal();
    reaches("the healed host to reach the server again").await;
    accept.abort();
}
